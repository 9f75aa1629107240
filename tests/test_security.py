"""Security: no input file runs code (phonopy YAML tags, MACE pickles)."""

import pytest

from fcinv_widgets.errors import FcinvError


def _evil_yaml(tmp_path):
    marker = tmp_path / "marker-created-by-yaml"
    text = (
        "phonopy:\n  version: \"2.20.0\"\n"
        f"evil: !!python/object/apply:os.mkdir [\"{marker}\"]\n"
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
