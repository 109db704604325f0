"""Compile and fit: the one training path the trainer and the tuner share, and the trainer's run.

A model tuned is a model the trainer can rebuild, trained the same way: a tuner's trial and
`python -m zoo.train` both compile with `compile_for` and train with `fit` (the data pipeline,
the learning-rate schedule, early stopping), so a trial's hyperparameters replayed with
`--hparams` train as the trial did. `train` (one model) and `train_ensemble` (a seed ensemble)
fit a configured model on a task and leave a run folder (`zoo.runs`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np

from zoo import backend, backtest, distribute, files, runs
from zoo.buckets import EpochBatches, LengthBatches
from zoo.config import (
    LR_SCHEDULES,
    MEMBER_SEED_STEP,
    OPTIMIZERS,
    PLATEAU_FACTOR,
    PLATEAU_FLOOR,
    RunConfig,
    Training,
    load_task,
)
from zoo.models import average_models, create_model, reset_states
from zoo.plots import run_plots
from zoo.scoring import headline, headline_metrics, score
from zoo.tasks.base import Task
from zoo.xla import use_xla


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
    """Keep the best model so far at `path`, written atomically (Keras' ModelCheckpoint is not).
    `best` is the best value before this fit (a resumed run's, see `EpochBackup`)."""

    def __init__(self, path, monitor: str, mode: str, best: float | None = None):
        super().__init__()
        self.path, self.monitor, self.mode = Path(path), monitor, mode
        self.best = -np.inf if mode == "max" else np.inf
        if best is not None and np.isfinite(best):
            self.best = best
        self.saved = False

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value):
            return
        if (value > self.best) if self.mode == "max" else (value < self.best):
            self.best = value
            self.saved = True
            files.save_model(self.model, self.path)


class EpochBackup(keras.callbacks.Callback):
    """A run's state after each epoch, so a run killed at any instant resumes where it stopped
    (`--resume`) and ends as the same run would have uninterrupted.

    At each epoch's end: history.csv rewritten whole; then in backup/, every variable of the
    model and its optimizer (weights, the dropout's random state, the optimizer's moments and
    step) as epoch-N.npz, the best epoch's weights (best-N.npz) when they changed, and last
    state.json, the commit: the epochs done, the files above, the history and the early
    stopping's counters (its previous version kept as state.json.bak). Every file is atomic
    (`zoo.files`). Keras' BackupAndRestore writes its weights and its epoch number as two plain
    files (a kill between them resumes from the wrong epoch) and keeps neither the random state
    (a resumed run drew other dropout masks) nor the early stopping's; CSVLogger appends, so a
    kill mid-line leaves a torn row.

    `state` is `read_backup`'s, None for a fresh start. Must come after the `EarlyStopping`
    (None for a run without early stopping) and `AtomicCheckpoint` whose state it saves, in the
    callbacks.
    """

    def __init__(self, folder, early_stopping, checkpoint: AtomicCheckpoint, state: dict | None):
        super().__init__()
        self.folder, self.backup = Path(folder), Path(folder) / "backup"
        self.early_stopping, self.checkpoint = early_stopping, checkpoint
        self.state = state  # from `read_backup`, None for a fresh start
        self.history = {k: list(v) for k, v in (state or {}).get("history", {}).items()}

    def on_train_begin(self, logs=None):
        state = self.state
        if state is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        with np.load(self.backup / state["weights"]) as saved:
            values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        variables = self.variables()
        if [v.shape for v in values] != [tuple(v.shape) for v in variables]:
            raise ValueError(f"{self.backup / state['weights']} does not fit this model")
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
        epochs = (self.params or {}).get("epochs") or state["epoch"]
        # a run that ended (early stopping) before the kill trains no further epoch
        self.model._initial_epoch = (
            max(state["epoch"], epochs) if state["ended"] else state["epoch"]
        )
        stopping = self.early_stopping
        if stopping is None:
            return self._write_history()
        for key, value in state["early_stopping"].items():
            setattr(stopping, key, value)
        if state["best_weights"]:
            with np.load(self.backup / state["best_weights"]) as saved:
                stopping.best_weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        self._write_history()

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self._write_history()
        stopping = self.early_stopping
        improved = stopping is not None and stopping.best_epoch == epoch
        # the early stopping (earlier in the callbacks) may have ended the run at this epoch: a
        # kill before `on_train_end` must not resume it for another epoch
        self._commit(epoch + 1, improved, ended=bool(self.model.stop_training))

    def on_train_end(self, logs=None):
        if self.state is not None and not self.state["ended"]:
            self.state["ended"] = True
            files.write_json(self.backup / "state.json", self.state, keep_previous=True)

    def variables(self) -> list:
        """What a resumed run needs to train on as this one: the model's variables (random
        states included) and its optimizer's, in a fixed order."""
        optimizer = self.model.optimizer
        return [*self.model.variables, *(optimizer.variables if optimizer is not None else [])]

    def _write_history(self) -> None:
        columns = ["epoch", *sorted(self.history)]  # as Keras' CSVLogger writes them
        count = len(next(iter(self.history.values()), []))
        rows = [{"epoch": i, **{k: v[i] for k, v in self.history.items()}} for i in range(count)]
        files.write_csv(self.folder / "history.csv", rows, columns)

    def _commit(self, epochs: int, improved: bool, ended: bool = False) -> None:
        """The weights, the best weights if they changed, then state.json naming them; `ended`
        when training stops after this epoch."""
        self.backup.mkdir(exist_ok=True)
        weights = f"epoch-{epochs}.npz"
        with files.atomic_write(self.backup / weights, "wb") as f:
            np.savez(f, *[keras.ops.convert_to_numpy(v) for v in self.variables()])
        best = (self.state or {}).get("best_weights")
        stopping = self.early_stopping
        if improved and stopping.best_weights is not None:  # (improved: there is a stopping)
            best = f"best-{epochs}.npz"
            with files.atomic_write(self.backup / best, "wb") as f:
                np.savez(f, *stopping.best_weights)
        self.state = {
            "epoch": epochs,
            "weights": weights,
            "best_weights": best,
            "ended": ended,
            "checkpoint_best": float(self.checkpoint.best),
            "early_stopping": {}
            if stopping is None
            else {
                "wait": stopping.wait,
                "best": None if stopping.best is None else float(stopping.best),
                "best_epoch": stopping.best_epoch,
                "stopped_epoch": stopping.stopped_epoch,
            },
            "history": self.history,
        }
        files.write_json(self.backup / "state.json", self.state, keep_previous=True)
        self._drop_old_files()

    def _drop_old_files(self) -> None:
        """Remove backup files that neither state.json nor its last good copy names."""
        keep = {"state.json", "state.json.bak"}
        for name in ("state.json", "state.json.bak"):
            with contextlib.suppress(files.CorruptFile, OSError):
                state = files.read_json(self.backup / name)
                keep |= {state["weights"], state.get("best_weights")}
        for path in self.backup.iterdir():
            if path.name not in keep and not path.name.startswith("."):
                path.unlink(missing_ok=True)


def first_epoch(state: dict | None) -> int:
    """The first epoch a fit from `read_backup`'s state runs (0 for a fresh start)."""
    return 0 if state is None else state["epoch"]


def read_backup(folder: Path) -> tuple[dict | None, str | None]:
    """(state, note): the state of a run's last finished epoch (backup/state.json, else its last
    good copy), or None without a usable one; the note (one line) says when the copy was used,
    or that the backup was unreadable and the run starts again from its first epoch."""
    path = Path(folder) / "backup" / "state.json"
    if not path.exists() and not files.previous_copy(path).exists():
        return None, None
    copy = f"{path} was unreadable or named a missing file: using its last good copy"
    for source, note in ((path, None), (files.previous_copy(path), copy)):
        with contextlib.suppress(files.CorruptFile, OSError, KeyError, TypeError):
            state = files.read_json(source)
            named = [state["weights"], state.get("best_weights")]
            if all((path.parent / name).is_file() for name in named if name):
                return state, note
    return None, f"{path} and its last good copy are unreadable: training starts again"


class ResetStates(keras.callbacks.Callback):
    """A stateful model starts every epoch, evaluation and prediction from zero state."""

    def reset(self, *_):
        reset_states(self.model)

    on_epoch_begin = on_test_begin = on_predict_begin = reset


def tensorboard(folder: Path, verbose: int = 1) -> list[keras.callbacks.Callback]:
    """Keras' TensorBoard callback writing to `folder`, where it can: it writes through
    TensorFlow's summary writer on every backend, so without TensorFlow (a JAX or PyTorch
    install) there is none, said once on stderr unless `verbose` is 0."""
    if backend.tensorflow_available():
        return [keras.callbacks.TensorBoard(log_dir=str(folder))]
    if verbose:
        print("note: no TensorBoard logs (they need TensorFlow, not installed)", file=sys.stderr)
    return []


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


def plateau_callback(training: Training) -> keras.callbacks.ReduceLROnPlateau:
    """The `plateau` schedule: the learning rate halves after `lr_patience` epochs without a
    lower TRAINING loss, down to a tenth of where it started (the FCN papers' recipe: Wang et
    al. 2017, Karim et al. 2018). It watches the training loss, not the validation objective,
    so a replay on other validation windows follows the same schedule."""
    start = training.learning_rate or 1e-3  # Adam's own default
    return keras.callbacks.ReduceLROnPlateau(
        monitor="loss",
        factor=PLATEAU_FACTOR,
        patience=training.lr_patience,
        min_lr=start * PLATEAU_FLOOR,
    )


def decay_steps(training: Training, windows: int) -> int:
    """Training steps of `training` on `windows` training windows (a cosine decay reaches 0
    there)."""
    return training.epochs * math.ceil(windows / training.batch_size)


def compile_for(
    model: keras.Model,
    task: Task,
    training: Training,
    windows: int,
    jit_compile: str | None = None,
) -> keras.Model:
    """`compile_model` with `training`'s optimizer, learning rate and schedule for `windows`
    training windows (`jit_compile` overrides its own)."""
    return compile_model(
        model,
        task,
        optimizer=training.optimizer,
        learning_rate=training.learning_rate,
        lr_schedule=training.lr_schedule,
        decay_steps=decay_steps(training, windows),
        jit_compile=jit_compile or training.jit_compile,
        epochs=training.epochs,
    )


def fit(
    model: keras.Model,
    task: Task,
    data: tuple,
    validation: tuple | None,
    training: Training,
    *,
    stopper: keras.callbacks.EarlyStopping | None = None,
    callbacks: list | tuple = (),
    verbose: int = 0,
    initial_epoch: int = 0,
) -> keras.callbacks.History:
    """Train a compiled `model` on `data` = (x, y, w): the one training loop of the zoo, for
    `python -m zoo.train` and for every tuner trial alike.

    `training` gives the epochs, batch size, seed and schedule. Where it stops early
    (`Training.stops_early`), training stops after `patience` epochs without a gain on
    `validation` and keeps the best epoch's weights (`stopper`, made here unless given);
    otherwise it runs every epoch and keeps the last.
    Batches are shuffled afresh each epoch from (`seed`, epoch) alone (`EpochBatches`), so a
    run resumed at `initial_epoch` trains as it would have; variable-length data trains in
    batches of similar lengths (`LengthBatches`); a stateful task's batches follow each other
    unshuffled. `callbacks` run after the zoo's own.
    """
    x, y, w = data
    if stopper is None and training.stops_early and validation is not None:
        stopper = early_stopping(task, training.patience)
    ours = [stopper] if stopper is not None else []
    ours += standard_callbacks(task)
    if training.lr_schedule == "plateau":
        ours.append(plateau_callback(training))
    # epoch N's batches from (seed, N) alone, so a resumed run trains as it would have
    order = dict(batch_size=training.batch_size, seed=training.seed)
    order["epoch"] = initial_epoch
    if (task.preprocessing or {}).get("mask"):  # variable length: batches of similar lengths
        arguments = {"x": LengthBatches(x, y, w, **order)}
    elif task.stateful_batch:  # a stateful task's batches follow each other, unshuffled
        arguments = dict(x=x, y=y, sample_weight=w, batch_size=training.batch_size)
    else:
        arguments = {"x": EpochBatches(x, y, w, **order)}
    arguments["shuffle"] = False  # the batches above are shuffled; Keras' own shuffle would not be
    return model.fit(
        **arguments,
        validation_data=validation,
        epochs=training.epochs,
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


def build_model(config: RunConfig, task: Task) -> keras.Model:
    """The configured zoo model for `task`, initialised from the current random state."""
    return create_model(
        config.model,
        task.input_shape,
        task.num_outputs,
        output_kind=task.output_kind,
        preprocessing=task.preprocessing,
        stateful_batch=task.stateful_batch,
        **config.model_settings,
    )


def train(
    config: RunConfig, task: Task, model: keras.Model, folder: Path, verbose: int = 1
) -> dict:
    """Compile, fit (`fit`: early stopping unless `early_stopping` is off), checkpoint, evaluate
    on test, save everything.

    Every epoch is backed up in backup/ (`EpochBackup`), removed once the run's results are
    written; a folder that still has one resumes from its last epoch (`--resume`), killed at
    any instant. A loss that turns NaN or inf raises `Diverged`; the folder then keeps
    config.json and history.csv, and no model or metrics. Under `--distribute`, compile and fit
    run in the strategy's scope. With `refit`, the model trains on the train and validation
    splits together (see `training_split`)."""
    state, note = read_backup(folder)
    if note:
        print(note, file=sys.stderr)
    runs.write_config(folder, config, task, model.count_params())
    training = config.training()
    data, validation = training_split(task, training.refit)
    choice = config.distribute
    if choice != "none" and backend.name() == "jax":  # JAX splits a batch only evenly
        replicas = len(distribute.local_devices())
        data = distribute.pad_to_replicas(data, replicas)
        validation = distribute.pad_to_replicas(validation, replicas)
    with distribute.scope(choice):
        jit = distribute.jit_compile(choice, config.jit_compile)
        compile_for(model, task, training, len(data[0]), jit)
    monitor, mode = task.objective
    stopper = early_stopping(task, training.patience) if training.stops_early else None
    best = None if state is None else state["checkpoint_best"]
    checkpoint = AtomicCheckpoint(folder / "model.keras", monitor, mode, best)
    backup = EpochBackup(folder, stopper, checkpoint, state)
    callbacks = [checkpoint, *tensorboard(folder / "tb", verbose), backup]
    started = time.perf_counter()
    interrupted = False
    try:
        with distribute.scope(choice):
            fit(
                model,
                task,
                data,
                validation,
                training,
                stopper=stopper,
                callbacks=callbacks,
                verbose=verbose,
                initial_epoch=first_epoch(state),
            )
    except KeyboardInterrupt:
        interrupted = True
        print("\nInterrupted: keeping the best model so far.", file=sys.stderr)
        if stopper is not None and stopper.best_weights is not None:
            model.set_weights(stopper.best_weights)
    history = backup.history  # the whole run's, epochs before a resume included
    try:
        check_finite_history(history)
    except Diverged:
        (folder / "model.keras").unlink(missing_ok=True)
        shutil.rmtree(folder / "backup", ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    epochs_run = len(history.get("loss", []))
    metrics = save_results(
        task,
        model,
        folder,
        history,
        epochs_run=epochs_run,
        train_seconds=round(seconds, 1),
        best_epoch=stopper.best_epoch + 1 if stopper is not None else epochs_run,
        interrupted=interrupted,
    )
    if not interrupted:  # the results are written: nothing left to resume
        shutil.rmtree(folder / "backup", ignore_errors=True)
    return metrics


def training_split(task: Task, refit: bool = False):
    """((x, y, w), validation_data) a run trains on: the train split, scored on validation;
    with `refit`, the train and validation splits together (every labelled window the task
    has outside its test split; the validation figures are then not held out), or for a series
    task every window whose targets precede the test origin (its `x_refit`), the straddling
    windows between the two splits included."""
    if not refit:
        return task.split("train"), validation_data(task)
    if "x_refit" in task.info:  # a series task: every window whose targets precede the test
        refit_split = tuple(task.info[f"{k}_refit"] for k in ("x", "y", "w"))
        return refit_split, validation_data(task)
    train, val = task.split("train"), task.split("val")
    weights = None if train[2] is None else np.concatenate([train[2], val[2]])
    pooled = (np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]]), weights)
    return pooled, validation_data(task)


