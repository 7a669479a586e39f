"""The evidence study runs end to end: ``benchmarks/study_texture_seg.py --quick`` writes its table and files."""
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("skimage")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "study_texture_seg.py"


@pytest.mark.slow
def test_quick_study_writes_finite_results(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| encoder conv |" in done.stdout and "| encoder fdconv |" in done.stdout
    with open(tmp_path / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["encoder conv", "encoder fdconv", "decoder FreqFusion"]
    for row in rows:
        for key in ("miou_mean", "boundary_f_mean", "gflops", "step_ms"):
            value = float(row[key])
            assert math.isfinite(value) and value >= 0
        assert 0 <= float(row["miou_mean"]) <= 1
    assert len(json.loads((tmp_path / "results.json").read_text())["results"]) == 3
    assert (tmp_path / "accuracy_vs_cost.png").stat().st_size > 0
