"""Born–von Kármán fit of the symmetry-reduced force constants to measured phonons.

The dynamical matrix is linear in the parameters, D(q; θ) = Σ_p θ_p D_p(q), so the
frequencies ν = sqrt(λ) (THz) and their exact first derivatives follow from one
eigendecomposition per q (first-order perturbation theory: ∂λ/∂θ_p = e† D_p e, hence
∂ν/∂θ_p = c² e† D_p e / 2ν with ν = c sqrt(λ)). Symmetry-enforced degeneracies are
safe: D_p restricted to an irreducible subspace is a multiple of the identity.

Residuals, all divided by their σ:

* measured frequencies (THz), matched to modes sorted per q (see :mod:`.measured`);
* elastic constants → acoustic frequencies near Γ along [100], [110], [111];
* optionally a weak Gaussian prior on every fitted parameter toward ``scale × reference``
  (``scale`` fitted first as one overall stiffness factor, or 1), with width
  ``prior_width × (|c_p| + 0.02 max|c|)`` eV/Å² — so poorly determined far shells keep
  the reference's shape instead of wandering.

Solved with SciPy's trust-region least squares on the analytic Jacobian. Parameter
covariance: (Jᵀ J)⁻¹ of the σ-weighted problem (prior rows included), at the solution.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .errors import FcinvError, FcinvWarning
from .measured import THZ_TO_CM1
from .units import THZ_TO_MEV, VASP_TO_THZ
from .validate import format_version

if TYPE_CHECKING:
    from .materials import Material

#: relative floor of the prior width: a fraction of the largest reference parameter
PRIOR_FLOOR = 0.02
#: the table's frequencies (or the elastic constants' sound velocities) may differ from the start
#: force constants' by at most this factor (median over the rows; force constants then differ
#: ×4): beyond it a unit is wrong far more often than a start, and the fit would still "succeed"
MAX_START_RATIO = 2.0
#: χ²/dof above which a finished fit warns that the model does not follow the table within its σ
CHI2_WARN = 5.0
#: unit mix-ups a frequency ratio can reveal: (factor, what it means)
_UNIT_SLIPS = (
    (THZ_TO_MEV, "a table in meV marked THz"),
    (1 / THZ_TO_MEV, "a table in THz marked meV"),
    (THZ_TO_CM1, "a table in cm⁻¹ marked THz"),
    (THZ_TO_CM1 / THZ_TO_MEV, "a table in cm⁻¹ marked meV"),
    (THZ_TO_MEV / THZ_TO_CM1, "a table in meV marked cm⁻¹"),
    (1 / THZ_TO_CM1, "a table in THz marked cm⁻¹"),
)


@dataclass
class DispersionFit:
    """Result of :func:`fit_dispersion`.

    Attributes
    ----------
    material : str
    params : (P,) all parameters, eV/Å² (the non-fitted ones at the reference)
    fitted : (F,) indices of the fitted parameters
    names : list of all parameter names
    sigma : (F,) one-σ uncertainty of the fitted parameters, eV/Å²
    covariance : (F, F) eV²/Å⁴
    residuals : list of dicts (one per compared mode): kind, label, branch, q_primitive, measured_thz, model_thz, sigma_thz, z
    chi2, dof, reduced_chi2 : data part only (prior rows excluded from chi2; dof = data rows − fitted + prior rows)
    converged : bool, message : str, nfev : int
    prior : dict (reference source, centre scale, width) or None
    """

    material: str
    params: np.ndarray
    fitted: np.ndarray
    names: list
    sigma: np.ndarray
    covariance: np.ndarray
    residuals: list
    chi2: float
    dof: int
    converged: bool
    message: str
    nfev: int
    prior: dict | None = None
    reference_source: str = ""
    table_meta: dict = field(default_factory=dict)
    _material: "Material | None" = field(default=None, repr=False)
    warnings: list = field(default_factory=list)

    @property
    def reduced_chi2(self) -> float:
        return self.chi2 / max(self.dof, 1)

    @property
    def max_abs_z(self) -> float:
        return max((abs(r["z"]) for r in self.residuals), default=0.0)

    def sigma_all(self) -> np.ndarray:
        """(P,) one-σ of every parameter (0 for those not fitted), eV/Å²."""
        s = np.zeros(len(self.params))
        s[self.fitted] = self.sigma
        return s

    def to_dict(self) -> dict:
        return {
            "format": "fcinv-dispersion-fit",
            "version": 1,
            "material": self.material,
            "param_names": list(self.names),
            "params_ev_a2": [float(x) for x in self.params],
            "fitted": [int(i) for i in self.fitted],
            "sigma_ev_a2": [float(x) for x in self.sigma],
            "covariance": np.asarray(self.covariance).tolist(),
            "chi2": float(self.chi2),
            "dof": int(self.dof),
            "reduced_chi2": float(self.reduced_chi2),
            "converged": bool(self.converged),
            "message": self.message,
            "nfev": int(self.nfev),
            "prior": self.prior,
            "reference_source": self.reference_source,
            "table": self.table_meta,
            "residuals": self.residuals,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DispersionFit:
        if d.get("format") != "fcinv-dispersion-fit":
            raise FcinvError("not a dispersion-fit file (format 'fcinv-dispersion-fit')")
        format_version(d.get("version"), "dispersion-fit file")
        fitted = np.asarray(d["fitted"], int)
        return cls(
            d["material"],
            np.asarray(d["params_ev_a2"], float),
            fitted,
            list(d["param_names"]),
            np.asarray(d["sigma_ev_a2"], float),
            np.asarray(d["covariance"], float).reshape(len(fitted), len(fitted)),
            list(d.get("residuals", [])),
            float(d["chi2"]),
            int(d["dof"]),
            bool(d["converged"]),
            str(d.get("message", "")),
            int(d.get("nfev", 0)),
            d.get("prior"),
            str(d.get("reference_source", "")),
            dict(d.get("table", {})),
            warnings=[str(w) for w in d.get("warnings", [])],
        )

    def plot(self, material=None, ax=None):
        """Fit vs data over the material's dispersion path (matplotlib Axes). Points off the path are not drawn."""
        import matplotlib.pyplot as plt

        mat = material if material is not None else self._material
        if mat is None:
            raise FcinvError("DispersionFit.plot needs the material (fit.plot(material))")
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        g = mat.grid.q
        nu = mat.basis.frequencies_thz(self.params, g.qpoints)
        x = g.x
        ax.plot(x, nu, color="C0", lw=1.2)
        ax.plot([], [], color="C0", label="fit")
        b = g.boundaries
        seg_of: dict[str, float] = {}
        for i, s in enumerate(g.segments):
            seg_of.setdefault(s.start, float(b[i]))
            seg_of.setdefault(s.end, float(b[i + 1]))
        shown = False
        for r in self.residuals:
            if r["kind"] != "point" or r["label"] not in seg_of:
                continue
            ax.errorbar(
                seg_of[r["label"]],
                r["measured_thz"],
                yerr=r["sigma_thz"],
                fmt="o",
                color="C3",
                ms=4,
                label=None if shown else "measured",
            )
            shown = True
        for i, _lab in g.labels:
            ax.axvline(i, color="0.8", lw=0.6)
        ax.set_xticks([i for i, _ in g.labels], [lab for _, lab in g.labels])
        ax.set_xlim(0, g.nq)
        ax.set_ylabel("frequency (THz)")
        ax.set_title(f"{self.material}: Born–von Kármán fit (χ²/dof = {self.reduced_chi2:.2f})")
        ax.legend(loc="lower right", fontsize=8)
        return ax


