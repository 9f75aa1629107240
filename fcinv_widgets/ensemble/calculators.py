"""Registry of universal machine-learned force fields (uMLFFs) as ASE calculators.

One entry per submodel. Every family is optional: a family whose package is not
installed, or a model whose weights are not on disk, is listed with status
``"skipped"`` and a one-line reason, and never raises a traceback.

Families
--------
* **CHGNet** (``chgnet``): 0.3.0, 0.2.0, r2scan — weights ship inside the wheel.
* **SevenNet** (``sevenn``): SevenNet-0 (11Jul2024), SevenNet-0 (22May2024), SevenNet-l3i5,
  SevenNet-MF-0 (one entry per modal: PBE, R2SCAN) — weights ship inside the wheel.
* **matgl** (M3GNet / TensorNet, torch-geometric backend): by folder path (a folder with
  ``model.json``, or a folder of such folders) or by name (downloads from the model hub where
  the network allows; offline it fails fast because ``HF_HUB_OFFLINE=1`` is set unless the user
  set it). The ASE calculator gets ``stress_unit="eV/A3"``.
* **MACE** (``mace-torch``): a local ``.model`` file, or a ``mace_mp`` foundation name (only
  when already in mace's cache, or downloaded where the network allows).

API
---
``available_models(matgl_paths=(), matgl_names=(), mace_models=()) -> list[ModelSpec]``
``get_calculator(name_or_spec, device="cpu", **sources) -> ase Calculator``
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import FcinvError, MissingDependencyError

AVAILABLE = "available"
SKIPPED = "skipped"

FAMILIES = ("chgnet", "sevenn", "matgl", "mace")
PACKAGES = {"chgnet": "chgnet", "sevenn": "sevenn", "matgl": "matgl", "mace": "mace"}
DISTRIBUTIONS = {"chgnet": "chgnet", "sevenn": "sevenn", "matgl": "matgl", "mace": "mace-torch"}

CHGNET_VERSIONS = ("0.3.0", "0.2.0", "r2scan")
# name -> (checkpoint folder inside sevenn/pretrained_potentials, checkpoint file, modal)
SEVENNET_MODELS = {
    "SevenNet-0-11Jul2024": ("SevenNet_0__11Jul2024", "checkpoint_sevennet_0.pth", None),
    "SevenNet-0-22May2024": ("SevenNet_0__22May2024", "checkpoint_sevennet_0.pth", None),
    "SevenNet-l3i5": ("SevenNet_l3i5", "checkpoint_l3i5.pth", None),
    # multi-fidelity model: one submodel per modal (modal map of sevenn 0.13: R2SCAN, PBE)
    "SevenNet-MF-0-PBE": ("SevenNet_MF_0", "checkpoint_sevennet_mf_0.pth", "PBE"),
    "SevenNet-MF-0-R2SCAN": ("SevenNet_MF_0", "checkpoint_sevennet_mf_0.pth", "R2SCAN"),
}


@dataclass
class ModelSpec:
    """One uMLFF submodel.

    name    : unique registry name, e.g. ``"CHGNet-0.3.0"``, ``"SevenNet-MF-0-PBE"``,
              ``"matgl:M3GNet-MP-2021.2.8-PES"``, ``"mace:small"``.
    family  : ``chgnet`` | ``sevenn`` | ``matgl`` | ``mace``.
    status  : ``"available"`` or ``"skipped"``.
    reason  : why skipped (one line), or where the weights are.
    source  : weights path or model name the loader gets.
    modal   : SevenNet multi-fidelity modal, else None.
    """

    name: str
    family: str
    status: str
    reason: str = ""
    source: str = ""
    modal: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.status == AVAILABLE

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return f"{self.name:<40s} {self.family:<7s} {self.status:<9s} {self.reason}"


# ---------------------------------------------------------------------------------- helpers
def _package_dir(pkg: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(pkg)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def package_version(family_or_dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    dist = DISTRIBUTIONS.get(family_or_dist, family_or_dist)
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def package_versions() -> dict:
    """Versions of the packages that shape the force constants (None where not installed)."""
    names = ["chgnet", "sevenn", "matgl", "mace-torch", "e3nn", "torch", "torch-geometric", "phonopy", "spglib", "ase", "numpy"]
    return {n: package_version(n) for n in names}


def _not_installed(family: str) -> str:
    return f"package '{DISTRIBUTIONS[family]}' not installed (pip install 'fcinv-widgets[ensemble]', see docs/ensemble.md)"


def _chgnet_specs() -> list:
    d = _package_dir("chgnet")
    out = []
    for v in CHGNET_VERSIONS:
        name = f"CHGNet-{v}"
        if d is None:
            out.append(ModelSpec(name, "chgnet", SKIPPED, _not_installed("chgnet")))
            continue
        files = sorted((d / "pretrained" / v).glob("*.pth.tar"))
        if files:
            out.append(ModelSpec(name, "chgnet", AVAILABLE, f"weights in the chgnet wheel ({files[0].name})", v))
        else:
            out.append(ModelSpec(name, "chgnet", SKIPPED, f"weights for CHGNet {v} not found in {d / 'pretrained'}"))
    return out


def _sevenn_specs() -> list:
    d = _package_dir("sevenn")
    out = []
    for name, (folder, fname, modal) in SEVENNET_MODELS.items():
        if d is None:
            out.append(ModelSpec(name, "sevenn", SKIPPED, _not_installed("sevenn"), modal=modal))
            continue
        path = d / "pretrained_potentials" / folder / fname
        if path.is_file():
            why = f"weights in the sevenn wheel ({folder}{', modal ' + modal if modal else ''})"
            out.append(ModelSpec(name, "sevenn", AVAILABLE, why, str(path), modal))
        else:
            out.append(ModelSpec(name, "sevenn", SKIPPED, f"checkpoint {path} not found", modal=modal))
    return out


def _matgl_folders(path: Path) -> list:
    """A matgl model folder (has model.json) or a folder whose subfolders are model folders."""
    if (path / "model.json").is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_dir() and (p / "model.json").is_file()) if path.is_dir() else []


def _matgl_specs(paths=(), names=()) -> list:
    have = _package_dir("matgl") is not None
    out = []
    for p in paths:
        p = Path(p).expanduser()
        folders = _matgl_folders(p)
        if not folders:
            out.append(ModelSpec(f"matgl:{p.name}", "matgl", SKIPPED, f"no matgl model (model.json) in {p}"))
            continue
        for f in folders:
            if not have:
                out.append(ModelSpec(f"matgl:{f.name}", "matgl", SKIPPED, _not_installed("matgl")))
            elif not (f / "model.pt").is_file():
                out.append(ModelSpec(f"matgl:{f.name}", "matgl", SKIPPED, f"{f} has no model.pt"))
            else:
                out.append(ModelSpec(f"matgl:{f.name}", "matgl", AVAILABLE, f"folder {f}", str(f)))
    for n in names:
        if not have:
            out.append(ModelSpec(f"matgl-hub:{n}", "matgl", SKIPPED, _not_installed("matgl")))
        else:
            out.append(
                ModelSpec(
                    f"matgl-hub:{n}",
                    "matgl",
                    AVAILABLE,
                    "by name (model hub download; fails fast offline)",
                    n,
                    extra={"by_name": True},
                )
            )
    return out


def _mace_cached_path(name: str) -> str | None:
    try:
        from mace.calculators.foundations_models import mace_mp_names, mace_mp_urls
        from mace.tools.utils import get_cache_dir  # noqa: F401
    except Exception:
        try:
            from mace.calculators.foundations_models import mace_mp_names, mace_mp_urls  # type: ignore
        except Exception:
            return None
    if name not in mace_mp_names:
        return None
    url = mace_mp_urls.get(name)
    if not url:
        return None
    from mace.calculators import foundations_models as fm

    cache_dir = fm.get_cache_dir() if hasattr(fm, "get_cache_dir") else os.path.expanduser("~/.cache/mace")
    fname = "".join(c for c in os.path.basename(url) if c.isalnum() or c in "_")
    return f"{cache_dir}/{fname}"


#: why a MACE file needs an explicit trust step (the CLI's --trust-mace-file help says the same)
MACE_TRUST_NOTE = (
    "a MACE .model file is a Python pickle (mace unpickles it, weights_only off) "
    "and can run any code when loaded: use only files you trust"
)


def _mace_specs(models=(), trust_files: bool = False) -> list:
    have = _package_dir("mace") is not None
    out = []
    for m in models:
        m = str(m)
        p = Path(m).expanduser()
        is_path = p.suffix == ".model" or os.sep in m or p.exists()
        label = f"mace:{p.stem if is_path else m}"
        if not have:
            out.append(ModelSpec(label, "mace", SKIPPED, _not_installed("mace")))
        elif is_path:
            if p.is_file():
                out.append(ModelSpec(label, "mace", AVAILABLE, f"file {p}", str(p), extra={"trusted": bool(trust_files)}))
            else:
                out.append(ModelSpec(label, "mace", SKIPPED, f"MACE model file {p} not found"))
        else:
            cached = _mace_cached_path(m)
            if cached and os.path.isfile(cached):
                # mace's own download of a named foundation model: the same trust as loading it by name
                out.append(
                    ModelSpec(
                        label,
                        "mace",
                        AVAILABLE,
                        f"mace_mp '{m}' from cache {cached}",
                        cached,
                        extra={"trusted": True, "foundation": m},
                    )
                )
            else:
                out.append(
                    ModelSpec(
                        label,
                        "mace",
                        AVAILABLE,
                        f"mace_mp '{m}' (download; fails where there is no network)",
                        m,
                        extra={"by_name": True},
                    )
                )
    return out


def available_models(
    matgl_paths=(), matgl_names=(), mace_models=(), include_skipped: bool = True, trust_mace_files: bool = False
) -> list:
    """All registry entries: built-in CHGNet and SevenNet submodels, plus the matgl folders/names
    and MACE files/names given. Cheap: no model is loaded (packages are located, not imported).

    MACE model *files* load only with ``trust_mace_files=True`` (see :data:`MACE_TRUST_NOTE`)."""
    specs = (
        _chgnet_specs()
        + _sevenn_specs()
        + _matgl_specs(matgl_paths, matgl_names)
        + _mace_specs(mace_models, trust_files=trust_mace_files)
    )
    return specs if include_skipped else [s for s in specs if s.available]


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def find_spec(name: str, specs) -> ModelSpec:
    """Look a model up by registry name (case and punctuation insensitive; the ``matgl:``/``mace:``
    prefix may be left out)."""
    from ..validate import need_type, nonempty_list

    if not isinstance(name, str):
        raise FcinvError(f"a model is named by a string, got {type(name).__name__} {name!r}"[:200])
    specs = [need_type(s, ModelSpec, "each of specs (calculators.available_models())") for s in nonempty_list(specs, "specs")]
    key = _normalise(name)
    for s in specs:
        if _normalise(s.name) == key or _normalise(s.name.split(":", 1)[-1]) == key:
            return s
    known = ", ".join(s.name for s in specs)
    raise FcinvError(f"unknown model {name!r}; known: {known}")


# ---------------------------------------------------------------------------------- loaders
@contextlib.contextmanager
def _quiet():
    """Swallow the banners some loaders print (CHGNet, SevenNet)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield buf


