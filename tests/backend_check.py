"""The zoo on this process's Keras backend, checked in one go; prints a JSON report.

The backend is fixed when Keras is imported, so tests/test_backends.py runs this script once per
backend in a subprocess (with KERAS_BACKEND set) instead of paying a start-up per check:

    KERAS_BACKEND=jax python tests/backend_check.py OUT [--foreign DIR] [--models GLOB] [--cli]

- every registered model builds, takes one training step, and saves (OUT/NAME.keras, with its
  predictions on OUT/inputs.npy as OUT/NAME.npy) and reloads with plain `load_model` to the
  same predictions;
- `zoo.fused.FusedLSTM` reports whether its fused path is available and matches
  `keras.layers.LSTM` given the same weights;
- with `--foreign DIR`, every DIR/NAME.keras saved on another backend (by `save_with_outputs`)
  loads here, and its predictions on DIR/inputs.npy are compared with DIR/NAME.npy;
- with `--cli`, the command lines run here too, through their `main(argv)` (one process start
  and one Keras import for all): `zoo.train echo gru` and a 2-trial `tuning.search echo`.

Each check reports the largest absolute difference, or the error in one line, in OUT/report.json
(also printed); the test decides what passes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

# Tiny shapes: JAX compiles every train and predict function once, so size is compile time.
BATCH, STEPS, FEATURES, OUTPUTS, UNITS = 8, 6, 3, 4, 4
KIND = "sequence_regression"  # linear outputs at every step: the whole recurrence is compared
# models giving one output a window (the RNN-FCN family) regress one; their own layers all on
WINDOW_KIND = "regression"
SETTINGS = {"filters": 4, "kernel_size": 3, "squeeze_excite": True, "attention": True}


def inputs() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(BATCH, STEPS, FEATURES)).astype("float32")


def build(name: str):
    """Model `name` at the check's size, compiled for one MSE training step."""
    from zoo import create_model
    from zoo.models import model_hyperparameters, model_output_kinds

    kind = KIND if KIND in model_output_kinds(name) else WINDOW_KIND
    settings = {k: v for k, v in SETTINGS.items() if k in model_hyperparameters(name)}
    model = create_model(
        name, (STEPS, FEATURES), OUTPUTS, units=UNITS, output_kind=kind, **settings
    )
    model.compile(optimizer="adam", loss="mse")
    return model


