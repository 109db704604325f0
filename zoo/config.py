"""A run's configuration: a preset, then --hparams, then the flags, checked against what the task
and the model take. Light: nothing here imports Keras, so the CLI can answer --help at once."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from zoo.cli import check_learning_rate
from zoo.models import (
    MODELS,
    looks_ahead,
    model_defaults,
    model_hyperparameters,
    model_output_kinds,
    rnn_fcn_model,
    why_it_looks_ahead,
)
from zoo.presets import NO_PRESET, default_preset, get_preset
from zoo.tasks import TASKS, Task, get_task, task_options, task_reads_data

OPTIMIZERS = ("adam", "adamw", "nadam", "rmsprop", "adagrad", "sgd")
LR_SCHEDULES = ("constant", "cosine", "plateau")
# The plateau schedule (`zoo.fit.plateau_callback`): halve the learning rate when the training
# loss stalls, down to a tenth of where it started.
PLATEAU_FACTOR = 0.5
PLATEAU_FLOOR = 0.1
JIT_CHOICES = ("auto", "on", "off")
DEFAULTS = {
    "optimizer": "adam",
    "seed": 0,
    "ensemble": 1,
    "jit_compile": "auto",
    "distribute": "none",
}
TRAINING_KEYS = (
    "epochs",
    "batch_size",
    "optimizer",
    "learning_rate",
    "lr_schedule",
    "lr_patience",
    "patience",
    "early_stopping",
    "refit",
    "refit_best",
    "seed",
    "ensemble",
    "jit_compile",
    "distribute",
)
RUN_KEYS = ("task", "model", "data", "out", "task_options", "preset")
MEMBER_SEED_STEP = 1000  # ensemble member K trains with seed SEED + 1000*(K-1)
# Below this many training windows the training defaults adapt to the data's size: a batch of
# about an eighth of the windows (8 at least), epochs enough for MIN_GRADIENT_STEPS steps, and
# SMALL_DATA_DROPOUT: a few hundred windows are memorised within those steps, so the model is
# regularised on its output and its recurrent state unless a flag, preset or --hparams says;
# dropout slows learning, so the steps are twice the 1,500 an unregularised model needed.
SMALL_DATA = 1000
MIN_GRADIENT_STEPS = 3000
MAX_SMALL_DATA_EPOCHS = 1000
SMALL_DATA_DROPOUT = {"dropout": 0.3, "recurrent_dropout": 0.3}
# The most weights a model may have: checked before it is built. Training keeps four float32
# copies of each (the weights, their gradients, Adam's two moments), 1.6 GB at this size, before
# activations; `--units 1000000` asked for 8e12 and took ~96 s to fail out of memory.
MAX_PARAMETERS = 100_000_000
# The FCN family's recipe (`fcn_recipe`): gradient steps on a small split, and the plateau
# schedule's patience as a share of the epochs (the papers: 50 or 100 of 2,000 epochs).
FCN_GRADIENT_STEPS = 3000
FCN_PLATEAU_DIVISOR = 20


@dataclass(frozen=True)
class Training:
    """How a model trains, as `zoo.fit.compile_for` and `zoo.fit.fit` read it: a run's
    (`RunConfig.training`) or a tuner trial's.

    Training stops after `patience` epochs without a gain on validation unless
    `early_stopping` is off or `refit` pools the validation split into training
    (`stops_early`). `lr_patience` is the plateau schedule's (`lr_schedule="plateau"`)."""

    epochs: int
    batch_size: int
    optimizer: str = "adam"
    learning_rate: float | None = None  # None: the optimizer's own default
    lr_schedule: str = "constant"
    lr_patience: int | None = None
    patience: int | None = None
    early_stopping: bool = True
    refit: bool = False
    seed: int = 0
    jit_compile: str = "auto"

    @property
    def stops_early(self) -> bool:
        """True when training stops early on validation (the default); False with
        `early_stopping` off or `refit` (it then trains every epoch and keeps the last)."""
        return self.early_stopping and not self.refit


