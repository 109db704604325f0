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


ECHO = ["--epochs", "1", "--task-option", "series_length=600", "--quiet"]
TRAIN = ["echo", "gru", "--units", "8", "--recurrent-dropout", "0", *ECHO]  # tiny and fast
# single-layer models: a JAX compile costs seconds a layer
SEARCH = ["echo", "--max-trials", "2", "--models", "gru,rnn,lstm", "--fix", "depth=1", "--cv", "1"]
SEARCH += [*ECHO, "--fix", "recurrent_dropout=0"]


def check_cli(out: Path) -> dict:
    """`python -m zoo.train` and `python -m tuning.search`, tiny, through their `main(argv)`."""
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
    return report


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
    if args.foreign:
        try:
            report["foreign"] = load_and_compare(args.foreign)
        except Exception as err:
            traceback.print_exc()
            report["foreign"] = {"error": _one_line(err)}
    report["seconds"] = {"models": time.perf_counter() - start}
    if args.cli:
        start = time.perf_counter()
        report["cli"] = check_cli(args.out)
        report["seconds"]["cli"] = time.perf_counter() - start
    text = json.dumps(report, indent=1)
    (args.out / "report.json").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
