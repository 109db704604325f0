"""Compile and fit: the one place the trainer and the tuner share, and the trainer's run.

A model tuned is a model the trainer can rebuild: both call `compile_model` and `fit_callbacks`.
`train` (one model) and `train_ensemble` (a seed ensemble) fit a configured model on a task and
leave a run folder (`zoo.runs`).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import sys
import time
from pathlib import Path

import keras
import numpy as np

from zoo import backtest, distribute, runs
from zoo.buckets import LengthBatches
from zoo.config import (
    JIT_CHOICES,
    LR_SCHEDULES,
    MEMBER_SEED_STEP,
    OPTIMIZERS,
    load_task,
    model_settings,
)
from zoo.fused import fused_path_available
from zoo.scoring import headline, headline_metrics, score
from zoo.tasks.base import Task

# XLA compiles a model in about 20 s on 2 CPU cores and then trains a single recurrent layer
# 1.2-1.6x faster (README, Speed): it pays once a run is long enough. "auto" turns it on from
# this many planned training sample-steps (epochs x training windows x steps a window).
XLA_MIN_SAMPLE_STEPS = 10_000_000


class Diverged(ValueError):
    """Training produced a loss that is not a finite number."""


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
            f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}. "
            f"Received: lr_schedule={lr_schedule!r}"
        )
    make = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "nadam": keras.optimizers.Nadam,
        "rmsprop": keras.optimizers.RMSprop,
        "adagrad": keras.optimizers.Adagrad,
        "sgd": lambda **kw: keras.optimizers.SGD(momentum=0.9, nesterov=True, **kw),
    }[name]
    rate = learning_rate
    if lr_schedule == "cosine":
        if not decay_steps or decay_steps <= 0:
            raise ValueError(f"lr_schedule='cosine' needs decay_steps > 0. Received: {decay_steps}")
        if rate is None:  # the optimizer's own default, as the decay's starting point
            rate = float(keras.ops.convert_to_numpy(make().learning_rate))
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps)
    return make() if rate is None else make(learning_rate=rate)


def planned_sample_steps(task: Task, epochs: int) -> int:
    """Training sample-steps a run plans: epochs x training windows x steps a window (as the
    recurrent layers see them, after framing)."""
    return int(epochs) * len(task.x_train) * (task.model_steps or 1)


def use_xla(model: keras.Model, choice: str = "auto", sample_steps: int = 0) -> bool | str:
    """The zoo's one XLA policy: `jit_compile` for `model.compile`.

    "on" and "off" are obeyed. "auto" on TensorFlow without a GPU turns XLA on only where it pays
    for its ~20 s compile: a model with ONE recurrent layer (not bidirectional) whose layers all
    support XLA (XLA trains those 1.2-1.6x faster, stacked and bidirectional ones no faster), and
    a run of at least XLA_MIN_SAMPLE_STEPS planned sample-steps, not variable-length (masked).
    Elsewhere "auto" is Keras' own.
    """
    if choice not in JIT_CHOICES:
        raise ValueError(
            f"jit_compile must be one of {', '.join(JIT_CHOICES)}. Received: {choice!r}"
        )
    if choice != "auto":
        return choice == "on"
    if not fused_path_available():
        return "auto"
    from zoo.layers import PaddingMask

    layers = list(model._flatten_layers())
    recurrent = [layer for layer in layers if isinstance(layer, keras.layers.RNN)]
    return (
        len(recurrent) == 1
        # variable length trains in batches of their own length: an XLA compile for each
        and not any(isinstance(layer, PaddingMask) for layer in layers)
        and not any(isinstance(layer, keras.layers.Bidirectional) for layer in layers)
        and all(getattr(layer, "supports_jit", True) for layer in layers)
        and sample_steps >= XLA_MIN_SAMPLE_STEPS
    )


def compile_model(
    model: keras.Model,
    task: Task,
    *,
    optimizer: str = "adam",
    learning_rate: float | None = None,
    lr_schedule: str = "constant",
    decay_steps: int | None = None,
    jit_compile: str = "auto",
    epochs: int | None = None,
) -> keras.Model:
    """Compile `model` for `task`: its loss, and its metrics weighted by the task's sample weights.

    Metrics are passed as `weighted_metrics`, so a weight of 0 (the echo task's unknowable
    steps) removes a target from the metrics too; without weights they equal the plain metrics.
    XLA follows `use_xla` for a run of `epochs` (the task's own if None). The optimizer comes
    from `make_optimizer` (with `lr_schedule` and `decay_steps`).
    """
    sample_steps = planned_sample_steps(task, epochs or task.epochs)
    model.compile(
        optimizer=make_optimizer(
            optimizer, learning_rate, lr_schedule=lr_schedule, decay_steps=decay_steps
        ),
        loss=task.loss,
        weighted_metrics=list(task.metrics),
        jit_compile=use_xla(model, jit_compile, sample_steps),
    )
    return model


class AtomicCheckpoint(keras.callbacks.Callback):
    """Keep the best model so far at `path`, written atomically (Keras' ModelCheckpoint is not)."""

    def __init__(self, path, monitor: str, mode: str, history: dict | None = None):
        super().__init__()
        self.path, self.monitor, self.mode = Path(path), monitor, mode
        self.best = -np.inf if mode == "max" else np.inf
        earlier = [v for v in (history or {}).get(monitor, []) if np.isfinite(v)]
        if earlier:  # a resumed run: the checkpoint holds the best of the epochs before
            self.best = max(earlier) if mode == "max" else min(earlier)
        self.saved = False

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value):
            return
        if (value > self.best) if self.mode == "max" else (value < self.best):
            self.best = value
            self.saved = True
            runs.save_model(self.model, self.path)


class ResetStates(keras.callbacks.Callback):
    """A stateful model starts every epoch, evaluation and prediction from zero state."""

    def reset(self, *_):
        reset_states(self.model)

    on_epoch_begin = on_test_begin = on_predict_begin = reset


def reset_states(model: keras.Model) -> None:
    """Zero the state of every stateful recurrent layer of `model`."""
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.RNN) and layer.stateful:
            layer.reset_state()


