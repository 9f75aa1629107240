"""The forward model against phonopy and Euphonic, and its array back-ends."""

import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError
from fcinv_widgets.units import MEV_TO_THZ


def _phonopy_freqs(basis, params, q):
    ph = basis.phonopy
    ph.force_constants = basis.expand(params)
    ph.run_qpoints(q)
    return np.asarray(ph.qpoints.frequencies)


def test_frequencies_equal_phonopy_at_reference_and_random_params(ge, ge_fm, rng):
    q = ge.grid.q.qpoints
    lo, hi = ge.domain.T
    thetas = np.vstack([ge_fm.reference_theta, rng.uniform(lo, hi, size=(4, 8))])
    ours = ge_fm.frequencies(thetas) * MEV_TO_THZ
    for k, th in enumerate(thetas):
        ref = _phonopy_freqs(ge.basis, ge_fm.full_params(th)[0], q)
        assert np.abs(ours[k] - ref).max() < 1e-4


def test_nb_frequencies_equal_phonopy(nb, rng):
    from fcinv_widgets.forward import ForwardModel

    b = nb.basis
    # a stable bcc set: first two shells, central-force-like, plus small random others
    p = 0.02 * rng.normal(size=b.n_params)
    p[b.orbits[0].params[0]], p[b.orbits[0].params[1]] = -1.5, -1.6
    p[b.orbits[1].params[0]], p[b.orbits[1].params[1]] = -1.0, 0.1
    fm = ForwardModel(b, nb.grid, p, np.arange(8), mesh=None)
    ours = fm.frequencies(p[:8]) * MEV_TO_THZ
    assert np.abs(ours[0] - _phonopy_freqs(b, p, nb.grid.q.qpoints)).max() < 1e-4


def test_euphonic_agrees_once(ge, ge_fm, tmp_path):
    pytest.importorskip("euphonic")
    from euphonic import ForceConstants

    params = ge.reference_params
    ph = ge.basis.phonopy
    ph.force_constants = ge.basis.expand(params)
    ph.save(tmp_path / "phonopy.yaml", settings={"force_constants": True})
    fc = ForceConstants.from_phonopy(path=str(tmp_path), summary_name="phonopy.yaml")
    q = ge.grid.q.qpoints[::7]
    modes = fc.calculate_qpoint_phonon_modes(q, asr=None)
    eu = modes.frequencies.to("THz").magnitude
    ours = ge.basis.frequencies_thz(params, q)
    assert np.abs(np.sort(eu, axis=1) - ours).max() < 1e-4


def test_reference_dft_frequencies(ge):
    q = np.array([[0, 0, 0], [0.5, 0, 0.5], [0.5, 0.5, 0.5]])
    f = ge.basis.frequencies_thz(ge.dft_params, q)
    assert f[0, 3] == pytest.approx(9.05, abs=0.01)
    assert np.allclose(f[1, [0, 2, 4]], [2.45, 7.22, 8.26], atol=0.01)
    assert np.allclose(f[2, [0, 2, 3, 4]], [2.06, 6.58, 7.33, 8.69], atol=0.01)


def test_block_decomposition_preserves_spectra(ge, rng):
    from fcinv_widgets.blocks import decompose

    M = (ge.conventional_a * 0 + 1) * (ge.crystal.lattice / ge.conventional_a).T
    qs = np.array([[0, 0.3, 0], [0.2, 0.2, 0.2], [0.5, 1, 0], [0.13, 0.27, 0.41], [0.3, 1, 0]]) @ M
    D = ge.basis.dynamical_matrices(qs)
    sizes = []
    for iq in range(len(qs)):
        blk = decompose(D[:, iq])
        sizes.append(max(c.shape[1] for c in blk.coeffs))
        for _ in range(3):
            th = rng.normal(size=D.shape[0])
            full = np.linalg.eigvalsh(np.tensordot(th, D[:, iq], axes=(0, 0)))
            parts = np.sort(
                np.concatenate(
                    [np.repeat(np.linalg.eigvalsh(np.tensordot(th, c, axes=(0, 0))), m) for c, m in zip(blk.coeffs, blk.mult)]
                )
            )
            assert np.allclose(full, parts, atol=1e-10)
    assert sizes[0] <= 2 and sizes[1] <= 2  # Δ and Λ lines: 1×1 and 2×2 blocks only
    assert sizes[3] == 6  # generic q: no symmetry, one block


