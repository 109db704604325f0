"""Tasks read from real data sets: scikit-learn's digits, MNIST, and the user's own `.npz` file."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from zoo.features import channel_statistics, feature_spec
from zoo.tasks.base import (
    DataError,
    Task,
    check_finite,
    check_flag,
    mask_padding,
    pad_ragged,
    real_steps,
    register_task,
    split_off,
)


@register_task(epochs=60, batch_size=32)
def digits(
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    train_size: int | None = None,
    seed: int = 0,
) -> Task:
    """scikit-learn's 8x8 handwritten digits read row by row: 8 steps x 8 features, 10 classes.

    Ships with scikit-learn, so it needs no download. Stratified test split, then a validation
    split carved from the rest; `train_size` keeps that many training windows (stratified), a
    small data set to try the small-data defaults and cross-validated search on.
    """
    # lazy: scikit-learn (~2.7 s to import) stays out of the CLIs' start
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction, stratify=y_rest, random_state=seed
    )
    if train_size is not None:  # a small data set: keep train_size of the training windows
        if not isinstance(train_size, int) or not 10 <= train_size <= len(x_train):
            raise ValueError(
                f"train_size must be an integer in 10..{len(x_train)}. Received: {train_size!r}"
            )
        if train_size < len(x_train):
            x_train, _, y_train, _ = train_test_split(
                x_train, y_train, train_size=train_size, stratify=y_train, random_state=seed
            )
    return Task(
        name="digits",
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        output_kind="classification",
        num_outputs=10,
        class_names=tuple(str(i) for i in range(10)),
    )


def load_npz(path, kind: str, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` file, with a one-line `DataError` for a missing or corrupt file.

    An object array (ragged sequences) is read only with `allow_pickle`: unpickling runs code
    from the file, so it is for files you trust."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{kind}: no such file: {path}")
    try:
        with np.load(path, allow_pickle=allow_pickle) as npz:
            return {key: _read(npz, key, kind) for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{kind}: {path} is not a readable .npz file ({err})") from None


def _read(npz, key: str, kind: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as err:
        if "allow_pickle" not in str(err):
            raise
        raise DataError(
            f"{kind}: {key} is an object array, which only pickle can read: save a padded array "
            f"with {key}_lengths instead, or pass --task-option allow_pickle=true for a file "
            "you trust"
        ) from None


@register_task(epochs=20, batch_size=128)
def mnist(*, data: str | os.PathLike | None = None, val_size: int = 5_000) -> Task:
    """MNIST read row by row: 28 steps x 28 features, 10 classes.

    Without `data`, `keras.datasets.mnist.load_data()` downloads it once; `data` may name an
    `.npz` file in the same format (x_train, y_train, x_test, y_test).
    """
    if data is None:
        # lazy: keeps Keras out of `import zoo` until the backend is chosen
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    else:
        arrays = load_npz(data, "mnist")
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays)
        if missing:
            raise DataError(f"mnist: {data} lacks {', '.join(sorted(missing))}")
        x_train, y_train = arrays["x_train"], arrays["y_train"]
        x_test, y_test = arrays["x_test"], arrays["y_test"]
    if x_train.ndim != 3 or x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"mnist: images must be (samples, rows, columns). "
            f"Received: x_train.shape={x_train.shape}, x_test.shape={x_test.shape}"
        )
    if not 0 < val_size < len(x_train):
        raise ValueError(f"val_size must be in 1..{len(x_train) - 1}. Received: {val_size}")
    x_train, x_test = (x_train / 255.0).astype(np.float32), (x_test / 255.0).astype(np.float32)
    y_train, y_test = y_train.astype(np.int32), y_test.astype(np.int32)
    fit = slice(0, len(x_train) - val_size)
    val = slice(len(x_train) - val_size, None)
    return Task(
        name="mnist",
        x_train=x_train[fit],
        y_train=y_train[fit],
        x_val=x_train[val],
        y_val=y_train[val],
        x_test=x_test,
        y_test=y_test,
        output_kind="classification",
        num_outputs=10,
        class_names=tuple(str(i) for i in range(10)),
    )


def _npz_output(y: np.ndarray, steps: int, name: str) -> tuple[str, int]:
    """Output kind and size read off the targets: integers classify, floats regress."""
    if np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
        if y.ndim == 1:
            return "classification", int(y.max()) + 1
        if y.ndim == 2 and y.shape[1] == steps:
            return "sequence_classification", int(y.max()) + 1
    elif np.issubdtype(y.dtype, np.floating):
        if y.ndim == 1:
            return "regression", 1
        if y.ndim == 2:
            return "regression", y.shape[1]
        if y.ndim == 3 and y.shape[1] == steps:
            return "sequence_regression", y.shape[2]
    raise DataError(
        f"npz: {name} must be integer labels (samples,) or (samples, steps) or float targets "
        f"(samples,), (samples, outputs) or (samples, steps, outputs). "
        f"Received: {name}.shape={y.shape}, dtype={y.dtype}"
    )


def _npz_name(key: str) -> str:
    """An array's name as the npz task documents it: `x_train` -> `X_train`."""
    return key.replace("x_", "X_", 1) if key.startswith("x_") else key


