"""Security: no input file runs code (phonopy YAML tags, MACE pickles)."""

import pytest

from fcinv_widgets.errors import FcinvError


def _evil_yaml(tmp_path):
    marker = tmp_path / "marker-created-by-yaml"
    text = (
        'phonopy:\n  version: "2.20.0"\n'
        f'evil: !!python/object/apply:os.mkdir ["{marker}"]\n'
        "unit_cell:\n  lattice:\n  - [ 5.0, 0.0, 0.0 ]\n  - [ 0.0, 5.0, 0.0 ]\n  - [ 0.0, 0.0, 5.0 ]\n"
        "  points:\n  - symbol: Si\n    coordinates: [ 0.0, 0.0, 0.0 ]\n    mass: 28.0855\n"
    )
    path = tmp_path / "phonopy.yaml"
    path.write_text(text)
    return path, marker


def test_phonopy_yaml_with_python_tag_runs_no_code(tmp_path):
    from fcinv_widgets.fcio import read_force_constants, read_phonopy_yaml

    path, marker = _evil_yaml(tmp_path)
    for reader in (read_phonopy_yaml, read_force_constants):
        with pytest.raises(FcinvError, match="phonopy.yaml"):
            reader(path)
        assert not marker.exists()


def test_cli_force_constants_yaml_with_python_tag(tmp_path, capsys, ge_dft_files):
    from fcinv_widgets.cli import main

    path, marker = _evil_yaml(tmp_path)
    rc = main(["phonons", "--structure", str(ge_dft_files[0]), "--force-constants", str(path), "--qpoints", "0 0 0"])
    assert rc == 2
    assert not marker.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tag" in err[0]


def test_plain_phonopy_yaml_still_loads(tmp_path, ge):
    """Control: a phonopy.yaml written by phonopy itself reads back (same force constants)."""
    import numpy as np

    from fcinv_widgets.fcio import read_phonopy_yaml

    ph = ge.basis.phonopy_with(ge.reference_params)
    path = tmp_path / "phonopy.yaml"
    ph.save(str(path), settings={"force_constants": True})
    crystal, fc, smat = read_phonopy_yaml(path)
    assert crystal.n_atoms == ge.crystal.n_atoms
    assert np.allclose(fc, ge.basis.expand(ge.reference_params), atol=1e-12)
    assert np.array_equal(smat, ge.supercell_matrix)