def save_results(task: Task, model: keras.Model, folder: Path, history: dict, **facts) -> dict:
    """A trained model's end of run: model.keras, its test and validation metrics with `facts`
    in metrics.json, and the plots. Returns the metrics."""
    files.save_model(model, folder / "model.keras")
    metrics = {**score(model, task), **facts, "val": score(model, task, "val")}
    metrics["val"].pop("report", None)
    runs.write_metrics(folder, metrics)
    run_plots(task, model, history, metrics, folder)
    return metrics


def train_ensemble(
    config: RunConfig, task: Task, model: keras.Model, folder: Path, verbose: int = 1
) -> dict:
    """`--ensemble N`: N members trained alone, member K with seed SEED+1000*(K-1), each a run
    folder member-K/ as a single run leaves it; then one Keras model averaging their outputs is
    evaluated and saved as the run's model.keras. Ctrl-C ends the member in training, keeps it
    and builds the ensemble from the members so far."""
    count = config.ensemble
    runs.write_config(folder, config, task, count * model.count_params())
    members, reports = [], []
    with no_retracing_warning():
        for k in range(1, count + 1):
            seed = config.seed + MEMBER_SEED_STEP * (k - 1)
            if k > 1:
                backend.set_random_seed(seed)
                model = build_model(config, task)
            model.name = f"member_{k}"
            (folder / f"member-{k}").mkdir()
            member = config.replace(seed=seed, ensemble=1)
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