def test_images_match_exact_gaussians(ge, ge_fm, rng):
    """The fused CPU kernel equals dense, exact Gaussians (torch back-end) to the 4σ truncation."""
    lo, hi = ge.domain.T
    th = rng.uniform(lo, hi, size=(3, 8))
    a = ge_fm.spectra(th, normalize=False)
    fm_t = ge.forward_model(backend="torch")
    b = fm_t.spectra(th, normalize=False).numpy()
    assert np.abs(a - b).max() < 1e-3 * b.max()
    # and the image is where the modes are: the peak of each q row is at a mode energy
    ref = ge_fm.reference_theta
    a = ge_fm.spectra(ref, normalize=False)
    f = ge_fm.frequencies(ref)[0]
    e = ge.grid.e.centers
    for iq in (5, 45, 70, 110):
        peak = e[np.argmax(a[0, iq])]
        assert np.min(np.abs(f[iq] - peak)) < 1.0


def test_normalised_images_and_energy_dependent_width(ge, ge_fm):
    img = ge_fm.spectra(ge_fm.reference_theta)
    assert img.shape == (1, 140, 140) and img.dtype == np.float32
    assert img.min() == 0.0 and img.max() == pytest.approx(1.0)
    fm = ge.forward_model(resolution=("arcs", 80.0))
    b = fm.spectra(ge_fm.reference_theta, normalize=False)[0]
    fm_t = ge.forward_model(resolution=("arcs", 80.0), backend="torch")
    c = fm_t.spectra(ge_fm.reference_theta, normalize=False).numpy()[0]
    assert np.abs(b - c).max() < 2e-3 * c.max()


def test_a_resolution_twin_renders_as_a_model_built_with_it(ge, ge_fm, rng):
    """``with_resolution`` shares the blocks and gives the images of a model built with that
    resolution (compiled kernel and the dense S(Q,E) path); the original keeps its own."""
    th = ge_fm.reference_theta * (1 + 0.05 * rng.standard_normal((3, ge_fm.n_active)))
    built = ge.forward_model(resolution=("arcs", 80.0))
    twin = ge_fm.with_resolution(("arcs", 80.0))
    assert twin.resolution == built.resolution and ge_fm.resolution["kind"] == "constant"
    assert np.array_equal(twin.spectra(th, normalize=False), built.spectra(th, normalize=False))
    before = ge_fm.spectra(th, normalize=False)
    back = twin.with_resolution(None, float(ge_fm.sigma_table[0]))
    assert np.array_equal(back.spectra(th, normalize=False), before)
    w = rng.uniform(0.5, 2.0, built.path.slot_w.shape[0])
    a = twin.with_sqe_weights(w, 5.0).spectra(th, normalize=False)
    b = built.with_sqe_weights(w, 5.0).spectra(th, normalize=False)
    assert np.array_equal(a, b)
    assert np.abs(a - ge_fm.with_sqe_weights(w, 5.0).spectra(th, normalize=False)).max() > 0.05 * a.max()


def test_arcs_resolution_values():
    from fcinv_widgets.broadening import sigma_arcs

    assert np.allclose(sigma_arcs([0, 10, 20, 30], 40.0), [1.38, 0.98, 0.65, 0.40], atol=0.02)


def test_stability_flags(ge, ge_fm):
    th = ge_fm.reference_theta
    assert ge_fm.is_stable(th)[0]
    soft = th.copy()
    soft[0] = -0.3 * th[0]  # flip the first-neighbour bond-stretching term
    assert not ge_fm.is_stable(soft)[0]
    imgs, stable = ge_fm.spectra(np.vstack([th, soft]), return_stable=True)
    assert list(stable) == [True, False]
    assert ge_fm.min_energy(soft)[0] < -0.1


def test_torch_is_differentiable(ge):
    torch = pytest.importorskip("torch")
    fm = ge.forward_model(backend="torch")
    x = torch.tensor(fm.reference_theta[None], requires_grad=True)
    loss = fm.spectra(x, normalize=False).sum() + fm.frequencies(x).sum()
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_cupy_falls_back_cleanly(ge):
    from fcinv_widgets.backend import cupy_available, get_backend
    from fcinv_widgets.errors import MissingDependencyError

    if cupy_available():
        pytest.skip("a GPU is present")
    assert get_backend("auto").name == "numpy"
    with pytest.raises(MissingDependencyError, match="GPU"):
        get_backend("cupy")


def test_bad_parameters(ge_fm):
    with pytest.raises(FcinvError, match="NaN"):
        ge_fm.spectra([np.nan] * 8)
    with pytest.raises(FcinvError, match="shape"):
        ge_fm.spectra(np.zeros((2, 7)))