@dataclass
class RunConfig:
    """A run's configuration: the task and model, the model's own hyperparameters
    (`model_settings`: units, depth, dropout, ...), and how it trains.

    config.json's "hyperparameters" hold it as one flat object (`as_dict`), the form `--hparams`
    replays (`from_dict`). A training value left None was not given: `zoo.train.prepare`
    fills it from the task's defaults (`training_defaults_for`) before training."""

    task: str
    model: str
    model_settings: dict = field(default_factory=dict)
    data: str | None = None
    out: str | None = None
    task_options: dict = field(default_factory=dict)
    preset: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str = DEFAULTS["optimizer"]
    learning_rate: float | None = None
    lr_schedule: str | None = None
    lr_patience: int | None = None
    patience: int | None = None
    early_stopping: bool | None = None  # None: on
    refit: bool | None = None
    refit_best: bool | None = None  # `zoo.fit.train_refit_best`
    seed: int = DEFAULTS["seed"]
    ensemble: int = DEFAULTS["ensemble"]
    jit_compile: str = DEFAULTS["jit_compile"]
    distribute: str = DEFAULTS["distribute"]

    @classmethod
    def from_dict(cls, flat: dict) -> RunConfig:
        """The configuration in a flat object (config.json's "hyperparameters", a
        best_hparams.json): the model's hyperparameters are the keys that are not fields."""
        names = {f.name for f in dataclasses.fields(cls)} - {"model_settings"}
        given = {k: v for k, v in flat.items() if k in names and v is not None}
        own = {k: v for k, v in flat.items() if k not in names}
        return cls(**given, model_settings=own)

    def as_dict(self) -> dict:
        """The flat object config.json and best_hparams.json hold: what was given or chosen,
        the model's hyperparameters beside the run's settings (None and empty left out)."""
        flat = {"task": self.task, "model": self.model, **self.model_settings}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in ("task", "model", "model_settings") and value not in (None, {}):
                flat[f.name] = value
        return flat

    def replace(self, **changes) -> RunConfig:
        """A copy with `changes` (field names; `model_settings` replaced whole)."""
        return dataclasses.replace(self, **changes)

    def fill(self, chosen: dict) -> None:
        """Set what was not given from `chosen` (training settings and model hyperparameters
        by name, as `training_defaults_for` returns them); given values stay."""
        for key, value in chosen.items():
            if key in TRAINING_KEYS:
                if getattr(self, key) is None:
                    setattr(self, key, value)
            else:
                self.model_settings.setdefault(key, value)

    def training(self) -> Training:
        """How the model trains; every value `Training` needs must be set (`fill`)."""
        if self.epochs is None or self.batch_size is None:
            raise ValueError("the run's epochs and batch size are not set yet (see `fill`)")
        return Training(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            learning_rate=self.learning_rate,
            lr_schedule=self.lr_schedule or "constant",
            lr_patience=self.lr_patience,
            patience=self.patience,
            early_stopping=self.early_stopping is not False,
            refit=bool(self.refit),
            seed=self.seed,
            jit_compile=self.jit_compile,
        )


