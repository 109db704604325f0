"""A keras-tuner `HyperModel` over the zoo's model registry, for any task.

Every hyperparameter is named like the builder argument or the `python -m zoo.train` flag it
replays as, so the best trial's values become a `--hparams` file (`training_config`):

- `model`: a choice of registered models (filtered by globs; models that cannot serve the task
  are left out: those that read later steps on causal tasks, those that give one output a window
  on sequence tasks, the RNN-FCN models on windows shorter than their smallest kernel). Models
  that differ only in defaults are one point (`stacked_lstm` is `lstm` with depth 2, `mlstm_fcn`
  is `lstm_fcn` with squeeze-and-excitation). When a model and its bidirectional twin (`lstm` and
  `bilstm`) are both candidates, the twin is folded into `bidirectional`, a switch active for
  such models.
- `depth`, `units`, `dropout`, `recurrent_dropout`, `l2`: what the recurrent builders take.
- `conv_layers`, `filters`, `kernel_size` (conv_lstm) and `attention_size` (attention_lstm): in
  conditional scopes of the models that take them, so other trials do not sample them.
- `filters`, `kernel_size`, `squeeze_excite`, `shuffle` and `attention` (the RNN-FCN family,
  `filters` and `kernel_size` also conv_lstm's) in conditional scopes of the models that take
  them; `units` and `dropout` are every model's, their ranges holding the RNN-FCN papers' values
  (8 units, dropout 0.8); `task_space` narrows kernel sizes to the task's windows and fixes
  `shuffle` off on padded tasks.
- `es_rnn`: `trend`, and its own small ranges of `units`, `depth`, `dropout` and
  `recurrent_dropout` (`ESRNN_SPACE`); it trains on its own loss, so it is searched apart from the
  others (`apart_from_own_losses`), and its ranges never meet another family's in one search.
- `optimizer`, `learning_rate` (compile, through `zoo.fit.compile_for`) and `batch_size`
  (fit). The learning-rate schedule is the model's own (`zoo.config.training_defaults_for`:
  constant, `plateau` for the FCN family).

A trial trains through `zoo.fit.fit`, the loop `python -m zoo.train` uses (data pipeline,
schedule, early stopping), and records the epoch its early stopping kept (`best_epoch`, the
mean over executions): `training_config` replays it for that many epochs, without early
stopping, so the replay trains as the trial did.

`fixed` replaces a range by one value (`hp.Fixed`) or narrows it to a list (`hp.Choice`).
"""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from zoo import backend
from zoo.config import OPTIMIZERS, Training, training_defaults_for
from zoo.fit import compile_for, fit, validation_data
from zoo.models import (
    MODELS,
    create_model,
    es_rnn_model,
    list_models,
    looks_ahead,
    model_hyperparameters,
    model_output_kinds,
    own_loss,
    rnn_fcn_model,
    same_family,
)
from zoo.registry import UnknownNameError
from zoo.tasks.base import Task

# Model hyperparameters: each declared once, for the candidate models whose builder takes it (a
# conditional scope unless every candidate does). keras-tuner 1.4.8 cannot hold one name twice
# in different scopes (`HyperParameters.ensure_active_values` drops the value of a name whose
# other declaration is inactive), so where families differ a range holds both: `units` from 8
# and `dropout` up to 0.8 (the RNN-FCN papers'), `kernel_size` 8 (their 8-5-3).
MODEL_SPACE = {
    "depth": lambda hp: hp.Int("depth", 1, 4, default=1),
    "units": lambda hp: hp.Int("units", 8, 256, step=2, sampling="log", default=64),
    "dropout": lambda hp: hp.Choice("dropout", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.8], default=0.0),
    "recurrent_dropout": lambda hp: hp.Choice(
        "recurrent_dropout", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], default=0.0
    ),
    "l2": lambda hp: hp.Choice("l2", [0.0, 1e-5, 1e-4, 1e-3, 1e-2], default=0.0),
    "conv_layers": lambda hp: hp.Int("conv_layers", 1, 3, default=2),
    "filters": lambda hp: hp.Int("filters", 16, 128, step=2, sampling="log", default=64),
    "kernel_size": lambda hp: hp.Choice("kernel_size", [3, 5, 7, 8], default=5),
    "attention_size": lambda hp: hp.Int(
        "attention_size", 16, 128, step=2, sampling="log", default=64
    ),
    "squeeze_excite": lambda hp: hp.Boolean("squeeze_excite", default=False),
    "shuffle": lambda hp: hp.Boolean("shuffle", default=True),
    "attention": lambda hp: hp.Boolean("attention", default=False),
    "trend": lambda hp: hp.Boolean("trend", default=False),
}
# es_rnn's own ranges (it is searched alone, see apart_from_own_losses): small networks (Smyl's
# LSTMs are 30-50 wide, a correction of the ES forecast), one or two layers.
ESRNN_SPACE = {
    "units": lambda hp: hp.Choice("units", [8, 16, 32, 64], default=16),
    "depth": lambda hp: hp.Int("depth", 1, 2, default=1),
    "dropout": lambda hp: hp.Choice("dropout", [0.0, 0.1, 0.2, 0.3], default=0.0),
    "recurrent_dropout": lambda hp: hp.Choice(
        "recurrent_dropout", [0.0, 0.1, 0.2, 0.3], default=0.0
    ),
}


