"""The `Task` dataclass and the task registry: what a model is trained on.

The trainer and the tuner know a task only through `Task`: arrays for three splits plus the facts
that the builders (input shape, output kind and size) and `compile` (loss, metrics) need.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.features import channel_statistics
from zoo.models import OUTPUT_KINDS
from zoo.registry import Registry

TASKS = Registry("task")


class DataError(ValueError):
    """Bad or missing input data; the message is one line that says what is wrong and where."""


@dataclass(frozen=True, eq=False)
class Task:
    """Data splits and the facts a model needs to be built, compiled, trained and evaluated.

    `w_*` are optional per-sample (or per-time-step) weights: a weight of 0 excludes a target from
    the loss and from every metric (the echo task uses it for the steps that cannot be known).
    `epochs`, `batch_size`, `learning_rate` (None: the optimizer's own) and `patience` (epochs
    without validation gain before early stopping) are the task's training
    defaults, used where the command line and --hparams leave them unset.
    `causal` marks tasks whose targets are later inputs (next-step prediction): a model that reads
    the sequence backwards would see the answers there, so such models are refused.
    `info` holds task-specific facts worth saving with a run (normalisation statistics, baselines).
    `preprocessing` is what the model does to the raw inputs before its first layer, as Keras
    layers (so a saved model takes the data as it comes): `mean` and `std` a channel
    (standardisation, fitted on the training split) and `frame_steps` (consecutive steps joined
    into one), and `mask` (variable length: all-NaN steps are padding, which the model masks;
    `pad_ragged`); the splits hold the raw inputs. `preprocessed()` applies it to the arrays.
    `stateful_batch` marks a task whose windows come as that many continuous streams side by side
    (window k of every stream, then window k+1): the model keeps each row's state from one batch
    to the next (truncated backpropagation through time), so it trains and predicts in batches of
    exactly that many windows, in order.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    output_kind: str
    num_outputs: int
    class_names: tuple[str, ...] | None = None
    w_train: np.ndarray | None = None
    w_val: np.ndarray | None = None
    w_test: np.ndarray | None = None
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float | None = None
    patience: int = 10
    causal: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] | None = None
    stateful_batch: int | None = None

    def __post_init__(self):
        if self.output_kind not in OUTPUT_KINDS:
            raise ValueError(
                f"output_kind must be one of {', '.join(OUTPUT_KINDS)}. "
                f"Received: output_kind={self.output_kind!r}"
            )
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 3 or len(x) != len(y):
                raise DataError(
                    f"{self.name}: x_{split} must be (samples, steps, features) with one target a "
                    f"sample. Received: x_{split}.shape={x.shape}, y_{split}.shape={y.shape}"
                )
            if x.shape[2:] != self.x_train.shape[2:]:
                raise DataError(
                    f"{self.name}: every split needs {self.x_train.shape[2]} features a step. "
                    f"Received: x_{split}.shape={x.shape}"
                )

    @property
    def input_shape(self) -> tuple[int, int]:
        """(steps, features) of one sample."""
        return tuple(self.x_train.shape[1:])

    @property
    def is_classification(self) -> bool:
        return self.output_kind.endswith("classification")

    @property
    def loss(self) -> str:
        return "sparse_categorical_crossentropy" if self.is_classification else "mse"

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("accuracy",) if self.is_classification else ("mae",)

    @property
    def objective(self) -> tuple[str, str]:
        """The validation quantity to select on and its direction: ("val_accuracy", "max")."""
        return ("val_accuracy", "max") if self.is_classification else ("val_loss", "min")

    @property
    def headline(self) -> str:
        """The test figure a run reports first: accuracy, or MSE for regression."""
        return "accuracy" if self.is_classification else "mse"

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(x, y, weights) of split "train", "val" or "test"."""
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}"), getattr(self, f"w_{name}")

    @property
    def model_steps(self) -> int | None:
        """Steps of one sample as the model's recurrent layers see them (after framing)."""
        steps = self.input_shape[0]
        return steps // (self.preprocessing or {}).get("frame_steps", 1) if steps else steps

    def preprocessed(self) -> Task:
        """This task with its preprocessing applied to the arrays and none left for the model:
        the inputs as models trained before preprocessing moved into them take them."""
        if not self.preprocessing:
            return self
        arrays = {
            f"x_{s}": apply_preprocessing(getattr(self, f"x_{s}"), self.preprocessing)
            for s in ("train", "val", "test")
        }
        return dataclasses.replace(self, **arrays, preprocessing=None)


TRAINING_FIELDS = ("epochs", "batch_size", "learning_rate", "patience")


def register_task(**training):
    """Register a task function under its name. `training` holds the task's training defaults
    (epochs, batch_size, learning_rate, patience): set on every Task it returns, and shown by
    `python -m zoo.train --help` and `--list` without building the task."""
    unknown = set(training) - set(TRAINING_FIELDS)
    if unknown:
        raise TypeError(f"register_task takes {', '.join(TRAINING_FIELDS)}, not {sorted(unknown)}")

    def add(fn):
        @functools.wraps(fn)
        def build(*args, **kwargs) -> Task:
            return dataclasses.replace(fn(*args, **kwargs), **training)

        build.training = training
        return TASKS.register(build, name=fn.__name__)

    return add


def training_defaults(name: str) -> dict:
    """Task `name`'s training defaults as registered, over the `Task` dataclass' own."""
    fields = {f.name: f.default for f in dataclasses.fields(Task) if f.name in TRAINING_FIELDS}
    return {**fields, **TASKS.get(name).training}


def get_task(name: str, **options) -> Task:
    """Build the task registered as `name`; options left as None keep the task's defaults."""
    options = {k: v for k, v in options.items() if v is not None}
    return TASKS.get(name)(**options)


