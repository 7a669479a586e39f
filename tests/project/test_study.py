"""The evidence study runs end to end: ``benchmarks/study_texture_seg.py --quick`` writes its table and files."""

import csv
import json
import math
import subprocess
import sys

import pytest

from helpers import ROOT

pytest.importorskip("skimage")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

SCRIPT = ROOT / "benchmarks" / "study_texture_seg.py"


@pytest.mark.slow
def test_quick_study_writes_finite_results(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| encoder conv |" in done.stdout and "| encoder fdconv |" in done.stdout
    assert "Δ mIoU [95% CI]" in done.stdout  # the paired-difference table
    with open(tmp_path / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["encoder conv", "encoder fdconv", "decoder FreqFusion"]
    for row in rows:
        for key in ("miou_mean", "boundary_f_mean", "gflops", "step_ms"):
            value = float(row[key])
            assert math.isfinite(value) and value >= 0
        assert 0 <= float(row["miou_mean"]) <= 1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["results"]) == 3 and saved["seeds"] == [0, 1] and "CPU flags" in saved["machine"]
    fdconv = saved["results"][1]
    assert fdconv["miou_diff_low"] <= fdconv["miou_diff"] <= fdconv["miou_diff_high"]
    assert fdconv["miou_verdict"] in ("gain", "loss", "not resolved")
    assert (tmp_path / "accuracy_vs_cost.png").stat().st_size > 0


def _study():
    import importlib.util

    spec = importlib.util.spec_from_file_location("study_texture_seg", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_interval_is_the_t_interval_of_the_differences():
    study = _study()
    mean, low, high = study.paired_interval([0.01, 0.03, 0.02, 0.04])
    # mean 0.025, sample std 0.0129099, t(3) = 3.182: half-width 3.182 * 0.0129099 / 2
    assert mean == pytest.approx(0.025) and high - mean == pytest.approx(0.0205396, rel=1e-4) == mean - low
    assert study.verdict(low, high) == "gain" and study.verdict(-0.02, 0.01) == "not resolved"
    assert study.verdict(-0.03, -0.01) == "loss" and math.isnan(study.paired_interval([0.1])[1])