def task_space(task: Task) -> dict:
    """MODEL_SPACE narrowed to what `task` allows: kernel sizes no longer than its windows (the
    RNN-FCN models refuse longer ones), and on a padded (masked) task no dimension shuffle
    (it would read the padding)."""
    window = task.model_steps
    kernels = [k for k in (3, 5, 7, 8) if window is None or k <= window] or [3]
    space = dict(MODEL_SPACE)
    space["kernel_size"] = lambda hp: hp.Choice("kernel_size", kernels, default=min(5, kernels[-1]))
    if (task.preprocessing or {}).get("mask"):
        space["shuffle"] = lambda hp: hp.Fixed("shuffle", False)
    return space


# The switch between a model and its bidirectional twin (see `bidirectional_twin`).
DIRECTION_SPACE = {"bidirectional": lambda hp: hp.Boolean("bidirectional", default=False)}
# Training hyperparameters; batch_size's choices also hold the task's own, its default.
TRAINING_SPACE = {
    "optimizer": lambda hp: hp.Choice("optimizer", ["adam", "sgd", "rmsprop", "adagrad"]),
    "learning_rate": lambda hp: hp.Float("learning_rate", 1e-4, 1e-1, sampling="log", default=1e-3),
}
BATCH_SIZES = (16, 32, 64, 128)
EXECUTION_SEED_STEP = 1000  # execution K of a trial builds its model with seed + 1000*K
NAMES = ("model", *DIRECTION_SPACE, *MODEL_SPACE, *TRAINING_SPACE, "batch_size")
FCN_MIN_WINDOW = 3  # the RNN-FCN models' smallest kernel_size in the space


class Diverged(kt.errors.FailedTrialError):
    """Training diverged (a loss or objective not finite): the trial fails, with no retry."""

    def __init__(self, message: str, epochs_run: int):
        super().__init__(message)
        self.epochs_run = epochs_run

    def __reduce__(self):  # raised in a trial's own process, re-raised in the search's
        return type(self), (str(self), self.epochs_run)


def bidirectional_twin(model: str) -> str | None:
    """The registered bidirectional version of `model` (`lstm` -> `bilstm`), if there is one."""
    twin = f"bi{model}"
    if twin in MODELS and looks_ahead(twin) and not looks_ahead(model):
        return twin
    return None


def model_name(values: dict) -> str:
    """The name of the registered model a trial's values describe: `model`, or its
    bidirectional twin if `bidirectional`."""
    if values.get("bidirectional"):
        return bidirectional_twin(values["model"])
    return values["model"]


def training_config(
    values: dict,
    *,
    epochs: int,
    patience: int,
    seed: int,
    best_epoch: float | None = None,
    schedule: dict | None = None,
) -> dict:
    """A trial's values as `python -m zoo.train --hparams` reads them: only keys it accepts.

    With `best_epoch` (the mean over the trial's executions of the epoch its early stopping
    kept), the replay trains that many epochs (rounded, at least 1) with early stopping off,
    as the trial trained up to that epoch; without it, the trial's epochs (hyperband trials
    ran `tuner/epochs` in all) with early stopping at `patience`. `schedule` is the trial's
    learning-rate schedule (`lr_schedule`, and `lr_patience` for plateau).
    """
    model = model_name(values)
    config = {"model": model}
    config |= {k: values[k] for k in model_hyperparameters(model) if values.get(k) is not None}
    config |= {k: values[k] for k in ("optimizer", "learning_rate", "batch_size")}
    config |= schedule or {}
    if best_epoch is not None:
        config |= {"epochs": max(1, round(best_epoch)), "early_stopping": False, "seed": seed}
    else:
        config |= {"epochs": values.get("tuner/epochs", epochs), "patience": patience}
        config["seed"] = seed
    return config


