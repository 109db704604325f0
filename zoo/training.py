"""Compile, fit and evaluate: the one place the trainer and the tuner share.

A model tuned is a model the trainer can rebuild: both call `compile_model` and `fit_callbacks`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import keras
import numpy as np

from zoo.fused import auto_jit_compile
from zoo.tasks.base import Task

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "nadam": keras.optimizers.Nadam,
    "rmsprop": keras.optimizers.RMSprop,
    "adagrad": keras.optimizers.Adagrad,
    "sgd": lambda **kw: keras.optimizers.SGD(momentum=0.9, nesterov=True, **kw),
}


LR_SCHEDULES = ("constant", "cosine")


def make_optimizer(
    name: str,
    learning_rate: float | None = None,
    *,
    lr_schedule: str = "constant",
    decay_steps: int | None = None,
) -> keras.optimizers.Optimizer:
    """An optimizer by name (SGD with Nesterov momentum 0.9); learning_rate None keeps its default.

    `lr_schedule="cosine"` decays the learning rate to 0 over `decay_steps` training steps
    (Keras' `CosineDecay`): large early steps, then small ones that settle into a minimum.
    """
    if name not in OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {', '.join(OPTIMIZERS)}. Received: optimizer={name!r}"
        )
    if learning_rate is not None and not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0. Received: learning_rate={learning_rate}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}. Received: lr_schedule={lr_schedule!r}"
        )
    rate = learning_rate
    if lr_schedule == "cosine":
        if not decay_steps or decay_steps <= 0:
            raise ValueError(f"lr_schedule='cosine' needs decay_steps > 0. Received: {decay_steps}")
        if rate is None:  # the optimizer's own default, as the decay's starting point
            rate = float(keras.ops.convert_to_numpy(OPTIMIZERS[name]().learning_rate))
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps)
    return OPTIMIZERS[name]() if rate is None else OPTIMIZERS[name](learning_rate=rate)


def compile_model(
    model: keras.Model,
    task: Task,
    *,
    optimizer: str = "adam",
    learning_rate: float | None = None,
    lr_schedule: str = "constant",
    decay_steps: int | None = None,
    jit_compile: bool | str = "auto",
) -> keras.Model:
    """Compile `model` for `task`: its loss, and its metrics weighted by the task's sample weights.

    Metrics are passed as `weighted_metrics`, so a weight of 0 (the echo task's unknowable
    steps) removes a target from the metrics too; without weights they equal the plain metrics.
    `jit_compile="auto"` turns XLA on where it measurably trains faster (see `auto_jit_compile`).
    The optimizer comes from `make_optimizer` (with `lr_schedule` and `decay_steps`).
    """
    model.compile(
        optimizer=make_optimizer(
            optimizer, learning_rate, lr_schedule=lr_schedule, decay_steps=decay_steps
        ),
        loss=task.loss,
        weighted_metrics=list(task.metrics),
        jit_compile=auto_jit_compile(model, jit_compile),
    )
    return model


def save_model_atomic(model: keras.Model, path: str | os.PathLike) -> None:
    """Save to a temporary file beside `path`, then rename: `path` is never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Keep the best model so far at `path`, written atomically (Keras' ModelCheckpoint is not)."""

    def __init__(self, path, monitor: str, mode: str):
        super().__init__()
        self.path, self.monitor, self.mode = Path(path), monitor, mode
        self.best = -np.inf if mode == "max" else np.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value):
            return
        if (value > self.best) if self.mode == "max" else (value < self.best):
            self.best = value
            save_model_atomic(self.model, self.path)


def fit_callbacks(task: Task, *, patience: int = 10) -> list[keras.callbacks.Callback]:
    """Early stopping on the task's validation objective (best weights restored) and NaN stop."""
    monitor, mode = task.objective
    return [
        keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=patience, restore_best_weights=True
        ),
        keras.callbacks.TerminateOnNaN(),
    ]


def validation_data(task: Task):
    """The validation split as `fit` takes it, with weights when the task has them."""
    x, y, w = task.split("val")
    return (x, y) if w is None else (x, y, w)


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Predictions in large batches (inference needs no small batches)."""
    return model.predict(x, batch_size=batch_size, verbose=0)


def evaluate(model: keras.Model, task: Task, split: str = "test") -> dict:
    """Loss and metrics of `model` on a split; for classification also per-class precision,
    recall, F1 and the confusion matrix (scikit-learn), on the targets that carry weight."""
    from sklearn.metrics import classification_report, confusion_matrix

    x, y, w = task.split(split)
    y_pred = predict(model, x)
    result = {"split": split, "samples": int(len(x))}
    keep = np.ones(y.shape, dtype=bool) if w is None else w > 0
    result["targets"] = int(keep.sum())
    if task.is_classification:
        labels = np.argmax(y_pred, axis=-1)[keep]
        truth = y[keep]
        names = list(task.class_names or range(task.num_outputs))
        probs = np.clip(y_pred[keep][np.arange(truth.size), truth], 1e-12, None)
        result["loss"] = float(-np.mean(np.log(probs)))
        result["accuracy"] = float(np.mean(labels == truth))
        result["errors"] = int(np.sum(labels != truth))
        result["report"] = classification_report(
            truth, labels, labels=range(task.num_outputs), target_names=[str(n) for n in names],
            output_dict=True, zero_division=0,
        )  # fmt: skip
        result["confusion_matrix"] = confusion_matrix(
            truth, labels, labels=range(task.num_outputs)
        ).tolist()
        result["class_names"] = [str(n) for n in names]
    else:
        err = (y_pred.reshape(y.shape) - y)[keep]
        result["loss"] = result["mse"] = float(np.mean(err**2))
        result["mae"] = float(np.mean(np.abs(err)))
        baseline = task.info.get(f"persistence_mse_{split}")
        if baseline is not None:
            result["persistence_mse"] = baseline
            result["mse_to_persistence"] = result["mse"] / baseline
    return result