def train_refit_best(
    config: RunConfig, task: Task, model: keras.Model, folder: Path, verbose: int = 1
) -> dict:
    """`--refit-best`: a run with early stopping in select/ finds the best epoch count on
    validation; then a new model from the same seed trains for that many epochs on every
    window outside the test (`training_split` with `refit`: for a series task, all the history
    before the forecast origin, as forecasters fit) and is the run's model, tested once.
    metrics.json adds "selection" (the first run's best epoch and validation figures). Killed,
    it resumes in the stage it was in: select/ ended (its metrics.json) is not run again."""
    selection_folder = folder / "select"
    done = None
    if (selection_folder / "metrics.json").is_file():
        done, _ = files.read_json_recovering(selection_folder / "metrics.json")
    if done is None:
        runs.write_config(folder, config, task, model.count_params())
        selection_folder.mkdir(exist_ok=True)
        done = train(config.replace(refit_best=None), task, model, selection_folder, verbose)
        backend.set_random_seed(config.seed)
        model = build_model(config, task)
    best = int(done["best_epoch"])
    print(f"refit: {best} epochs (the best on validation) on every window outside the test")
    metrics = train(config.replace(refit=True, epochs=best), task, model, folder, verbose)
    metrics["selection"] = {
        "best_epoch": best,
        "epochs_run": done["epochs_run"],
        "val": headline_metrics(done["val"]),
    }
    runs.write_metrics(folder, metrics)
    return metrics