def fit_callbacks(task: Task, *, patience: int = 10) -> list[keras.callbacks.Callback]:
    """Early stopping on the task's validation objective (best weights restored) and NaN stop;
    for a stateful task, state reset at each epoch and evaluation."""
    monitor, mode = task.objective
    return [
        keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=patience, restore_best_weights=True
        ),
        keras.callbacks.TerminateOnNaN(),
        *([ResetStates()] if task.stateful_batch else []),
    ]


def validation_data(task: Task):
    """The validation split as `fit` takes it, with weights when the task has them."""
    x, y, w = task.split("val")
    return (x, y) if w is None else (x, y, w)


def check_finite_history(history: dict) -> None:
    """Raise `Diverged` when a training loss in `history` is not a finite number."""
    losses = history.get("loss", [])
    bad = [i for i, value in enumerate(losses) if not np.isfinite(value)]
    if bad:
        raise Diverged(
            f"training diverged: the loss is {losses[bad[0]]} at epoch {bad[0] + 1}; "
            "try a lower --learning-rate, or check the data"
        )


def build_model(config: dict, task: Task) -> keras.Model:
    """The configured zoo model for `task`, initialised from the current random state."""
    from zoo.models import create_model

    return create_model(
        config["model"],
        task.input_shape,
        task.num_outputs,
        output_kind=task.output_kind,
        preprocessing=task.preprocessing,
        stateful_batch=task.stateful_batch,
        **model_settings(config),
    )


