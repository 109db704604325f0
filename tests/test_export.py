"""`python -m zoo.export`: each format run in its own runtime against Keras, and the refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from zoo import create_model, list_models, train
from zoo import export as export_cli
from zoo.exporting import ExportError, convert_model, export_run, open_runtime
from zoo.models import model_hyperparameters

CALLS = 10  # batch-1 latency calls: the figure is reported, never asserted
REFUSED = {}  # model name -> the start of its one-line refusal (none today: all export)


@keras.saving.register_keras_serializable(package="test_export")
class SingularValues(keras.layers.Layer):
    """A layer on an op that TFLite lacks (SVD), for the converter's refusal."""

    def call(self, x):
        return keras.ops.svd(x, compute_uv=False)


def make_run(out: Path, args: list[str]) -> Path:
    args = [*args, "--epochs", "1", "--units", "4", "--recurrent-dropout", "0"]  # tiny and fast
    assert train.main([*args, "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny run folders: echo (a label a step, GRU) and digits (a BiLSTM: the zoo's C++ op)."""
    root = tmp_path_factory.mktemp("runs")
    return {
        # two layers, so no XLA compile (zoo.fused.auto_jit_compile), which costs ~20 s
        "echo": make_run(
            root / "echo", ["echo", "gru", "--depth", "2", "--task-option", "series_length=600"]
        ),
        "digits": make_run(root / "digits", ["digits", "bilstm"]),
    }


def leftovers(run: Path) -> list[str]:
    return [p.name for p in run.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
@pytest.mark.parametrize(
    "run, fmt",
    [("echo", "tflite"), ("echo", "saved_model"), ("digits", "onnx")],
)
def test_float_exports_match_keras_in_their_own_runtime(runs, run, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("tf2onnx")
    report = export_run(runs[run], fmt, calls=CALLS)
    assert report["max_abs_diff"] <= 1e-4 and report["meets_target"]
    assert report["keras"] == report["export"]  # parity of the metric, not a threshold
    assert report["test_samples"] == {"echo": 4, "digits": 360}[run]
    assert Path(report["file"]).exists() and report["size_bytes"] > 0
    on_disk = json.loads((runs[run] / "export" / f"parity_{fmt}.json").read_text())
    assert on_disk["max_abs_diff"] == report["max_abs_diff"] and on_disk["latency_ms_batch1"] > 0
    assert not leftovers(runs[run]) and not leftovers(runs[run] / "export")


def test_int8_tflite_runs_and_the_cli_prints_a_summary(runs, capsys):
    run = runs["digits"]
    args = [str(run), "--format", "tflite", "--quantize", "--latency-calls", str(CALLS)]
    assert export_cli.main(args) == 0
    out = capsys.readouterr().out
    assert "model_int8.tflite" in out and "batch-1 latency" in out
    report = json.loads((run / "export" / "parity_tflite_int8.json").read_text())
    assert report["finite"] and report["test_samples"] == 360
    assert report["quantized"] == "dynamic-range int8"
    interpreter = open_runtime("tflite", run / "export" / "model_int8.tflite")
    assert interpreter.run(np.zeros((1, 8, 8), "float32")).shape == (1, 10)


def small(name: str) -> dict:
    sizes = {"units": 4, "filters": 4, "kernel_size": 3}  # kernel_size: no longer than 6 steps
    return {k: v for k, v in sizes.items() if k in model_hyperparameters(name)}


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_model_exports_to_tflite_or_is_refused_in_one_line(name, tmp_path):
    model = create_model(name, (6, 3), 2, **small(name))
    x = np.random.default_rng(0).normal(size=(3, 6, 3)).astype("float32")
    path = tmp_path / "model.tflite"
    if name in REFUSED:
        with pytest.raises(ExportError, match=REFUSED[name]) as err:
            convert_model(model, "tflite", path, (6, 3))
        assert "\n" not in str(err.value) and not path.exists()
        return
    convert_model(model, "tflite", path, (6, 3))
    got = open_runtime("tflite", path).predict(x)
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(x)), atol=1e-4)


@pytest.mark.parametrize("fmt", ["tflite", "saved_model", "onnx"])
def test_a_model_that_standardises_and_frames_its_raw_input_exports(fmt, tmp_path):
    """The preprocessing layers a task puts in front of the model convert to every format."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("tf2onnx")
    preprocessing = {"mean": [0.1, -2.0, 3.0], "std": [1.5, 0.2, 4.0], "frame_steps": 2}
    model = create_model("gru", (6, 3), 2, units=4, preprocessing=preprocessing)
    x = np.random.default_rng(0).normal(size=(3, 6, 3)).astype("float32") * 3
    path = tmp_path / ("model" if fmt == "saved_model" else f"model.{fmt}")
    convert_model(model, fmt, path, (6, 3))
    got = open_runtime(fmt, path).predict(x)
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(x)), atol=1e-4)


@pytest.mark.parametrize("fmt", ["saved_model", "onnx"])
def test_the_rnn_fcn_layers_export(fmt, tmp_path):
    """The attention LSTM, squeeze-and-excitation and the dimension shuffle (tflite: above)."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("tf2onnx")
    model = create_model("mlstm_fcn", (6, 3), 2, attention=True, **small("mlstm_fcn"))
    x = np.random.default_rng(0).normal(size=(3, 6, 3)).astype("float32")
    path = tmp_path / ("model" if fmt == "saved_model" else f"model.{fmt}")
    convert_model(model, fmt, path, (6, 3))
    got = open_runtime(fmt, path).predict(x)
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(x)), atol=1e-4)


def corrupt_run(run: Path) -> None:
    (run / "model.keras").write_bytes(b"not a keras zip")


def svd_run(run: Path) -> None:
    inputs = keras.Input((None, 1))
    keras.Model(inputs, SingularValues()(inputs)).save(run / "model.keras")


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (lambda run: (run / "model.keras").unlink(), ["--format", "tflite"], "no model at"),
        (corrupt_run, ["--format", "tflite"], "cannot load"),
        (None, ["--format", "pb"], "invalid choice: 'pb'"),
        (None, ["--format", "onnx", "--quantize"], "--quantize is for --format tflite"),
        (
            svd_run,
            ["--format", "tflite"],
            "TFLite cannot convert this model: ops that are no TFLite builtins: Svd",
        ),
    ],  # fmt: skip
    ids=["no-model", "corrupt-model", "unknown-format", "quantize-onnx", "converter-refuses"],
)
def test_bad_input_is_one_line_and_leaves_nothing(runs, tmp_path, capsys, setup, args, message):
    run = tmp_path / "run"
    shutil.copytree(runs["echo"], run, ignore=shutil.ignore_patterns("export"))
    if setup:
        setup(run)
    with pytest.raises(SystemExit) as stop:
        export_cli.main([str(run), *args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and err.count("\n") == 1
    assert not (run / "export").exists() and not leftovers(run)


def test_a_missing_optional_dependency_names_the_extra(runs, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # what `import tf2onnx` meets uninstalled
    with pytest.raises(SystemExit) as stop:
        export_cli.main([str(runs["echo"]), "--format", "onnx"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1
    assert "needs the tf2onnx package: pip install -e '.[export]'" in err


def test_help_names_the_formats_without_loading_tensorflow():
    done = subprocess.run(
        [sys.executable, "-m", "zoo.export", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "tflite,saved_model,onnx" in done.stdout
    assert "tensorflow" not in done.stderr.lower()
