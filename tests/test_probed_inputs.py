"""Bad inputs found by probing the CLI with hostile files (session 45): each is one line on stderr,
``fcinv <cmd>: error: …``, exit 2 — they gave a traceback, were killed for memory, or exited 0 with a
wrong answer before. Beside each, the good input it was told apart from still works."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from fcinv_widgets.cli import main
from fcinv_widgets.materials import data_path

GE_POSCAR = str(data_path("ge", "POSCAR"))
GE_FC = str(data_path("ge", "FORCE_CONSTANTS_DFT"))
Q = ["--qpoints", "0 0 0"]


def _one_line(capsys, argv, match: str) -> None:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fcinv ") and match in err[0], err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("probed")
    lines = Path(GE_POSCAR).read_text().splitlines()
    # the count line says 1 atom, both position lines kept (ASE read one atom and dropped the other)
    at = 6 if lines[5].split()[0].isalpha() else 5
    few = list(lines)
    few[at] = "1"
    (d / "POSCAR_fewer").write_text("\n".join(few) + "\n")
    fc = np.zeros((2, 2, 3, 3))
    for name, data in (("fc_str.hdf5", np.full(fc.shape, b"a")), ("fc_complex.hdf5", fc + 1j)):
        with h5py.File(d / name, "w") as f:
            f["force_constants"] = data
    with h5py.File(d / "fc_compound.hdf5", "w") as f:
        f["force_constants"] = np.zeros(fc.shape, dtype=[("a", "f8"), ("b", "f8")])
    # nested YAML aliases ("billion laughs"): a few hundred bytes that expand to 9⁹ entries
    lev = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for p, q in zip("abcdefgh", "bcdefghi"):
        lev.append(f"{q}: &{q} [" + ", ".join([f"*{p}"] * 9) + "]")
    (d / "alias.yaml").write_text("\n".join(lev) + "\nsupercell_matrix: *i\n")
    table = {
        "format": "fcinv-measured-phonons",
        "version": 1,
        "material": "Ge",
        "unit": "THz",
        "points": [{"label": "X", "frequency": 2.4, "sigma": 1e-300, "branch": "TA", "degeneracy": 2}],
    }
    (d / "sigma_tiny.json").write_text(json.dumps(table))
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "bigint.json").write_text('{"format": ' + "9" * 5001 + "}")
    return d


@pytest.mark.parametrize(
    "argv, match",
    [
        (["basis", "--structure", "{d}/POSCAR_fewer"], "the count line says 1 atom (1), but 1 more position line"),
        (["phonons", "--structure", GE_POSCAR, "--force-constants", "{d}/fc_str.hdf5", *Q], "must be real numbers"),
        (["phonons", "--structure", GE_POSCAR, "--force-constants", "{d}/fc_compound.hdf5", *Q], "must be real numbers"),
        (["phonons", "--structure", GE_POSCAR, "--force-constants", "{d}/fc_complex.hdf5", *Q], "holds complex numbers"),
        (["phonons", "--structure", GE_POSCAR, "--force-constants", "{d}/alias.yaml", *Q], "YAML aliases"),
        (["fit-dispersion", "--material", "Ge", "--table", "{d}/sigma_tiny.json"], "finer than any measurement"),
        (["fit-dispersion", "--material", "Ge", "--table", "{d}/deep.json"], "not a JSON file"),
        (["fit-dispersion", "--material", "Ge", "--table", "{d}/bigint.json"], "not a JSON file"),
        (["phonons", "--material", "Ge", "--mass", "Ge=1e300", "--qpoints", "0.5 0 0.5"], "masses must be 0.1–1000 amu"),
        (["phonons", "--material", "Ge", "--mass", "Ge=1e-30", "--qpoints", "0.5 0 0.5"], "masses must be 0.1–1000 amu"),
        # session 46 (the crystal probe): q = 1e12 gave acoustic modes of 1e-3 THz at Γ, 1e17 gave 2.9 THz
        (["phonons", "--material", "Ge", "--qpoints", "1e12 0 0"], "beyond ±10000 r.l.u."),
        # ... and a centring the cell lacks was refused in phonopy's words ("Cell trimming failed")
        (["basis", "--structure", GE_POSCAR, "--primitive", "I"], "not a centring of this cell"),
        # session 47 (the crystal probe): v = 0 gave a NaN orientation, no coverage and exit 0
        (
            ["scans", "--material", "Ge", "--ei", "100", "--angles", "0,30", "--u", "1,1,0", "--v", "0,0,0", "--out", "{d}/x.h5"],
            "u = [1 1 0] and v = [0 0 0] (r.l.u.) must be finite and non-zero",
        ),
        (
            ["scans", "--material", "Ge", "--ei", "100", "--angles", "0", "--u", "0,0,1", "--v", "0,0,2", "--out", "{d}/x.h5"],
            "u = [0 0 1] and v = [0 0 2] (r.l.u.) are parallel",
        ),
    ],
)
def test_probed_files_and_options(capsys, files, argv, match):
    _one_line(capsys, [a.replace("{d}", str(files)) for a in argv], match)


def test_good_neighbours_still_work(capsys, files, tmp_path):
    """A POSCAR with a velocity block after a blank line, integer force constants and an element's
    mass of 1 amu are not refused."""
    lines = Path(GE_POSCAR).read_text().splitlines()
    (tmp_path / "POSCAR_vel").write_text("\n".join(lines + ["", "0 0 0", "0 0 0"]) + "\n")
    assert main(["basis", "--structure", str(tmp_path / "POSCAR_vel"), "--json"]) == 0
    capsys.readouterr()
    from fcinv_widgets.fcio import read_force_constants

    with h5py.File(tmp_path / "fc_int.hdf5", "w") as f:
        f["force_constants"] = np.zeros((2, 2, 3, 3), int)
    assert read_force_constants(tmp_path / "fc_int.hdf5").dtype == float
    assert main(["phonons", "--material", "Ge", "--mass", "Ge=1", "--qpoints", "0.5 0 0.5", "--json"]) == 0


def test_phonopy_yaml_without_force_constants_ignores_the_working_folder(capsys, tmp_path, monkeypatch):
    """A phonopy.yaml that holds neither force constants nor forces (phonopy_disp.yaml) is refused even
    when the working folder holds a FORCE_CONSTANTS (phonopy would have read that other file)."""
    import phonopy

    from fcinv_widgets.structure import read_structure

    cr = read_structure(GE_POSCAR)
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(symbols=list(cr.symbols), cell=cr.lattice, scaled_positions=cr.positions)
    phonopy.Phonopy(unit, supercell_matrix=np.diag([2, 2, 2])).save(str(tmp_path / "phonopy_disp.yaml"))
    work = tmp_path / "work"
    work.mkdir()
    (work / "FORCE_CONSTANTS").write_text(Path(GE_FC).read_text())
    monkeypatch.chdir(work)
    _one_line(
        capsys,
        ["phonons", "--structure", GE_POSCAR, "--force-constants", str(tmp_path / "phonopy_disp.yaml"), *Q],
        "holds no force constants",
    )


@pytest.fixture(scope="module")
def scan_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("probed_scans")
    out = d / "ge_scans.h5"
    argv = ["scans", "--material", "Ge", "--ei", "80", "--angles", "0,30", "--qmax", "3", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    return out


def _with_meta(src, dst, **changes):
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "a") as f:
        meta = json.loads(f.attrs["meta"])
        meta.update(changes)
        f.attrs["meta"] = json.dumps(meta)
    return dst


@pytest.mark.parametrize(
    "changes, argv, match",
    [
        ({"u": "abc"}, ["plan-scans", "--model", "ge-vae", "--candidates", "0:90:30", "--n", "1"], "meta 'u' must be 3 finite"),
        ({"v": {"a": 1}}, ["infer-scans", "--model", "ge-vae", "--n-samples", "2", "--no-refine"], "meta 'v' must be 3 finite"),
        ({"qmax_inv_a": "x"}, ["plan-scans", "--sqe", "--material", "Ge", "--candidates", "0:90:30", "--n", "1"], "qmax_inv_a"),
        ({"b_coh_fm": {"Ge": 0}}, ["plan-scans", "--sqe", "--material", "Ge", "--candidates", "0:90:30", "--n", "1"], "0 fm"),
    ],
)
def test_probed_scan_sets(capsys, scan_set, tmp_path, changes, argv, match):
    f = _with_meta(scan_set, tmp_path / "bad.h5", **changes)
    capsys.readouterr()
    _one_line(capsys, [*argv, "--scans", str(f), "--no-progress"], match)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["scans", "--b-coh", "Ge=0"], "every element 0 fm"),
        (["scans", "--b-coh", "Ge=500"], "|b| ≤ 100 fm"),
    ],
)
def test_b_coh_option_range(capsys, tmp_path, argv, match):
    base = ["--material", "Ge", "--ei", "80", "--angles", "0,30", "--qmax", "3", "--no-progress", "--out", str(tmp_path / "o.h5")]
    _one_line(capsys, [argv[0], *base, *argv[1:]], match)
    assert not (tmp_path / "o.h5").exists()


def test_scattering_lengths_refuse_all_zero_and_huge():
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.sqe import scattering_lengths

    assert scattering_lengths(["Ti", "O", "O"], {"O": 0.0}).tolist()[1:] == [0.0, 0.0]  # one element silenced: fine
    with pytest.raises(FcinvError, match="no coherent one-phonon scattering"):
        scattering_lengths(["Ge", "Ge"], {"Ge": 0})
    with pytest.raises(FcinvError, match="≤ 100"):
        scattering_lengths(["Ge"], {"Ge": 1e200})


def test_file_ei_is_checked_like_the_option(capsys, tmp_path):
    """A file whose Ei lies beyond the ARCS range is refused as --ei is (a Mantid log of 10⁹ meV went
    through `invert`); one below the grid's top is a measurement whose upper bins are empty: it is
    read (the models' ei_check speaks about it)."""
    out = tmp_path / "sqe.h5"
    argv = ["simulate", "--material", "Ge", "--full-sqe", "--ei", "80", "--qmax", "3", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    for ei, match in ((1e9, "1500"), (2000.0, "1500")):
        bad = tmp_path / f"ei{ei:g}.h5"
        bad.write_bytes(out.read_bytes())
        with h5py.File(bad, "a") as f:
            f.attrs["ei_mev"] = ei
            if "resolution" in f.attrs:
                res = json.loads(f.attrs["resolution"])
                if isinstance(res, dict) and "ei_mev" in res:
                    res["ei_mev"] = ei
                    f.attrs["resolution"] = json.dumps(res)
        for cmd in (["refine", "--max-iter", "2", "--no-progress"], ["invert", "--model", "ge-vae"]):
            _one_line(capsys, [cmd[0], "--spectrum", str(bad), *cmd[1:]], match)
    from fcinv_widgets.analysis.expio import read_spectrum

    low = tmp_path / "ei30.h5"
    low.write_bytes(out.read_bytes())
    with h5py.File(low, "a") as f:
        f.attrs["ei_mev"] = 30.0
    assert read_spectrum(low).meta["ei_mev"] == 30.0


def test_fit_scans_refuses_a_constant_scan():
    from fcinv_widgets.analysis.planner import fit_scans_sqe, hits_bank
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.materials import get_material

    ge = get_material("Ge")
    bank = hits_bank(ge, [0.0], 80.0, qmax=3.0, cache=False)
    with pytest.raises(FcinvError, match="constant"):
        fit_scans_sqe(ge, bank, np.zeros((1, *ge.grid.shape)), [0.0])


def test_deep_json_is_refused_before_the_decoder(capsys, scan_set, tmp_path):
    """JSON nested 10⁵ deep: the decoder raises RecursionError, or — where a library has raised the
    recursion limit, as happened inside pytest — overflows the C stack (a segmentation fault).
    `validate.json_loads` counts the depth first; a scan set's meta nested that deep is one line."""
    import sys

    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.validate import json_loads

    deep = "[" * 100_000 + "]" * 100_000
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000_000)
    try:
        with pytest.raises(FcinvError, match="nested deeper than 64"):
            json_loads(deep, "x")
    finally:
        sys.setrecursionlimit(old)
    assert json_loads(b'{"a": ["[[[", {"b": 1}]}', "x") == {"a": ["[[[", {"b": 1}]}  # brackets in strings
    bad = tmp_path / "deep.h5"
    bad.write_bytes(scan_set.read_bytes())
    with h5py.File(bad, "a") as f:
        f.attrs["meta"] = deep
    _one_line(capsys, ["infer-scans", "--model", "ge-vae", "--scans", str(bad), "--no-refine"], "meta attribute must be a JSON")


def test_our_own_files_with_deep_json_are_one_line(capsys, tmp_path):
    """Session 46: the JSON inside fcinv's own files (a model's config, ood.json, trust.json,
    metrics.json, a spectrum file's attributes) went to ``json.loads`` unchecked — a file nested
    10⁵ deep was a RecursionError traceback. Every site now goes through `validate.json_loads`
    (or `json_or_text` for attributes that may be plain text)."""
    import shutil

    import torch

    from fcinv_widgets.analysis.expio import read_spectrum
    from fcinv_widgets.commands.evaluate import _metrics_of
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.materials import data_path
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import OODStats
    from fcinv_widgets.models.trust import load_trust_limit
    from fcinv_widgets.spectrum_io import write_spectrum

    deep = "[" * 100_000 + "]" * 100_000
    model = tmp_path / "m"
    shutil.copytree(data_path("models", "ge-vae"), model)
    for name in ("ood.json", "trust.json", "metrics.json"):
        good = (model / name).read_text()
        (model / name).write_text(deep)
        with pytest.raises(FcinvError, match="nested deeper than 64"):
            {
                "ood.json": OODStats.load,
                "trust.json": lambda p: load_trust_limit(p.with_name("model.pt")),
                "metrics.json": lambda p: _metrics_of(str(p)),
            }[name](model / name)
        (model / name).write_text(good)

    ck = torch.load(model / "model.pt", map_location="cpu", weights_only=True)
    ck["config"] = deep
    torch.save(ck, model / "model.pt")
    with pytest.raises(FcinvError, match="nested deeper than 64"):
        load_model(model)

    from fcinv_widgets.materials import get_material

    ge = get_material("Ge")
    spec = tmp_path / "s.h5"
    write_spectrum(spec, np.ones(ge.grid.shape), ge.grid, material="Ge")
    with h5py.File(spec, "a") as f:
        f.attrs["temperature_k"] = deep
    with pytest.raises(FcinvError, match="nested deeper than 64"):
        read_spectrum(spec, ge.grid)


def test_scan_axes_are_directions_whatever_their_size():
    """Session 47 (the crystal probe): u = 1e200 overflowed the norms into another orientation
    (coverage 0.29 against 0.60 for the same direction given as 1,0,0), with exit 0."""
    from fcinv_widgets.materials import get_material
    from fcinv_widgets.scans import orientation_matrix

    ge = get_material("Ge").crystal
    for big in (1e200, 1e-200, 7.0):
        np.testing.assert_allclose(
            orientation_matrix((big, big, 0), (0, 0, 3 * big), ge), orientation_matrix((1, 1, 0), (0, 0, 1), ge), atol=1e-14
        )