def _rows(table, material, use_elastic: bool):
    """Flatten the table into (q list, per-q list of (mode index, target THz, σ THz, info))."""
    from .measured import elastic_targets

    n_modes = 3 * material.crystal.n_atoms
    qs, rows = [], []
    for q, pairs, gamma in table.groups(n_modes):
        qs.append(q)
        rows.append(
            [
                (
                    k + (3 if gamma else 0),
                    p.frequency_thz,
                    p.sigma_thz,
                    {"kind": "point", "label": p.label, "branch": p.branch, "q_primitive": [float(x) for x in q]},
                )
                for p, k in pairs
            ]
        )
    if use_elastic and table.elastic:
        rel = table.elastic["sigma_rel"]
        for name, q, nu in elastic_targets(table.elastic, material):
            qs.append(q)
            rows.append(
                [
                    (
                        k,
                        float(nu[k]),
                        rel * float(nu[k]),
                        {"kind": "elastic", "label": name, "branch": f"acoustic {k}", "q_primitive": [float(x) for x in q]},
                    )
                    for k in range(3)
                ]
            )
    return np.array(qs), rows


class _Model:
    """Frequencies and Jacobian of the table's modes as functions of all parameters."""

    def __init__(self, basis, qs, rows):
        self.Dp = basis.dynamical_matrices(qs)  # (P, nq, n, n)
        self.rows = rows
        self.idx = [np.array([r[0] for r in rr], int) for rr in rows]
        self.target = np.concatenate([[r[1] for r in rr] for rr in rows])
        self.sig = np.concatenate([[r[2] for r in rr] for rr in rows])

    def freqs_jac(self, params):
        D = np.tensordot(params, self.Dp, axes=(0, 0))
        lam, vec = np.linalg.eigh(D)
        out, jac = [], []
        for iq, idx in enumerate(self.idx):
            lq, e = lam[iq, idx], vec[iq][:, idx]
            nu = np.sign(lq) * np.sqrt(np.abs(lq)) * VASP_TO_THZ
            dl = np.einsum("nm,pnk,km->pm", np.conj(e), self.Dp[:, iq], e).real  # (P, modes)
            denom = 2 * np.sqrt(np.maximum(np.abs(lq), 1e-12))
            out.append(nu)
            jac.append((VASP_TO_THZ * dl / denom).T)
        return np.concatenate(out), np.concatenate(jac)


