"""Inference: load a trained model and invert spectra into FCs (eV/Å²).

Two kinds of checkpoint ``model.pt``, both loading with ``torch.load(..., weights_only=True)``::

    VAE + regressor:  {"config": JSON string, "vae": state_dict, "regressor": state_dict}
    ResNet-18:        {"config": JSON string, "net": state_dict}

config (JSON): format ("fcinv-vae" | "fcinv-resnet"), version, material, grid_shape,
energy_centers_mev, names, domain, y_mean, y_std (target scaler), the architecture
(VAE: latent, base, hidden, reg_hidden, beta; ResNet: width) and a training record.

:meth:`Inverter.load` (or :func:`load_model`) reads either and returns an :class:`Inverter`
(VAE: means and standard deviations over latent samples, reconstructions) or a
:class:`ResNetModel` (point estimates; std = 0, no reconstruction). Both have the same
``predict(spectra) -> Prediction`` interface.

Input handling: every spectrum is checked (:meth:`_Model.check_input`: non-numeric, complex,
wrong shape, ±inf, all-NaN, all-zero or constant inputs raise :class:`FcinvError`), then
min-max scaled over its finite pixels, like the training data; NaN pixels (not measured) are
then set to 0 (= no intensity). :meth:`_Model.invert` reads a file, applies the correction
its metadata calls for (once) and reports the out-of-distribution flag (:mod:`.ood`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FcinvError, FcinvWarning, GridMismatchError, MissingDependencyError
from ..validate import finite_number, flag, json_loads

#: the input regimes σ is calibrated for separately: a measurement whose intensity is the fast
#: model's, a one-phonon S(Q,E) (measured or simulated, corrected to the model's intensity once), and
#: a fast-model image (clean or with background and counts). The first two are the OOD check's
#: measured regime (:mod:`.ood`), the last its model-image regime. "…-scan": the same for one
#: single-orientation scan (session 20): a network's errors on a single scan are larger than its
#: own σ says, more than on fuller coverage (:func:`~.train.scan_calibration_draws`).
SIGMA_REGIMES = ("measured", "measured-sqe", "model-image", "measured-scan", "measured-sqe-scan")

#: where a regime's calibration comes from when the checkpoint lacks it, nearest first (then the
#: pooled one): checkpoints before session 20 have no single-scan regimes, those trained without
#: S(Q,E) draws no "measured-sqe"
SIGMA_FALLBACK = {
    "measured-sqe-scan": ("measured-sqe", "measured"),
    "measured-scan": ("measured",),
    "measured-sqe": ("measured",),
}


#: what the result of a single scan's physics fit says when the scan's angle was not given
#: (``scan_deg`` / ``--scan``): measured with ``benchmarks/bench_invert_scan.py`` (session 36)
SCAN_ANGLE_NOTE = (
    "the scan's sample angle was not given (scan_deg, --scan DEG): the physics fit folded every equivalent Q the "
    "kinematics reach, not the ones this scan's detector coverage holds, and on such scans it stays far above the "
    "noise and is not trusted ({measured}); give the angle for a fit of this scan"
)
SCAN_ANGLE_MEASURED = (
    "first-principles Ge scans at B 0.05 / P 300 and B 0.1 / P 100: residual 2.5–30× the noise, none of 24 trusted"
)


def input_sigma_regime(corrections: dict | None, measured: bool, single_scan: bool = False) -> str:
    """The σ regime of an input from :func:`~fcinv_widgets.analysis.expio.prepare_input`'s record
    and the OOD regime it is judged in (``measured``): "model-image" outside the measured regime,
    "measured-sqe" for a one-phonon S(Q,E), else "measured"; with ``single_scan`` (one
    single-orientation scan of a measurement) "measured-sqe-scan" / "measured-scan"."""
    if not measured:
        return "model-image"
    base = "measured-sqe" if (corrections or {}).get("intensity") == "one-phonon-sqe" else "measured"
    return f"{base}-scan" if single_scan else base


def auto_refine(model, corrections: dict, angle_unknown: bool = False) -> tuple[bool, str]:
    """Whether inference refines by default (``refine=None``), and why: the physics fit
    (``analysis.refine.refine_sqe``) runs for a one-phonon S(Q,E) as an instrument records it
    (uncorrected: :func:`~fcinv_widgets.analysis.expio.is_uncorrected_sqe`) at a known Ei when ``model`` has a
    calibrated σ (a heteroscedastic head), since only then can the fit be checked against the
    network's answer (``trust_fit``) and a fit in a wrong minimum be dropped. Measured (session 16,
    ``bench_networks_sqe.py --refine``, 8 truths × 2 noise cells, full data): the trusted fit's
    FC0–FC3 median error 2 / 2 / 16 / 17 % against the network's 3 / 3 / 38 / 30 % (``ge-vae``) and
    never a larger worst case. A model image is the networks' own input: no fit by default.
    ``angle_unknown``: the input is one single-orientation scan whose sample angle was not given
    (``invert(single_scan=True)`` without ``scan_deg``): no fit by default, as the fit could only
    fold every equivalent, not that scan's coverage (session 36: none of 24 such fits trusted,
    :data:`SCAN_ANGLE_MEASURED`)."""
    from ..analysis.expio import is_uncorrected_sqe

    if not is_uncorrected_sqe(corrections):
        return False, "not a one-phonon S(Q,E) as measured (the fit models uncorrected S(Q,E) data)"
    if corrections.get("ei_mev") is None:
        why = f": the file's {corrections['ei_problem']}" if corrections.get("ei_problem") else ""
        return False, f"the incident energy is not known{why} (the fit needs Ei for the resolution and coverage)"
    if not getattr(model, "heteroscedastic", False):
        return False, "the model has no calibrated σ to check a fit against (refine=True / --refine runs it unchecked)"
    if angle_unknown:
        return False, (
            "a single scan whose sample angle was not given: the fit could only fold every equivalent, not this scan's "
            f"coverage ({SCAN_ANGLE_MEASURED}); scan_deg / --scan DEG gives it the orientation, --refine runs it anyway"
        )
    return True, "one-phonon S(Q,E) and a calibrated σ: the fit, reported where trusted"


def refine_policy(model, corrections: dict, refine: bool | None, angle_unknown: bool = False) -> dict:
    """The ``refine_policy`` record of an inference: ``refine`` None → :func:`auto_refine` decides
    (``angle_unknown`` as there), True / False → as asked. {"auto", "refine", "reason"}."""
    if refine is None:
        do, why = auto_refine(model, corrections, angle_unknown=angle_unknown)
    else:
        do, why = bool(refine), "asked for" if refine else "not asked for"
    return {"auto": refine is None, "refine": do, "reason": why}


#: robust models (trained on realistic spectra, calibrated σ) and the paper-faithful ones
#: (clean spectra; ``*-paper``). A robust name whose folder is not shipped falls back to its
#: ``-paper`` model.
SHIPPED = ("ge-vae", "ge-resnet", "nb-vae", "nb-resnet", "ge-vae-paper", "ge-resnet-paper", "nb-vae-paper", "nb-resnet-paper")


def resolve_model(name_or_dir) -> Path:
    """A checkpoint file from a directory, a file, or a shipped model name (``ge-vae`` …)."""
    p = Path(name_or_dir)
    if p.is_dir():
        p = p / "model.pt"
    if p.is_file():
        if str(name_or_dir) in SHIPPED:  # a folder named like a shipped model takes precedence: say so
            warnings.warn(
                f"{name_or_dir!r} is the local {p.resolve()}, not the shipped model of that name "
                f"(give ./{name_or_dir} to mean the local one, or run elsewhere for the shipped one)",
                FcinvWarning,
                stacklevel=2,
            )
        return p
    if str(name_or_dir) in SHIPPED:
        from ..materials import data_path

        q = data_path("models", str(name_or_dir), "model.pt")
        if not q.is_file() and not str(name_or_dir).endswith("-paper"):
            q = data_path("models", f"{name_or_dir}-paper", "model.pt")
        if q.is_file():
            return q
        raise MissingDependencyError(
            f"the shipped model {name_or_dir!r} is not in this installation ({q}); "
            "train one with `fcinv train` and pass its directory"
        )
    raise FcinvError(f"no model at {name_or_dir!r}: give a checkpoint directory, a model.pt file or one of {', '.join(SHIPPED)}")


@dataclass
class Prediction:
    names: list
    mean: np.ndarray  # (N, 8) eV/Å²
    std: np.ndarray  # (N, 8) eV/Å² (spread over latent samples)
    recon: np.ndarray  # (N, nq, nE) reconstruction of the decoder at μ
    mu: np.ndarray  # (N, latent)
    logvar: np.ndarray  # (N, latent)

    def to_dict(self, i: int = 0) -> dict:
        return {"names": self.names, "fc_mean": self.mean[i].tolist(), "fc_std": self.std[i].tolist()}


def _built(make, state, what: str):
    """The network ``make()`` with the stored weights ``state`` — built first on torch's meta device
    (no memory) and compared tensor by tensor with ``state``, so that a config that lies (a 6 MB
    checkpoint saying ``hidden=10**6`` had torch allocate 20.7 GB before the mismatch was seen)
    is refused before anything is allocated."""
    import torch

    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise ValueError(f"its {what} weights are not a state dict (name → tensor)")
    with torch.device("meta"):
        shell = make()
    want = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if want != got:
        k = next((k for k in want if want[k] != got.get(k)), None) or next(k for k in got if k not in want)
        raise ValueError(
            f"its config describes a {what} network that does not match its weights ({k}: {want.get(k)} vs {got.get(k)})"
        )
    net = make()
    net.load_state_dict(state)
    return net


def _build(ck: dict, cfg: dict):
    from .nets import VAE, ResNet18, Regressor

    if cfg.get("format") == "fcinv-vae":
        vae = _built(
            lambda: VAE(cfg["grid_shape"], latent=cfg["latent"], base=cfg["base"], hidden=cfg["hidden"]), ck["vae"], "VAE"
        )
        het = 2 if cfg.get("heteroscedastic") else 1
        reg = _built(
            lambda: Regressor(cfg["latent"], het * len(cfg["names"]), hidden=cfg["reg_hidden"]), ck["regressor"], "regressor"
        )
        return Inverter(vae, reg, cfg)
    if cfg.get("format") == "fcinv-resnet":
        n_out = (2 if cfg.get("heteroscedastic") else 1) * len(cfg["names"])
        return ResNetModel(_built(lambda: ResNet18(n_out, width=cfg["width"]), ck["net"], "ResNet"), cfg)
    raise KeyError(f"format {cfg.get('format')!r}")


def load_model(name_or_dir, material: str | None = None, grid=None):
    """Load a VAE (:class:`Inverter`) or ResNet (:class:`ResNetModel`) checkpoint safely.

    ``name_or_dir``: a checkpoint directory, a ``model.pt`` file or a shipped model name.
    ``material``/``grid``: refuse a checkpoint trained for another material or grid.
    """
    import torch

    from ..validate import as_path, format_version

    path = resolve_model(as_path(name_or_dir, "model (a shipped name such as ge-vae, a folder or a model.pt)"))
    try:
        with warnings.catch_warnings():  # torch warns in two lines before refusing a raw pickle: the refusal is the message
            warnings.simplefilter("ignore")
            try:
                ck = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 — a text file said "KeyError: 101"
                if "weights_only" in str(exc) or "Unsupported global" in str(exc):
                    raise ValueError("it holds pickled objects, which are not loaded (weights_only)") from None
                raise ValueError(f"not a torch file ({type(exc).__name__})") from None
        if not isinstance(ck, dict) or "config" not in ck:
            raise ValueError(f"it holds a {type(ck).__name__} without the 'config' entry of fcinv's checkpoints")
        cfg = json_loads(ck["config"], f"{path}: config")
        if not isinstance(cfg, dict):
            raise ValueError(f"its config is a JSON {type(cfg).__name__}, not an object")
        format_version(cfg.get("version"), str(path))  # a newer layout: say so, do not guess at it
        model = _build(ck, cfg)
    except FcinvError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise FcinvError(f"{path} is not a readable fcinv model checkpoint ({type(exc).__name__}: {first})") from None
    model.path = path
    if material is not None and str(material).lower() != str(model.config["material"]).lower():
        raise GridMismatchError(f"{path} was trained for {model.config['material']}, not {material}")
    if grid is not None:
        model.check_grid(grid)
    return model


#: the most latent samples per spectrum :meth:`VAEModel.predict` draws (its regressor's hidden
#: layer holds samples × batch × 128 floats: 1.3 GB at this many and the default batch)
MAX_N_SAMPLES = 10_000


def _check_predict_args(n_samples, seed, batch) -> None:
    from ..validate import whole_number

    whole_number(n_samples, "n_samples", 1, MAX_N_SAMPLES)
    whole_number(seed, "seed", -(2**63), 2**64 - 1)
    whole_number(batch, "batch", 1)


class _Model:
    """What both model kinds share: config, input validation/scaling, persistence."""

    kind = ""
    path = None
    trust_note: str | None = None  # why the single-scan trust limit is the default one (:attr:`single_scan_trust_limit`)

    def __init__(self, config: dict):
        self.config = config
        self.names = list(config["names"])
        self.shape = tuple(config["grid_shape"])
        self.y_mean = np.asarray(config["y_mean"], float)
        self.y_std = np.asarray(config["y_std"], float)
        self._check_config()
        #: a heteroscedastic head predicts mean and log σ² per FC (models trained with a measurement model)
        self.heteroscedastic = bool(config.get("heteroscedastic", False))
        self.set_sigma_calibration(
            config.get("sigma_scale"), config.get("sigma_calibration"), config.get("sigma_calibration_by_regime")
        )

    def _check_config(self) -> None:
        """The config's numbers the predictions are made of, checked (ValueError: :func:`load_model`
        names the file): a ``y_std`` of 0 or −1 gave constant or sign-flipped FCs with exit 0."""
        n = len(self.names)
        if n == 0 or not all(isinstance(v, str) for v in self.names):
            raise ValueError("names must be a non-empty list of FC names")
        if len(self.shape) != 2 or not all(isinstance(v, int) and v > 0 for v in self.shape):
            raise ValueError(f"grid_shape must be two positive whole numbers, got {list(self.shape)}")
        for key, v in (("y_mean", self.y_mean), ("y_std", self.y_std)):
            if v.shape != (n,) or not np.all(np.isfinite(v)):
                raise ValueError(f"{key} must be {n} finite numbers (eV/Å²)")
        if not np.all(self.y_std > 0):
            raise ValueError("y_std (the targets' scale, eV/Å²) must be > 0 for every FC")
        dom = self.config.get("domain")
        if dom is not None:
            d = np.asarray(dom, dtype=object)
            ok = d.shape == (n, 2) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in d.ravel())
            d = np.asarray(dom, float) if ok else None
            if d is None or not np.all(np.isfinite(d)) or not np.all(d[:, 0] < d[:, 1]):
                raise ValueError(f"domain must be {n} finite (low, high) pairs with low < high (eV/Å²)")
        e = self.config.get("energy_centers_mev")
        if e is not None:
            ok = isinstance(e, list) and len(e) == self.shape[1] and all(isinstance(v, (int, float)) for v in e)
            if not ok or not np.all(np.isfinite(e)) or not np.all(np.diff(np.asarray(e, float)) > 0):
                raise ValueError(f"energy_centers_mev must be {self.shape[1]} finite, increasing energies (meV)")

    def set_sigma_calibration(self, scale, calibration, by_regime: dict | None = None) -> None:
        """Set (and record in the config) the post-hoc calibration of σ: ``scale`` one factor per FC
        (None: 1), ``calibration`` the σ-conditional one of :func:`~.train.sigma_calibration` (None:
        the per-FC factor alone), ``by_regime`` the same pair fitted per kind of input —
        ``{regime: {"sigma_scale", "sigma_calibration", "n"}}`` for regimes of :data:`SIGMA_REGIMES`
        (session 15, :func:`~.train._fit_sigma`): a measurement's σ is sized on measurement-model
        draws, an S(Q,E)'s on those through the S(Q,E) path, a model image's (clean or with the
        noise grid's background and counts) on noise-grid draws.
        Checkpoints before session 15 carry the pooled pair only; before session 10 only the
        factor; older ones neither (scale 1)."""
        n = len(self.names)
        self._sigma = self._parse_sigma(scale, calibration, n)
        #: the post-hoc σ factor pooled over every kind of input, one per FC (1 for older checkpoints)
        self.sigma_scale = self._sigma[0]
        self._sigma_regimes: dict = {}
        if by_regime:
            if not isinstance(by_regime, dict) or not set(by_regime) <= set(SIGMA_REGIMES):
                raise FcinvError(
                    f"the checkpoint's sigma_calibration_by_regime is damaged (keys must be among {', '.join(SIGMA_REGIMES)})"
                )
            for reg, entry in by_regime.items():
                if not isinstance(entry, dict) or entry.get("sigma_scale") is None:
                    raise FcinvError(f"the checkpoint's sigma_calibration_by_regime is damaged ({reg!r} has no sigma_scale)")
                self._sigma_regimes[reg] = self._parse_sigma(entry["sigma_scale"], entry.get("sigma_calibration"), n)
        for key, value in (
            ("sigma_scale", None if scale is None else [float(v) for v in self.sigma_scale]),
            ("sigma_calibration", calibration or None),
            ("sigma_calibration_by_regime", by_regime or None),
        ):
            if value is None:
                self.config.pop(key, None)
            else:
                self.config[key] = value

    @staticmethod
    def _parse_sigma(scale, calibration, n: int) -> tuple:
        """(per-FC factor (n,), log-σ knots or None, factors or None), checked."""
        try:
            factor = np.asarray(scale if scale is not None else np.ones(n), float)
            ok = factor.shape == (n,) and bool(np.isfinite(factor).all() and (factor > 0).all())
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise FcinvError(f"the checkpoint's sigma_scale is damaged (needs {n} positive numbers)")
        if not calibration:
            return factor, None, None
        try:
            knots = np.asarray(calibration["log_sigma"], float)
            factors = np.asarray(calibration["scales"], float)
            ok = knots.ndim == 2 and knots.shape == factors.shape and knots.shape[1] == n and len(knots) >= 1
            ok = ok and bool(np.isfinite(knots).all() and np.isfinite(factors).all() and (factors > 0).all())
            ok = ok and bool((np.diff(knots, axis=0) >= 0).all())
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise FcinvError(
                "the checkpoint's sigma_calibration is damaged (needs increasing log_sigma and positive scales, bins × FCs)"
            )
        return factor, knots, factors

    def sigma_regimes(self) -> tuple[str, ...]:
        """The input regimes this checkpoint's σ is calibrated for separately (empty: pooled only)."""
        return tuple(self._sigma_regimes)

    def resolved_sigma_regime(self, regime: str | None) -> str | None:
        """The calibration that sizes σ for inputs of ``regime``: itself when the checkpoint has it,
        else the nearest of :data:`SIGMA_FALLBACK` it has ("measured" for "measured-sqe" when the
        training drew no S(Q,E) spectra; "measured-sqe" for a single scan's S(Q,E) before session
        20), None (the pooled calibration) otherwise."""
        if regime not in (None, *SIGMA_REGIMES):
            raise FcinvError(f"sigma regime must be one of {', '.join(SIGMA_REGIMES)}, got {regime!r}")
        if regime is None:
            return None
        for reg in (regime, *SIGMA_FALLBACK.get(regime, ())):
            if reg in self._sigma_regimes:
                return reg
        return None

    def calibrated_std(self, std, regime=None) -> np.ndarray:
        """The calibrated σ (eV/Å²) of the network's own σ ``std`` (N, n_FC): × the σ-conditional
        scale (interpolated in log σ between the calibration bins) when the checkpoint has one, else
        × the per-FC factor. ``regime``: one of :data:`SIGMA_REGIMES` for every row, or one per row
        (N,) — the calibration fitted on that kind of input (:meth:`resolved_sigma_regime`; None:
        the pooled one)."""
        std = np.asarray(std, float)
        if regime is None or isinstance(regime, str):
            return self._calibrate(std, self.resolved_sigma_regime(regime))
        regs = np.asarray(regime, dtype=object)
        if std.ndim != 2 or regs.shape != (len(std),):
            raise FcinvError(f"one sigma regime per spectrum: {regs.shape} regimes for σ of shape {std.shape}")
        out = np.empty_like(std)
        names = regs.tolist()
        for reg in set(names):
            rows = np.array([r == reg for r in names])
            out[rows] = self._calibrate(std[rows], self.resolved_sigma_regime(reg))
        return out

    def _calibrate(self, std: np.ndarray, resolved: str | None) -> np.ndarray:
        factor, knots, factors = self._sigma_regimes[resolved] if resolved else self._sigma
        if knots is None:
            return std * factor
        logs = np.log(np.maximum(std, 1e-30))
        f = np.empty_like(std)
        for k in range(std.shape[-1]):
            f[..., k] = np.interp(logs[..., k], knots[:, k], factors[:, k])
        return std * f

    @property
    def material(self) -> str:
        return str(self.config["material"])

    @classmethod
    def load(cls, name_or_dir, material: str | None = None, grid=None):
        """Load any fcinv checkpoint (see :func:`load_model`)."""
        return load_model(name_or_dir, material=material, grid=grid)

    def _state(self) -> dict:
        raise NotImplementedError

    def save(self, path) -> None:
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        torch.save({"config": json.dumps(self.config), **self._state()}, tmp)
        tmp.replace(path)

    @property
    def grid(self):
        """The (q, E) grid the model was trained on (:class:`~fcinv_widgets.grid.SpectrumGrid`), when the
        checkpoint carries it (trained by fcinv ≥ 0.2); else None (use the material's grid)."""
        from ..grid import SpectrumGrid

        return SpectrumGrid.from_dict(self.config["grid"]) if self.config.get("grid") else None

    @property
    def input_grid(self):
        """The grid inputs are checked against: the checkpoint's own, else its material's."""
        from ..materials import get_material

        return self.grid or get_material(self.material).grid

    def check_grid(self, grid) -> None:
        """Refuse a grid other than the training grid: by content (q-points and energies) when the
        checkpoint carries its grid, else by shape and energies."""
        own = self.grid
        same_q = own is None or (own.shape == tuple(grid.shape) and np.allclose(own.q.qpoints, grid.q.qpoints, atol=1e-6))
        if (
            tuple(grid.shape) != self.shape
            or not same_q
            or not np.allclose(grid.e.centers, self.config["energy_centers_mev"], atol=1e-6)
        ):
            raise GridMismatchError(
                f"the model was trained on a {self.shape[0]}×{self.shape[1]} grid "
                f"({self.config['material']}), the spectrum's grid is {grid.shape[0]}×{grid.shape[1]} "
                "or has other q-points or energy bins"
            )

    # ------------------------------------------------------------------ inputs
    def prepare(self, spectra) -> np.ndarray:
        """Validate and scale: (N, nq, nE) float32 in [0, 1], NaN → 0."""
        x = self.check_input(spectra)
        if x.ndim == 2:
            x = x[None]
        flat = x.reshape(len(x), -1)
        lo = np.nanmin(flat, axis=1, keepdims=True)
        hi = np.nanmax(flat, axis=1, keepdims=True)
        flat = (flat - lo) / np.where(hi > lo, hi - lo, 1.0)
        return np.nan_to_num(flat, nan=0.0).reshape(x.shape).astype(np.float32)

    def check_input(self, spectra) -> np.ndarray:
        """Refuse what cannot be a spectrum on this model's grid (see :mod:`fcinv_widgets.validate`):
        non-numeric, complex, wrong shape, ±inf, all-NaN, all-zero or constant. Returns float64."""
        from ..validate import check_spectra

        return check_spectra(spectra, self.shape, name=f"spectrum ({self.config.get('material') or 'this'} model)")

    # ------------------------------------------------------------------ files, corrections, OOD
    def invert(
        self,
        spectrum,
        temperature_k: float | None = None,
        clip_percentile: float | None = None,
        raw: bool = False,
        n_samples: int = 100,
        seed: int = 0,
        ood: bool = True,
        refine: bool | None = None,
        ood_regime: str | None = None,
        progress: bool = False,
        single_scan: bool = False,
        scan_deg: float | None = None,
        u=None,
        v=None,
    ) -> dict:
        """Invert one spectrum the way ``fcinv invert`` does: a file path, an
        :class:`~fcinv_widgets.analysis.expio.Spectrum` or an (nq, nE) array.

        What the input says about itself (fast-model image or one-phonon S(Q,E) at T, Ei,
        simulated or measured, corrections already applied) decides the correction
        (:func:`~fcinv_widgets.analysis.expio.prepare_input`, applied exactly once);
        ``temperature_k`` / ``clip_percentile`` / ``raw`` override it. A bare array is taken as a
        fast-model image unless ``temperature_k`` is given. Returns a JSON-ready dict: names,
        fc_mean, fc_std (eV/Å²), coverage, corrections (what was applied) and ood (or None when
        the model has no ``ood.json``).

        ``ood_regime``: "measured" / "model-image" overrides the input regime (default: a
        measurement or S(Q,E) input is judged in the measured regime, :func:`.ood.is_measured_input`):
        it decides the OOD check's statistics and which σ calibration sizes ``fc_std``
        (``sigma_regime`` in the result: "measured-sqe" for a one-phonon S(Q,E), "measured" for
        another measurement, "model-image"; None for a checkpoint with one pooled calibration).

        ``refine``: start a physics fit at the network's prediction and report its result as
        fc_mean/fc_std (the network's under ``network``, the fit's record under ``refined``) when
        it is trusted (:func:`~fcinv_widgets.analysis.refine.trust_fit`: it reached the data's noise
        and moved at most :meth:`trust_limit_for` of the network's σ from it — 2σ or the model's
        adopted full-data limit, a single scan the model's measured limit; ``refined["trust"]``), the network's answer
        otherwise (``fc_source`` says which): a
        one-phonon S(Q,E) is fitted as it is with the folded-S(Q,E) model over all parameters
        (:func:`~fcinv_widgets.analysis.refine.refine_sqe`, ~10 s for Ge on one core); a model image with
        the unit-weight image over the active FCs (:func:`~fcinv_widgets.analysis.refine.refine`).
        None (default): :func:`auto_refine` decides — the fit runs for a one-phonon S(Q,E) as
        measured (uncorrected) and a model with a calibrated σ (the trust check needs it), not
        for a model image nor for a single scan whose angle ``scan_deg`` was not given;
        ``refine_policy`` in the result says what was decided and why.
        ``progress``: a bar on stderr while the fit runs.

        ``single_scan``: the input is one single-orientation scan of a measurement (a file cannot
        say so; ``infer-scans`` knows it of each scan): σ from the single-scan calibration
        ("measured-sqe-scan" / "measured-scan", session 20; ``sigma_regime`` says which was
        there), a fit trusted within the model's single-scan limit (``trust.json``) and an OOD check
        against the model's single-scan limits where its ``ood.json`` carries them (rule S; else the
        record's ``input_note`` says the full-data thresholds were not calibrated on scans).
        ``scan_deg``: the input is the single scan at sample angle ω = ``scan_deg`` (degrees; implies
        ``single_scan``), with sample axes ``u``, ``v`` (default [110] along the beam at ω = 0, [001]):
        the physics fit of an S(Q,E) then models that orientation's detector coverage
        (:func:`~fcinv_widgets.analysis.refine.refine_spectrum`) instead of folding every equivalent
        the kinematics reach (which left a scan's fit with structure it could not explain). For a
        scan set (``fcinv scans``) it picks that scan, whose axes the file records. ``scan_deg`` and
        ``scan_axes`` ({"u", "v"}, r.l.u.) are in the result.
        """
        from ..analysis.expio import as_spectrum, prepare_input

        single_scan, ood, progress = flag(single_scan, "single_scan"), flag(ood, "ood"), flag(progress, "progress")
        if refine is not None and not isinstance(refine, (bool, np.bool_)):
            raise FcinvError(f"refine must be True, False or None, got {refine!r}"[:200])
        if ood_regime is not None and (not isinstance(ood_regime, str) or ood_regime not in ("measured", "model-image")):
            raise FcinvError(f"ood_regime must be 'measured' or 'model-image', got {ood_regime!r}")
        from ..scans import scan_axes

        scan_axes(scan_deg, u, v)  # refuses a bad angle or axes before the file is read
        grid = self.input_grid
        self.check_grid(grid)
        spec = as_spectrum(spectrum, grid, material=self.material)
        scan_set = spec.fmt == "fcinv-scans"
        scan_deg, u, v = scan_axes(scan_deg, u, v, scan_set=spec.source if scan_set else None)
        if scan_deg is not None:
            single_scan = True
            if scan_set:
                from ..analysis.expio import scan_of_set

                spec = scan_of_set(spec, scan_deg)
        image, corrections = prepare_input(spec, grid, temperature_k=temperature_k, clip_percentile=clip_percentile, raw=raw)
        from .domain_edge import domain_edge
        from .ood import input_temperature, is_measured_input, note_sqe_input

        measured = is_measured_input(corrections) if ood_regime is None else ood_regime == "measured"
        if scan_deg is not None and not measured:  # (it was taken without a word)
            warnings.warn(
                FcinvWarning(
                    f"scan_deg={scan_deg:g}: this input is a model image (the fast model's unit-weight intensity), which "
                    "carries no orientation; it is judged as one single scan, and no fit uses the angle (give a "
                    "measurement or an S(Q,E) for the scan's orientation to matter)"
                ),
                stacklevel=2,
            )
        regime = input_sigma_regime(corrections, measured, single_scan=single_scan)
        pred = self.predict(image, n_samples=n_samples, seed=seed, reconstruct=False, sigma_regime=regime)
        out = pred.to_dict(0) | {"coverage": spec.coverage, "corrections": corrections}
        if scan_deg is not None:  # the orientation the input was taken as (a scan set's own axes)
            out["scan_deg"] = scan_deg
            out["scan_axes"] = spec.meta.get("sample_axes") or {"u": u, "v": v}
        # which calibration sized fc_std (None: the pooled one of a checkpoint without per-regime σ)
        out["sigma_regime"] = self.resolved_sigma_regime(regime)
        # where the network's answer lies in its training box (flagged at the edge: models.domain_edge);
        # a warning only where the model adopted it, and not for a single scan (validated on full spectra)
        warns = self.edge_warns and not single_scan
        out["domain_edge"] = domain_edge(pred.mean[0], pred.std[0], self.domain, names=self.names, warns=warns)
        out["ei_check"] = self.ei_check(corrections.get("ei_mev"))
        if ood:
            from .ood import scan_orientation

            axes = out.get("scan_axes") or {}
            check = self.ood_check(
                image,
                measured=measured,
                temperature_k=input_temperature(corrections),
                ei_mev=corrections.get("ei_mev"),
                single_scan=single_scan,
                orientation=scan_orientation(
                    scan_deg,
                    axes.get("u"),
                    axes.get("v"),
                    ei_mev=corrections.get("ei_mev"),
                    qmax_inv_a=spec.meta.get("qmax_inv_a"),
                    detector_deg=spec.meta.get("detector_deg"),
                ),
            )
            out["ood"] = note_sqe_input(check, corrections, self.ood_stats())
            if out["ood"] is None:
                out["ood_note"] = getattr(self, "ood_note", None)
        angle_unknown = single_scan and scan_deg is None and spec.fmt != "fcinv-scans"
        out["refine_policy"] = refine_policy(self, corrections, refine, angle_unknown=angle_unknown)
        if out["refine_policy"]["refine"]:
            scan = {"scan": scan_deg, "u": u, "v": v} if scan_deg is not None else {}
            out = self._refine(out, spec, image, corrections, progress=progress, single_scan=single_scan, scan=scan)
        else:
            out["fc_source"] = "network"
        return out

    def _refine(
        self,
        out: dict,
        spec,
        image,
        corrections: dict,
        progress: bool = False,
        single_scan: bool = False,
        scan: dict | None = None,
    ) -> dict:
        """The physics fit from the network's answer (see :meth:`invert`); ``scan``: the single
        scan's orientation ({"scan", "u", "v"} of :func:`~fcinv_widgets.analysis.refine.refine_spectrum`)."""
        from ..analysis.expio import is_uncorrected_sqe
        from ..analysis.refine import fit_trust_checked, refine, refine_spectrum, trust_fit
        from ..materials import material_for_model

        mat = material_for_model(self.config)
        start = np.asarray(out["fc_mean"], float)
        ei = corrections.get("ei_mev")
        if is_uncorrected_sqe(corrections):
            temp = corrections["bose_weighting"]["temperature_k"]
            r = refine_spectrum(
                mat, spec, temp, ei_mev=ei, qmax=spec.meta.get("qmax_inv_a"), start=start, progress=progress, **(scan or {})
            )
            rec = r.to_dict() | {"method": "folded one-phonon S(Q,E) fit of all FCs (refine_sqe), uncorrected data"}
            if single_scan and r.orientations is None:  # a single scan fitted as full data: say so
                rec["scan_angle_note"] = SCAN_ANGLE_NOTE.format(measured=SCAN_ANGLE_MEASURED)
        else:
            fm = mat.forward_model(resolution=("arcs", ei) if ei is not None else None)
            with warnings.catch_warnings():  # the network's answer beyond its box: out["domain_edge"] says so already
                warnings.filterwarnings("ignore", "the start lies outside the domain", FcinvWarning)
                r1 = refine(fm, image, start=start, domain=np.asarray(self.config.get("domain", mat.domain), float))
            rec = r1.to_dict() | {
                "fc_std": None,
                "fc_std_note": "the unit-weight fit gives no σ: fc_std stays the network's",
                "method": "unit-weight image fit of the active FCs (refine)",
            }
        out["network"] = {"fc_mean": out["fc_mean"], "fc_std": out["fc_std"]}
        out["refined"] = rec
        if rec["fc_std"] is not None and self.heteroscedastic:  # a fit with σ, a network with σ: is the fit trusted?
            k = self.single_scan_trust_limit if single_scan else self.trust_limit_for(rec)
            n = None if single_scan else fit_trust_checked(rec)
            edge = self.domain if self.edge_one_sided else None  # rule F (trust.json)
            rec["trust"] = trust_fit(rec, out["fc_mean"], out["fc_std"], names=self.names, k=k, checked=n, domain=edge)
            if not rec["trust"]["accepted"]:
                out["fc_source"] = "network"  # the fit's answer stays under "refined"
                return out
        out["fc_source"] = "refined"
        out["fc_mean"] = rec["fc"]
        if rec["fc_std"] is not None:
            out["fc_std"] = rec["fc_std"]
        return out

    @property
    def domain(self) -> np.ndarray:
        """(8, 2) eV/Å²: the box of active FCs the model was trained on (its checkpoint's
        ``config["domain"]``; else its material's training domain). Its answers cannot leave it
        (:mod:`.domain_edge`)."""
        d = self.config.get("domain")
        if d is None:
            from ..materials import material_for_model

            d = material_for_model(self.config).domain
        return np.asarray(d, float)

    @property
    def single_scan_trust_limit(self) -> float:
        """How many of the network's calibrated σ a physics fit of one single-orientation scan may
        move on any active FC and still be trusted
        (:func:`~fcinv_widgets.analysis.refine.trust_fit`): the limit measured for this checkpoint
        (``trust.json``, :mod:`.trust`), else
        :data:`~fcinv_widgets.analysis.refine.TRUST_NETWORK_SIGMA` (``trust_note`` says why)."""
        self._load_trust()
        return self._single_scan_trust_limit

    @property
    def full_data_trust_limit(self) -> float:
        """The same for a fit of full data or of several scans: the limit adopted for this checkpoint
        (``full_data_limit`` in ``trust.json``, :mod:`.trust`; `nb-resnet`, `nb-vae`), else
        :data:`~fcinv_widgets.analysis.refine.TRUST_NETWORK_SIGMA`."""
        self._load_trust()
        return self._full_data_trust_limit

    @property
    def edge_one_sided(self) -> bool:
        """Whether a physics fit that leaves the training box where the network's answer sits at
        its edge is judged one-sided there (rule F, ``edge_one_sided`` in ``trust.json``:
        `ge-resnet`; :func:`~fcinv_widgets.analysis.refine.trust_fit`'s ``domain``)."""
        self._load_trust()
        return self._edge_one_sided

    @property
    def edge_warns(self) -> bool:
        """Whether an answer at the training box's edge is a warning for this model, not only a
        record (``edge_warn`` in ``trust.json``: `nb-resnet`, the one model that met session 29's
        pre-registered rule; :mod:`.domain_edge`)."""
        self._load_trust()
        return self._edge_warns

    def _load_trust(self) -> None:
        from ..analysis.refine import TRUST_NETWORK_SIGMA
        from .trust import edge_one_sided_of, edge_warn_of, full_data_limit_of, load_trust_limit

        if not hasattr(self, "_single_scan_trust_limit"):
            k, rec, self.trust_note = load_trust_limit(getattr(self, "path", None))
            self._single_scan_trust_limit = TRUST_NETWORK_SIGMA if k is None else k
            kf = full_data_limit_of(rec) if k is not None else None
            self._full_data_trust_limit = TRUST_NETWORK_SIGMA if kf is None else kf
            self._edge_one_sided = edge_one_sided_of(rec) if k is not None else False
            self._edge_warns = edge_warn_of(rec) if k is not None else False

    def trust_limit_for(self, fit) -> float:
        """The trust limit for the physics fit ``fit`` (an ``SQEFitResult`` or its ``to_dict()``):
        :attr:`single_scan_trust_limit` when it fitted one single-orientation scan,
        :attr:`full_data_trust_limit` otherwise (:mod:`.trust`)."""
        from ..analysis.refine import fit_trust_limit

        return fit_trust_limit(fit, self.single_scan_trust_limit, self.full_data_trust_limit)

    def ood_stats(self):
        """The model's out-of-distribution statistics (``ood.json`` beside ``model.pt``), or None."""
        from .ood import OODStats

        if not hasattr(self, "_ood"):
            self._ood = OODStats.for_model(self)
        return self._ood

    def ood_check(
        self,
        spectrum,
        measured: bool = False,
        temperature_k: float | None = None,
        ei_mev: float | None = None,
        single_scan: bool = False,
        orientation: dict | None = None,
    ) -> dict | None:
        """``{"flag", "score", "threshold", "regime", "components", …}`` for one spectrum, or None
        without statistics; ``measured``: a measured (or S(Q,E)) input, judged in the measured
        regime when the statistics have one (:mod:`.ood`); ``temperature_k``: the temperature (K)
        at which the input was corrected from a one-phonon S(Q,E) (:func:`.ood.input_temperature`);
        ``ei_mev``: the incident energy it was measured at, if known (rule C's and rule E's limits
        hold inside the Ei range they were calibrated over only); ``single_scan``: one single-orientation
        scan (rule S's limits where the statistics carry them, :meth:`.ood.OODStats.check`);
        ``orientation``: that scan's orientation when known (:func:`.ood.scan_orientation`; rule S′)."""
        stats = self.ood_stats()
        if stats is None:
            return None
        return stats.check(
            self,
            spectrum,
            measured=measured,
            temperature_k=temperature_k,
            ei_mev=ei_mev,
            single_scan=single_scan,
            orientation=orientation,
        )

    @property
    def training_ei_range(self) -> tuple[float, float] | None:
        """(lowest, highest) incident energy (meV) of the resolution the model's measurement model
        trained it with (:func:`~fcinv_widgets.measurement.training_ei_range`); None for a model
        trained without one (the paper models)."""
        aug, e = self.config.get("augment"), self.config.get("energy_centers_mev")
        if not aug or e is None or len(e) < 2:
            return None
        from ..measurement import MeasurementModel, training_ei_range

        return training_ei_range(MeasurementModel.from_dict(aug), e)

    def ei_check(self, ei_mev) -> dict | None:
        """``{"ei_mev", "training_range_mev", "inside", "note"}`` for an input measured at ``ei_mev``
        (meV): whether that Ei lies inside :attr:`training_ei_range` (to 0.1 %), with a note when it
        does not — the resolution (and, below the range, the kinematic coverage) is unlike any the
        model trained on, and its σ and OOD check were calibrated on data like the training's
        (docs/results.md, OOD: session 32 measured ``ge-resnet`` flagging 18 of 94 of the right crystal's
        S(Q,E) inputs at Ei 60 meV against 0 of 68 at 80 meV). None when the input records no Ei or
        the model has no range."""
        rng = self.training_ei_range
        if rng is None or ei_mev is None:
            return None

        ei = finite_number(ei_mev, "ei_mev (meV)", positive=True)
        from ..measurement import ei_inside

        inside = ei_inside(ei, rng)
        note = None
        if not inside:
            side = "below" if ei < rng[0] else "above"
            note = (
                f"Ei {ei:g} meV lies {side} the incident energies this model was trained over ({rng[0]:.0f}–{rng[1]:.0f} meV): "
                "its resolution" + (" and kinematic coverage are" if side == "below" else " is") + " unlike the training "
                "data's, and the reported σ and the out-of-distribution check were calibrated at the training's incident "
                "energies"
            )
        return {"ei_mev": ei, "training_range_mev": [rng[0], rng[1]], "inside": inside, "note": note}


class Inverter(_Model):
    """A trained VAE + FC regressor (frozen): FC means and spreads over latent samples."""

    kind = "vae"

    def __init__(self, vae, regressor, config: dict):
        super().__init__(config)
        self.vae = vae.eval()
        self.regressor = regressor.eval()

    def _state(self) -> dict:
        return {"vae": self.vae.state_dict(), "regressor": self.regressor.state_dict()}

    def encode(self, spectra):
        import torch

        x = torch.from_numpy(self.prepare(spectra))
        with torch.no_grad():
            mu, logvar = self.vae.encode(x)
        return mu.numpy(), logvar.numpy()

    def _latent(self, z) -> np.ndarray:
        """Latent vectors as a float32 (N, latent) or (latent,) array, or one line naming the problem."""
        from ..validate import real_array

        n = self.vae.mu.out_features
        a = real_array(z, f"latent vectors z (the VAE's {n} dimensions)", allow_nan=False)
        if a.ndim not in (1, 2) or a.shape[-1] != n:
            raise FcinvError(f"latent vectors z: expected shape ({n},) or (N, {n}), got {a.shape}")
        return a.astype(np.float32)

    def decode(self, z) -> np.ndarray:
        """Latent vectors (N, latent) or (latent,) → reconstructed images (N, nq, nE)."""
        import torch

        with torch.no_grad():
            return self.vae.decode(torch.from_numpy(np.atleast_2d(self._latent(z)))).numpy()

    def regress(self, z) -> np.ndarray:
        """Latent vectors (N, latent) or (latent,) → FC means in eV/Å² (the regressor at z itself; a
        heteroscedastic head's σ outputs are left out)."""
        import torch

        with torch.no_grad():
            y = self.regressor(torch.from_numpy(self._latent(z))).numpy()
        return y[..., : len(self.names)] * self.y_std + self.y_mean

    def predict(
        self,
        spectra,
        n_samples: int = 100,
        seed: int = 0,
        batch: int = 256,
        reconstruct: bool = True,
        progress: bool = False,
        sigma_regime=None,
    ) -> Prediction:
        """FC means and standard deviations over ``n_samples`` latent samples per spectrum.

        The same ``n_samples`` standard-normal draws ε (from ``seed``) serve every spectrum
        (z = μ + σ·ε): a spectrum's answer depends on the spectrum and the seed only, not on the
        batch it came in or its position there (common random numbers: two spectra, or two
        candidate scans of the planner, differ by what differs between them, not by sampling).
        ``progress``: a bar over the batches. ``sigma_regime`` (one of :data:`SIGMA_REGIMES`, or
        one per spectrum): the σ calibration for that kind of input (:meth:`calibrated_std`;
        None: the pooled one)."""
        import torch
        from tqdm.auto import tqdm

        _check_predict_args(n_samples, seed, batch)
        x = self.prepare(spectra)
        g = torch.Generator().manual_seed(seed)
        eps = torch.randn((n_samples, 1, self.vae.mu.out_features), generator=g)
        means, stds, recs, mus, lvs = [], [], [], [], []
        starts = range(0, len(x), batch)
        with torch.no_grad():
            for s in tqdm(starts, desc="predict", unit="batch", disable=not progress or len(starts) < 2):
                xb = torch.from_numpy(x[s : s + batch])
                mu, logvar = self.vae.encode(xb)
                z = mu[None] + eps * torch.exp(0.5 * logvar)[None]
                out = self.regressor(z).numpy()  # (S, n, 8) or (S, n, 16) heteroscedastic
                k = len(self.names)
                y = out[..., :k] * self.y_std + self.y_mean
                means.append(y.mean(0))
                var = y.var(0)  # spread over latent samples
                if self.heteroscedastic:  # + the regressor's own predicted variance (law of total variance)
                    var = var + np.exp(np.clip(out[..., k:], -14, 6)).mean(0) * self.y_std**2
                stds.append(np.sqrt(var))
                mus.append(mu.numpy())
                lvs.append(logvar.numpy())
                if reconstruct:
                    recs.append(self.vae.decode(mu).numpy())
        recon = np.concatenate(recs) if reconstruct else np.zeros((0,) + self.shape, np.float32)
        std = self.calibrated_std(np.concatenate(stds), sigma_regime)
        return Prediction(self.names, np.concatenate(means), std, recon, np.concatenate(mus), np.concatenate(lvs))


class ResNetModel(_Model):
    """A trained ResNet-18 regressing FCs directly: point estimates (std = 0), or means and
    calibrated σ from a heteroscedastic head."""

    kind = "resnet"

    def __init__(self, net, config: dict):
        super().__init__(config)
        self.net = net.eval()

    def _state(self) -> dict:
        return {"net": self.net.state_dict()}

    def encode(self, spectra):
        """A ResNet has no latent space: one line saying so (an AttributeError before)."""
        raise FcinvError(
            "a ResNet regresses the FCs directly and has no latent space: encode and place inputs on a latent map "
            "with a VAE model (ge-vae, nb-vae)"
        )

    def predict(
        self,
        spectra,
        n_samples: int = 1,
        seed: int = 0,
        batch: int = 256,
        reconstruct: bool = False,
        progress: bool = False,
        sigma_regime=None,
    ) -> Prediction:
        """FC estimates (eV/Å²) for (N, nq, nE) or (nq, nE) spectra. std: the heteroscedastic
        head's calibrated σ (models trained with a measurement model); zero for the paper's
        point-estimate ResNet. ``progress``: a bar over the batches. ``sigma_regime``: as
        :meth:`Inverter.predict`."""
        import torch
        from tqdm.auto import tqdm

        _check_predict_args(n_samples, seed, batch)
        x = self.prepare(spectra)
        out = []
        starts = range(0, len(x), batch)
        with torch.no_grad():
            for s in tqdm(starts, desc="predict", unit="batch", disable=not progress or len(starts) < 2):
                out.append(self.net(torch.from_numpy(x[s : s + batch])).numpy())
        out = np.concatenate(out)
        k = len(self.names)
        mean = out[:, :k] * self.y_std + self.y_mean
        std = np.zeros_like(mean)
        if self.heteroscedastic:
            std = self.calibrated_std(np.exp(0.5 * np.clip(out[:, k:], -14, 6)) * self.y_std, sigma_regime)
        n = len(x)
        return Prediction(
            self.names,
            mean,
            std,
            np.zeros((0,) + self.shape, np.float32),
            np.zeros((n, 0), np.float32),
            np.zeros((n, 0), np.float32),
        )
