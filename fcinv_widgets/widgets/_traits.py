"""Binary array traits: numpy arrays cross to JavaScript as bytes with dtype and shape."""

from __future__ import annotations

import numpy as np
import traitlets

from .. import validate
from ..errors import FcinvError, GridMismatchError

_JS_DTYPES = {"float32", "float64", "uint8", "int8", "int16", "uint16", "int32", "uint32"}


def array_to_json(value, widget):
    if value is None:
        return None
    arr = np.ascontiguousarray(value)
    if arr.dtype.name not in _JS_DTYPES:
        raise traitlets.TraitError(f"dtype {arr.dtype} cannot be sent to JavaScript")
    return {"buffer": memoryview(arr.tobytes()), "dtype": arr.dtype.name, "shape": list(arr.shape)}


def array_from_json(value, widget):
    if value is None:
        return None
    buf = value["buffer"]
    arr = np.frombuffer(bytes(buf), dtype=np.dtype(value["dtype"]))
    return arr.reshape(value["shape"]).copy()


array_serialization = {"to_json": array_to_json, "from_json": array_from_json}


class WidgetInputError(FcinvError, traitlets.TraitError):
    """A value a widget refuses (from Python or from the browser). Also a ``TraitError``: inside
    ``set_state`` (every browser message) traitlets rolls a refused value back only for a
    ``TraitError`` — any other exception left it in place with its observers already run."""


class WidgetGridError(GridMismatchError, traitlets.TraitError):
    """An array on another (q, E) grid than the widget's (a ``GridMismatchError`` and a ``TraitError``)."""


def int_arg(value, name: str, lo: int, hi: int) -> int:
    """A constructor's integer argument in [lo, hi), else :class:`WidgetInputError` (one line)."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or not lo <= int(value) < hi:
        raise WidgetInputError(f"{name} must be an integer in [{lo}, {hi}), got {value!r}")
    return int(value)


def need_attrs(obj, attrs, who: str, what: str) -> None:
    """Refuse (one line) an argument that lacks what a widget reads from it."""
    try:
        validate.need_attrs(obj, attrs, f"{who} needs {what}")
    except FcinvError as exc:
        raise WidgetInputError(str(exc)) from None


def range_arg(value, name: str) -> list[float]:
    """Two finite ascending numbers (e.g. an energy range in meV), else :class:`WidgetInputError`."""
    try:
        if isinstance(value, (str, bytes, dict)):  # "12" would unpack to 1, 2
            raise TypeError
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise WidgetInputError(f"{name} must be two numbers [low, high], got {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise WidgetInputError(f"{name} must be two finite numbers with low < high, got {value!r}")
    return [lo, hi]


def refuses(validator):
    """Decorate a ``@traitlets.validate`` method so that any :class:`FcinvError` it raises (its own
    or a checker's, e.g. ``real_array``) reaches traitlets as a ``TraitError`` — rolled back in
    ``set_state`` — keeping the message: :class:`WidgetGridError` for grid mismatches,
    :class:`WidgetInputError` otherwise."""
    import functools

    @functools.wraps(validator)
    def wrapped(self, proposal):
        value, trait = proposal["value"], proposal["trait"]
        if isinstance(trait, traitlets.Int) and isinstance(value, (bool, np.bool_)):  # True is an int to Python
            raise WidgetInputError(f"{trait.name} must be an integer, got {value!r}")
        try:
            return validator(self, proposal)
        except traitlets.TraitError:
            raise
        except GridMismatchError as exc:
            raise WidgetGridError(str(exc)) from None
        except FcinvError as exc:
            raise WidgetInputError(str(exc)) from None

    return wrapped


class RollsBack:
    """Mixin for the widgets' views (before ``anywidget.AnyWidget``): a browser update that a
    validator refuses is rolled back in the browser too and said there. traitlets rolls the
    kernel's traits back (a ``TraitError`` inside ``set_state``), but nothing told the page: a
    view showed "FC0 = 1000 eV/Å²" beside an image of −0.41, a noise grid kept cell 999, and the
    error went to a log nobody reads (session 47, a browser probe). Now the kernel's values of the
    message's keys are sent back, and the reason lands in the view's ``error`` trait (one line),
    cleared by the next update the kernel accepts. The ``TraitError`` is still raised (a Python
    caller of ``set_state`` gets it; ipywidgets' message handler logs it)."""

    _refused = False

    def set_state(self, sync_data):
        keys = [k for k in sync_data if k in self.keys]  # type: ignore[attr-defined]
        before = {k: getattr(self, k) for k in keys}
        try:
            super().set_state(sync_data)  # type: ignore[misc]
            self._recheck_retyped(keys, before)
        except traitlets.TraitError as exc:
            if "error" not in sync_data:  # (the page never sets it; a message that does is refused as a whole)
                self._refused = True
                self.error = " ".join(str(exc).split())[:400]  # type: ignore[attr-defined]
            self.send_state(keys)  # type: ignore[attr-defined]
            raise
        if self._refused and "error" not in sync_data:
            self._refused = False
            self.error = ""  # type: ignore[attr-defined]

    def _recheck_retyped(self, keys, before) -> None:
        """Inside ``set_state`` traitlets cross-validates changed values only: a browser value equal
        to the current one ([1.0] for [1], True for 1) was stored without its ``@validate`` check
        and failed later as an IndexError (session 49). Run each such key's validator now; a value
        it refuses is put back as it was (and the TraitError raised), one it normalises is stored so."""
        validators = getattr(self, "_trait_validators", {})
        for k in keys:
            v = getattr(self, k)
            if k not in validators or _same_types(v, before[k]):
                continue
            trait = self.traits()[k]  # type: ignore[attr-defined]
            try:
                checked = trait._cross_validate(self, v)
            except traitlets.TraitError:
                with self.hold_trait_notifications():  # type: ignore[attr-defined]
                    self.set_trait(k, before[k])  # type: ignore[attr-defined]
                raise
            if checked is not v:
                self.set_trait(k, checked)  # type: ignore[attr-defined]


def _same_types(a, b) -> bool:
    """Whether a and b (equal values) hold items of the same types, nested lists included."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(type(x) is type(y) and _same_types(x, y) for x, y in zip(a, b))
    return type(a) is type(b)


class Array(traitlets.TraitType):
    """A numpy array trait with a fixed dtype (cast on assignment) and optional ndim."""

    info_text = "a numpy array"

    def __init__(self, dtype="float32", ndim=None, **kwargs):
        self.dtype = np.dtype(dtype)
        self.ndim = ndim
        kwargs.setdefault("allow_none", True)
        kwargs.setdefault("default_value", None)
        super().__init__(**kwargs)

    def validate(self, obj, value):
        if value is None:
            if self.allow_none:
                return None
            self.error(obj, value)
        try:
            arr = np.asarray(value, dtype=self.dtype)
        except (TypeError, ValueError) as exc:
            raise traitlets.TraitError(f"trait {self.name!r} needs an array convertible to {self.dtype}: {exc}") from exc
        if self.ndim is not None and arr.ndim != self.ndim:
            raise traitlets.TraitError(f"trait {self.name!r} needs a {self.ndim}-D array, got shape {arr.shape}")
        return arr

    def make_dynamic_default(self):  # pragma: no cover - default None
        return None

    def tag_sync(self):
        return self.tag(sync=True, **array_serialization)


def synced_array(dtype="float32", ndim=None, **kwargs):
    return Array(dtype=dtype, ndim=ndim, **kwargs).tag(sync=True, **array_serialization)