@pytest.mark.parametrize(
    "smat, words",
    [
        ("[[60, 0, 0], [0, 60, 0], [0, 0, 60]]", "432000 atoms (2 × 216000 cells); at most 1500"),
        ("[[1, 0, 0], [0, 1, 0], [0, 0, 0]]", "determinant ≥ 1"),
        ("[[1.5, 0, 0], [0, 1, 0], [0, 0, 1]]", "3×3 integers"),
        ("[[1, 0], [0, 1]]", "3×3 integers"),
        ('"big"', "3×3 integers"),
    ],
)
def test_phonopy_yaml_declaring_a_huge_or_broken_supercell_builds_nothing(tmp_path, ge, capsys, smat, words):
    """A few bytes of phonopy.yaml can declare a 60×60×60 supercell, which phonopy spent minutes (and
    gigabytes) building before the file was refused (session 41: over 120 s); refused from the
    safe-loaded document now, before phonopy sees it (the words are ours, not phonopy's)."""
    import yaml

    from fcinv_widgets.cli import main

    ph = ge.basis.phonopy_with(ge.reference_params)
    good = tmp_path / "good.yaml"
    ph.save(str(good), settings={"force_constants": True})
    doc = yaml.safe_load(good.read_text())
    doc["supercell_matrix"] = yaml.safe_load(smat)
    bad = tmp_path / "phonopy.yaml"
    bad.write_text(yaml.safe_dump(doc))
    poscar = tmp_path / "POSCAR"
    import ase.io

    ase.io.write(poscar, ge.crystal.to_ase(), format="vasp", direct=True)
    rc = main(["basis", "--structure", str(poscar), "--force-constants", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and words in err[0] and "phonopy.yaml" in err[0], err


# ------------------------------------------------------------------------------ MACE pickles
def _fake_mace_installed(monkeypatch, tmp_path):
    from fcinv_widgets.ensemble import calculators as C

    real = C._package_dir
    monkeypatch.setattr(C, "_package_dir", lambda pkg: tmp_path if pkg == "mace" else real(pkg))
    model = tmp_path / "evil.model"
    model.write_bytes(b"not really a pickle")
    return C, model


def test_mace_file_is_not_loaded_without_trust(monkeypatch, tmp_path):
    C, model = _fake_mace_installed(monkeypatch, tmp_path)
    spec = next(s for s in C.available_models(mace_models=[model]) if s.family == "mace")
    assert spec.available and not spec.extra["trusted"]
    with pytest.raises(FcinvError, match="pickle"):
        C.get_calculator(spec)
    trusted = next(s for s in C.available_models(mace_models=[model], trust_mace_files=True) if s.family == "mace")
    assert trusted.extra["trusted"]


def test_cli_mace_file_needs_trust_flag(monkeypatch, tmp_path, capsys):
    from fcinv_widgets.cli import main

    _, model = _fake_mace_installed(monkeypatch, tmp_path)
    rc = main(
        [
            "ensemble",
            "--material",
            "Ge",
            "--serial",
            "--models",
            "mace:evil",
            "--mace",
            str(model),
            "--out",
            str(tmp_path / "e.h5"),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--trust-mace-file" in err[0] and "pickle" in err[0]
    assert not (tmp_path / "e.h5").exists()


def test_trust_flag_help_says_why(capsys):
    from fcinv_widgets.cli import main

    try:
        rc = main(["ensemble", "--help"])
    except SystemExit as exc:  # argparse's --help exits 0
        rc = exc.code
    assert rc in (0, None)
    out = " ".join(capsys.readouterr().out.split())
    assert "--trust-mace-file" in out and "pickle" in out and "run any code" in out


def test_mace_env_variable_does_not_leak(monkeypatch):
    import os

    from fcinv_widgets.ensemble.calculators import _env_restored

    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    with _env_restored("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # what mace does
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ


def test_every_other_load_refuses_pickles():
    """Source check: every torch.load passes weights_only=True and every np.load allow_pickle=False;
    the only unpickling loads are the guarded MACE file and the package's own UMAP reducer."""
    import re
    from pathlib import Path

    import fcinv_widgets

    root = Path(fcinv_widgets.__file__).parent
    bad = []
    for f in root.rglob("*.py"):
        text = f.read_text()
        for m in re.finditer(r"\b(torch\.load|np\.load|numpy\.load|pickle\.loads?|yaml\.load|yaml\.unsafe_load)\(", text):
            call = text[m.start() : text.find("\n", m.start()) + 200]
            name = m.group(1)
            ok = (
                ("weights_only=True" in call)
                if name == "torch.load"
                else ("allow_pickle=False" in call)
                if name.endswith("np.load") or name == "numpy.load"
                else ("SafeLoader" in call or "Loader=loader" in call)
                if name == "yaml.load"
                else False
            )
            if not ok:
                bad.append(f"{f.relative_to(root)}: {call.splitlines()[0].strip()}")
    assert not bad, bad


# ------------------------------------------------------------------------------ declared sizes
def test_force_constant_files_declaring_absurd_sizes_allocate_nothing(tmp_path, ge_dft_files):
    import h5py
    import numpy as np

    from fcinv_widgets.errors import ForceConstantsError
    from fcinv_widgets.fcio import read_force_constants

    text = tmp_path / "FORCE_CONSTANTS"
    text.write_text("100000 100000\n1 1\n1 0 0\n0 1 0\n0 0 1\n")
    with pytest.raises(ForceConstantsError, match="declares 100000 × 100000"):
        read_force_constants(text)
    small = tmp_path / "FORCE_CONSTANTS_small"
    small.write_text("2 128\n1 1\n1 0 0\n0 1 0\n0 0 1\n")
    with pytest.raises(ForceConstantsError, match="truncated"):
        read_force_constants(small)
    half = tmp_path / "FORCE_CONSTANTS_half"
    data = ge_dft_files[1].read_bytes()
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(ForceConstantsError):
        read_force_constants(half)
    h5 = tmp_path / "force_constants.hdf5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("force_constants", shape=(100000, 100000, 3, 3), dtype="f8")  # nothing written
    assert h5.stat().st_size < 10_000
    with pytest.raises(ForceConstantsError, match="larger than"):
        read_force_constants(h5)
    with h5py.File(h5, "w") as f:
        f.create_dataset("other", data=np.zeros(3))
    with pytest.raises(ForceConstantsError, match="no force_constants"):
        read_force_constants(h5)
    with h5py.File(h5, "w") as f:
        f.create_dataset("force_constants", data=np.zeros((2, 3)))
    with pytest.raises(ForceConstantsError, match="shape"):
        read_force_constants(h5)


def test_phonopy_hdf5_force_constants_still_read(tmp_path, ge):
    import numpy as np
    from phonopy.file_IO import write_force_constants_to_hdf5

    from fcinv_widgets.fcio import read_force_constants

    fc = ge.basis.expand(ge.reference_params)
    write_force_constants_to_hdf5(fc, filename=str(tmp_path / "force_constants.hdf5"), p2s_map=ge.basis.p2s)
    np.testing.assert_array_equal(read_force_constants(tmp_path / "force_constants.hdf5"), fc)
