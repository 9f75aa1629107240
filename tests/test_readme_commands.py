"""The README's "A first look from the command line" block runs as written (session 25: its
`--params` example had drifted to a dynamically unstable set and failed). Sizes are cut where a
line is a long job (`dataset`, `bench`); file names are the test's own."""

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

#: what a line may be shrunk by, so the block runs in seconds
SMALLER = {"--n-train": "24", "--n-test": "4", "--batch": "64"}


def _first_look_lines() -> list[str]:
    text = README.read_text()
    m = re.search(r"## A first look from the command line\s+```bash\n(.*?)```", text, re.S)
    assert m, "README lost its 'A first look from the command line' block"
    lines = []
    for raw in m.group(1).splitlines():
        line = raw.split("  #")[0].strip()
        if line.startswith("fcinv "):
            lines.append(line)
    return lines


def test_the_block_is_there():
    cmds = [shlex.split(x)[1] for x in _first_look_lines()]
    assert {"basis", "phonons", "simulate", "dataset", "fit-dispersion", "domain", "bench"} <= set(cmds)


def _argv(line, ge_dft_files) -> list[str]:
    argv = shlex.split(line)[1:]
    poscar, fc = ge_dft_files
    argv = [{"POSCAR": str(poscar), "FORCE_CONSTANTS": str(fc)}.get(a, a) for a in argv]
    for i, a in enumerate(argv[:-1]):
        if a in SMALLER:
            argv[i + 1] = SMALLER[a]
    if argv[0] in ("dataset", "refine"):
        argv.append("--no-progress")
    return argv


@pytest.mark.parametrize("line", _first_look_lines())
def test_readme_first_look_line_runs(line, tmp_path, monkeypatch, capsys, ge_dft_files):
    """Each line in a directory of its own, after the earlier lines that write a file it reads
    (`simulate … --out mine.h5` before `refine … --spectrum mine.h5`), as a reader runs the block."""
    from fcinv_widgets.cli import main

    monkeypatch.chdir(tmp_path)
    argv = _argv(line, ge_dft_files)
    lines = _first_look_lines()
    for earlier in lines[: lines.index(line)]:
        before = _argv(earlier, ge_dft_files)
        if "--out" in before and before[before.index("--out") + 1] in argv:
            assert main(before) == 0, f"README line failed: {earlier}\n{capsys.readouterr().err}"
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 0, f"README line failed: {line}\n{err}"


def test_glance_cites_sections_that_exist():
    """Each section the README's "Measured figures at a glance" names in italics is a heading of
    docs/results.md (the full record the summary points to), and each file it links exists."""
    text = README.read_text()
    m = re.search(r"## Measured figures at a glance\n(.*?)(\n## |\Z)", text, re.S)
    assert m, "README lost its 'Measured figures at a glance' section"
    glance = m.group(1)
    results = README.parent / "docs" / "results.md"
    headings = [h[3:].strip() for h in results.read_text().splitlines() if h.startswith("## ")]
    cited = re.findall(r"\*((?:Stage [IV]+: |Forward|Speed)[^*]*)\*", glance)
    assert len(cited) >= 6, cited
    for name in cited:
        assert any(h.startswith(name) for h in headings), f"docs/results.md has no section '{name}'"
    for link in re.findall(r"\]\(([^)#]+)\)", glance):
        assert (README.parent / link).exists(), link
