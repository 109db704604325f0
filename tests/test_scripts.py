"""Smoke tests of the benchmark scripts on tiny data (no accuracy or timing assertions)."""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.fused import native_path_available

pytestmark = pytest.mark.slow  # end-to-end processes: outside the fast subset

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str, monkeypatch) -> None:
    """`python scripts/NAME ARGS` in this process (a TensorFlow start-up saved), exit 0."""
    path = ROOT / "scripts" / name
    monkeypatch.setattr(sys, "argv", [str(path), *args])
    monkeypatch.syspath_prepend(str(path.parent))  # as `python scripts/NAME` would see it
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as done:
        assert done.code in (0, None), done.code


def test_benchmark_results_writes_its_tables(tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench"
    runs = ["--only", "echo:lstm", "--seeds", "0", "1", "--out", str(out)]
    train_args = "--epochs 1 --units 4 --recurrent-dropout 0 --task-option series_length=600"
    run_script("benchmark_results.py", *runs, "--train-args", train_args, monkeypatch=monkeypatch)
    done = capsys.readouterr().out
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["task"], r["model"], r["seeds"]) for r in rows] == [("echo", "lstm", "2")]
    assert 0.0 <= float(rows[0]["mean"]) <= 1.0
    assert "| echo | lstm | - | 2 |" in (out / "results.md").read_text()
    assert "| echo | lstm | - | 2 |" in done
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "echo-lstm-seed0",
        "echo-lstm-seed1",
    ]
    model_file = out / "runs" / "echo-lstm-seed0" / "model.keras"
    written = model_file.stat().st_mtime_ns
    run_script("benchmark_results.py", *runs, "--resume", monkeypatch=monkeypatch)
    again = capsys.readouterr().out
    assert again == done and model_file.stat().st_mtime_ns == written


def test_model_table_lists_every_model(monkeypatch, capsys):
    from zoo import list_models

    run_script("model_table.py", monkeypatch=monkeypatch)
    done = capsys.readouterr().out
    for name in list_models():
        assert f"| `{name}` |" in done


def test_benchmark_speed_prints_its_tables():
    # its own process: the script sets TensorFlow's thread pools, fixed once TensorFlow started
    script = str(ROOT / "scripts" / "benchmark_speed.py")
    done = subprocess.run(
        [sys.executable, script, "--quick", "--models", "bilstm", "--no-torch", "--batch", "8"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = {}  # the training table's rows (the first row of each model)
    for line in done.stdout.splitlines():
        rows.setdefault(line.split(" | ")[0].strip("| "), line)
    uses = "NativeLSTM" if native_path_available() else "FusedLSTM"  # the bidirectional LSTM
    assert "NativeLSTM everywhere" in rows["model"] and f"| {uses} |" in rows["bilstm"]
    assert rows["model"].count("|") == rows["bilstm"].count("|")
    assert "HAR parse" in done.stdout
    if native_path_available():
        assert re.search(
            r"LSTM op alone .*input 64: forward \d+\.\d+, backward \d+\.\d+", done.stdout
        )


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed")
def test_benchmark_speed_gpu_mode_runs_on_the_cpu_without_tensorflow():
    # the GPU table's code path at a tiny shape, on the CPU, with TensorFlow's import blocked
    script = str(ROOT / "scripts" / "benchmark_speed.py")
    args = ["--gpu", "--device", "cpu", "--quick", "--shapes", "6x2/4/4", "--models", "gru"]
    path = os.pathsep.join([str(ROOT / "tests" / "no_tensorflow"), str(ROOT)])
    done = subprocess.run(
        [sys.executable, script, *args, "--paths", "scan", "--no-torch"],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 6x2, 4, 4 | gru |")]
    assert len(rows) == 1, done.stdout
    assert rows[0].strip(" |").split(" | ")[-2:] == ["loop", "scan"]  # the CPU policy; --paths
    assert '("cpu", "gru", 4, 4, ' in done.stdout
    assert "TensorFlow imported: no." in done.stdout


def test_check_readme_plans_every_command_shrunk_or_skipped_with_a_reason(monkeypatch, capsys):
    run_script("check_readme.py", "--list", monkeypatch=monkeypatch)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("check_readme: 0 ran,") and lines[-1].endswith("0 failed")
    assert all(re.match(r"(plan|skip) ", line) for line in lines[:-1]), lines
    assert all(line.endswith(")") for line in lines if line.startswith("skip"))  # the reason
    assert any("zoo.train echo gru --seed 1 --out runs/echo-gru --epochs 1" in x for x in lines)
    assert any(
        "tune_distributed.py --workers 2 -- echo --max-trials 2 --epochs 1" in x for x in lines
    )
