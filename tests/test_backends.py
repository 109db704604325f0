"""The zoo on Keras' JAX and PyTorch backends without TensorFlow, and `.keras` files moving
between backends.

Keras fixes its backend when it is imported, and this process runs TensorFlow, so each other
backend runs tests/backend_check.py once, in one subprocess (models, FusedLSTM, the files saved
here, `zoo.train`, `tuning.search`, `zoo.evaluate`, streaming, generation, an export refused);
the tests below read its report. That subprocess sees TensorFlow as not installed
(tests/no_tensorflow/sitecustomize.py blocks its import), as on a GPU machine with JAX or
PyTorch only: any hidden TensorFlow import fails there. A backend whose package is not installed
is skipped (`pip install -e '.[test]'` installs JAX).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import backend_check
import numpy as np
import pytest

from zoo import backend, list_models

ROOT = Path(__file__).resolve().parents[1]
# The registry's kinds of layer (the other models stack or mirror these; lstm_fcn with its
# attention LSTM and squeeze-and-excitation on, backend_check.SETTINGS): JAX compiles every
# model's training and prediction, seconds each on 2 cores. All of them:
# KERAS_BACKEND=jax python tests/backend_check.py OUT
CHECKED = "lstm,bilstm,peephole_lstm,conv_lstm,attention_lstm,lstm_fcn"  # gru: the CLI run
CROSS = (
    "lstm,bilstm,peephole_lstm,attention_lstm,lstm_fcn"  # saved on one backend, loaded on another
)

pytestmark = pytest.mark.slow  # end-to-end processes: outside the fast subset
TOLERANCE = 1e-5


def _backend(name: str):
    missing = importlib.util.find_spec(name) is None
    return pytest.param(name, marks=pytest.mark.skipif(missing, reason=f"{name} not installed"))


@pytest.fixture(scope="module")
def tf_saved(tmp_path_factory) -> Path:
    """The CROSS models built and saved on TensorFlow, with their outputs."""
    folder = tmp_path_factory.mktemp("tensorflow")
    x = backend_check.inputs()
    for name in list_models(CROSS):
        backend_check.save_with_outputs(backend_check.build(name), folder, x)
    return folder


@pytest.fixture(scope="module", params=[_backend("jax"), _backend("torch")])
def report(request, tf_saved, tmp_path_factory) -> dict:
    """tests/backend_check.py's report on one backend (its folder under "out")."""
    out = tmp_path_factory.mktemp(request.param)
    command = [sys.executable, str(ROOT / "tests" / "backend_check.py"), str(out)]
    command += ["--models", CHECKED, "--foreign", str(tf_saved), "--cli"]
    path = os.pathsep.join([str(ROOT / "tests" / "no_tensorflow"), str(ROOT)])
    env = {**os.environ, "KERAS_BACKEND": request.param, "PYTHONPATH": path}
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads((out / "report.json").read_text())
    assert found["backend"] == request.param
    return {**found, "out": out}


def test_every_kind_of_model_trains_saves_and_reloads(report):
    assert sorted(report["models"]) == list_models(CHECKED)
    for name, result in report["models"].items():
        assert "error" not in result, (name, result)
        assert result["finite"] and np.isfinite(result["loss"]), (name, result)
        assert result["reload_diff"] <= 1e-6, (name, result)


def test_fused_lstm_is_plain_keras_there(report):
    assert report["fused"]["fused_path_available"] is False
    assert all(diff <= 1e-6 for diff in report["fused"]["diffs"].values()), report["fused"]


# zoo.scan's own loop against Keras' layers (float32, tiny shapes, the same weights): outputs
# within SCAN_OUTPUT absolutely, every gradient within SCAN_GRADIENT of its largest entry.
SCAN_OUTPUT, SCAN_GRADIENT = 1e-6, 1e-5


def test_the_zoos_jax_loop_equals_keras_layers_in_outputs_and_gradients(report):
    found = report["scan"]
    if "skipped" in found:
        pytest.skip(found["skipped"])
    for cell in ("lstm", "gru"):
        for case, (_, structure) in backend_check.SCAN_CASES.items():
            result = found[f"{cell}/{case}"]
            twice = structure.get("depth", 1) == 2 or structure.get("bidirectional")
            assert result["zoo_loop_traced"] == (2 if twice else 1), (cell, case, result)
            assert result["output"] <= SCAN_OUTPUT, (cell, case, result)
            assert result["gradient"] <= SCAN_GRADIENT, (cell, case, result)
        assert found[f"{cell}/inputs"]["gradient"] <= SCAN_GRADIENT, found[f"{cell}/inputs"]


