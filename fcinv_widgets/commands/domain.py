"""fcinv domain: the training domain of a preset (or a --structure crystal's provisional one), the
source of every bound, and its stable fraction."""

from __future__ import annotations

import numpy as np

from ._common import JSON, add_json, add_material_args, emit, load_material, nonneg_int


def register(sub):
    p = sub.add_parser(
        "domain",
        help="training domain of the active FCs: bounds, which source set each bound, "
        "whether the measured fit and DFT lie inside, stable fraction",
    )
    add_material_args(p)  # a --structure crystal (with --force-constants): its provisional domain
    p.add_argument(
        "--samples",
        type=nonneg_int,
        default=20000,
        help="uniform candidates drawn to estimate the stable fraction (default 20000; 0 = skip)",
    )
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument(
        "--save", help="write the domain record as JSON (the shipped one: fcinv_widgets/data/ensemble/<material>-domain.json)"
    )
    add_json(p)
    p.set_defaults(func=run, outputs=[("save", "file", JSON)])


def domain_record(mat, samples: int = 20000, seed: int = 0) -> dict:
    """The domain of ``mat`` with its sources, inside-checks and (optionally) stable fraction."""
    from ..errors import FcinvError

    if samples < 0:
        raise FcinvError("--samples must be ≥ 0")
    dom = mat.domain
    names = [mat.basis.names[i] for i in mat.active]
    rows = []
    fit = mat.measured_fit
    for k, i in enumerate(mat.active):
        r = {
            "fc": f"FC{k}",
            "name": names[k],
            "lo": float(dom[k, 0]),
            "hi": float(dom[k, 1]),
            "lo_source": mat.domain_sources[k][0],
            "hi_source": mat.domain_sources[k][1],
        }
        if fit is not None:
            v = float(fit.params[i])
            r["measured_fit"] = v
            r["measured_fit_sigma"] = float(fit.sigma_all()[i])
            r["measured_fit_inside"] = bool(dom[k, 0] <= v <= dom[k, 1])
        if mat.dft_params is not None:
            v = float(mat.dft_params[i])
            r["dft"] = v
            r["dft_inside"] = bool(dom[k, 0] <= v <= dom[k, 1])
        if mat.umlff_params is not None:
            r["umlff_median"] = float(mat.umlff_params[i])
        rows.append(r)
    out = {
        "format": "fcinv-domain",
        "version": 1,
        "material": mat.name,
        "rule": mat.domain_source,
        "active": [int(i) for i in mat.active],
        "names": names,
        "domain": dom.tolist(),
        "parameters": rows,
        "reference": mat.reference_name,
        "reference_source": mat.reference_source,
    }
    if fit is not None:
        out["measured_fit_all_inside"] = all(r["measured_fit_inside"] for r in rows)
    if mat.dft_params is not None:
        out["dft_all_inside"] = all(r["dft_inside"] for r in rows)
    rk = mat.ranking()
    out["ranking_at_reference"] = {
        "top_names": rk["top_names"],
        "same_set_as_active": rk["same_set_as_active"],
        "same_order_as_active": rk["same_order_as_active"],
    }
    if samples:
        fm = mat.forward_model()
        rng = np.random.default_rng(seed)
        th = rng.uniform(dom[:, 0], dom[:, 1], size=(samples, len(dom)))
        st = fm.is_stable(th)
        out["stable_fraction_uniform"] = float(st.mean())
        out["stable_samples"] = int(samples)
    return out


def run(args) -> int:
    import json
    from pathlib import Path

    from ..errors import FcinvError

    mat, fc = load_material(args)
    if mat.name == "custom" and fc is None and not mat.has_reference:
        raise FcinvError("fcinv domain --structure needs --force-constants: a custom crystal's domain is around them")
    rec = domain_record(mat, args.samples, args.seed)
    if args.save:
        Path(args.save).write_text(json.dumps(rec, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = [
        f"{mat.name} {'domain' if mat.name == 'custom' else 'training domain'} ({rec['rule']}); reference: {mat.reference_name}",
        "",
        f"{'':4} {'name':<8} {'lo':>8} {'hi':>8}  {'fit ± σ':>17} {'DFT':>8}  sources (lo | hi)",
    ]
    for r in rec["parameters"]:
        fit = f"{r['measured_fit']:8.3f} ± {r['measured_fit_sigma']:.3f}" if "measured_fit" in r else ""
        dft = f"{r['dft']:8.3f}" if "dft" in r else ""
        lines.append(
            f"{r['fc']:<4} {r['name']:<8} {r['lo']:>8.3f} {r['hi']:>8.3f}  {fit:>17} {dft:>8}  "
            f"{r['lo_source']} | {r['hi_source']}"
        )
    if "measured_fit_all_inside" in rec:
        lines.append(f"measured fit inside: {rec['measured_fit_all_inside']}")
    if "dft_all_inside" in rec:
        lines.append(f"DFT inside: {rec['dft_all_inside']}")
    rk = rec["ranking_at_reference"]
    lines.append(f"top-8 at the reference: {', '.join(rk['top_names'])} (same set as the active FCs: {rk['same_set_as_active']})")
    if "stable_fraction_uniform" in rec:
        lines.append(f"stable fraction of uniform samples: {rec['stable_fraction_uniform']:.4f} ({rec['stable_samples']} drawn)")
    emit(args, rec, "\n".join(lines))
    return 0
