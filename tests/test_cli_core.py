"""The `fcinv` CLI of the physics core: JSON outputs, and one-line errors on bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fcinv_widgets.cli import main


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_phonons_reference_files(capsys, ge_dft_files):
    poscar, fc = ge_dft_files
    rc, out, _ = run(
        capsys,
        "phonons",
        "--structure",
        str(poscar),
        "--force-constants",
        str(fc),
        "--qpoints",
        "0 0 0, 0.5 0 0.5, 0.5 0.5 0.5",
        "--json",
    )
    assert rc == 0
    d = json.loads(out)
    f = np.array(d["frequencies_thz"])
    assert d["qpoints"][1] == [0.5, 0.0, 0.5]
    assert f[0, 3] == pytest.approx(9.05, abs=0.01)
    assert np.allclose(f[1, [0, 2, 4]], [2.45, 7.22, 8.26], atol=0.01)
    assert np.allclose(f[2, [0, 2, 3, 4]], [2.06, 6.58, 7.33, 8.69], atol=0.01)
    rc, out2, _ = run(
        capsys,
        "phonons",
        "--structure",
        str(poscar),
        "--force-constants",
        str(fc),
        "--qpoints",
        "0 0 0, 0.5 0 0.5, 0.5 0.5 0.5",
        "--reduced",
        "--json",
    )
    assert np.abs(np.array(json.loads(out2)["frequencies_thz"]) - f).max() < 5e-3


def test_phonons_params(capsys, ge):
    ref = ge.reference_theta
    rc, out, _ = run(
        capsys, "phonons", "--material", "Ge", "--params=" + ",".join(map(str, ref)), "--qpoints", "0.5 0 0.5", "--json"
    )
    assert rc == 0
    f = np.array(json.loads(out)["frequencies_thz"])[0]
    assert np.allclose(f, ge.basis.frequencies_thz(ge.reference_params, [[0.5, 0, 0.5]])[0], atol=1e-5)


def test_basis_json(capsys):
    rc, out, _ = run(capsys, "basis", "--material", "Ge", "--json")
    d = json.loads(out)
    assert d["n_params"] == 44 and d["n_orbits"] == 15 and len(d["top"]) == 8
    assert d["top_names"][:2] == ["1NN xx", "1NN xy"]


def test_simulate_writes_a_readable_file(capsys, tmp_path, ge):
    from fcinv_widgets.analysis.expio import read_spectrum
    from fcinv_widgets.spectrum_io import read_attrs

    rc, out, _ = run(capsys, "simulate", "--material", "Ge", "--out", str(tmp_path / "s.h5"), "--json")
    assert rc == 0 and json.loads(out)["stable"]
    img, attrs = read_spectrum(tmp_path / "s.h5", ge.grid).image, read_attrs(tmp_path / "s.h5")
    assert img.shape == (140, 140) and attrs["material"] == "Ge"
    soft = ge.reference_theta.copy()
    soft[0] *= -0.3
    rc, _, err = run(
        capsys, "simulate", "--material", "Ge", "--params=" + ",".join(map(str, soft)), "--out", str(tmp_path / "u.h5")
    )
    assert rc == 2 and "unstable" in err


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["phonons", "--material", "Ge", "--qpoints", "0 0, 1 1 1"], "three"),
        (["phonons", "--material", "Ge", "--qpoints", "0.5,0,0.5;0.5,0.5,0.5"], "points by commas, e.g."),
        (["phonons", "--material", "Ge", "--qpoints", "a b c"], "not three numbers"),
        (["simulate", "--material", "Ge", "--params", "1,2,3", "--out", "{tmp}/x.h5"], "8 values"),
        (["simulate", "--material", "Ge", "--params", "1,2,3,4,5,6,7,nan", "--out", "{tmp}/x.h5"], "NaN"),
        (["phonons", "--material", "Xx", "--qpoints", "0 0 0"], "unknown material"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, argv, msg):
    # outputs in a fresh folder: a file left at a fixed path (e.g. /tmp/x.h5) must not change the answer
    rc, out, err = run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert rc == 2
    assert msg in err and "Traceback" not in err


def test_fc_shape_mismatch(capsys, ge_dft_files):
    poscar, fc = ge_dft_files
    rc, _, err = run(
        capsys,
        "phonons",
        "--structure",
        str(poscar),
        "--force-constants",
        str(fc),
        "--supercell",
        "3",
        "3",
        "3",
        "--qpoints",
        "0 0 0",
    )
    assert rc == 2 and "supercell" in err


def test_bench_forward_runs(capsys):
    rc, out, _ = run(capsys, "bench", "forward", "--batch", "200", "--phonopy-sets", "5", "--json")
    d = json.loads(out)
    assert d["ours_spectra_per_s"] > 0 and d["phonopy_run_qpoints_per_s"] > 0
    assert set(d["paths"]) == {"one_array_float32", "one_array_float32_out", "one_array_uint8", "streamed_1024"}
    assert d["copy"]["warm_read_write_gb_s"] > 0 and d["paths"]["one_array_uint8"]["output_gb_s"] > 0


@pytest.mark.parametrize("batch", ["0", "-5", "1000000000"])
def test_bench_refuses_bad_batch_sizes(capsys, batch):
    rc, out, err = run(capsys, "bench", "forward", f"--batch={batch}", "--json")
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--batch" in err


def test_entry_point_is_installed():
    r = subprocess.run([sys.executable, "-m", "fcinv_widgets.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "fcinv" in r.stdout


def test_simulate_with_noise(capsys, tmp_path, ge):
    from fcinv_widgets.analysis.expio import read_spectrum
    from fcinv_widgets.spectrum_io import read_attrs

    rc, out, _ = run(capsys, "simulate", "--material", "Ge", "--noise", "0.1,30", "--out", str(tmp_path / "n.h5"), "--json")
    d = json.loads(out)
    assert rc == 0 and 0 < d["snr"] < 100
    img, attrs = read_spectrum(tmp_path / "n.h5", ge.grid).image, read_attrs(tmp_path / "n.h5")
    clean = ge.forward_model().spectra(ge.reference_theta)[0]
    assert not np.allclose(img, clean, atol=1e-2) and attrs["noise_counts"] == 30
    rc, _, err = run(capsys, "simulate", "--material", "Ge", "--noise", "lots", "--out", str(tmp_path / "x.h5"))
    assert rc == 2 and "B,P" in err


@pytest.mark.parametrize(
    "argv, dest, value",
    [
        (["simulate", "--material", "Ge", "--params", "-2.9,-2.1,0.37,-0.16,-0.23,0.16,-0.02,-0.15"], "params", None),
        (["scans", "--material", "Ge", "--ei", "80", "--angles", "-30:90:1"], "angles", "-30:90:1"),
        (["phonons", "--material", "Ge", "--qpoints", "-0.5 0 0, 0 0 0"], "qpoints", "-0.5 0 0, 0 0 0"),
    ],
)
def test_negative_number_lists_are_option_values(argv, dest, value):
    """argparse reads '-2.9,-2.1,…' after an option as an unknown option ('expected one argument'):
    the CLI joins it to its option first."""
    from fcinv_widgets.cli import build_parser, join_negative_values

    args = build_parser().parse_args(join_negative_values([*argv, "--out", "x.h5"] if argv[0] != "phonons" else argv))
    got = getattr(args, dest)
    assert got == (argv[-1] if value is None else value)


def test_negative_params_simulate_end_to_end(capsys, tmp_path):
    vals = "-2.94,-2.14,-0.16,0.37,-0.15,-0.23,0.02,-0.02"  # the README example (DFT values)
    assert main(["simulate", "--material", "Ge", "--params", vals, "--out", str(tmp_path / "s.h5"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(out["params_ev_a2"], [float(v) for v in vals.split(",")])
    # a single negative number stays a value, as argparse reads it: refused by the option's own check
    assert main(["simulate", "--material", "Ge", "--seed", "-3", "--out", str(tmp_path / "t.h5")]) == 2
    assert "--seed: must be an integer ≥ 0, got '-3'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "n_val, r2, expect",
    [
        (150, [0.9] * 8, None),
        (1, [None] * 8, "8 of 8 validation R² undefined: the hold-out has 1 spectrum"),
        (6, [0.5, float("nan")] + [0.4] * 6, "1 of 8 validation R² undefined: the hold-out has 6 spectra"),
        (10, [0.5] * 8, "the validation R² says little: the hold-out has 10 spectra"),
        (500, [float("nan")] + [0.9] * 7, "1 of 8 validation R² undefined"),
    ],
)
def test_train_says_when_its_validation_r2_means_little(n_val, r2, expect):
    from fcinv_widgets.commands.train import validation_note

    note = validation_note(n_val, r2)
    assert (note is None) if expect is None else expect in note


def test_a_closed_pipe_ends_the_command_quietly(monkeypatch, capsys):
    """`fcinv basis --material Ge | head -1`: the reader leaves; the command stops with 141 (a shell's
    128 + SIGPIPE) and says nothing (it said "error: Broken pipe" before session 41)."""

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    rc = main(["basis", "--material", "Ge"])
    monkeypatch.undo()
    assert rc == 141
    assert capsys.readouterr().err == ""


def test_a_closed_pipe_in_a_real_process():
    """The same through a real pipe: the reader takes one line and closes it."""
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fcinv_widgets.cli",
            "phonons",
            "--material",
            "Ge",
            "--qpoints",
            ", ".join(["0.1 0.2 0.3"] * 4000),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    rc = p.wait(timeout=120)
    assert rc in (0, 141) and "Broken pipe" not in err and "Traceback" not in err, (rc, err)