def save_with_outputs(model, folder: Path, x: np.ndarray) -> np.ndarray:
    """Save `model` as folder/NAME.keras and its predictions on `x` as folder/NAME.npy."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "inputs.npy", x)
    y = np.asarray(model.predict_on_batch(x))
    model.save(folder / f"{model.name}.keras")
    np.save(folder / f"{model.name}.npy", y)
    return y


def load_and_compare(folder: Path, names=None) -> dict[str, float]:
    """Largest absolute difference between the predictions here of folder/NAME.keras (for every
    NAME in `names`, default all) and the NAME.npy saved beside it."""
    import keras

    x = np.load(folder / "inputs.npy")
    diffs = {}
    paths = [folder / f"{n}.keras" for n in names] if names else sorted(folder.glob("*.keras"))
    for path in paths:
        model = keras.models.load_model(path)
        expected = np.load(path.with_suffix(".npy"))
        diffs[path.stem] = float(np.max(np.abs(model.predict_on_batch(x) - expected)))
    return diffs


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def check_model(name: str, out: Path, x: np.ndarray) -> dict:
    """Build, one training step, save with outputs, reload with plain `load_model`."""
    import keras

    start = time.perf_counter()
    try:
        model = build(name)
        shape = (BATCH, STEPS, OUTPUTS) if len(model.output_shape) == 3 else (BATCH, OUTPUTS)
        y = np.random.default_rng(1).normal(size=shape).astype("float32")
        loss = float(np.asarray(model.train_on_batch(x, y)))
        before = save_with_outputs(model, out, x)
        reloaded = keras.models.load_model(out / f"{name}.keras")
        after = np.asarray(reloaded.predict_on_batch(x))
        return {
            "seconds": time.perf_counter() - start,
            "loss": loss,
            "finite": bool(np.all(np.isfinite(before))),
            "reload_diff": float(np.max(np.abs(after - before))),
        }
    except Exception as err:  # reported, not raised: one failing model must not hide the rest
        traceback.print_exc()
        return {"error": _one_line(err)}


def check_fused(x: np.ndarray) -> dict:
    """`FusedLSTM` against `keras.layers.LSTM` with the same (perturbed) weights."""
    import keras

    from zoo.fused import FusedLSTM, fused_path_available

    report = {"fused_path_available": fused_path_available(), "diffs": {}}
    rng = np.random.default_rng(2)
    for label, kwargs in {
        "sequences": {"return_sequences": True},
        "last": {},
        "backwards": {"return_sequences": True, "go_backwards": True},
    }.items():
        reference, fused = keras.layers.LSTM(UNITS, **kwargs), FusedLSTM(UNITS, **kwargs)
        reference.build(x.shape)
        fused.build(x.shape)
        weights = [w + 0.5 * rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()]  # fmt: skip
        reference.set_weights(weights)
        fused.set_weights(weights)
        diff = np.abs(keras.ops.convert_to_numpy(fused(x) - reference(x)))
        report["diffs"][label] = float(np.max(diff))
    return report


# zoo.scan's own loop against Keras' layers: case -> (layer arguments, structure), each a branch
# of one model per cell and layer kind (one compile each), called with training=True.
SCAN_CASES = {
    "go_backwards": ({"return_sequences": True, "go_backwards": True}, {}),
    "no_bias": ({"use_bias": False, "return_sequences": True}, {}),
    "initial_state": ({"return_state": True}, {"initial_state": True}),  # and the last output
    "dropout": ({"dropout": 0.3, "seed": 3, "return_sequences": True}, {}),
    "stacked": ({}, {"depth": 2}),
    "bidirectional": ({"return_sequences": True}, {"bidirectional": True}),
}
# Where the zoo's loop must not run even when forced: case -> (layer arguments, call arguments,
# cells), traced only (no compile), with training=True. (Keras 3.15's own JAX GRU fails under
# mixed_float16, hence LSTM only there.)
SCAN_NOT_APPLIED = {
    "relu": ({"activation": "relu"}, {}, ("lstm", "gru")),
    "hard_sigmoid": ({"recurrent_activation": "hard_sigmoid"}, {}, ("lstm", "gru")),
    "recurrent_dropout": ({"recurrent_dropout": 0.3, "seed": 3}, {}, ("lstm", "gru")),
    "mask": (
        {},
        {"mask": np.arange(STEPS)[None, :] < np.arange(2, 2 + BATCH)[:, None]},
        ("lstm", "gru"),
    ),
    "unroll": ({"unroll": True}, {}, ("lstm", "gru")),
    "mixed_float16": ({"dtype": "mixed_float16"}, {}, ("lstm",)),
    "reset_before": ({"reset_after": False}, {}, ("gru",)),
}


def _scan_model(cls, cell: str):
    """Every SCAN_CASES case as a branch of one model of `cls` layers, outputs by case; the
    initial states are inputs too. Layers are named CASE_i (CASE_bi for the wrapper)."""
    import keras

    x = keras.Input((STEPS, FEATURES), name="x")
    states = [keras.Input((UNITS,), name=f"state_{i}") for i in range(2 if cell == "lstm" else 1)]
    outputs = {}
    for case, (kwargs, structure) in SCAN_CASES.items():
        y, depth = x, structure.get("depth", 1)
        for i in range(depth):
            layer = cls(UNITS, **{"return_sequences": i < depth - 1, **kwargs}, name=f"{case}_{i}")
            if structure.get("bidirectional"):
                layer = keras.layers.Bidirectional(layer, name=f"{case}_bi")
            y = layer(y, initial_state=states) if structure.get("initial_state") else layer(y)
        for k, out in enumerate(y if isinstance(y, (list, tuple)) else [y]):
            outputs[f"{case}/{k}"] = out
    return keras.Model([x, *states], outputs)


def _case(layer_name: str) -> str:
    """The case of a layer named CASE_i or CASE_bi (or Bidirectional's forward_/backward_ copy)."""
    return layer_name.removeprefix("forward_").removeprefix("backward_").rsplit("_", 1)[0]


class _ScanCounter:
    """Counts, by case, the layer calls that trace `zoo.jax_rnn`'s loops, while in a `with`."""

    def __init__(self):
        from zoo import jax_rnn

        self.module, self.counts = jax_rnn, {}
        self.originals = {name: getattr(jax_rnn, name) for name in ("lstm", "gru")}

    def __enter__(self):
        for name, fn in self.originals.items():
            setattr(self.module, name, self._counted(fn))
        return self

    def __exit__(self, *exc):
        for name, fn in self.originals.items():
            setattr(self.module, name, fn)

    def _counted(self, fn):
        def wrapper(*args):
            case = _case(sys._getframe(1).f_locals["self"].name)  # the calling layer's
            self.counts[case] = self.counts.get(case, 0) + 1
            return fn(*args)

        return wrapper


def check_scan(x: np.ndarray) -> dict:
    """`zoo.scan`'s layers forced to the zoo's loop (RNN_ZOO_RNN_PATH=scan) against Keras' with
    the same weights, for LSTM and GRU: by SCAN_CASES case the largest output difference, the
    largest difference of its weights' gradients over their largest gradient, and the times the
    zoo's loop was traced; the inputs' and initial states' gradients (all cases together); then
    the times it was traced in each SCAN_NOT_APPLIED case, and under the default policy here."""
    import keras

    if keras.backend.backend() != "jax":
        return {"skipped": f"the zoo's loop is JAX's; the backend is {keras.backend.backend()}"}
    import jax
    import jax.numpy as jnp

    from zoo.scan import ScanGRU, ScanLSTM

    def loss(model):
        def f(trainable, inputs):
            fixed = [v.value for v in model.non_trainable_variables]
            out, _ = model.stateless_call(trainable, fixed, inputs, training=True)
            total = 0.0
            for o in out.values():  # every output element weighted differently
                total += jnp.sum(jnp.sin(o + 0.1 * jnp.arange(o.size).reshape(o.shape)))
            return total, out

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))

    def worst(pairs):
        return max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in pairs)

    def traced(cls, case, layer_kwargs, call_kwargs):
        layer = cls(UNITS, **layer_kwargs, name=f"{case}_0")
        layer.build(x.shape)
        fixed = [v.value for v in layer.non_trainable_variables]
        weights = [v.value for v in layer.trainable_variables]
        with _ScanCounter() as counter:
            jax.eval_shape(
                lambda w, x: layer.stateless_call(w, fixed, x, training=True, **call_kwargs)[0],
                weights,
                x.astype(layer.compute_dtype),
            )
        return counter.counts.get(case, 0)

    rng = np.random.default_rng(5)
    report = {}
    os.environ["RNN_ZOO_RNN_PATH"] = "scan"
    try:
        for cell, base, scan in (
            ("lstm", keras.layers.LSTM, ScanLSTM),
            ("gru", keras.layers.GRU, ScanGRU),
        ):
            reference, zoo = _scan_model(base, cell), _scan_model(scan, cell)
            weights = [w + 0.5 * rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()]  # fmt: skip
            reference.set_weights(weights)
            zoo.set_weights(weights)
            inputs = [x] + [rng.normal(size=(BATCH, UNITS)).astype("float32") for _ in zoo.inputs[1:]]  # fmt: skip
            values = [v.value for v in reference.trainable_variables]
            (_, want), (want_w, want_in) = loss(reference)(values, inputs)
            with _ScanCounter() as counter:
                (_, got), (got_w, got_in) = loss(zoo)(values, inputs)
            paths = [v.path for v in zoo.trainable_variables]
            for case in SCAN_CASES:
                outs = [k for k in want if k.startswith(f"{case}/")]
                grads = [i for i, path in enumerate(paths) if _case(path.split("/")[0]) == case]
                report[f"{cell}/{case}"] = {
                    "output": max(float(jnp.max(jnp.abs(got[k] - want[k]))) for k in outs),
                    "gradient": worst((got_w[i], want_w[i]) for i in grads),
                    "zoo_loop_traced": counter.counts.get(case, 0),
                }
            report[f"{cell}/inputs"] = {"gradient": worst(zip(got_in, want_in, strict=True))}
            for case, (layer_kwargs, call_kwargs, cells) in SCAN_NOT_APPLIED.items():
                if cell in cells:
                    count = traced(scan, case, layer_kwargs, call_kwargs)
                    report[f"{cell}/{case}"] = {"zoo_loop_traced": count}
        os.environ.pop("RNN_ZOO_RNN_PATH")
        report["default_path_traces"] = {
            cell: traced(cls, "default", {}, {})
            for cell, cls in (("lstm", ScanLSTM), ("gru", ScanGRU))
        }
    finally:
        os.environ.pop("RNN_ZOO_RNN_PATH", None)
    return report