def fit_dispersion(
    material,
    table=None,
    params="all",
    reference=None,
    prior: str | None = "scaled",
    prior_width: float = 0.5,
    elastic: bool = True,
    max_iter: int = 200,
) -> DispersionFit:
    """Least-squares fit of the material's force-constant parameters to a measured table.

    material : a :class:`~fcinv_widgets.materials.Material` (its basis; its reference
        parameters are the start, the prior centre and the values of non-fitted parameters
        unless ``reference`` is given).
    table : a :class:`~fcinv_widgets.measured.MeasuredTable`, a path, a dict, or None (the shipped table).
    params : "all", an int N (the top-N by sensitivity at the reference), or a list of indices.
    reference : (P,) eV/Å², optional start/prior/fixed values instead of the material's.
    prior : "scaled" (centre = s × reference with one fitted stiffness factor s), "reference" (s = 1) or None.
    prior_width : relative 1σ width of the prior (see module docstring).
    elastic : use the table's elastic constants as long-wavelength constraints.
    max_iter : maximum number of function evaluations.

    A fit that does not converge is returned with ``converged=False`` and its message.
    """
    from scipy.optimize import least_squares

    from .measured import MeasuredTable, read_measured

    if not isinstance(table, MeasuredTable):
        table = read_measured("shipped" if table is None else table, material)
    basis = material.basis
    P = basis.n_params
    ref = basis._check_params(material.reference_params if reference is None else reference).copy()
    qs, rows = _rows(table, material, elastic)
    model = _Model(basis, qs, rows)

    if isinstance(params, str):
        if params != "all":
            raise FcinvError(f"params must be 'all', a number N (top-N) or a list of indices, got {params!r}")
        fitted = np.arange(P)
    elif isinstance(params, (int, np.integer)):
        if not 1 <= params <= P:
            raise FcinvError(f"top-N must be between 1 and {P}, got {params}")
        fitted = np.asarray(basis.sensitivity(ref, material.grid.q.qpoints, int(params))["top"], int)
    else:
        fitted = np.asarray(params, int)
        if fitted.ndim != 1 or len(set(fitted.tolist())) != len(fitted) or fitted.min() < 0 or fitted.max() >= P:
            raise FcinvError(f"parameter indices must be distinct integers in [0, {P}), got {params!r}")
    if prior not in ("scaled", "reference", None):
        raise FcinvError(f"prior must be 'scaled', 'reference' or None, got {prior!r}")
    if prior is not None and not (np.isfinite(prior_width) and prior_width > 0):
        raise FcinvError(f"prior_width must be > 0, got {prior_width!r}")
    n_data = len(model.target)
    if prior is None and table.n_values < len(fitted):
        raise FcinvError(
            f"too few measured values ({table.n_values}: {len(table.points)} frequencies"
            f"{' + 3 elastic constants' if table.elastic else ''}) for {len(fitted)} free parameters; "
            "add points, fit fewer parameters (top-N) or use a prior"
        )

    # overall stiffness factor: ν ∝ sqrt(s) ⇒ s = (Σ w ν_m ν_d / Σ w ν_m²)² (weighted LSQ on sqrt(s))
    nu0, _ = model.freqs_jac(ref)
    _check_start_ratio(nu0, model.target, [r[3]["kind"] for rr in rows for r in rr], table)
    w = 1.0 / model.sig**2
    scale = 1.0
    if prior == "scaled":
        good = nu0 > 0
        scale = float((np.sum(w[good] * nu0[good] * model.target[good]) / max(np.sum(w[good] * nu0[good] ** 2), 1e-300)) ** 2)
    centre = scale * ref
    width = prior_width * (np.abs(centre) + PRIOR_FLOOR * np.abs(centre).max()) if prior is not None else None

    def full(x):
        p = centre.copy() if prior == "scaled" else ref.copy()
        p[fitted] = x
        return p

    def resid(x):
        nu, _ = model.freqs_jac(full(x))
        r = (nu - model.target) / model.sig
        if width is not None:  # a prior
            r = np.concatenate([r, (x - centre[fitted]) / width[fitted]])
        return r

    def jac(x):
        _, J = model.freqs_jac(full(x))
        J = J[:, fitted] / model.sig[:, None]
        if width is not None:  # a prior
            J = np.vstack([J, np.diag(1.0 / width[fitted])])
        return J

    x0 = centre[fitted].copy() if prior == "scaled" else ref[fitted].copy()
    res = least_squares(
        resid, x0, jac=jac, method="trf", x_scale="jac", max_nfev=int(max_iter), xtol=1e-12, ftol=1e-12, gtol=1e-10
    )
    p = full(res.x)
    nu, _ = model.freqs_jac(p)
    J = jac(res.x)
    JtJ = J.T @ J
    try:
        cov = np.linalg.inv(JtJ)
        if not np.all(np.isfinite(cov)) or np.any(np.diag(cov) < 0):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(JtJ)
    z = (nu - model.target) / model.sig
    chi2 = float(np.sum(z**2))
    dof = n_data - len(fitted) + (len(fitted) if prior is not None else 0)
    residuals = []
    k = 0
    for rr in rows:
        for _, target, sig, info in rr:
            residuals.append(
                info | {"measured_thz": float(target), "model_thz": float(nu[k]), "sigma_thz": float(sig), "z": float(z[k])}
            )
            k += 1
    converged = bool(res.status > 0)
    msg = str(res.message) if converged else f"did not converge after {res.nfev} evaluations ({res.message})"
    prior_info = (
        None if prior is None else {"kind": prior, "scale": scale, "width_rel": float(prior_width), "floor_rel": PRIOR_FLOOR}
    )
    notes = []
    if converged and dof > 0 and chi2 / dof > CHI2_WARN:
        worst = residuals[int(np.argmax(np.abs(z)))]
        notes.append(
            f"chi2/dof = {chi2 / dof:.3g}: the model does not follow the table within its σ (worst: {worst['kind']} "
            f"{worst['label'] or worst['q_primitive']} {worst['branch']}, z = {worst['z']:.3g}); check the table's unit, "
            "labels and mode assignment, or its σ"
        )
    for note in notes:
        warnings.warn(FcinvWarning(note), stacklevel=2)
    return DispersionFit(
        material.name,
        p,
        fitted,
        list(basis.names),
        np.sqrt(np.clip(np.diag(cov), 0, None)),
        cov,
        residuals,
        chi2,
        int(dof),
        converged,
        msg,
        int(res.nfev),
        prior_info,
        getattr(material, "reference_source", ""),
        {k: v for k, v in table.meta.items() if k != "path"},
        _material=material,
        warnings=notes,
    )