def _check_classes(arrays: dict, weights: dict, trained: set[int]) -> None:
    """Refuse validation or test labels that the file's training labels (`trained`, before a
    validation split) never show: the model could not learn them. Steps weighted 0 (padding)
    do not count."""

    def seen(split: str) -> set[int]:
        y, w = arrays[f"y_{split}"], weights.get(f"w_{split}")
        return {int(v) for v in np.unique(y if w is None else y[w > 0])}

    for split in ("val", "test"):
        unknown = sorted(seen(split) - trained)
        if unknown:
            raise DataError(
                f"npz: y_{split} holds labels {', '.join(map(str, unknown))} that y_train does "
                f"not (its labels: {', '.join(map(str, sorted(trained)))}); every class needs "
                "training examples"
            )


def _variable_length(arrays: dict, kind: str) -> set[str]:
    """Turn the splits given as ragged sequences (an object array or a list) or as a padded
    array with `X_<split>_lengths` into NaN-padded float arrays (`pad_ragged`), in place.
    Per-step targets given as ragged sequences are padded with 0 to their inputs' steps.
    Returns the splits that are variable-length."""
    lengths = {key[: -len("_lengths")]: arrays.pop(key) for key in list(arrays)
               if key.endswith("_lengths")}  # fmt: skip
    unknown = {key for key in lengths if key not in {"x_train", "x_val", "x_test"} & set(arrays)}
    if unknown:
        raise DataError(f"{kind}: {sorted(unknown)[0].replace('x_', 'X_')}_lengths has no X array")
    variable = set()
    for split in ("train", "val", "test"):
        key, name = f"x_{split}", f"X_{split}"
        x = arrays.get(key)
        if x is None:
            continue
        ragged = isinstance(x, (list, tuple)) or np.asarray(x).dtype == object
        if ragged and key in lengths:
            raise DataError(f"{kind}: give {name} as ragged sequences or with {name}_lengths")
        if ragged:
            arrays[key], steps = pad_ragged(x, name, kind)
        elif key in lengths:
            arrays[key] = mask_padding(np.asarray(x), lengths[key], name, kind)
            steps = np.asarray(lengths[key])
        else:
            continue
        variable.add(split)
        y = arrays.get(f"y_{split}")
        if isinstance(y, (list, tuple)) or (y is not None and np.asarray(y).dtype == object):
            # lazy: keeps Keras out of `import zoo` until the backend is chosen
            from keras.utils import pad_sequences

            ys = [np.asarray(t) for t in y]
            if [len(t) for t in ys] != list(steps):
                raise DataError(f"{kind}: y_{split}'s sequences must be as long as {name}'s")
            padded = pad_sequences(ys, maxlen=arrays[key].shape[1], dtype=ys[0].dtype,
                                   padding="post", value=0)  # fmt: skip
            arrays[f"y_{split}"] = padded
    return variable


