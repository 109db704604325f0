"""`python -m zoo.train --distribute`: 2 logical CPU devices, 2 worker processes on 127.0.0.1, a
worker killed mid-run and the run resumed, JAX's DataParallel, and the refusals."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from zoo import distribute, train

ROOT = Path(__file__).resolve().parents[1]
# no dropout (a small split's default): replicas draw their own masks, so the runs would differ
TINY = ["echo", "gru", "--task-option", "series_length=900", "--units", "8", "--quiet"]
TINY += ["--dropout", "0", "--recurrent-dropout", "0"]
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
TORCH_REFUSAL = "not torch" if importlib.util.find_spec("torch") else "needs the torch package"
OUT_OF_RANGE = json.dumps(
    {"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}
)

pytestmark = pytest.mark.slow  # end-to-end processes: outside the fast subset
LIMIT = 600  # safety net for a hung process; no wait below depends on the machine's speed


def zoo_train(args: list[str], **env: str) -> subprocess.Popen:
    """`python -m zoo.train ARGS` in its own process, with `env` added."""
    return subprocess.Popen(
        [sys.executable, "-m", "zoo.train", *args],
        cwd=ROOT,
        env={**os.environ, **QUIET_TF, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=LIMIT)
    return process.returncode, out, err


def workers(args: list[str], count: int = 2, **env: str) -> list[subprocess.Popen]:
    """`count` multi_worker processes on free ports of 127.0.0.1; the chief first."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    hosts = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    return [
        zoo_train(
            [*args, "--distribute", "multi_worker"],
            TF_CONFIG=json.dumps(
                {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}
            ),
            **env,
        )
        for i in range(count)
    ]


def history(folder: Path) -> list[dict]:
    path = folder / "history.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The tiny run on one device, the reference."""
    out = tmp_path_factory.mktemp("single") / "run"
    assert train.main([*TINY, "--epochs", "2", "--out", str(out)]) == 0
    return out


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path, single):
    out = tmp_path / "run"
    code, _, err = finish(
        zoo_train(
            [*TINY, "--epochs", "2", "--out", str(out), "--distribute", "mirrored"],
            RNN_ZOO_CPU_DEVICES="2",
        )
    )
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())["hyperparameters"]
    assert config["distribute"] == "mirrored"
    assert np.isclose(metrics(out)["loss"], metrics(single)["loss"], rtol=1e-3)
    assert not (out / "backup").exists()


def test_pad_to_replicas_adds_weight_zero_rows_to_a_multiple():
    x, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    px, py, pw = distribute.pad_to_replicas((x, y), 4)
    assert px.shape == (8, 2) and list(py) == [0, 1, 2, 3, 4, 0, 1, 2]
    assert list(pw) == [1, 1, 1, 1, 1, 0, 0, 0]
    assert len(distribute.pad_to_replicas((x, y, np.ones(5)), 5)[0]) == 5


def test_jax_data_parallel_on_two_cpu_devices_matches_one_device(tmp_path):
    jax = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    # 67 windows: odd splits, whose last batches JAX cannot halve unless they are padded
    odd = ["--task-option", "series_length=1005"]
    runs = {
        name: zoo_train(
            [*TINY, *odd, "--epochs", "2", "--out", str(tmp_path / name), *extra], **jax
        )
        for name, extra in (("one", []), ("two", ["--distribute", "mirrored"]))
    }
    for process in runs.values():
        code, _, err = finish(process)
        assert code == 0, err
    assert np.isclose(
        metrics(tmp_path / "two")["loss"], metrics(tmp_path / "one")["loss"], rtol=1e-3
    )


def test_workers_train_together_survive_a_killed_worker_and_resume(tmp_path, single):
    out = tmp_path / "run"
    # TensorFlow's C++ logs its collectives' abort as error lines; level 3 holds them back
    args = [*TINY, "--epochs", "1000", "--patience", "1000", "--out", str(out)]
    chief, worker = workers(args, TF_CPP_MIN_LOG_LEVEL="3")
    deadline = time.monotonic() + LIMIT
    backed_up = out / "backup" / "state.json"  # an epoch's backup is complete
    while not backed_up.exists() and chief.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=LIMIT)
    code, _, err = finish(chief)  # the chief's health checks notice the lost worker
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    # which of TensorFlow's errors reports it depends on timing: the lost task (quiet machine) or
    # UnavailableError (a loaded one, seen in a fresh clone's suite beside two busy loops)
    assert "a worker died or stopped answering (" in err
    assert "(lost /job:worker/replica:0/task:1)" in err or "(UnavailableError)" in err
    assert f"--resume {out} --distribute multi_worker" in err
    done = history(out)
    first, reference = done[0], history(single)[0]
    assert np.isclose(float(first["loss"]), float(reference["loss"]), rtol=1e-3)
    assert (out / "model.keras").is_file() and (out / "backup").is_dir()
    assert not (out / "metrics.json").exists()

    # resumed on one device here (`--distribute` may change on resume), in this process
    resume = ["--resume", str(out), "--epochs", str(len(done) + 1), "--distribute", "none"]
    assert train.main([*resume, "--quiet"]) == 0
    assert len(history(out)) == len(done) + 1  # one more epoch, not a fresh start
    assert metrics(out)["epochs_run"] == len(done) + 1
    assert not (out / "backup").exists()
    leftovers = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert not leftovers


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--distribute", "mirrored"], {}, "needs 2 or more devices"),
        (["--distribute", "multi_worker"], {}, "TF_CONFIG, which is not set"),
        (["--distribute", "multi_worker"], {"TF_CONFIG": "{bad"}, "not a valid cluster"),
        (["--distribute", "multi_worker"], {"TF_CONFIG": OUT_OF_RANGE}, "task index 3"),
        (["--distribute", "mirrored", "--jit-compile", "on"], {}, "--jit-compile on fails"),
        (["--distribute", "mirrored", "--ensemble", "2"], {}, "drop --ensemble"),
        # with torch installed the backend loads and --distribute refuses it; without, the
        # backend is refused first (torch is not in the test extra)
        (["--distribute", "mirrored"], {"KERAS_BACKEND": "torch"}, TORCH_REFUSAL),
        (
            [
                "--distribute",
                "mirrored",
                "--task-option",
                "stateful=true",
                "--task-option",
                "series_length=9000",
                "--task-option",
                "streams=4",
            ],
            {},
            "stateful task's streams",
        ),
    ],
)
def test_refusals_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, args, env, says):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        train.main([*TINY, "--epochs", "1", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and says in err, err
    assert not out.exists()


def test_resume_refuses_new_settings_and_has_nothing_to_do_on_a_finished_run(single, capsys):
    # the same --resume again after the run's end (a kill after its last write): nothing to do
    assert train.main(["--resume", str(single)]) == 0
    assert "the run has ended (see its metrics.json); nothing to resume" in capsys.readouterr().out
    for args, says in (
        (["--resume", str(single), "--units", "4"], "drop units"),
        (["--resume", str(single.parent / "nothing")], "no run at"),
    ):
        with pytest.raises(SystemExit) as exit_:
            train.main(args)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and says in err, err
