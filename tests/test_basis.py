"""The symmetry-reduced force-constant basis: counts, symmetry, sum rule, round trips."""

import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError, ForceConstantsError


def test_ge_basis_counts(ge):
    b = ge.basis
    assert b.n_params == 44
    assert len(b.orbits) == 15
    assert [len(o.params) for o in b.orbits[:2]] == [2, 4]
    assert b.orbits[0].distance == pytest.approx(np.sqrt(3) / 4 * ge.conventional_a, abs=1e-6)


def test_nb_basis_counts(nb):
    b = nb.basis
    assert b.n_super == 128
    assert b.n_params == 32
    assert [len(o.params) for o in b.orbits[:4]] == [2, 2, 3, 4]


def test_symfc_agrees_on_the_dimension(ge):
    pytest.importorskip("symfc")
    from symfc.basis_sets import FCBasisSetO2

    sc = ge.basis.phonopy.supercell
    basis = FCBasisSetO2(sc, use_mkl=False, log_level=0).run()
    # symfc's compact basis includes the acoustic sum rule: 44 independent parameters
    assert basis.basis_set.shape[1] == ge.basis.n_params


def test_basis_obeys_asr_index_symmetry_and_space_group(ge, rng):
    b = ge.basis
    p = rng.normal(size=b.n_params)
    full = b.expand(p, full=True)
    assert np.abs(full.sum(axis=1)).max() < 1e-12  # acoustic sum rule, every row
    assert np.abs(full - np.transpose(full, (1, 0, 3, 2))).max() < 1e-12  # Φ_ji = Φ_ijᵀ
    # space group: phonopy's own symmetrisation leaves it unchanged
    from phonopy.harmonic.force_constants import symmetrize_force_constants

    sym = full.copy()
    symmetrize_force_constants(sym)
    assert np.abs(sym - full).max() < 1e-10
    # a random tensor is *not* in the span: the projection has a residual
    bad = rng.normal(size=full[b.p2s].shape)
    assert b.reduce(bad)[1]["relative"] > 0.5


def test_reduce_expand_round_trip(ge, rng):
    b = ge.basis
    p = rng.normal(size=b.n_params)
    q, resid = b.reduce(b.expand(p))
    assert np.allclose(q, p, atol=1e-12)
    assert resid["relative"] < 1e-12
    q2, _ = b.reduce(b.expand(p, full=True))
    assert np.allclose(q2, p, atol=1e-12)


def test_ge_dft_reduced_values(ge, ge_dft_files):
    from fcinv_widgets.fcio import read_force_constants

    p, resid = ge.basis.reduce(read_force_constants(ge_dft_files[1]))
    assert resid["relative"] < 5e-3  # the DFT FCs are symmetric except Φ_ij ≠ Φ_jiᵀ at 8e-3
    d = {n: v for n, v in zip(ge.basis.names, p)}
    assert d["1NN xx"] == pytest.approx(-2.945, abs=2e-3)
    assert d["1NN xy"] == pytest.approx(-2.139, abs=2e-3)
    # largest second-neighbour element (0.371) and the 6.15 Å and 7.99 Å shells
    assert max(abs(d[k]) for k in d if k.startswith("2NN")) == pytest.approx(0.371, abs=2e-3)
    s5 = [o for o in ge.basis.orbits if abs(o.distance - 6.153) < 0.01][0]
    assert min(p[i] for i in s5.params) == pytest.approx(-0.234, abs=2e-3)


def test_write_and_read_force_constants(ge, tmp_path, rng):
    from fcinv_widgets.fcio import read_force_constants

    p = rng.normal(size=ge.basis.n_params)
    ge.basis.write_force_constants(tmp_path / "FORCE_CONSTANTS", p)
    fc = read_force_constants(tmp_path / "FORCE_CONSTANTS")
    assert fc.shape == (2, 128, 3, 3)
    assert np.allclose(ge.basis.reduce(fc)[0], p, atol=1e-10)


def test_sensitivity_ranks_first_neighbours_first(ge):
    s = ge.basis.sensitivity(ge.reference_params, ge.grid.q.qpoints)
    assert list(s["top"][:2]) == [0, 1]
    assert len(s["top"]) == 8


def test_bad_inputs(ge, tmp_path):
    from fcinv_widgets.fcio import read_force_constants
    from fcinv_widgets.structure import read_structure
    from fcinv_widgets.errors import StructureError

    bad = tmp_path / "POSCAR"
    bad.write_text("this is\nnot a POSCAR\n1.0\n")
    with pytest.raises(StructureError, match="POSCAR"):
        read_structure(bad)
    with pytest.raises(StructureError, match="not found"):
        read_structure(tmp_path / "missing")
    with pytest.raises(ForceConstantsError, match="shape"):
        ge.basis.reduce(np.zeros((2, 54, 3, 3)))
    with pytest.raises(FcinvError, match="NaN"):
        ge.basis.expand(np.full(44, np.nan))
    with pytest.raises(FcinvError, match="44"):
        ge.basis.expand(np.zeros(8))
    junk = tmp_path / "FORCE_CONSTANTS"
    junk.write_text("2 128\nfoo bar\n")
    with pytest.raises(ForceConstantsError):
        read_force_constants(junk)