def _npz_features(arrays: dict, sampling_hz) -> dict:
    """The window features' spec of an npz task (`zoo.features.feature_spec`); a one-line
    error for bad channel names, too few steps or a bad sampling rate."""
    features = arrays["x_train"].shape[2]
    names = arrays.get("channels", np.array([f"ch{i}" for i in range(features)]))
    if names.shape != (features,) or names.dtype.kind != "U":
        raise DataError(
            f"npz: channels must name each of the {features} features (strings). "
            f"Received: shape={names.shape}, dtype={names.dtype}"
        )
    if isinstance(sampling_hz, bool) or not isinstance(sampling_hz, (int, float)):
        raise ValueError(f"sampling_hz must be a number > 0. Received: sampling_hz={sampling_hz!r}")
    return feature_spec(arrays["x_train"], names.tolist(), float(sampling_hz))


@register_task()
def npz(
    *,
    data: str | os.PathLike | Mapping | None = None,
    val_fraction: float = 0.1,
    standardize_inputs: bool = True,
    allow_pickle: bool = False,
    seed: int = 0,
    window_features: bool = False,
    sampling_hz: float = 50.0,
) -> Task:
    """Your own windows from an `.npz` file: X_train, y_train, X_test, y_test (X_val, y_val too).

    X is (samples, steps, features) or (samples, steps). Integer y means classification (a label
    per sample, or per step when y is (samples, steps)); float y means regression. Without
    X_val/y_val, `val_fraction` of the training windows (at least 10, at most a quarter of them)
    are held out at random with `seed`.
    The model standardises its inputs per feature with statistics from the training split only
    (a Rescaling layer, so the saved model takes raw windows).
    Variable-length sequences: X_<split> as a padded array with X_<split>_lengths (integers,
    the safe layout), or as an object array of (steps_i, features) arrays, which only
    `allow_pickle=True` reads (unpickling runs code from the file: trusted files only). The
    padding becomes NaN (`pad_ragged`) and the model masks it; per-step targets weigh 0 there.
    In Python `data` may also be a dict of arrays (ragged splits as lists of arrays).
    `window_features` makes the model join each window's features (`zoo.features`, at
    `sampling_hz`) to its summary; channel names come from an optional `channels` array in the
    file (`acc_x`, `acc_y`, `acc_z` make a 3-axis sensor), else `ch0`, `ch1`, ...
    """
    check_flag(window_features=window_features)
    if data is None:
        raise DataError("npz: give the file with --data PATH (or data=PATH)")
    given = dict(data) if isinstance(data, Mapping) else load_npz(data, "npz", allow_pickle)
    arrays = {k.lower(): v for k, v in given.items()}
    variable = _variable_length(arrays, "npz")
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    source = "arrays" if isinstance(data, Mapping) else str(data)
    missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays)
    if missing:  # named as the file names them (X_train), not as read here (x_train)
        raise DataError(
            f"npz: {source} lacks {', '.join(sorted(_npz_name(k) for k in missing))}; "
            f"it holds {', '.join(sorted(given))}"
        )
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise DataError(f"npz: {source} must hold both X_val and y_val, or neither")
    for split in ("train", "val", "test"):
        if f"x_{split}" in arrays and len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise DataError(
                f"npz: X_{split} and y_{split} need one target a sample. Received: "
                f"{len(arrays[f'x_{split}'])} samples and {len(arrays[f'y_{split}'])} targets"
            )
    fixed = {k: a for k, a in arrays.items() if k not in {f"x_{s}" for s in variable}}
    check_finite("npz", **{name.replace("x_", "X_"): a for name, a in fixed.items()})
    for split in ("train", "val", "test"):  # the file's shapes, before a validation split
        x = arrays.get(f"x_{split}")
        if x is None:
            continue
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3 or not np.issubdtype(x.dtype, np.number):
            raise DataError(
                f"npz: X_{split} must be numbers shaped (samples, steps, features). "
                f"Received: shape={arrays[f'x_{split}'].shape}, dtype={x.dtype}"
            )
        if split != "train" and x.shape[2] != arrays["x_train"].shape[-1]:
            raise DataError(
                f"npz: every split needs {arrays['x_train'].shape[-1]} features a step, as "
                f"X_train. Received: X_{split}.shape={x.shape}"
            )
        arrays[f"x_{split}"] = x.astype(np.float32)
    for split in ("train", "val", "test"):  # one float target a sample: one output
        y = arrays.get(f"y_{split}")
        if y is not None and y.ndim == 1 and np.issubdtype(y.dtype, np.floating):
            arrays[f"y_{split}"] = y[:, None]
    y_train = arrays["y_train"]  # the file's training labels, before a validation split
    integer = np.issubdtype(y_train.dtype, np.integer) or y_train.dtype == bool
    trained = {int(v) for v in np.unique(y_train)} if integer else set()
    if "x_val" not in arrays:
        n = len(arrays["x_train"])
        # a few windows score nothing: at least 10 (at most a quarter) on small data
        fraction = max(val_fraction, min(10, n // 4) / n)
        fit, val = split_off(n, fraction, seed)
        x, y = arrays["x_train"], arrays["y_train"]
        arrays.update(x_train=x[fit], y_train=y[fit], x_val=x[val], y_val=y[val])
    steps = arrays["x_train"].shape[1]
    kind, size = _npz_output(arrays["y_train"], steps, "y_train")
    for split in ("val", "test"):
        split_steps = arrays[f"x_{split}"].shape[1]  # variable-length splits: their own
        if _npz_output(arrays[f"y_{split}"], split_steps, f"y_{split}")[0] != kind:
            raise DataError(f"npz: y_{split} is not the same kind of target as y_train ({kind})")
    info = {"source": source}
    weights = {}
    if variable:  # padding: masked by the model, weight 0 for per-step targets
        for split in ("train", "val", "test"):
            real = real_steps(arrays[f"x_{split}"]).astype(np.float32)
            info[f"lengths_{split}"] = [int(real.sum(1).min()), int(real.sum(1).max())]
            if kind.startswith("sequence"):
                weights[f"w_{split}"] = real
                arrays[f"y_{split}"] = arrays[f"y_{split}"].copy()
                arrays[f"y_{split}"][real == 0] = 0
    if kind.endswith("classification"):
        labels = np.concatenate([arrays[f"y_{s}"].ravel() for s in ("train", "val", "test")])
        if labels.min() < 0:
            raise DataError(f"npz: labels must be 0 or more. Received: min label {labels.min()}")
        _check_classes(arrays, weights, trained)
        size = int(labels.max()) + 1
        seen = np.unique(np.concatenate([arrays["y_train"].ravel(), arrays["y_val"].ravel()]))
        if kind == "classification" and len(seen) < 2:
            raise DataError(
                f"npz: the training windows hold one class ({seen[0]}); a classifier needs "
                "labelled windows of at least 2 classes"
            )
    for split in ("train", "val", "test"):
        dtype = np.int32 if kind.endswith("classification") else np.float32
        arrays[f"y_{split}"] = arrays[f"y_{split}"].astype(dtype)
    preprocessing = {"mask": True} if variable else None
    if standardize_inputs:  # by the model (a Rescaling layer), so it takes raw windows
        preprocessing = {**channel_statistics(arrays["x_train"]), **(preprocessing or {})}
    if preprocessing:
        info.update(**preprocessing, preprocessing="model")
    if window_features:
        if variable:
            raise DataError(
                "npz: window_features needs windows of one length (features describe "
                "a whole window); give fixed-length windows or drop the option"
            )
        spec = _npz_features(arrays, sampling_hz)
        preprocessing = {**(preprocessing or {}), "window_features": spec}
        info["window_features"] = True
    return Task(
        name="npz",
        **{k: arrays[k] for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")},
        output_kind=kind,
        num_outputs=size,
        class_names=tuple(str(i) for i in range(size)) if kind.endswith("classification") else None,
        info=info,
        preprocessing=preprocessing,
        **weights,
    )