@pytest.mark.parametrize("bad", ["1.0", True, 1j, np.nan, np.inf, -1.0, 0, None])
def test_sigma_must_be_a_positive_real_number(ge, bad):
    """A string, a bool, a complex, NaN/inf or σ ≤ 0 is refused with one FcinvError naming it
    (a string used to reach np.isfinite and end in a TypeError)."""
    with pytest.raises(FcinvError, match=r"sigma_mev \(meV\) must be one finite number > 0"):
        ge.forward_model(sigma_mev=bad)


def test_sigma_accepts_numpy_and_python_reals(ge):
    for ok in (2, 2.0, np.float32(2.0), np.int64(2)):
        assert ge.forward_model(sigma_mev=ok).resolution == {"kind": "constant", "sigma_mev": 2.0}


def test_batches_stream_in_chunks(ge_fm, rng):
    th = np.repeat(ge_fm.reference_theta[None], 10, axis=0)
    a = ge_fm.spectra(th, chunk=3)
    assert np.allclose(a, a[0])


def test_iter_spectra_streams_the_same_images(ge_fm, ge, rng):
    lo, hi = ge.domain.T
    th = rng.uniform(lo, hi, size=(7, 8))
    full, stable = ge_fm.spectra(th, return_stable=True)
    got = {s: (img.copy(), st.copy()) for s, img, st in ge_fm.iter_spectra(th, chunk=3)}
    assert sorted(got) == [0, 3, 6]
    assert np.array_equal(np.concatenate([got[k][0] for k in sorted(got)]), full)
    assert np.array_equal(np.concatenate([got[k][1] for k in sorted(got)]), stable)


def test_one_array_into_a_buffer_and_as_uint8(ge_fm, ge, rng):
    """out= and dtype=uint8 give the same float32 bits / their rounding, from one kernel pass."""
    lo, hi = ge.domain.T
    th = rng.uniform(lo, hi, size=(37, 8))
    ref, stable = ge_fm.spectra(th, return_stable=True)
    buf = np.full_like(ref, np.nan)
    got, st = ge_fm.spectra(th, out=buf, return_stable=True, chunk=16)
    assert got is buf and np.array_equal(buf, ref) and np.array_equal(st, stable)
    q, st = ge_fm.spectra(th, dtype=np.uint8, return_stable=True, chunk=16)
    assert q.dtype == np.uint8 and q.shape == ref.shape and np.array_equal(st, stable)
    assert np.array_equal(q, np.floor(ref * np.float32(255) + np.float32(0.5)).astype(np.uint8))
    assert q.max() == 255 and q.min() == 0
    qb = np.zeros_like(q)
    ge_fm.spectra(th, out=qb)  # the dtype follows the buffer
    assert np.array_equal(qb, q)


def test_bad_output_requests(ge_fm):
    th = np.repeat(ge_fm.reference_theta[None], 3, axis=0)
    with pytest.raises(FcinvError, match="shape"):
        ge_fm.spectra(th, out=np.empty((2, 140, 140), np.float32))
    with pytest.raises(FcinvError, match="dtype"):
        ge_fm.spectra(th, out=np.empty((3, 140, 140), np.float64))
    with pytest.raises(FcinvError, match="C-contiguous"):
        ge_fm.spectra(th, out=np.empty((3, 140, 280), np.float32)[:, :, ::2])
    with pytest.raises(FcinvError, match="float32 or uint8"):
        ge_fm.spectra(th, dtype=np.float16)
    with pytest.raises(FcinvError, match="normalize"):
        ge_fm.spectra(th, dtype=np.uint8, normalize=False)


def test_too_large_a_batch_is_refused_before_allocating(ge_fm, monkeypatch):
    from fcinv_widgets import forward

    monkeypatch.setattr(forward, "available_memory_bytes", lambda: 10 * 2**20)
    with pytest.raises(FcinvError, match="GiB"):
        ge_fm.spectra(np.repeat(ge_fm.reference_theta[None], 500, axis=0))  # 39 MB > 10 MB
    assert ge_fm.spectra(np.repeat(ge_fm.reference_theta[None], 50, axis=0), dtype=np.uint8).shape[0] == 50  # 1 MB


def _srtio3_basis():
    from ase.spacegroup import crystal as sgc

    from fcinv_widgets.basis import FCBasis
    from fcinv_widgets.structure import Crystal

    atoms = sgc(
        ["Sr", "Ti", "O"], basis=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)], spacegroup=221, cellpar=[3.905] * 3 + [90] * 3
    )
    return FCBasis(Crystal.from_ase(atoms), [2, 2, 2])


