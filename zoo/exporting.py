"""A run's model exported as TFLite, a SavedModel or ONNX, and checked in its own runtime.

`export_run(RUN_DIR, format)` (the library of `python -m zoo.export RUN_DIR --format F`) writes
the exported file to RUN_DIR/export/ with a parity report beside it: the export run in its
own runtime (the LiteRT interpreter, TensorFlow's SavedModel loader calling the serving
signature as TensorFlow Serving does, ONNX Runtime) on the run's whole test split, against
Keras: the largest output difference, the test metric in each, the file size and the batch-1
latency. Nothing is left half-written: the export is built in a hidden folder of the run and
moved into export/ only when it is complete.

Why the model is rewritten before TFLite and ONNX: `zoo.fused.FusedLSTM` runs TensorFlow's
`BlockLSTM` op, which is no TFLite builtin; it has exactly `keras.layers.LSTM`'s weights, so the
export uses a copy of the model with plain LSTM layers (the SavedModel keeps the fused op, a
TensorFlow op that TensorFlow Serving runs). `zoo.fused.NativeLSTM` runs the zoo's own C++ op,
which no runtime but the zoo's has: every format gets plain LSTM layers in its place. TFLite
needs a static input shape (with a dynamic one the converter fails on the recurrent loop's
tensor lists), so the TFLite file takes one window of the test split's (steps, features) at a
time.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from zoo import backend, files
from zoo.runs import load_model, locate_run, run_task, versions
from zoo.scoring import predict, score

FORMATS = ("tflite", "saved_model", "onnx")
FLOAT_TOLERANCE = 1e-4  # largest output difference a float32 export may have against Keras
INT8_POINTS = 0.5  # accuracy points an int8 export may lose
LATENCY_CALLS = 300
INSTALL_HINT = "pip install -e '.[export]'"


class ExportError(ValueError):
    """An export refused or failed; the message is one line that says why."""


def artifact_name(fmt: str, quantize: bool = False) -> str:
    """The file (or folder) name of an export in RUN_DIR/export/."""
    if quantize and fmt != "tflite":
        raise ExportError("--quantize is for --format tflite (dynamic-range int8 weights)")
    return {
        "tflite": "model_int8.tflite" if quantize else "model.tflite",
        "saved_model": "saved_model",
        "onnx": "model.onnx",
    }[fmt]


def report_name(fmt: str, quantize: bool = False) -> str:
    """The parity report's name beside the export."""
    return f"parity_{fmt}{'_int8' if quantize else ''}.json"


def _require(module: str, fmt: str):
    """Import an optional dependency, or refuse the format in one line."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"--format {fmt} needs the {module} package: {INSTALL_HINT}") from None


def plain_keras(model, names=("zoo>FusedLSTM", "zoo>NativeLSTM")):
    """`model` with every layer registered as one of `names` (`FusedLSTM`: TensorFlow's BlockLSTM
    op; `NativeLSTM`: the zoo's C++ op) a plain `keras.layers.LSTM`, same weights; `model` itself
    when it has none. Works inside Bidirectional and nested models.
    """
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    changed = []

    def swap(obj):
        if isinstance(obj, list):
            return [swap(item) for item in obj]
        if not isinstance(obj, dict):
            return obj
        obj = {key: swap(value) for key, value in obj.items()}
        if obj.get("registered_name") in names:
            obj.update(module="keras.layers", class_name="LSTM", registered_name=None)
            changed.append(obj)
        return obj

    config = swap(keras.saving.serialize_keras_object(model))
    if not changed:
        return model
    clone = keras.saving.deserialize_keras_object(config)
    clone.set_weights(model.get_weights())
    return clone


@contextlib.contextmanager
def _quiet_stderr():
    """Hold back what TensorFlow's converters write straight to file descriptor 2 (MLIR dumps,
    absl lines); RNN_ZOO_TF_LOGS=1 lets them through. The error raised says what went wrong."""
    if os.environ.get("RNN_ZOO_TF_LOGS"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _converter_message(err: Exception) -> str:
    """The one line of a converter's error that says why (its messages run to pages)."""
    text = str(err)
    for marker in ("Custom ops: ", "Flex ops: "):
        if marker in text:
            ops = text.split(marker, 1)[1].splitlines()[0]
            return f"ops that are no TFLite builtins: {ops}"
    ops = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text)))
    if ops:
        return f"ops that are no TFLite builtins: {', '.join(ops)}"
    lines = [line.strip() for line in text.splitlines() if "error:" in line]
    lines = lines or text.strip().splitlines() or [repr(err)]
    return lines[-1][:300]