ECHO = ["--epochs", "1", "--task-option", "series_length=600", "--quiet"]
TRAIN = ["echo", "gru", "--units", "8", "--recurrent-dropout", "0", *ECHO]  # tiny and fast
# single-layer models: a JAX compile costs seconds a layer
SEARCH = ["echo", "--max-trials", "2", "--models", "gru,rnn,lstm", "--fix", "depth=1", "--cv", "1"]
SEARCH += [*ECHO, "--fix", "recurrent_dropout=0"]


def check_cli(out: Path) -> dict:
    """`python -m zoo.train` and `python -m tuning.search`, tiny, through their `main(argv)`;
    then on the trained run `zoo.evaluate`, streaming, generation (a tiny next-step model) and
    `zoo.export --format tflite` (refused in one line where TensorFlow is absent)."""
    import zoo.train

    report = {}
    try:
        report["train"] = zoo.train.main([*TRAIN, "--out", str(out / "run")])
    except BaseException as err:  # SystemExit from a refused argument included
        traceback.print_exc()
        report["train"] = _one_line(err)
    try:
        import tuning.search

        report["search"] = tuning.search.main([*SEARCH, "--dir", str(out / "tuning")])
    except BaseException as err:
        traceback.print_exc()
        report["search"] = _one_line(err)
    for label, check in (("evaluate", _evaluate), ("stream", _stream), ("generate", _generate)):
        try:
            report[label] = check(out / "run")
        except BaseException as err:
            traceback.print_exc()
            report[label] = _one_line(err)
    report["export"] = _export_refusal(out / "run")
    return report