def same_point(a: str, b: str) -> bool:
    """True when models `a` and `b` differ only in defaults (`stacked_lstm` is `lstm` with
    depth 2): the space holds both as the same points."""
    return same_family(a, b) and model_hyperparameters(a) == model_hyperparameters(b)


def without_duplicates(models: list[str]) -> list[str]:
    """`models` less those that differ from another of them only in defaults (the shortest
    name stays: `lstm` for `stacked_lstm` and `deep_lstm`)."""
    return [
        m for m in models if not any(same_point(m, o) and (len(o), o) < (len(m), m) for o in models)
    ]


def unsuitable(task: Task, model: str) -> str | None:
    """Why `model` cannot serve `task`, as the end of "MODELS ..." (None when it can)."""
    if task.causal and looks_ahead(model):
        return f"look ahead, and task {task.name!r} is causal (its targets are later inputs)"
    if task.output_kind not in model_output_kinds(model):
        return f"give one output a window, and task {task.name!r} wants {task.output_kind}"
    window = task.model_steps
    if MODELS.get(model).builder is rnn_fcn_model and window is not None:
        if window < FCN_MIN_WINDOW:
            return (
                f"need windows of at least {FCN_MIN_WINDOW} steps (their convolution kernels), "
                f"and task {task.name!r} has {window}"
            )
    return None


def candidate_models(task: Task, pattern: str | None = None) -> list[str]:
    """Registered models matching the globs that suit `task` (see `unsuitable`)."""
    matched = list_models(pattern)
    why = {m: unsuitable(task, m) for m in matched}
    suitable = [m for m in matched if why[m] is None]
    if suitable:
        return suitable
    if matched:
        reasons = {}
        for model, reason in why.items():
            reasons.setdefault(reason, []).append(model)
        shown = "; ".join(f"{', '.join(models)} {reason}" for reason, models in reasons.items())
        raise ValueError(f"--models {pattern!r}: {shown}")
    raise ValueError(
        f"no model matches --models {pattern!r}. Available: {', '.join(list_models())}"
    )


def apart_from_own_losses(models: list[str], named: bool) -> list[str]:
    """`models`, unless some train on a loss of their own (`es_rnn`: errors of log forecasts)
    beside others on the task's: their validation losses (the search's objective) are on other
    scales. Then models the user did not name are left out (the default search keeps the
    task's loss); named ones are refused in one line."""
    own = [m for m in models if own_loss(m)]
    if not own or len(own) == len(models):
        return models
    if not named:
        return [m for m in models if m not in own]
    raise ValueError(
        f"--models: {', '.join(own)} train on {own_loss(own[0])}, the others on the task's loss, "
        "so their validation losses cannot be compared: search them apart "
        f"(--models {own[0]})"
    )