def _check_start_ratio(nu_start, target, kinds, table) -> None:
    """Refuse a table whose frequencies (point rows) or sound velocities (elastic rows) are more than
    ``MAX_START_RATIO`` times off the start force constants' at the same q (median ratio), naming a
    unit slip the ratio matches."""
    where = table.meta.get("path", "measured table")
    kinds = np.asarray(kinds)
    for kind, what in (("point", "frequencies"), ("elastic", "elastic constants' sound velocities")):
        mine = kinds == kind
        if not (mine & (nu_start > 0)).any():
            continue
        sel = mine & (nu_start > 0.05 * float(nu_start[mine].max()))  # no soft or imaginary start mode
        r = float(np.median(target[sel] / nu_start[sel]))
        if 1 / MAX_START_RATIO <= r <= MAX_START_RATIO:
            continue
        slip = ""
        if kind == "point":
            # the start's own error multiplies the unit's factor: name the nearest slip within ×1.5
            f, s = min(_UNIT_SLIPS, key=lambda fs: abs(np.log(r / fs[0])))
            slip = f" ({s} reads ×{f:.3g})" if abs(np.log(r / f)) < np.log(1.5) else ""
            check = f"is the table's unit ({table.meta.get('unit')}) right{slip}?"
        else:
            check = "are the elastic constants in GPa and the density in g/cm³?"
        raise FcinvError(
            f"{where}: the table's {what} are {r:.3g}× the start force constants' at the same q (median of "
            f"{int(sel.sum())}; the force constants would move ×{r * r:.3g}): {check} If the table is right, start "
            "from force constants nearer the crystal's"
        )


def frequencies_at_labels(material, params, labels=None) -> dict:
    """{label: sorted frequencies (THz)} at the material's high-symmetry points (Γ: optic modes only)."""
    from .measured import high_symmetry_points, label_points

    pts, _ = label_points(material)
    labels = list(high_symmetry_points(material)) if labels is None else labels
    q = np.array([pts[lab] for lab in labels])
    nu = material.basis.frequencies_thz(params, q)
    out = {}
    for lab, qq, f in zip(labels, q, nu):
        out[lab] = f[3:] if np.all(np.abs(qq - np.rint(qq)) < 1e-8) else f
    return out
