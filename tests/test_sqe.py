"""One-phonon S(Q,E), folding onto the q-path, single-orientation scans (fcinv_widgets.sqe / .scans)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError

QMAX = 4.0  # Å⁻¹: small folding (a few dozen zones) keeps these tests fast


@pytest.fixture(scope="module")
def ge_dft(ge):
    return ge.dft_params


@pytest.fixture(scope="module")
def calc(ge, ge_dft):
    from fcinv_widgets.sqe import SQE

    return SQE(ge.basis, ge_dft, temperature=5.0, dw_mesh=(6, 6, 6))


@pytest.fixture(scope="module")
def points(calc, ge):
    from fcinv_widgets.sqe import fold_points

    return fold_points(calc, ge.grid, QMAX, ge.conventional_a)


@pytest.fixture(scope="module")
def euphonic_fc(ge, ge_dft, tmp_path_factory):
    euphonic = pytest.importorskip("euphonic")
    d = tmp_path_factory.mktemp("eu")
    ph = ge.basis.phonopy_with(ge_dft)
    ph.save(str(d / "phonopy.yaml"), settings={"force_constants": True})
    return euphonic.ForceConstants.from_phonopy(path=str(d), summary_name="phonopy.yaml")


Q_TEST = np.array([[0.3, 0.2, 0.1], [1.5, -0.7, 2.2], [3.1, 1.0, -0.4], [-4.2, 2.3, 1.7], [2.2, 2.2, 0.05]])  # Å⁻¹


def test_structure_factor_matches_euphonic(ge, calc, euphonic_fc):
    """s_ν(Q) (fm² per atom) with and without the Debye–Waller factor equals Euphonic's StructureFactor."""
    from euphonic import ureg

    from fcinv_widgets.sqe import SQE

    qf = Q_TEST @ ge.crystal.lattice.T / (2 * np.pi)  # Euphonic takes fractional (primitive r.l.u.)
    modes = euphonic_fc.calculate_qpoint_phonon_modes(qf, asr=None)
    b = {"Ge": 8.185 * ureg("fm")}
    # no Debye–Waller
    nodw = SQE(ge.basis, calc.params, temperature=5.0, dw_mesh=None)
    e, s = nodw.structure_factor(Q_TEST)
    sf = modes.calculate_structure_factor(scattering_lengths=b)
    np.testing.assert_allclose(e, modes.frequencies.to("meV").magnitude, atol=1e-6)
    ref = sf.structure_factors.to("fm**2").magnitude
    np.testing.assert_allclose(s, ref, rtol=1e-6, atol=1e-9 * ref.max())
    # Debye–Waller on the same Γ-centred 6×6×6 mesh at 5 K: W = ½ Q·U·Q, Euphonic stores U/2 (bohr²)
    g = np.stack(np.meshgrid(*[np.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3) / 6.0
    mesh_modes = euphonic_fc.calculate_qpoint_phonon_modes(g, asr=None)
    dw = mesh_modes.calculate_debye_waller(5 * ureg("K"), symmetrise=False)
    w_eu = dw.debye_waller.to("angstrom**2").magnitude
    np.testing.assert_allclose(calc.U / 2, w_eu, rtol=1e-5, atol=1e-9)
    e, s = calc.structure_factor(Q_TEST)
    ref = modes.calculate_structure_factor(scattering_lengths=b, dw=dw).structure_factors.to("fm**2").magnitude
    np.testing.assert_allclose(s, ref, rtol=1e-5, atol=1e-9 * ref.max())


def test_bose_and_debye_waller_limits(ge, calc):
    from fcinv_widgets.sqe import SQE, bose_factor
    from fcinv_widgets.units import KB_MEV

    E = np.array([1.0, 10.0, 30.0])
    np.testing.assert_allclose(bose_factor(E, 0.0), 1.0)
    np.testing.assert_allclose(bose_factor(E, 1.0), 1.0, atol=1e-4)  # kT ≪ E
    T = 1e5
    np.testing.assert_allclose(bose_factor(E, T), KB_MEV * T / E, rtol=2e-3)  # classical limit n+1 ≈ kT/E
    with pytest.raises(FcinvError, match="temperature"):
        bose_factor(E, -1.0)
    with pytest.raises(FcinvError, match="temperature"):
        SQE(ge.basis, calc.params, temperature=-5)
    # cubic site symmetry: U isotropic; zero-point motion of Ge ≈ 1.6e-3 Å² at 5 K
    u = calc.U[0]
    np.testing.assert_allclose(u, u[0, 0] * np.eye(3), atol=1e-12)
    assert 1e-3 < u[0, 0] < 2.5e-3
    # U grows with T, ∝ T at high T; exp(−W) ≤ 1 lowers the intensity, more at large Q
    hot = SQE(ge.basis, calc.params, temperature=600.0, dw_mesh=(6, 6, 6))
    hotter = SQE(ge.basis, calc.params, temperature=1200.0, dw_mesh=(6, 6, 6))
    assert hot.U[0, 0, 0] > 3 * u[0, 0]
    assert hotter.U[0, 0, 0] / hot.U[0, 0, 0] == pytest.approx(2.0, rel=0.05)
    nodw = SQE(ge.basis, calc.params, temperature=5.0, dw_mesh=None)
    ratio = calc.structure_factor(Q_TEST)[1].sum(1) / nodw.structure_factor(Q_TEST)[1].sum(1)
    q2 = (Q_TEST**2).sum(1)
    np.testing.assert_allclose(ratio, np.exp(-u[0, 0] * q2), rtol=1e-6)  # |exp(−W)|² = exp(−Q²U)


def test_sqe_image_units_and_resolution(calc):
    """S(Q,E) integrates over E to Σ s_ν (n+1) (unit-area Gaussians), with the ARCS width at Ei."""
    centers = np.arange(-20, 60, 0.05) + 0.025
    for kw in ({"sigma_mev": 1.0}, {"ei_mev": 80.0}):
        img = calc.sqe(Q_TEST[1:3], centers, **kw)
        e, s = calc.structure_factor(Q_TEST[1:3], bose=True)
        np.testing.assert_allclose(img.sum(1) * 0.05, s.sum(1), rtol=1e-3)


def _small_grid(ge):
    """Γ–X and L–W at 0.1 r.l.u. steps (9 q-bins) on the Ge energy axis: a ForwardModel builds in ~1 s."""
    from fcinv_widgets.grid import SpectrumGrid, build_qpath
    from fcinv_widgets.materials import FCC_POINTS

    conv_to_prim = (ge.crystal.lattice / ge.conventional_a).T
    q = build_qpath(FCC_POINTS, [("Γ", "X"), ("L", "W")], conv_to_prim, 2 * np.pi / ge.conventional_a * np.eye(3), step=0.1)
    return SpectrumGrid(q, ge.grid.e)


def test_folded_peaks_follow_forward_model(ge, calc):
    """The peak energy of every q-bin of the folded S(q,E) at 5 K sits on a ForwardModel branch (within a bin)."""
    from fcinv_widgets.forward import ForwardModel
    from fcinv_widgets.sqe import fold_full, fold_points

    grid = _small_grid(ge)
    pts = fold_points(calc, grid, 6.0, ge.conventional_a)
    img, norm = fold_full(pts, grid, sigma_mev=0.7)
    assert img.shape == grid.shape and np.isfinite(img).all() and (norm > 0).all()
    fm = ForwardModel(ge.basis, grid, calc.params, ge.active, sigma_mev=0.7, mesh=None)
    freqs = fm.frequencies(calc.params[ge.active])[0]
    peak = grid.e.centers[np.argmax(img, 1)]
    assert np.abs(freqs - peak[:, None]).min(1).max() <= 1.5 * grid.e.step
    # every folded point of a bin carries the bin's ForwardModel frequencies
    np.testing.assert_allclose(np.sort(pts.energies[pts.iq], 1), freqs[pts.qbin], atol=1e-6)
    # with the (broader, 1–3 meV) ARCS resolution at Ei = 80 meV close branches merge: within two bins
    img, _ = fold_full(pts, grid, ei_mev=80.0)
    peak = grid.e.centers[np.nanargmax(img, 1)]
    assert np.abs(freqs - peak[:, None]).min(1).max() <= 2 * grid.e.step


def test_folding_on_the_model_grid(ge, calc, points):
    """Full 140-bin path: peaks on the dispersion, and the pathSQE multiplicities of the segments."""
    from fcinv_widgets.sqe import fold_full
    from fcinv_widgets.units import THZ_TO_MEV

    img, norm = fold_full(points, ge.grid, sigma_mev=0.7)
    assert img.shape == ge.grid.shape and np.isfinite(img).all()
    freqs = ge.basis.frequencies_thz(calc.params, ge.grid.q.qpoints) * THZ_TO_MEV  # = ForwardModel.frequencies
    peak = ge.grid.e.centers[np.argmax(img, 1)]
    assert np.abs(freqs - peak[:, None]).min(1).max() <= 1.5 * ge.grid.e.step
    # distinct point-group images per segment: Γ–X 6, X–U 24, K–Γ 12, Γ–L 8, L–W 48, W–X 24
    b = ge.grid.q.boundaries
    n_images = [len(np.unique(points.iq[points.qbin == b[k] + 1])) for k in range(6)]
    assert n_images == [6, 24, 12, 8, 48, 24]


def test_kinematic_full_coverage(ge, points):
    """With Ei, pixels out of kinematic reach are NaN; coverage falls towards high E."""
    from fcinv_widgets.sqe import fold_full

    img, norm = fold_full(points, ge.grid, ei_mev=80.0)
    cov_e = np.isfinite(img).mean(0)
    assert 0 < np.isfinite(img).mean() <= 1
    assert cov_e[0] >= cov_e[-1]


def test_resolution_of_one_ei_with_the_coverage_of_another(ge, points):
    """``coverage_ei_mev`` (session 33's diagnostic, benchmarks/ood_ei_parts.py): the measured pixels and
    equivalents of that Ei, the resolution of ``ei_mev``; given as ``ei_mev`` it changes nothing."""
    from fcinv_widgets.sqe import fold_full

    img60, norm60 = fold_full(points, ge.grid, ei_mev=60.0)
    img110, _ = fold_full(points, ge.grid, ei_mev=110.0)
    mixed, norm = fold_full(points, ge.grid, ei_mev=110.0, coverage_ei_mev=60.0)
    assert np.array_equal(norm, norm60) and np.array_equal(np.isfinite(mixed), np.isfinite(img60))
    assert np.isfinite(img60).mean() < np.isfinite(img110).mean()  # 60 meV reaches fewer pixels
    ok = np.isfinite(img60)
    assert not np.allclose(mixed[ok], img60[ok])  # a wider resolution at 110 meV
    same, _ = fold_full(points, ge.grid, ei_mev=60.0, coverage_ei_mev=60.0)
    assert np.array_equal(np.nan_to_num(same, nan=-1), np.nan_to_num(img60, nan=-1))
    from fcinv_widgets.errors import FcinvError

    for bad in (0.0, -5.0, float("nan"), "x"):
        with pytest.raises(FcinvError, match="coverage_ei_mev"):
            fold_full(points, ge.grid, ei_mev=80.0, coverage_ei_mev=bad)


@pytest.fixture(scope="module")
def scanset(ge, calc):
    from fcinv_widgets.scans import simulate_scans

    return simulate_scans(
        ge, 80.0, [0.0, 40.0, 80.0], temperature=5.0, params=calc.params, qmax=QMAX, dw_mesh=(6, 6, 6), progress=False
    )


def test_scans_coverage_and_union(ge, scanset):
    ss = scanset
    assert ss.scans.shape == (3,) + ge.grid.shape and ss.full.shape == ge.grid.shape
    masks = np.isfinite(ss.scans)
    np.testing.assert_array_equal(masks.any(0), np.isfinite(ss.full))  # union of orientations
    assert np.all((ss.coverage > 0) & (ss.coverage < 1))
    assert ss.full_coverage >= ss.coverage.max()
    np.testing.assert_allclose(ss.coverage, masks.reshape(3, -1).mean(1))
    # the coverage of growing unions increases
    unions = [masks[: k + 1].any(0).mean() for k in range(3)]
    assert unions[0] <= unions[1] <= unions[2]
    assert unions[2] > unions[0]
    assert np.nanmin(ss.full) >= 0 and np.nanmax(ss.full) > 0


def test_orientation_kinematics():
    """E_ω(Q) = Ei − 2.0721 |k_i − R(ω)Q|²: a single point, one orientation."""
    from types import SimpleNamespace

    from fcinv_widgets.grid import EnergyGrid, SpectrumGrid
    from fcinv_widgets.scans import orientation_image, orientation_matrix

    q = SimpleNamespace(nq=1)
    grid = SimpleNamespace(shape=(1, 100), e=EnergyGrid(0.0, 50.0, 0.5))
    ki = np.sqrt(80 / 2.0721247)
    # Q along the beam's perpendicular: scattering angle 2θ with k_f = k_i − Q
    Q = np.array([[0.0, 0.0, 0.0]], np.float32)
    Qlab = np.array([2.0, -3.0, 0.0])  # lab frame at ω = 0 with u = x, v = y
    U0 = orientation_matrix((1, 0, 0), (0, 1, 0))
    pts = SimpleNamespace(
        Q32=Qlab[None].astype(np.float32),
        upar32=np.array([[0, 0, 1]], np.float32),
        h_par32=np.array([1e-4], np.float32),
        h_perp=1e-4,
        amp=np.ones((1, 1), np.float32),
        iq=np.array([0]),
        qbin=np.array([0]),
    )
    Gt = np.ones((1, 1, 100), np.float32)
    d, n = orientation_image(pts, Gt, 0.0, 80.0, grid, U0)
    E = 80 - 2.0721247 * ((ki - 2.0) ** 2 + 9.0)
    assert n.sum() == 1 and n[0, int(E // 0.5)] == 1
    # rotating by 180° sends k_f outside the detector (2θ beyond 135°)? here: check ω changes E
    d2, n2 = orientation_image(pts, Gt, 30.0, 80.0, grid, U0)
    assert np.argmax(n2[0]) != int(E // 0.5) or n2.sum() == 0
    del q, SpectrumGrid, Q


def test_scanset_roundtrip_and_readers(ge, scanset, tmp_path):
    from fcinv_widgets.analysis.expio import read_spectrum
    from fcinv_widgets.scans import ScanSet

    p = tmp_path / "scans.h5"
    scanset.save(p)
    back = ScanSet.load(p)
    np.testing.assert_array_equal(back.scans, scanset.scans)
    np.testing.assert_array_equal(back.full, scanset.full)
    np.testing.assert_array_equal(back.angles_deg, scanset.angles_deg)
    np.testing.assert_allclose(back.coverage, scanset.coverage)
    np.testing.assert_allclose(back.params, scanset.params)
    assert (back.ei_mev, back.temperature_k, back.material) == (80.0, 5.0, "Ge")
    assert back.grid.shape == ge.grid.shape and back.grid.q.labels == ge.grid.q.labels
    np.testing.assert_allclose(back.grid.e.centers, ge.grid.e.centers)
    assert back.meta["u"] == [1.0, 1.0, 0.0]
    spec = read_spectrum(p, ge.grid)  # the full data set, as `fcinv invert` reads it
    np.testing.assert_array_equal(np.isfinite(spec.image), np.isfinite(scanset.full))
    assert spec.fmt == "fcinv-scans"
    # noise keeps NaN where uncovered and scales each image to [0, 1]
    noisy = scanset.add_noise(0.1, 100.0, seed=1)
    np.testing.assert_array_equal(np.isfinite(noisy.scans), np.isfinite(scanset.scans))
    assert np.nanmax(noisy.full) == pytest.approx(1.0)
    with pytest.raises(FcinvError, match="not an fcinv scan-set"):
        ScanSet.load(_write_other(tmp_path))


def _write_other(tmp_path):
    import h5py

    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f["x"] = 1
    return p


def test_infer_scans_accepts_scanset(scanset):
    """infer_scans takes a ScanSet (scans, full, angles_deg)."""
    from fcinv_widgets.analysis.scan_inference import infer_scans

    class Stub:
        names = [f"FC{i}" for i in range(8)]
        kind = "stub"
        config = {"domain": np.tile([[-1.0, 1.0]], (8, 1))}

        def predict(self, x, n_samples=1, seed=0, sigma_regime=None):
            from types import SimpleNamespace

            x = np.atleast_3d(x) if np.ndim(x) == 3 else np.asarray(x)[None]
            m = np.tile(np.nanmean(x, axis=(1, 2))[:, None], (1, 8))
            return SimpleNamespace(mean=m, std=0 * m, recon=np.zeros((0,)))

    res = infer_scans(Stub(), scanset, n_samples=1)
    assert res.mean.shape == (3, 8)
    np.testing.assert_allclose(res.coverage, scanset.coverage)


def test_parse_and_check_errors(ge):
    from fcinv_widgets.scans import check_ei, orientation_matrix, parse_angles, simulate_scans

    np.testing.assert_allclose(parse_angles("0:120:1"), np.arange(120.0))
    np.testing.assert_allclose(parse_angles("0:3"), [0, 1, 2])
    np.testing.assert_allclose(parse_angles("10, 20.5"), [10, 20.5])
    for bad, msg in [("5:5", "empty"), ("0:10:0", "step"), ("0:400:10", "360"), ("a:b", "start:stop"), ("", "empty")]:
        with pytest.raises(FcinvError, match=msg):
            parse_angles(bad)
    with pytest.raises(FcinvError, match="Ei must be larger"):
        check_ei(70.0, ge.grid)
    with pytest.raises(FcinvError, match="Ei must be larger"):
        simulate_scans(ge, 50.0, [0.0], progress=False)
    with pytest.raises(FcinvError, match="temperature"):
        simulate_scans(ge, 80.0, [0.0], temperature=-1, progress=False)
    with pytest.raises(FcinvError, match="parallel"):
        orientation_matrix((1, 0, 0), (2, 0, 0))


def _cli(*args, env_small=True):
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if env_small:
        env["FCINV_SMALL"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "fcinv_widgets.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_cli_scans_and_full_sqe_smoke(ge, tmp_path):
    import json

    from fcinv_widgets.analysis.expio import read_spectrum
    from fcinv_widgets.scans import ScanSet

    out = tmp_path / "s.h5"
    r = _cli(
        "scans",
        "--material",
        "Ge",
        "--ei",
        "80",
        "--angles",
        "0:40:20",
        "--qmax",
        "3.5",
        "--noise",
        "0.1,300",
        "--out",
        str(out),
        "--json",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["n_scans"] == 2 and d["params_source"].startswith("shipped first-principles")
    ss = ScanSet.load(out)
    assert ss.scans.shape == (2,) + ge.grid.shape and ss.meta["noise"]["counts"] == 300
    exp = tmp_path / "exp.h5"
    r = _cli("simulate", "--material", "Ge", "--full-sqe", "--temperature", "5", "--ei", "80", "--qmax", "3.5", "--out", str(exp))
    assert r.returncode == 0, r.stderr
    spec = read_spectrum(exp, ge.grid)
    assert spec.image.shape == ge.grid.shape and 0.5 < spec.coverage <= 1.0
    assert read_spectrum(out, ge.grid).image.shape == ge.grid.shape


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--material", "Ge", "--ei", "60"], "Ei must be larger"),
        (["--material", "Ge", "--ei", "80", "--angles", "3:3"], "empty"),
        (["--material", "Ge", "--ei", "80", "--angles=-400:0:10"], "360"),
        (["--material", "Ge", "--ei", "80", "--temperature", "-2"], "temperature"),
        (["--material", "Fe", "--ei", "80"], "unknown material"),
        (["--material", "Ge", "--ei", "80", "--noise", "0.1"], "B,P"),
    ],
)
def test_cli_scans_bad_input(args, msg, tmp_path):
    r = _cli("scans", *args, "--out", str(tmp_path / "x.h5"))
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


def test_cli_full_sqe_bad_input(tmp_path):
    r = _cli("simulate", "--material", "Ge", "--full-sqe", "--temperature", "-1", "--out", str(tmp_path / "x.h5"))
    assert r.returncode == 2 and "temperature" in r.stderr
    r = _cli("simulate", "--material", "Ge", "--full-sqe", "--ei", "40", "--out", str(tmp_path / "x.h5"))
    assert r.returncode == 2 and "Ei must be larger" in r.stderr