def read_hparams(path: str) -> dict:
    """The hyperparameters in a JSON file (an object of names to values)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"--hparams: no such file: {path}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"--hparams: {path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--hparams: {path} must hold a JSON object of names to values")
    return data.get("hyperparameters", data)


def resolve(
    flags: dict,
    *,
    preset: str | None = None,
    hparams: str | None = None,
    task_options: dict | None = None,
) -> RunConfig:
    """One configuration: a preset, then --hparams, then the flags (later ones win).

    `flags` maps setting names to the values given on the command line (None: not given). The
    preset is `preset`, else the one named after TASK and MODEL unless `hparams` replays a
    configuration; `preset="none"` uses none.
    """
    replay = read_hparams(hparams) if hparams else {}
    flags = {k: v for k, v in flags.items() if v is not None}
    name = preset
    settings = get_preset(name) if name not in (None, NO_PRESET) else {}
    for key in ("task", "model"):
        if settings and key in flags and flags[key] != settings[key]:
            raise ValueError(
                f"preset {name!r} is for {settings['task']} {settings['model']}, not {key} "
                f"{flags[key]!r}; drop TASK MODEL or choose another preset"
            )
    task = flags.get("task") or replay.get("task") or settings.get("task")
    model = flags.get("model") or replay.get("model") or settings.get("model")
    if name is None and not hparams and task and model:
        name = default_preset(task, model)
        settings = get_preset(name) if name else {}
    config = {**settings, **replay, **flags}
    if name not in (None, NO_PRESET):
        config["preset"] = name
    options = {
        **settings.get("task_options", {}),
        **replay.get("task_options", {}),
        **(task_options or {}),
    }
    if options:
        config["task_options"] = options
    if not config.get("task"):
        raise ValueError("give a TASK (see --list)")
    TASKS.get(config["task"])
    if not config.get("model"):
        raise ValueError("give a MODEL, or --hparams with a 'model' entry (see --list)")
    takes = model_hyperparameters(config["model"])
    unknown = sorted(set(config) - {*RUN_KEYS, *TRAINING_KEYS, *takes})
    if unknown:
        raise ValueError(
            f"model {config['model']!r} takes no {', '.join(unknown)}; it takes {', '.join(takes)}"
        )
    if config.get("learning_rate") is not None:  # from a flag, --hparams or a preset
        check_learning_rate(config["learning_rate"])
    if config.get("refit_best"):
        clashes = {
            "--refit": config.get("refit"),
            "--no-early-stopping": config.get("early_stopping") is False,
            "--ensemble": config.get("ensemble", 1) > 1,
        }
        clash = next((flag for flag, on in clashes.items() if on), None)
        if clash:
            raise ValueError(
                f"--refit-best finds its epochs by early stopping, then refits; drop {clash}"
            )
    return RunConfig.from_dict(config)


def check_data_path(data, task: str | None = None) -> None:
    """Refuse a --data for a task that reads no file, or a path that does not exist, before
    anything slow starts."""
    if data is None:
        return
    if task in TASKS and not task_reads_data(task):
        raise ValueError(f"task {task!r} reads no file; drop --data")
    if not Path(str(data)).expanduser().exists():
        raise ValueError(f"--data: no such file or folder: {data}")


def parameters_bound(config: RunConfig, features: int) -> int:
    """An upper bound on the weights of the configured model's recurrent layers, from its
    settings alone (every layer counted as an LSTM's four gates, both directions where it
    reads backwards too): what `check_size` compares with MAX_PARAMETERS."""
    settings = model_defaults(config.model) | config.model_settings
    units = int(settings.get("units") or 0)
    depth = max(int(settings.get("depth") or 1), 1)
    directions = 2 if looks_ahead(config.model) else 1
    total, inputs = 0, features
    for _ in range(depth):
        total += directions * 4 * units * (inputs + units + 1)
        inputs = directions * units
    return total


def check_size(config: RunConfig, features: int) -> None:
    """Refuse a model larger than MAX_PARAMETERS before it is built (`parameters_bound`)."""
    bound = parameters_bound(config, features)
    if bound > MAX_PARAMETERS:
        settings = model_defaults(config.model) | config.model_settings
        raise ValueError(
            f"{config.model} with {settings.get('units')} units and depth "
            f"{settings.get('depth', 1)} would hold up to {bound:.2g} weights, over the limit "
            f"of {MAX_PARAMETERS:,} (about 1.6 GB to train); choose fewer --units or --depth"
        )


def load_task(task: str, data=None, options: dict | None = None) -> Task:
    """The task with --data and --task-option values, each checked against what it takes."""
    options = dict(options or {})
    unknown = [key for key in options if key not in task_options(task)]
    if unknown:
        raise ValueError(
            f"--task-option {unknown[0]}: task {task!r} takes "
            f"{', '.join(task_options(task)) or 'no options'}"
        )
    if data:
        if not task_reads_data(task):
            raise ValueError(f"task {task!r} reads no file; drop --data")
        options["data"] = data
    return get_task(task, **options)


def check_pairing(task: Task, model: str) -> None:
    """Refuse a model that would read a causal task's answers from later inputs, that cannot
    carry state forward on a stateful task, or that cannot give the task's kind of output."""
    why = why_it_looks_ahead(model)
    if task.stateful_batch and why:
        raise ValueError(
            f"model {model!r} {why}, so it cannot carry its state forward "
            "from batch to batch (stateful); use a unidirectional model such as lstm or gru"
        )
    if task.causal and why:
        allowed = [m for m in MODELS.list() if not looks_ahead(m)]
        raise ValueError(
            f"model {model!r} {why}, so on task {task.name!r} (next-step "
            f"prediction) it would see the targets. Use one of: {', '.join(allowed)}"
        )
    if task.output_kind not in model_output_kinds(model):
        allowed = [m for m in MODELS.list() if task.output_kind in model_output_kinds(m)]
        raise ValueError(
            f"model {model!r} gives one output a window ({' or '.join(model_output_kinds(model))})"
            f"; task {task.name!r} wants {task.output_kind}. Use one of: {', '.join(allowed)}"
        )


