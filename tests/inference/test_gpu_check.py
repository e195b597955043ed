"""benchmarks/gpu_check.py's --dry-run on the CPU: the GPU check runs end to end and reports every figure."""

import json
import subprocess
import sys

from conftest import PROJECT_ROOT


def test_gpu_check_dry_run_reports_every_figure(tmp_path):
    report_file = tmp_path / "report.json"
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks/gpu_check.py"), "--dry-run",
                             "--out", str(report_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_file.read_text())
    assert report["dry_run"] and report["fixtures"]["ok"] and report["fixtures"]["max_abs_diff"] <= 1e-5
    assert [row["precision"] for row in report["embed"]] == ["float32", "bfloat16", "float16"]
    assert all(row["tokens_per_s"] > 0 and 0.999 <= row["mean_cosine"] <= 1 + 1e-6 for row in report["embed"])
    assert report["train"]["steps"] == 2 and report["train"]["tokens_per_s"] > 0
    assert report["bandwidth_gb_s"] > 0
    assert all(row["tokens_per_s_bound"] > 0 for row in report["fused_step"] if "precision" in row)
    assert "tokens/s" in result.stdout and "fused step" in result.stdout