def test_gram_and_svd_commutants_agree_for_many_modes(rng):
    """Session 25: above 8 modes the commutant comes from the n² × n² Gram matrix (36–137× faster per
    q-point, benchmarks/bench_blocks.py); on SrTiO3 (15 modes) it spans the same space as the SVD's
    at Γ, X, M, R, on the lines between them and at a generic point, and its blocks carry the spectrum."""
    from fcinv_widgets.blocks import GRAM_ABOVE_MODES, commutant_basis, decompose

    b = _srtio3_basis()
    qs = np.array([[0, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0], [0.5, 0.5, 0.5], [0.0125, 0, 0], [0.2, 0.2, 0], [0.13, 0.27, 0.41]])
    D = b.dynamical_matrices(qs)
    n = D.shape[-1]
    assert n == 15 > GRAM_ABOVE_MODES
    for iq in range(len(qs)):
        svd, gram = commutant_basis(D[:, iq], method="svd"), commutant_basis(D[:, iq], method="gram")
        assert len(svd) == len(gram) >= 1
        # the same space: each Gram element is a combination of the SVD's (orthonormal, as vectors)
        S, G = svd.reshape(len(svd), -1), gram.reshape(len(gram), -1)
        proj = (G @ S.conj().T) @ S
        np.testing.assert_allclose(proj, G, atol=1e-8)
        blk = decompose(D[:, iq])
        th = rng.normal(size=D.shape[0])
        full = np.linalg.eigvalsh(np.tensordot(th, D[:, iq], axes=(0, 0)))
        parts = np.sort(
            np.concatenate(
                [np.repeat(np.linalg.eigvalsh(np.tensordot(th, c, axes=(0, 0))), m) for c, m in zip(blk.coeffs, blk.mult)]
            )
        )
        np.testing.assert_allclose(parts, full, atol=1e-9 * np.abs(full).max())
    assert len(commutant_basis(D[:, -1], method="gram")) == 1  # generic q: only multiples of 1


def test_a_too_wide_gram_null_space_falls_back_to_the_svd(monkeypatch):
    """decompose checks the blocks' spectra; a commutant that is too wide (here: every matrix) splits
    what does not split, and the SVD route is taken instead — never wrong eigenvalues."""
    from fcinv_widgets import blocks

    b = _srtio3_basis()
    D = b.dynamical_matrices(np.array([[0.13, 0.27, 0.41]]))[:, 0]
    n = D.shape[-1]
    real = blocks.commutant_basis
    calls = []

    def too_wide(Ds, tol=1e-8, method="auto"):
        calls.append(method)
        if method == "gram":
            return np.eye(n * n).reshape(n * n, n, n).astype(complex)
        return real(Ds, tol, method)

    monkeypatch.setattr(blocks, "commutant_basis", too_wide)
    blk = blocks.decompose(D)
    assert calls == ["gram", "svd"]
    assert [c.shape[1] for c in blk.coeffs] == [n]  # a generic point: one block


def test_gpu_backends_split_large_batches_exactly(ge, rng, monkeypatch):
    """On the GPU back-ends the stability pass runs GPU_CHUNK parameter sets at a time and a
    general (> 3×3) block's eigvalsh EIG_BATCH matrices per call — torch's CUDA solver failed on
    100,000 4×4 blocks in one call (H200, session 26). Ge's stability mesh has a 4×4 block: with
    both limits forced small (torch on the CPU) every result equals the one-call result."""
    pytest.importorskip("torch")
    import fcinv_widgets.forward as fw

    fm = ge.forward_model(backend="torch")
    lo, hi = ge.domain.T
    th = np.vstack([fm.reference_theta, rng.uniform(lo, hi, size=(20, len(lo)))])
    e0 = fm.backend.to_numpy(fm.min_energy(th))
    img0, st0 = fm.spectra(th, return_stable=True)
    monkeypatch.setattr(fw, "EIG_BATCH", 3)
    monkeypatch.setattr(fw, "GPU_CHUNK", 4)
    calls = []
    real = fm.backend.xp.linalg.eigvalsh
    monkeypatch.setattr(fm.backend.xp.linalg, "eigvalsh", lambda H: calls.append(H.shape[0]) or real(H))
    e1 = fm.backend.to_numpy(fm.min_energy(th))
    img1, st1 = fm.spectra(th, return_stable=True)
    assert calls and max(calls) <= 3  # split, and never more than EIG_BATCH per call
    np.testing.assert_array_equal(e1, e0)
    np.testing.assert_array_equal(st1, st0)
    np.testing.assert_array_equal(fm.backend.to_numpy(img1), fm.backend.to_numpy(img0))