def convert_model(model, fmt: str, path: str | os.PathLike, input_shape, quantize=False) -> None:
    """Write `model` to `path` as `fmt`. `input_shape` is one sample's (steps, features): TFLite
    takes batches of 1 of it, SavedModel and ONNX any batch and any number of steps."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    artifact_name(fmt, quantize)  # refuses --quantize for other formats
    path = Path(path)
    features = int(input_shape[-1])
    # any number of steps, unless the model fixes them (window features: of a whole window)
    spec = keras.InputSpec(shape=(None, model.input_shape[1], features), dtype="float32")
    if fmt == "saved_model":
        model = plain_keras(model, ("zoo>NativeLSTM",))  # TensorFlow Serving lacks the zoo's op
        try:
            with _quiet_stderr():
                model.export(path, format="tf_saved_model", input_signature=[spec], verbose=False)
        except Exception as err:  # noqa: BLE001 - tracing raises many kinds
            raise ExportError(f"cannot export a SavedModel: {_converter_message(err)}") from None
        return
    plain = plain_keras(model)
    if fmt == "onnx":
        for module in ("tf2onnx", "onnx"):
            _require(module, fmt)
        logging.getLogger("tf2onnx").setLevel(logging.ERROR)
        try:
            with _quiet_stderr(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tf2onnx's NumPy 2 deprecations
                plain.export(path, format="onnx", input_signature=[spec], verbose=False)
        except Exception as err:  # noqa: BLE001 - tf2onnx raises many kinds
            raise ExportError(
                f"ONNX cannot convert this model: {_converter_message(err)}"
            ) from None
        return
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import tensorflow as tf

    spec = keras.InputSpec(shape=(1, *map(int, input_shape)), dtype="float32")
    with tempfile.TemporaryDirectory(dir=path.parent) as saved, _quiet_stderr():
        plain.export(saved, format="tf_saved_model", input_signature=[spec], verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        try:
            flatbuffer = converter.convert()
        except Exception as err:  # noqa: BLE001 - the converter raises many kinds
            raise ExportError(
                f"TFLite cannot convert this model: {_converter_message(err)}"
            ) from None
    path.write_bytes(flatbuffer)


class Runtime:
    """An exported model run in its own runtime, shaped like a Keras model for
    `zoo.scoring.score`."""

    name = ""
    batch_size = 1024

    def run(self, x):
        """Outputs for one batch `x` (float32, batch_size samples or fewer)."""
        raise NotImplementedError

    def predict(self, x, batch_size=None, verbose=0):
        x = np.asarray(x, dtype="float32")
        step = self.batch_size
        return np.concatenate([self.run(x[i : i + step]) for i in range(0, len(x), step)])

    def latency_ms(self, sample, calls: int = LATENCY_CALLS) -> float:
        """Median wall time of one batch-1 call, after a few warm-up calls."""
        sample = sample[None].astype("float32")
        for _ in range(5):
            self.run(sample)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            self.run(sample)
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)


class TFLiteRuntime(Runtime):
    """The LiteRT interpreter (`ai-edge-litert`), else TensorFlow's `tf.lite.Interpreter`."""

    batch_size = 1  # the file's input shape is static

    def __init__(self, path):
        try:
            # lazy: ai-edge-litert is optional (the export extra)
            from ai_edge_litert import __version__ as version
            from ai_edge_litert.interpreter import Interpreter

            self.name = f"ai-edge-litert {version} Interpreter"
        except ImportError:
            # lazy: keeps Keras out of `import zoo` until the backend is chosen
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
            self.name = f"tf.lite.Interpreter (TensorFlow {tf.__version__})"
        with _quiet_stderr():
            self.interpreter = Interpreter(model_path=str(path))
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]

    def run(self, x):
        self.interpreter.set_tensor(self.input, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()


class SavedModelRuntime(Runtime):
    """`tf.saved_model.load` and the `serving_default` signature, as TensorFlow Serving calls it."""

    def __init__(self, path):
        # lazy: keeps Keras out of `import zoo` until the backend is chosen
        import tensorflow as tf

        self.name = f"tf.saved_model.load serving_default (TensorFlow {tf.__version__})"
        self.tf = tf
        self.loaded = tf.saved_model.load(str(path))  # keep a reference: the signature needs it
        self.signature = self.loaded.signatures["serving_default"]
        (self.input,) = self.signature.structured_input_signature[1]
        (self.output,) = self.signature.structured_outputs

    def run(self, x):
        return self.signature(**{self.input: self.tf.constant(x)})[self.output].numpy()


class OnnxRuntime(Runtime):
    """ONNX Runtime's CPU session."""

    def __init__(self, path):
        ort = _require("onnxruntime", "onnx")
        self.name = f"onnxruntime {ort.__version__} (CPUExecutionProvider)"
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def run(self, x):
        return self.session.run(None, {self.input: x})[0]


RUNTIMES = {"tflite": TFLiteRuntime, "saved_model": SavedModelRuntime, "onnx": OnnxRuntime}


def open_runtime(fmt: str, path: str | os.PathLike) -> Runtime:
    """The export at `path` loaded in its own runtime."""
    return RUNTIMES[fmt](path)


class _Fixed:
    """Outputs already computed, shaped like a model for `zoo.scoring.score`."""

    def __init__(self, outputs):
        self.outputs = outputs

    def predict(self, x, batch_size=None, verbose=0):
        return self.outputs


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def parity_report(model, task, fmt, path, runtime, quantize=False, calls=LATENCY_CALLS) -> dict:
    """The export at `path` against `model` on the task's whole test split (see the module)."""
    x = task.split("test")[0]
    expected = predict(model, x)
    got = runtime.predict(x).reshape(expected.shape)
    metric = task.headline
    keras_metrics = score(_Fixed(expected), task)
    export_metrics = score(_Fixed(got), task)
    diff = float(np.max(np.abs(got - expected)))
    report = {
        "format": fmt,
        "quantized": "dynamic-range int8" if quantize else None,
        "file": path.name,
        "size_bytes": _size(path),
        "runtime": runtime.name,
        "test_samples": int(len(x)),
        "max_abs_diff": diff,
        "finite": bool(np.isfinite(got).all()),
        "metric": metric,
        "keras": keras_metrics[metric],
        "export": export_metrics[metric],
        "latency_ms_batch1": runtime.latency_ms(x[0], calls),
        "latency_calls": calls,
    }
    if task.is_classification:
        report["errors"] = {"keras": keras_metrics["errors"], "export": export_metrics["errors"]}
    if quantize:
        report["target"] = f"accuracy within {INT8_POINTS} points of Keras"
        report["meets_target"] = (
            bool(100 * (report["keras"] - report["export"]) <= INT8_POINTS)
            if task.is_classification
            else None  # no target for regression: see the MSEs
        )
    else:
        # outputs in data units (the series task: hundreds of passengers) keep float32's
        # relative precision: the tolerance scales with the largest output past 1
        scale = max(1.0, float(np.max(np.abs(expected))))
        bound = "" if scale == 1.0 else f" x {scale:.4g} (the largest output)"
        report["target"] = f"max abs diff <= {FLOAT_TOLERANCE:g}{bound}, the same {metric}"
        report["meets_target"] = bool(diff <= FLOAT_TOLERANCE * scale)
    return report


def export_run(run_dir, fmt: str, quantize: bool = False, data=None, calls=LATENCY_CALLS) -> dict:
    """Export a `zoo.train` run folder's model and check it; returns the parity report.

    Writes RUN_DIR/export/<artifact_name> and <report_name> beside it, replacing earlier ones.
    Raises `ExportError` (or `ValueError` for a bad run folder) with a one-line message.
    """
    artifact = artifact_name(fmt, quantize)
    backend.load()  # before tf2onnx, which imports TensorFlow
    if not backend.tensorflow_available():
        raise ExportError(
            f"--format {fmt} needs TensorFlow (its converter runs through TensorFlow on every "
            "Keras backend), which is not installed here: pip install tensorflow"
        )
    if fmt == "onnx":
        for module in ("tf2onnx", "onnx", "onnxruntime"):
            _require(module, fmt)
    model_path, config = locate_run(run_dir)
    task = run_task(config, data)
    model = load_model(model_path)
    folder = model_path.parent / "export"
    work = model_path.parent / f".export-{secrets.token_hex(4)}"
    work.mkdir()  # mkdir follows the umask (tempfile.mkdtemp would give 0700 to saved_model/)
    shape = [1, *task.input_shape] if fmt == "tflite" else [None, *model.input_shape[1:]]
    try:
        convert_model(model, fmt, work / artifact, task.input_shape, quantize)
        runtime = open_runtime(fmt, work / artifact)
        report = {
            "run": str(model_path.parent),
            **parity_report(model, task, fmt, work / artifact, runtime, quantize, calls),
            "input_shape": shape,
            "versions": versions(),
        }
        files.write_json(work / report_name(fmt, quantize), report)
        folder.mkdir(exist_ok=True)
        for name in (artifact, report_name(fmt, quantize)):
            target = folder / name
            if target.is_dir():  # a folder cannot be renamed over: move the old one aside first
                os.replace(target, work / f"old-{name}")
            os.replace(work / name, target)
        files.fsync_folder(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["file"] = str(folder / artifact)
    return report