def test_the_zoos_jax_loop_runs_only_where_it_computes_what_keras_does(report):
    found = report["scan"]
    if "skipped" in found:
        pytest.skip(found["skipped"])
    for case, (_, _, cells) in backend_check.SCAN_NOT_APPLIED.items():
        for cell in cells:
            assert found[f"{cell}/{case}"]["zoo_loop_traced"] == 0, (cell, case)
    # the policy on CPU: Keras' step-by-step loop for both (zoo.scan.POLICY)
    assert found["default_path_traces"] == {"lstm": 0, "gru": 0}


def test_models_saved_on_tensorflow_load_there_with_the_same_outputs(report):
    assert sorted(report["foreign"]) == list_models(CROSS), report["foreign"]
    assert all(diff <= TOLERANCE for diff in report["foreign"].values()), report["foreign"]


def test_models_saved_there_load_on_tensorflow_with_the_same_outputs(report):
    diffs = backend_check.load_and_compare(report["out"], list_models(CROSS))
    assert all(diff <= TOLERANCE for diff in diffs.values()), diffs


def test_zoo_train_runs_there(report):
    assert report["cli"]["train"] == 0
    run = report["out"] / "run"
    assert json.loads((run / "config.json").read_text())["versions"]["backend"] == report["backend"]
    assert "accuracy" in json.loads((run / "metrics.json").read_text())
    assert (run / "model.keras").stat().st_size > 0
    assert not (run / "tb").exists()  # TensorBoard's writer is TensorFlow's


def test_nothing_imports_tensorflow_there(report):
    assert report["tensorflow_imported"] is False
    run = report["out"] / "run"
    assert "tensorflow" not in json.loads((run / "config.json").read_text())["versions"]


def test_evaluate_streaming_and_generation_run_there(report):
    assert report["cli"]["evaluate"] == 0
    assert report["cli"]["stream"] <= 1e-5
    assert report["cli"]["generate"] == [5]


def test_an_export_that_needs_tensorflow_says_so_in_one_line(report):
    refused = report["cli"]["export"]
    assert refused["code"] == 2 and not refused["exported"], refused
    assert refused["stderr"].count("\n") == 1 and "needs TensorFlow" in refused["stderr"]


def test_a_keras_tuner_search_runs_there(report):
    assert report["cli"]["search"] == 0
    project = report["out"] / "tuning" / "echo-random"
    with open(project / "trials.csv", newline="") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["COMPLETED"] * 2
    assert (project / "best_model.keras").exists()


@pytest.mark.parametrize(
    "name, why",
    [("numpy", "cannot train"), ("openvino", "cannot train"), ("tensorflw", "not a Keras backend")],
)
def test_unsupported_backends_are_refused_with_the_reason(monkeypatch, name, why):
    monkeypatch.setenv("KERAS_BACKEND", name)
    with pytest.raises(backend.BackendError, match=why) as refused:
        backend.load()  # refused even though Keras is imported already
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "name, command",
    [
        ("numpy", ["zoo.evaluate", "runs/nothing-here"]),
        ("nonsense", ["zoo.evaluate", "runs/nothing-here"]),
        ("numpy", ["zoo.train", "echo", "gru"]),
        ("nonsense", ["zoo.train", "echo", "gru"]),
        ("numpy", ["tuning.search", "echo"]),
    ],
)
def test_the_command_lines_refuse_an_unsupported_backend_in_one_line(name, command):
    env = {**os.environ, "KERAS_BACKEND": name}
    done = subprocess.run(
        [sys.executable, "-m", *command], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and f"KERAS_BACKEND={name!r}" in done.stderr, done.stderr


def test_seeding_on_jax_holds_tensorflows_start_up_lines_back():
    # Keras seeds TensorFlow wherever it is installed: on JAX it imported it, printing its log
    code = "from zoo import backend; backend.load(); backend.set_random_seed(0); print('ok')"
    env = {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "RNN_ZOO_TF_LOGS")
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "KERAS_BACKEND": "jax"},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
    assert done.stderr == ""