def list_tasks(pattern: str | None = None) -> list[str]:
    """Sorted task names, filtered by an fnmatch glob."""
    return TASKS.list(pattern)


def task_options(name: str) -> dict[str, Any]:
    """The options task `name` takes (its keyword-only arguments; `data` is apart), with their
    defaults."""
    params = inspect.signature(TASKS.get(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name != "data"}


def task_reads_data(name: str) -> bool:
    """True when task `name` reads a file given with --data."""
    return "data" in inspect.signature(TASKS.get(name)).parameters


def check_positive(**values):
    """Refuse values that are not positive integers, naming the first such one."""
    for key, value in values.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{key} must be a positive integer. Received: {key}={value!r}")


def check_flag(**values):
    """Refuse values that are not True or False, naming the first such one."""
    for key, value in values.items():
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false. Received: {key}={value!r}")


def check_finite(name: str, **arrays: np.ndarray) -> None:
    """Refuse arrays holding NaN or inf: one line naming the array and the first bad sample."""
    for key, array in arrays.items():
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))
            raise DataError(
                f"{name}: {key} must hold finite numbers; sample {int(bad[0])} has NaN or inf "
                f"({len(bad)} such samples)"
            )


def split_off(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle indices 0..n-1 with `seed`; return (kept, held out) with `fraction` held out."""
    order = np.random.default_rng(seed).permutation(n)
    n_out = max(1, int(round(n * fraction)))
    return np.sort(order[n_out:]), np.sort(order[:n_out])


def apply_preprocessing(x: np.ndarray, preprocessing: dict) -> np.ndarray:
    """`preprocessing` (see `Task`) done in NumPy: standardise, then frame."""
    if "mean" in preprocessing:
        x = (x - np.asarray(preprocessing["mean"])) / np.asarray(preprocessing["std"])
    frame = preprocessing.get("frame_steps", 1)
    return x.reshape(len(x), x.shape[1] // frame, x.shape[2] * frame).astype(np.float32)


def standardize(x_train: np.ndarray, *others: np.ndarray):
    """Per-channel standardisation fitted on `x_train` only, applied to every array given.

    Returns the standardised arrays (train first) and the `(mean, std)` lists that were used.
    """
    stats = channel_statistics(x_train)
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    scaled = [((x - mean) / std).astype(np.float32) for x in (x_train, *others)]
    return scaled, (stats["mean"], stats["std"])


def pad_ragged(
    sequences, name: str = "sequences", task: str = "data"
) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of different lengths, each (steps_i, features) or (steps_i,), as one float32
    array (samples, max steps, features) padded at the end with NaN, and their lengths.

    NaN is the padding because data holding NaN is refused: a model built with
    `preprocessing={"mask": True}` (what a variable-length task hands over) masks the all-NaN
    steps, so `model.predict(pad_ragged(sequences)[0])` reads the real steps only. Refuses, in
    one line, sequences that are empty, not numbers, of different feature counts or not finite.
    """
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    from keras.utils import pad_sequences

    seqs = [np.asarray(s) for s in sequences]
    seqs = [s[:, None] if s.ndim == 1 else s for s in seqs]
    if not seqs:
        raise DataError(f"{task}: {name} holds no sequences")
    for i, s in enumerate(seqs):
        if s.ndim != 2 or not len(s) or not np.issubdtype(s.dtype, np.number):
            raise DataError(
                f"{task}: {name}: every sequence must be numbers shaped (steps, features) with "
                f"at least one step. Received: sequence {i} shape={s.shape}, dtype={s.dtype}"
            )
        if s.shape[1] != seqs[0].shape[1]:
            raise DataError(
                f"{task}: {name}: every sequence needs the same features a step. Received: "
                f"sequence 0 has {seqs[0].shape[1]}, sequence {i} has {s.shape[1]}"
            )
        if not np.isfinite(s).all():
            raise DataError(f"{task}: {name}: sequence {i} holds NaN or inf")
    lengths = np.array([len(s) for s in seqs])
    padded = pad_sequences(seqs, dtype="float32", padding="post", value=np.nan)
    return padded, lengths


def real_steps(x: np.ndarray) -> np.ndarray:
    """True for each real step of NaN-padded `x` (samples, steps, features), False for padding."""
    return ~np.isnan(x).all(axis=-1)


def mask_padding(x: np.ndarray, lengths, name: str = "X", task: str = "data") -> np.ndarray:
    """A padded array (samples, steps[, features]) with the steps at and after each sample's
    length set to NaN (see `pad_ragged`). Refuses, in one line, lengths of the wrong size or
    out of 1..steps and NaN or inf in the real steps."""
    lengths = np.asarray(lengths)
    if x.ndim not in (2, 3) or not np.issubdtype(x.dtype, np.number):
        raise DataError(
            f"{task}: {name} must be numbers shaped (samples, steps, features). "
            f"Received: shape={x.shape}, dtype={x.dtype}"
        )
    x = (x[..., None] if x.ndim == 2 else x).astype(np.float32)
    if lengths.shape != (len(x),) or not np.issubdtype(lengths.dtype, np.integer):
        raise DataError(
            f"{task}: {name}_lengths must be {len(x)} integers, one a sample. "
            f"Received: shape={lengths.shape}, dtype={lengths.dtype}"
        )
    bad = np.flatnonzero((lengths < 1) | (lengths > x.shape[1]))
    if len(bad):
        raise DataError(
            f"{task}: {name}_lengths must be in 1..{x.shape[1]} (the padded steps). "
            f"Received: {lengths[bad[0]]} for sample {bad[0]}"
        )
    real = np.arange(x.shape[1]) < lengths[:, None]
    check_finite(task, **{f"{name} (real steps)": np.where(real[..., None], x, 0.0)})
    x[~real] = np.nan
    return x