def _load_chgnet(spec: ModelSpec, device: str):
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    with _quiet():
        model = CHGNet.load(model_name=spec.source, use_device=device, verbose=False)
        return CHGNetCalculator(model=model, use_device=device)


def _load_sevenn(spec: ModelSpec, device: str):
    import warnings

    from sevenn.calculator import SevenNetCalculator

    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SevenNetCalculator(model=spec.source, device=device, modal=spec.modal)


def _load_matgl(spec: ModelSpec, device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # by-name loads fail fast without network
    import warnings

    import matgl
    from matgl.ext.ase import PESCalculator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pot = matgl.load_model(spec.source)
        except Exception as exc:  # network / hub errors come in many types
            if spec.extra.get("by_name"):
                raise MissingDependencyError(
                    f"{spec.name}: cannot load matgl model {spec.source!r} by name ({type(exc).__name__}); "
                    "offline, give its folder with --matgl-path DIR (HF_HUB_OFFLINE=0 to allow downloads)"
                ) from None
            raise
    if device != "cpu" and hasattr(pot, "to"):
        pot = pot.to(device)
    return PESCalculator(pot, stress_unit="eV/A3")


@contextlib.contextmanager
def _env_restored(*names):
    """Restore environment variables on exit (mace sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD, which
    would turn every later torch.load in this process into an unpickling load)."""
    saved = {n: os.environ.get(n) for n in names}
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def _load_mace(spec: ModelSpec, device: str):
    if not spec.extra.get("by_name") and not spec.extra.get("trusted"):
        raise FcinvError(
            f"{spec.name}: refused to load {spec.source}: {MACE_TRUST_NOTE}; "
            "pass --trust-mace-file (trust_mace_files=True) to load it anyway"
        )
    with _env_restored("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        return _load_mace_unguarded(spec, device)


def _load_mace_unguarded(spec: ModelSpec, device: str):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.extra.get("by_name"):
            from mace.calculators import mace_mp

            try:
                with _quiet():
                    return mace_mp(model=spec.source, device=device, default_dtype="float64")
            except Exception as exc:
                raise MissingDependencyError(
                    f"{spec.name}: cannot get MACE foundation model {spec.source!r} ({type(exc).__name__}: {str(exc)[:80]}); "
                    "offline, give a local .model file"
                ) from None
        from mace.calculators import MACECalculator

        with _quiet():
            return MACECalculator(model_paths=spec.source, device=device, default_dtype="float64")


LOADERS = {"chgnet": _load_chgnet, "sevenn": _load_sevenn, "matgl": _load_matgl, "mace": _load_mace}


def get_calculator(name, device: str = "cpu", matgl_paths=(), matgl_names=(), mace_models=(), trust_mace_files: bool = False):
    """An ASE calculator for registry entry ``name`` (a name or a :class:`ModelSpec`).

    Raises :class:`MissingDependencyError` (one line) for a skipped model or a load failure
    that comes from missing weights or network.
    """
    if not isinstance(device, str) or not device.strip():
        raise FcinvError(f"device must be a torch device name ('cpu', 'cuda'), got {device!r}"[:200])
    if isinstance(name, ModelSpec):
        spec = name
    else:
        spec = find_spec(name, available_models(matgl_paths, matgl_names, mace_models, trust_mace_files=trust_mace_files))
    if not spec.available:
        raise MissingDependencyError(f"{spec.name}: skipped: {spec.reason}")
    return LOADERS[spec.family](spec, device)
