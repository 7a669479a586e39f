"""Every benchmark script runs: ``benchmarks/<script>.py --quick`` end to end, so that no script rots unseen between
the runs that fill BENCHMARKS.md."""

import subprocess
import sys

import pytest

from helpers import ROOT

SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))
ELSEWHERE = {"study_texture_seg": "tests/project/test_study.py runs it with --quick and checks the files it writes"}
LIGHTER = {"bench_network": ["--no-naive", "--rounds", "1"]}  # 160 s with the naive network's three rounds, 60 s so


def test_every_script_has_a_quick_mode():
    for script in SCRIPTS:
        assert '"--quick"' in script.read_text(), f"{script.name} has no --quick"


@pytest.mark.slow
@pytest.mark.parametrize("script", [s for s in SCRIPTS if s.stem not in ELSEWHERE], ids=lambda s: s.stem)
def test_script_runs_quick(script, tmp_path):
    pytest.importorskip("torchvision")
    pytest.importorskip("skimage")
    command = [sys.executable, str(script), "--quick", *LIGHTER.get(script.stem, [])]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "|---" in done.stdout, done.stdout[-3000:]  # it printed its table
