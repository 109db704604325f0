"""Compile and fit: the one training path the trainer and the tuner share, and the trainer's run.

A model tuned is a model the trainer can rebuild, trained the same way: a tuner's trial and
`python -m zoo.train` both compile with `compile_for` and train with `fit` (the data pipeline,
the learning-rate schedule, early stopping), so a trial's hyperparameters replayed with
`--hparams` train as the trial did. `train` (one model) and `train_ensemble` (a seed ensemble)
fit a configured model on a task and leave a run folder (`zoo.runs`).
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

from zoo import distribute, runs
from zoo.buckets import LengthBatches
from zoo.config import (
    JIT_CHOICES,
    LR_SCHEDULES,
    MEMBER_SEED_STEP,
    OPTIMIZERS,
    PLATEAU_FACTOR,
    PLATEAU_FLOOR,
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
    `"plateau"` starts at the constant rate and leaves the rest to `plateau_callback`.
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
    return [early_stopping(task, patience), *standard_callbacks(task)]


def early_stopping(task: Task, patience: int) -> keras.callbacks.EarlyStopping:
    """Stop after `patience` epochs without a gain in the task's validation objective, and
    restore the best epoch's weights."""
    monitor, mode = task.objective
    return keras.callbacks.EarlyStopping(
        monitor=monitor, mode=mode, patience=patience, restore_best_weights=True
    )


def standard_callbacks(task: Task) -> list[keras.callbacks.Callback]:
    """NaN stop, and for a stateful task state reset at each epoch and evaluation."""
    return [keras.callbacks.TerminateOnNaN(), *([ResetStates()] if task.stateful_batch else [])]


def plateau_callback(settings: dict) -> keras.callbacks.ReduceLROnPlateau:
    """The `plateau` schedule: the learning rate halves after `lr_patience` epochs without a
    lower TRAINING loss, down to a tenth of where it started (the FCN papers' recipe: Wang et
    al. 2017, Karim et al. 2018). It watches the training loss, not the validation objective,
    so a replay on other validation windows follows the same schedule."""
    start = settings.get("learning_rate") or 1e-3  # Adam's own default
    return keras.callbacks.ReduceLROnPlateau(
        monitor="loss",
        factor=PLATEAU_FACTOR,
        patience=settings["lr_patience"],
        min_lr=start * PLATEAU_FLOOR,
    )


def decay_steps(settings: dict, windows: int) -> int:
    """Training steps of a run of `settings` on `windows` training windows (a cosine decay
    reaches 0 there)."""
    return settings["epochs"] * math.ceil(windows / settings["batch_size"])


def compile_for(
    model: keras.Model, task: Task, settings: dict, windows: int, jit_compile: str | None = None
) -> keras.Model:
    """`compile_model` with a run's `settings` (optimizer, learning_rate, lr_schedule, epochs,
    batch_size, jit_compile) for `windows` training windows."""
    return compile_model(
        model,
        task,
        optimizer=settings.get("optimizer", "adam"),
        learning_rate=settings.get("learning_rate"),
        lr_schedule=settings.get("lr_schedule", "constant"),
        decay_steps=decay_steps(settings, windows),
        jit_compile=jit_compile or settings.get("jit_compile", "auto"),
        epochs=settings["epochs"],
    )


def fit(
    model: keras.Model,
    task: Task,
    data: tuple,
    validation: tuple | None,
    settings: dict,
    *,
    stopper: keras.callbacks.EarlyStopping | None = None,
    callbacks: list | tuple = (),
    verbose: int = 0,
    initial_epoch: int = 0,
) -> keras.callbacks.History:
    """Train a compiled `model` on `data` = (x, y, w): the one training loop of the zoo, for
    `python -m zoo.train` and for every tuner trial alike.

    `settings` holds `epochs`, `batch_size`, `seed`, `lr_schedule` (with `lr_patience` for
    `plateau`), `patience` and `early_stopping` (default True, see `stops_early`): with it,
    training stops after `patience` epochs without a gain on `validation` and keeps the best
    epoch's weights (`stopper`, made here unless given); without it, it runs every epoch and
    keeps the last.
    Variable-length data trains in batches of similar lengths (`LengthBatches`); a stateful
    task's batches follow each other unshuffled. `callbacks` run after the zoo's own.
    """
    x, y, w = data
    if stopper is None and stops_early(settings) and validation is not None:
        stopper = early_stopping(task, settings["patience"])
    ours = [stopper] if stopper is not None else []
    ours += standard_callbacks(task)
    if settings.get("lr_schedule") == "plateau":
        ours.append(plateau_callback(settings))
    if (task.preprocessing or {}).get("mask"):  # variable length: batches of similar lengths
        arguments = {"x": LengthBatches(x, y, w, batch_size=settings["batch_size"],
                                        seed=settings.get("seed", 0))}  # fmt: skip
    else:  # a stateful task's batches follow each other, unshuffled
        arguments = dict(x=x, y=y, sample_weight=w, batch_size=settings["batch_size"])
        arguments["shuffle"] = not task.stateful_batch
    return model.fit(
        **arguments,
        validation_data=validation,
        epochs=settings["epochs"],
        initial_epoch=initial_epoch,
        callbacks=[*ours, *callbacks],
        verbose=verbose,
    )