class ZooHyperModel(kt.HyperModel):
    """Builds, compiles and fits any registered zoo model for `task`, as keras-tuner asks.

    Args:
        task: the `Task` to train on; its validation split scores a trial.
        models: comma-separated fnmatch globs of models to choose from. Defaults to all.
        fixed: hyperparameter name -> list of values; one value fixes it, several narrow it.
        seed: seed set before building each model; execution K of a trial (from 0) uses
            `seed + EXECUTION_SEED_STEP * K`, so repeated executions start differently.
            Defaults to `0`.
        epochs: most epochs a trial; with the task's size it sets the XLA choice
            (`zoo.xla.use_xla`). Defaults to the task's own (as `patience`).
        patience: early-stopping patience within a trial. Defaults to the task's own
            (`zoo.config.training_defaults_for`, which adapts it to a small training split).

    Raises:
        ValueError: no model matches, or a fixed name or value cannot apply.
        UnknownNameError: a fixed name that is no hyperparameter (with close names).
    """

    def __init__(
        self,
        task: Task,
        *,
        models: str | None = None,
        fixed: dict[str, list] | None = None,
        seed: int = 0,
        patience: int | None = None,
        epochs: int | None = None,
    ):
        super().__init__(name=f"zoo_{task.name}")
        if task.stateful_batch:
            raise ValueError(
                f"task {task.name!r} is stateful (streams side by side, fixed batches): "
                "search it without the stateful option"
            )
        defaults = training_defaults_for(task)
        self.task, self.seed, self.pattern = task, seed, models
        self.patience = patience or defaults["patience"]
        self.epochs = epochs or defaults["epochs"]
        # the plateau schedule's patience, one for every trial and rung (and for the replay)
        self.lr_patience = max(5, self.epochs // 20)
        self.execution = 0  # set by the tuner before each execution of a trial
        self.folds: list = []  # (train rows, validation rows) of the pooled splits, see use_folds
        self.fixed = dict(fixed or {})
        for name in self.fixed:
            if name not in NAMES:
                raise UnknownNameError("hyperparameter", name, sorted(NAMES))
        candidates = candidate_models(task, models)
        if "model" in self.fixed:
            candidates = self._fixed_models(task, candidates)
        candidates = apart_from_own_losses(
            candidates, named=models is not None or "model" in self.fixed
        )
        candidates = without_duplicates(candidates)
        # model -> its bidirectional twin, where both are candidates
        self.twins = {
            m: bidirectional_twin(m) for m in candidates if bidirectional_twin(m) in candidates
        }
        self.models = [m for m in candidates if m not in self.twins.values()]
        self.space = {
            **DIRECTION_SPACE,
            **task_space(task),
            **(
                ESRNN_SPACE
                if all(MODELS.get(m).builder is es_rnn_model for m in candidates)
                else {}
            ),
            **TRAINING_SPACE,
            "batch_size": lambda hp: hp.Choice(
                "batch_size",
                sorted({*BATCH_SIZES, defaults["batch_size"]}),
                default=defaults["batch_size"],
            ),
        }
        # hyperparameter -> the models taking it (None: every candidate does)
        self.scopes = {}
        for key in MODEL_SPACE:
            takers = [m for m in self.models if key in model_hyperparameters(m)]
            if takers:
                self.scopes[key] = None if takers == self.models else takers
        self._check_fixed_values()

    def __reduce__(self):
        """Pickled as its arguments (its space holds functions), for a trial's own process."""
        arguments = {"models": self.pattern, "fixed": self.fixed, "seed": self.seed}
        arguments |= {"patience": self.patience, "epochs": self.epochs}
        return rebuilt_hypermodel, (self.task, arguments, self.folds)

    def _fixed_models(self, task: Task, candidates: list[str]) -> list[str]:
        """The models `--fix model=...` names, each registered and among the candidates."""
        for name in self.fixed["model"]:
            MODELS.get(str(name))  # raises UnknownNameError with close names
            if name not in candidates:
                raise ValueError(
                    f"--fix model={name}: not a candidate on task {task.name!r} "
                    f"(candidates: {', '.join(candidates)})"
                )
        return [m for m in candidates if m in self.fixed["model"]]

    def _check_fixed_values(self) -> None:
        """Refuse fixed values that could never apply, before any trial runs."""
        fixed = self.fixed
        if "bidirectional" in fixed and not self.twins:
            raise ValueError(
                "--fix bidirectional applies only when a model and its bidirectional twin are "
                "both candidates (e.g. --models 'lstm,bilstm')"
            )
        for key in MODEL_SPACE:
            if key in fixed and key not in self.scopes:
                raise ValueError(
                    f"--fix {key}: none of the candidate models ({', '.join(self.models)}) takes it"
                )
        for name in fixed.get("optimizer", []):
            if name not in OPTIMIZERS:
                raise ValueError(
                    f"--fix optimizer must be one of {', '.join(OPTIMIZERS)}. Received: {name!r}"
                )
        for rate in fixed.get("learning_rate", []):
            if isinstance(rate, (bool, str)) or not rate > 0:
                raise ValueError(f"--fix learning_rate must be > 0. Received: {rate!r}")
        for size in fixed.get("batch_size", []):
            if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
                raise ValueError(f"--fix batch_size must be a positive integer. Received: {size!r}")

    def _declare(self, hp: kt.HyperParameters, name: str):
        """Declare `name`: fixed (`hp.Fixed`), narrowed (`hp.Choice`) or its full range."""
        values = self.fixed.get(name)
        if values is None:
            return self.space[name](hp)
        if len(values) == 1:
            return hp.Fixed(name, values[0])
        return hp.Choice(name, values)

    def _declare_model(self, hp: kt.HyperParameters) -> str:
        """Declare `model` (and `bidirectional`); return the registered model to build."""
        if len(self.models) == 1:
            model = hp.Fixed("model", self.models[0])
        else:
            default = "lstm" if "lstm" in self.models else self.models[0]
            model = hp.Choice("model", self.models, default=default)
        if not self.twins:
            return model
        with hp.conditional_scope("model", sorted(self.twins)):
            bidirectional = self._declare(hp, "bidirectional")
        return self.twins[model] if bidirectional else model

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        """Declare `batch_size` up front: `fit` reads it, and keras-tuner's first scan of the
        space only calls `build`, so the first trials would otherwise all use the default."""
        self._declare(hp, "batch_size")

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        """A compiled model for the trial's values, in a fresh Keras session."""
        keras.backend.clear_session()  # free earlier trials' models and Keras state
        backend.set_random_seed(self.seed + EXECUTION_SEED_STEP * self.execution)
        name = self._declare_model(hp)
        kwargs = {}
        for key, takers in self.scopes.items():
            if takers is None:
                kwargs[key] = self._declare(hp, key)
            else:
                with hp.conditional_scope("model", takers):
                    kwargs[key] = self._declare(hp, key)  # None unless `model` takes it
        model = create_model(
            name,
            self.task.input_shape,
            self.task.num_outputs,
            output_kind=self.task.output_kind,
            preprocessing=self.task.preprocessing,
            **kwargs,
        )
        settings = self.settings(hp)
        (x, _, _), _ = self.training_data()
        return compile_for(model, self.task, settings, len(x))

    def schedule(self, model: str) -> dict:
        """The learning-rate schedule `model` trains with: its own (`training_defaults_for`),
        and for plateau the search's `lr_patience`."""
        name = training_defaults_for(self.task, model)["lr_schedule"]
        return {
            "lr_schedule": name,
            **({"lr_patience": self.lr_patience} if name == "plateau" else {}),
        }

    def settings(self, hp: kt.HyperParameters, epochs: int | None = None) -> Training:
        """How a trial's execution trains, as `zoo.fit` takes it (a run's `Training`):
        optimizer, learning rate, schedule, batch, epochs, patience, seed."""
        model = model_name(hp.values) if "model" in hp.values else self.models[0]
        return Training(
            optimizer=self._declare(hp, "optimizer"),
            learning_rate=self._declare(hp, "learning_rate"),
            batch_size=self._declare(hp, "batch_size"),
            epochs=hp.values.get("tuner/epochs") or epochs or self.epochs,  # a rung's own
            patience=self.patience,
            seed=self.seed + EXECUTION_SEED_STEP * self.execution,
            **self.schedule(model),
        )

    def fit(self, hp, model, *args, epochs=None, callbacks=None, verbose=0, **kwargs):
        """Train on the task's train split, scored on its validation split, or with `folds` on
        this execution's fold (the data comes from the task, not from `search` arguments),
        through `zoo.fit.fit`: the loop, schedule and early stopping of `python -m zoo.train`.

        A loss or objective that is not finite fails the trial (`Diverged`: recorded as
        failed, not retried).
        """
        data, validation = self.training_data()
        settings = self.settings(hp, epochs)
        history = fit(
            model,
            self.task,
            data,
            validation,
            settings,
            callbacks=list(callbacks or []),
            verbose=verbose,
            initial_epoch=kwargs.get("initial_epoch", 0),
        )
        for key in ("loss", self.task.objective[0]):
            values = history.history.get(key, [])
            if not values or not np.all(np.isfinite(values)):
                epochs_run = len(history.history.get("loss", []))
                raise Diverged(
                    f"{key} is not finite after {epochs_run} epochs: {values}", epochs_run
                )
        return history

    def use_folds(self, k: int) -> None:
        """Score trials by k-fold cross-validation: the train and validation splits pooled and
        cut into `k` folds (stratified for per-sample classes), execution E of a trial
        validating on fold E mod k. The tuner runs k executions a trial; the oracle sees the
        mean of the folds' objectives."""
        _, y, _ = self.pooled()
        counts = np.bincount(y) if y.ndim == 1 and self.task.is_classification else None
        if counts is not None and counts[counts > 0].min() >= k:
            splitter = StratifiedKFold(k, shuffle=True, random_state=self.seed)
        else:
            splitter = KFold(k, shuffle=True, random_state=self.seed)
        self.folds = list(splitter.split(np.zeros(len(y)), y if counts is not None else None))

    def pooled(self):
        """The train and validation splits as one (x, y, w)."""
        train, val = self.task.split("train"), self.task.split("val")
        weights = None if train[2] is None else np.concatenate([train[2], val[2]])
        return np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]]), weights

    def training_data(self):
        """((x, y, w), validation_data) of the current execution."""
        if not self.folds:
            return self.task.split("train"), validation_data(self.task)
        x, y, w = self.pooled()
        fit, held = self.folds[self.execution % len(self.folds)]
        if w is None:
            return (x[fit], y[fit], None), (x[held], y[held])
        return (x[fit], y[fit], w[fit]), (x[held], y[held], w[held])


def rebuilt_hypermodel(task: Task, arguments: dict, folds: list) -> ZooHyperModel:
    """A pickled `ZooHyperModel` again (see its `__reduce__`)."""
    hypermodel = ZooHyperModel(task, **arguments)
    hypermodel.folds = folds
    return hypermodel