def test_phonopy_yaml_round_trip(ge, tmp_path, rng):
    from fcinv_widgets.fcio import read_phonopy_yaml

    p = ge.reference_params + 0.01 * rng.normal(size=ge.basis.n_params)
    ph = ge.basis.phonopy
    ph.force_constants = ge.basis.expand(p)
    ph.save(tmp_path / "phonopy.yaml", settings={"force_constants": True})
    crystal, fc, smat = read_phonopy_yaml(tmp_path / "phonopy.yaml")
    assert crystal.n_atoms == 2 and np.array_equal(smat, np.diag([4, 4, 4]))
    assert np.allclose(ge.basis.reduce(fc)[0], p, atol=1e-8)


def test_cif_structures_load(ge, tmp_path):
    import ase.io

    from fcinv_widgets.structure import read_structure

    ase.io.write(tmp_path / "ge.cif", ge.crystal.to_ase())
    cr = read_structure(tmp_path / "ge.cif")
    assert cr.n_atoms == 2 and cr.symbols == ("Ge", "Ge")
    assert abs(abs(np.linalg.det(cr.lattice)) - abs(np.linalg.det(ge.crystal.lattice))) < 1e-6


# shipped models depend on the order and names of these parameters: they must never change
GE_NAMES = [
    "1NN xx",
    "1NN xy",
    "2NN xx",
    "2NN xy",
    "2NN xz",
    "2NN zz",
    "3NN xx",
    "3NN xy",
    "3NN yy",
    "3NN yz",
    "4NN xx",
    "4NN yy",
    "5NN xx",
    "5NN xy",
    "5NN xz",
    "5NN zz",
    "6NN xx",
    "6NN xy",
    "6NN yy",
    "6NN yz",
    "6NN yx",
    "7NN xx",
    "7NN xy",
    "7NN yy",
    "7NN yz",
    "8NN xx",
    "8NN xy",
    "9NN xx",
    "9NN xz",
    "9NN yy",
    "10NN xx",
    "10NN xy",
    "10NN xz",
    "10NN zz",
    "11NN xx",
    "11NN xy",
    "11NN xz",
    "11NN yy",
    "12NN xx",
    "12NN xy",
    "13NN xx",
    "14NN xx",
    "14NN xy",
    "15NN xx",
]
NB_NAMES = [
    "1NN xx",
    "1NN xy",
    "2NN xx",
    "2NN yy",
    "3NN xx",
    "3NN xy",
    "3NN zz",
    "4NN xx",
    "4NN xy",
    "4NN yy",
    "4NN yz",
    "5NN xx",
    "5NN xy",
    "6NN xx",
    "6NN zz",
    "7NN xx",
    "7NN xy",
    "7NN xz",
    "7NN zz",
    "8NN xx",
    "8NN yy",
    "8NN zz",
    "9NN xx",
    "9NN xy",
    "9NN zz",
    "10NN xx",
    "10NN xy",
    "11NN xx",
    "11NN yy",
    "12NN xx",
    "12NN yy",
    "13NN xx",
]


def test_preset_parameter_names_and_order_are_stable(ge, nb):
    assert ge.basis.names == GE_NAMES
    assert nb.basis.names == NB_NAMES
    # the preset cells are used as given (their primitive cells): phonopy sees no other primitive cell
    for mat in (ge, nb):
        assert len(mat.basis.phonopy.primitive) == mat.crystal.n_atoms
        np.testing.assert_allclose(mat.basis.phonopy.primitive_matrix, np.eye(3))


def test_preset_onsite_blocks_symmetric_and_sum_rule(ge, nb, rng):
    for mat in (ge, nb):
        full = mat.basis.expand(rng.normal(size=mat.basis.n_params), full=True)
        onsite = full[np.arange(mat.basis.n_super), np.arange(mat.basis.n_super)]
        assert np.abs(onsite - np.swapaxes(onsite, -1, -2)).max() < 1e-12
        assert np.abs(full.sum(axis=1)).max() < 1e-12


def test_large_q_sets_are_taken_a_chunk_at_a_time(ge, monkeypatch):
    """Frequencies and the sensitivity ranking build the per-parameter dynamical matrices (P, nq, 3n, 3n)
    a chunk of q-points at a time past a memory budget (a 16-atom cell's 693 parameters took ~8 GB at
    once); chunked, they equal the one-array answer."""
    from fcinv_widgets.basis import FCBasis

    b = ge.basis
    q = ge.grid.q.qpoints[::3]
    p = ge.reference_params
    whole_f, whole_s = b.frequencies_thz(p, q), b.sensitivity(p, q)
    assert len(b._q_chunks(q)) == 1
    monkeypatch.setattr(FCBasis, "DP_CHUNK_BYTES", b.n_params * (3 * b.n_prim) ** 2 * 16 * 7)  # 7 q-points a chunk
    assert len(b._q_chunks(q)) == -(-len(q) // 7)
    np.testing.assert_allclose(b.frequencies_thz(p, q), whole_f, atol=1e-12)
    chunked = b.sensitivity(p, q)
    np.testing.assert_allclose(chunked["scores"], whole_s["scores"], rtol=1e-12)
    assert list(chunked["order"]) == list(whole_s["order"])