def best_epoch(history: dict, objective: tuple[str, str], initial_epoch: int = 0) -> int:
    """The epoch (from 1) with the best `objective` in `history`, the first of equals, as
    early stopping picks it; the last epoch where the history has no such values."""
    name, direction = objective
    values = [v if np.isfinite(v) else np.nan for v in history.get(name, [])]
    if not values or np.all(np.isnan(values)):
        return initial_epoch + len(history.get("loss", []))
    pick = np.nanargmax if direction == "max" else np.nanargmin
    return initial_epoch + int(pick(values)) + 1


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
    """Compile, fit (`fit`: early stopping unless `early_stopping` is off), checkpoint, evaluate
    on test, save everything.

    Every epoch is backed up in backup/ (Keras' BackupAndRestore), removed when fit ends; a
    folder that still has one resumes from its last epoch (`--resume`). A loss that turns NaN
    or inf raises `Diverged`; the folder then keeps config.json and history.csv, and no model
    or metrics. Under `--distribute`, compile and fit run in the strategy's scope. With
    `refit`, the model trains on the train and validation splits together (see
    `training_split`)."""
    earlier = read_history(folder / "history.csv") if (folder / "backup").is_dir() else None
    runs.write_config(folder, config, task, model.count_params())
    data, validation = training_split(task, config)
    choice = config.get("distribute", "none")
    with distribute.scope(choice):
        compile_for(
            model, task, config, len(data[0]), distribute.jit_compile(choice, config["jit_compile"])
        )
    monitor, mode = task.objective
    stopper = early_stopping(task, config["patience"]) if stops_early(config) else None
    checkpoint = AtomicCheckpoint(folder / "model.keras", monitor, mode, earlier)
    callbacks = [
        checkpoint,
        keras.callbacks.CSVLogger(str(folder / "history.csv"), append=earlier is not None),
        keras.callbacks.TensorBoard(log_dir=str(folder / "tb")),
        keras.callbacks.BackupAndRestore(str(folder / "backup"), double_checkpoint=True),
    ]
    started = time.perf_counter()
    interrupted = False
    try:
        with distribute.scope(choice):
            history = fit(
                model,
                task,
                data,
                validation,
                config,
                stopper=stopper,
                callbacks=callbacks,
                verbose=verbose,
            ).history
    except KeyboardInterrupt:
        interrupted = True
        print("\nInterrupted: keeping the best model so far.", file=sys.stderr)
        history = model.history.history if model.history else {}
        if stopper is not None and stopper.best_weights is not None:
            model.set_weights(stopper.best_weights)
    if earlier is not None:  # the whole run's history; the best weights may predate the resume
        history = read_history(folder / "history.csv")
        if stopper is not None and not checkpoint.saved and (folder / "model.keras").is_file():
            model.set_weights(runs.load_model(folder / "model.keras").get_weights())
    try:
        check_finite_history(history)
    except Diverged:
        (folder / "model.keras").unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started
    epochs_run = len(history.get("loss", []))
    return save_results(
        task,
        model,
        folder,
        history,
        epochs_run=epochs_run,
        train_seconds=round(seconds, 1),
        best_epoch=stopper.best_epoch + 1 if stopper is not None else epochs_run,
        interrupted=interrupted,
    )


def stops_early(config: dict) -> bool:
    """True when a run stops early on validation (the default); False with `early_stopping`
    off or `refit` (then it trains every epoch and keeps the last weights)."""
    return bool(config.get("early_stopping", True)) and not config.get("refit")


def training_split(task: Task, config: dict):
    """((x, y, w), validation_data) a run trains on: the train split, scored on validation;
    with `refit`, the train and validation splits together (every labelled window the task
    has outside its test split; the validation figures are then not held out)."""
    if not config.get("refit"):
        return task.split("train"), validation_data(task)
    train, val = task.split("train"), task.split("val")
    weights = None if train[2] is None else np.concatenate([train[2], val[2]])
    pooled = (np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]]), weights)
    return pooled, validation_data(task)


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