def _evaluate(run: Path):
    import zoo.evaluate

    return zoo.evaluate.main([str(run)])


def _stream(run: Path) -> float:
    """Largest difference between the streamed outputs of a test window and the model's (at
    every step for a per-step model, else the last)."""
    from zoo.runs import load_model, locate_run, run_task
    from zoo.streaming import Streamer

    model_path, config = locate_run(run)
    x = run_task(config).x_test[0]
    streamed = Streamer.from_run(run).feed(x)
    full = load_model(model_path).predict(x[None], verbose=0)[0]
    return float(np.max(np.abs(streamed - full if full.ndim == 2 else streamed[-1] - full)))


def _generate(_run: Path) -> list:
    """The shape of a series generated by a tiny untrained next-step model."""
    from zoo import create_model
    from zoo.generation import generate

    model = create_model("gru", (STEPS, 1), 1, units=UNITS, output_kind="regression")
    return list(generate(model, np.zeros(STEPS, "float32"), 5).shape)


def _export_refusal(run: Path) -> dict:
    """`zoo.export --format tflite`'s exit status, and its one stderr line where TensorFlow is
    absent (it then refuses before converting anything)."""
    import contextlib
    import importlib.util
    import io

    import zoo.export

    if importlib.util.find_spec("tensorflow") is not None:
        return {"skipped": "TensorFlow is installed: tests/test_export.py covers exports"}
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            code = zoo.export.main([str(run), "--format", "tflite"])
    except SystemExit as exit_:
        code = exit_.code
    return {"code": code, "stderr": err.getvalue(), "exported": (run / "export").exists()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder for the saved models and their outputs")
    p.add_argument("--foreign", type=Path, help="folder of models saved on another backend")
    p.add_argument("--models", help="model globs (default: every registered model)")
    p.add_argument("--cli", action="store_true", help="also run zoo.train and tuning.search")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    from zoo import backend

    backend.load()  # refuses an unsupported backend, before Keras is imported
    import keras

    from zoo import list_models

    keras.utils.set_random_seed(0)
    x = inputs()
    start = time.perf_counter()
    report = {
        "backend": keras.backend.backend(),
        "models": {name: check_model(name, args.out, x) for name in list_models(args.models)},
        "fused": check_fused(x),
    }
    start_scan = time.perf_counter()
    report["scan"] = check_scan(x)
    report["seconds"] = {"scan": time.perf_counter() - start_scan}
    if args.foreign:
        try:
            report["foreign"] = load_and_compare(args.foreign)
        except Exception as err:
            traceback.print_exc()
            report["foreign"] = {"error": _one_line(err)}
    report["seconds"]["models"] = time.perf_counter() - start
    if args.cli:
        start = time.perf_counter()
        report["cli"] = check_cli(args.out)
        report["seconds"]["cli"] = time.perf_counter() - start
    report["tensorflow_imported"] = "tensorflow" in sys.modules
    text = json.dumps(report, indent=1)
    (args.out / "report.json").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
