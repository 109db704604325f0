"""Smoke tests of the benchmark scripts on tiny data (no accuracy or timing assertions)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_results_writes_its_tables(tmp_path):
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark_results.py"), "--only", "echo:lstm",
         "--seeds", "0", "1", "--out", str(out),
         "--train-args", "--epochs 1 --units 4 --task-option series_length=600"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["task"], r["model"], r["seeds"]) for r in rows] == [("echo", "lstm", "2")]
    assert 0.0 <= float(rows[0]["mean"]) <= 1.0
    assert "| echo | lstm | - | 2 |" in (out / "results.md").read_text()
    assert "| echo | lstm | - | 2 |" in done.stdout
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "echo-lstm-seed0",
        "echo-lstm-seed1",
    ]
    model_file = out / "runs" / "echo-lstm-seed0" / "model.keras"
    written = model_file.stat().st_mtime_ns
    again = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark_results.py"), "--only", "echo:lstm",
         "--seeds", "0", "1", "--out", str(out), "--resume"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert again.stdout == done.stdout and model_file.stat().st_mtime_ns == written


def test_model_table_lists_every_model():
    from zoo import list_models

    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "model_table.py")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for name in list_models():
        assert f"| `{name}` |" in done.stdout


def test_benchmark_speed_prints_its_tables():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark_speed.py"), "--quick",
         "--models", "bilstm", "--no-torch"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = {}  # the training table's rows (the first row of each model)
    for line in done.stdout.splitlines():
        rows.setdefault(line.split(" | ")[0].strip("| "), line)
    assert "NativeLSTM everywhere" in rows["model"] and "| FusedLSTM |" in rows["bilstm"]
    assert rows["model"].count("|") == rows["bilstm"].count("|")
    assert "HAR parse" in done.stdout
