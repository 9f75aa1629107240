"""`fcinv mask-bank`: the coverage bank that --augment/--mask-bank draw from, written without a
training run (session 48: the benchmarks' and the README's commands needed one, and only
`fcinv train --mask-bank` wrote it)."""

import json

import numpy as np
import pytest

from fcinv_widgets.cli import main


def test_mask_bank_writes_what_training_would_draw(tmp_path, capsys):
    from fcinv_widgets.materials import get_material
    from fcinv_widgets.measurement import coverage_bank, load_bank, recorded_geometry

    out = tmp_path / "ge_masks.npz"
    argv = ["mask-bank", "--material", "Ge", "--angles", "0,90", "--qmax", "3", "--out", str(out), "--json"]
    assert main(argv) == 0
    rec = json.loads(capsys.readouterr().out)
    masks, meta = load_bank(out)
    ge = get_material("Ge")
    expected = coverage_bank(ge, 1.15 * ge.grid.e.e_max, [0.0, 90.0], 3.0)
    assert masks.shape == (2, *ge.grid.shape) == tuple(rec["shape"])
    np.testing.assert_array_equal(masks, expected)
    assert meta["material"] == "Ge" and meta["n"] == 2
    geo = recorded_geometry(meta)  # what --sqe-scan-weights reads back from a bank
    assert geo["angles_deg"] == [0.0, 90.0] and geo["qmax"] == 3.0 and geo["ei_mev"] == pytest.approx(80.5)
    assert 0 < rec["covered_fraction"]["min"] <= rec["covered_fraction"]["max"] < 1
    # a bank may be written again over itself; another file is never overwritten
    assert main(argv) == 0
    capsys.readouterr()
    other = tmp_path / "notes.txt"
    other.write_text("keep me")
    assert main([*argv[:-2], str(other)]) == 2
    assert "is not a coverage bank; will not overwrite it" in capsys.readouterr().err
    assert other.read_text() == "keep me"


def test_a_bank_is_written_under_the_name_given(tmp_path, capsys):
    """numpy adds ".npz" to a name without it; the bank goes to the path given, so `train --mask-bank
    masks` finds it the next time instead of computing it again."""
    from fcinv_widgets.measurement import load_bank

    out = tmp_path / "masks"
    assert main(["mask-bank", "--material", "Ge", "--angles", "0", "--qmax", "2", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    assert out.is_file() and not (tmp_path / "masks.npz").exists()
    assert load_bank(out)[0].shape[0] == 1


def test_an_interrupted_write_leaves_the_old_bank(tmp_path, monkeypatch):
    """A Ctrl-C while a bank is written leaves the file that was there (or none), never a half-written
    one that the next run would refuse."""
    from fcinv_widgets.measurement import load_bank, save_bank

    out = tmp_path / "b.npz"
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 1] = masks[1, 2] = True  # (a mask that covers nothing is a damaged bank)
    save_bank(out, masks, {"material": "Ge", "n": 2})

    def interrupted(fh, **arrays):
        fh.write(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_bank(out, ~masks, {"material": "Ge", "n": 2})
    np.testing.assert_array_equal(load_bank(out)[0], masks)
    assert [p.name for p in tmp_path.iterdir()] == ["b.npz"]