def read_history(path: Path) -> dict:
    """history.csv as `fit` returns its history: a list of values per column."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in (rows[0] if rows else {}) if k != "epoch"}


def train(config: dict, task: Task, model: keras.Model, folder: Path, verbose: int = 1) -> dict:
    """Compile, fit with early stopping and checkpoints, evaluate on test, save everything.

    Every epoch is backed up in backup/ (Keras' BackupAndRestore), removed when fit ends; a
    folder that still has one resumes from its last epoch (`--resume`). A loss that turns NaN
    or inf raises `Diverged`; the folder then keeps config.json and history.csv, and no model
    or metrics. Under `--distribute`, compile and fit run in the strategy's scope."""
    earlier = read_history(folder / "history.csv") if (folder / "backup").is_dir() else None
    runs.write_config(folder, config, task, model.count_params())
    x, y, w = task.split("train")
    choice = config.get("distribute", "none")
    with distribute.scope(choice):
        compile_model(
            model,
            task,
            optimizer=config["optimizer"],
            learning_rate=config.get("learning_rate"),
            lr_schedule=config["lr_schedule"],
            decay_steps=config["epochs"] * math.ceil(len(x) / config["batch_size"]),
            jit_compile=distribute.jit_compile(choice, config["jit_compile"]),
            epochs=config["epochs"],
        )
    callbacks = fit_callbacks(task, patience=config["patience"])
    monitor, mode = task.objective
    checkpoint = AtomicCheckpoint(folder / "model.keras", monitor, mode, earlier)
    callbacks += [
        checkpoint,
        keras.callbacks.CSVLogger(str(folder / "history.csv"), append=earlier is not None),
        keras.callbacks.TensorBoard(log_dir=str(folder / "tb")),
        keras.callbacks.BackupAndRestore(str(folder / "backup"), double_checkpoint=True),
    ]
    if (task.preprocessing or {}).get("mask"):  # variable length: batches of similar lengths
        data = {"x": LengthBatches(x, y, w, batch_size=config["batch_size"], seed=config["seed"])}
    else:  # a stateful task's batches follow each other, unshuffled
        data = dict(x=x, y=y, sample_weight=w, batch_size=config["batch_size"])
        data["shuffle"] = not task.stateful_batch
    started = time.perf_counter()
    interrupted = False
    try:
        with distribute.scope(choice):
            history = model.fit(
                **data,
                validation_data=validation_data(task),
                epochs=config["epochs"],
                callbacks=callbacks,
                verbose=verbose,
            ).history
    except KeyboardInterrupt:
        interrupted = True
        print("\nInterrupted: keeping the best model so far.", file=sys.stderr)
        history = model.history.history if model.history else {}
        if callbacks[0].best_weights is not None:
            model.set_weights(callbacks[0].best_weights)
    if earlier is not None:  # the whole run's history; the best weights may predate the resume
        history = read_history(folder / "history.csv")
        if not checkpoint.saved and (folder / "model.keras").is_file():
            model.set_weights(runs.load_model(folder / "model.keras").get_weights())
    try:
        check_finite_history(history)
    except Diverged:
        (folder / "model.keras").unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started
    return save_results(
        task,
        model,
        folder,
        history,
        epochs_run=len(history.get("loss", [])),
        train_seconds=round(seconds, 1),
        best_epoch=callbacks[0].best_epoch + 1,
        interrupted=interrupted,
    )


def save_results(task: Task, model: keras.Model, folder: Path, history: dict, **facts) -> dict:
    """A trained model's end of run: model.keras, its test and validation metrics with `facts`
    in metrics.json, and the plots. Returns the metrics."""
    from zoo.plots import run_plots

    runs.save_model(model, folder / "model.keras")
    metrics = {**score(model, task), **facts, "val": score(model, task, "val")}
    metrics["val"].pop("report", None)
    runs.write_metrics(folder, metrics)
    run_plots(task, model, history, metrics, folder)
    return metrics


def train_ensemble(
    config: dict, task: Task, model: keras.Model, folder: Path, verbose: int = 1
) -> dict:
    """`--ensemble N`: N members trained alone, member K with seed SEED+1000*(K-1), each a run
    folder member-K/ as a single run leaves it; then one Keras model averaging their outputs is
    evaluated and saved as the run's model.keras. Ctrl-C ends the member in training, keeps it
    and builds the ensemble from the members so far."""
    from zoo.models import average_models

    count = config["ensemble"]
    runs.write_config(folder, config, task, count * model.count_params())
    members, reports = [], []
    with no_retracing_warning():
        for k in range(1, count + 1):
            seed = config["seed"] + MEMBER_SEED_STEP * (k - 1)
            if k > 1:
                keras.utils.set_random_seed(seed)
                model = build_model(config, task)
            model.name = f"member_{k}"
            (folder / f"member-{k}").mkdir()
            member = {**config, "seed": seed, "ensemble": 1}
            metrics = train(member, task, model, folder / f"member-{k}", verbose)
            members.append(model)
            reports.append(
                {
                    "seed": seed,
                    "epochs_run": metrics["epochs_run"],
                    "train_seconds": metrics["train_seconds"],
                    "test": headline_metrics(metrics),
                    "val": headline_metrics(metrics["val"]),
                }
            )
            print(f"member {k}/{count} (seed {seed}): {headline(task, metrics)}")
            if metrics["interrupted"]:
                break
        return save_results(
            task,
            average_models(members),
            folder,
            {},
            epochs_run=sum(r["epochs_run"] for r in reports),
            train_seconds=round(sum(r["train_seconds"] for r in reports), 1),
            interrupted=len(members) < count,
            members=reports,
        )


def backtests(config: dict, task: Task) -> int:
    """How many folds a run trains: the series task's `folds`, unless the options name one
    `fold` (then that fold alone); 1 for every other task."""
    if "fold" in config.get("task_options", {}):
        return 1
    return int(task.info.get("folds", 1)) if "history" in task.info else 1


def train_folds(
    config: dict, task: Task, model: keras.Model, folder: Path, verbose: int = 1
) -> dict:
    """A rolling-origin backtest (`--task-option folds=K`): fold k (0 = the last horizon) is a
    run of its own in fold-k/, trained on its task (`fold=k`) from the same seed, alone or as
    an ensemble; then metrics.json holds each fold's forecast report and their mean
    ("forecast": the mean, as `zoo.backtest.mean_over_folds`)."""
    count = backtests(config, task)
    runs.write_config(folder, config, task, model.count_params())
    options = config.get("task_options", {})
    reports, facts = [], []
    for k in range(count):
        if k > 0:
            task = load_task(config["task"], config.get("data"), {**options, "fold": k})
            keras.utils.set_random_seed(config["seed"])
            model = build_model(config, task)
        (folder / f"fold-{k}").mkdir()
        member = {**config, "task_options": {**options, "fold": k}}
        run = train_ensemble if config["ensemble"] > 1 else train
        metrics = run(member, task, model, folder / f"fold-{k}", verbose)
        report = metrics["forecast"]
        reports.append(report)
        facts.append(
            {
                "fold": k,
                "test_start": report["test_start"][:3],
                "epochs_run": metrics["epochs_run"],
                "train_seconds": metrics["train_seconds"],
            }
        )
        print(f"fold {k} ({count} folds): test {backtest.headline(report)}")
        if metrics["interrupted"]:
            break
    slim = [{k: v for k, v in r.items() if k != "forecasts"} for r in reports]
    metrics = {
        "forecast": backtest.mean_over_folds(reports),
        "folds": slim,
        "runs": facts,
        "epochs_run": sum(f["epochs_run"] for f in facts),
        "train_seconds": round(sum(f["train_seconds"] for f in facts), 1),
        "interrupted": len(reports) < count,
    }
    runs.write_metrics(folder, metrics)
    return metrics


@contextlib.contextmanager
def no_retracing_warning():
    """Hold back TensorFlow's "excessive retracing" warning: it counts the predict steps of all
    models together, so an ensemble's members, each traced once, set it off."""

    def keep(record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()

    log = logging.getLogger("tensorflow")
    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)