def one_run(config: RunConfig):
    """The function that trains one run (or one fold) of `config`: `train_ensemble`,
    `train_refit_best` or `train`."""
    if config.ensemble > 1:
        return train_ensemble
    return train_refit_best if config.refit_best else train


def backtests(config: RunConfig, task: Task) -> int:
    """How many folds a run trains: the series task's `folds`, unless the options name one
    `fold` (then that fold alone); 1 for every other task."""
    if "fold" in config.task_options:
        return 1
    return int(task.info.get("folds", 1)) if "history" in task.info else 1


def train_folds(
    config: RunConfig, task: Task, model: keras.Model, folder: Path, verbose: int = 1
) -> dict:
    """A rolling-origin backtest (`--task-option folds=K`): fold k (0 = the last horizon) is a
    run of its own in fold-k/, trained on its task (`fold=k`) from the same seed, alone or as
    an ensemble; then metrics.json holds each fold's forecast report and their mean
    ("forecast": the mean, as `zoo.backtest.mean_over_folds`)."""
    count = backtests(config, task)
    runs.write_config(folder, config, task, model.count_params())
    options = config.task_options
    reports, facts = [], []
    for k in range(count):
        if k > 0:
            task = load_task(config.task, config.data, {**options, "fold": k})
            backend.set_random_seed(config.seed)
            model = build_model(config, task)
        (folder / f"fold-{k}").mkdir()
        member = config.replace(task_options={**options, "fold": k})
        metrics = one_run(config)(member, task, model, folder / f"fold-{k}", verbose)
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