def training_defaults_for(task: Task, model: str | None = None) -> dict:
    """The training defaults for `task` (and `model`): its own, or for a small training split
    (fewer than SMALL_DATA windows) a batch size that suits the size and enough epochs for
    MIN_GRADIENT_STEPS gradient steps, with a patience of a quarter of them, and the model's
    SMALL_DATA_DROPOUT (the keys `model` takes). A split of 36 windows trains in batches of 8
    for up to 600 epochs with patience 150 instead of 20 epochs of one batch (20 steps).
    The FCN models (`fcn_recipe`) have their own. `lr_schedule` is always set."""
    if model is not None and is_fcn(model):
        return fcn_recipe(task)
    own = {"epochs": task.epochs, "batch_size": task.batch_size, "patience": task.patience}
    own["lr_schedule"] = "constant"
    n = len(task.x_train)
    if n >= SMALL_DATA:
        return own
    batch = small_data_batch(task)
    per_epoch = math.ceil(n / batch)
    epochs = min(MAX_SMALL_DATA_EPOCHS, max(task.epochs, math.ceil(MIN_GRADIENT_STEPS / per_epoch)))
    patience = max(task.patience, epochs // 4)
    takes = model_hyperparameters(model) if model else list(SMALL_DATA_DROPOUT)
    dropout = {k: v for k, v in SMALL_DATA_DROPOUT.items() if k in takes}
    return {**own, "epochs": epochs, "batch_size": batch, "patience": patience, **dropout}


def small_data_batch(task: Task) -> int:
    """About an eighth of the training windows, a power of 2, 8 at least, the task's at most."""
    n = len(task.x_train)
    return min(task.batch_size, max(8, 2 ** round(math.log2(max(n, 1) / 8))))


def is_fcn(model: str) -> bool:
    """True for the RNN-FCN family (a convolutional branch beside the recurrent one)."""
    return model in MODELS and MODELS.get(model).builder is rnn_fcn_model


def fcn_recipe(task: Task) -> dict:
    """The FCN family's training defaults: Adam at 1e-3 with the `plateau` schedule, as the
    papers train them (Wang et al. 2017; Karim et al. 2018). On a small split: every labelled
    window, the validation split's too (`refit`), in batches of `small_data_batch` windows for
    FCN_GRADIENT_STEPS steps, and the last epoch's weights, since early stopping on a
    validation split of a few windows stops at noise; a patience of a quarter of the epochs
    for a run that asks for early stopping (see `zoo.train.prepare`). On a large split the task's
    own batch and epochs, with early stopping. Chosen by cross-validation inside the training
    splits of the panel sets (`scripts/cv_defaults.py`; docs/results.md)."""
    refit = len(task.x_train) < SMALL_DATA
    if refit:
        batch = small_data_batch(task)
        per_epoch = math.ceil((len(task.x_train) + len(task.x_val)) / batch)
        epochs = min(
            MAX_SMALL_DATA_EPOCHS, max(task.epochs, math.ceil(FCN_GRADIENT_STEPS / per_epoch))
        )
    else:
        epochs, batch = task.epochs, task.batch_size
    return {
        "epochs": epochs,
        "batch_size": batch,
        "patience": max(task.patience, epochs // 4),
        **({"refit": True} if refit else {}),
        "learning_rate": 1e-3,
        "lr_schedule": "plateau",
        "lr_patience": max(5, epochs // FCN_PLATEAU_DIVISOR),
    }


def small_data_note(task: Task, chosen: dict) -> str | None:
    """One line saying what the small-data defaults chose, or None where they did not apply."""
    n = len(task.x_train)
    if n >= SMALL_DATA:
        return None
    refit = bool(chosen.get("refit"))
    windows = n + len(task.x_val) if refit else n
    steps = chosen["epochs"] * math.ceil(windows / chosen["batch_size"])
    dropout = [f"{k.replace('_', ' ')} {chosen[k]:g}" for k in SMALL_DATA_DROPOUT if k in chosen]
    extra = f", {' and '.join(dropout)} against memorising it" if dropout else ""
    if chosen.get("lr_schedule") == "plateau":
        extra += (
            f", learning rate {chosen['learning_rate']:g} halved after {chosen['lr_patience']} "
            "epochs without a lower training loss"
        )
    flags = ["--batch-size", "--epochs", "--patience", *(f"--{k.replace('_', '-')}" for k in
             (*SMALL_DATA_DROPOUT, "lr_schedule") if k in chosen)]  # fmt: skip
    if refit:  # the FCN recipe: no early stopping, so no --patience
        kept = [flag for flag in flags if flag != "--patience"]
        return (
            f"Small training split ({n} windows, under {SMALL_DATA:,}): trained on all {windows} "
            f"labelled windows (the {len(task.x_val)} validation ones too, so the validation "
            f"figures are not held out) in batches of {chosen['batch_size']} for "
            f"{chosen['epochs']} epochs ({steps:,} gradient steps), the last epoch kept{extra}; "
            f"--early-stopping keeps the validation split apart, {', '.join(kept[:-1])} and "
            f"{kept[-1]} choose otherwise"
        )
    return (
        f"Small training split ({n} windows, under {SMALL_DATA:,}): batch size "
        f"{chosen['batch_size']}, up to {chosen['epochs']} epochs ({steps:,} gradient steps), "
        f"patience {chosen['patience']}{extra}; {', '.join(flags[:-1])} and {flags[-1]} "
        "choose otherwise"
    )
