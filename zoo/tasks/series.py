"""Your own time series: a CSV or `.npz` file windowed into next-values forecasting."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from zoo.tasks.base import DataError, Task, check_positive, register_task, standardize
from zoo.tasks.files import load_npz


def read_series(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """(values (time, channels) as float64, channel names) of a CSV or a one-array `.npz` file.

    A CSV has one column per channel and one row per time step; a first row that does not read
    as numbers is the header (channel names), else the channels are named 0, 1, ...
    """
    path = Path(path).expanduser()
    if path.suffix.lower() == ".npz":
        arrays = load_npz(path, "series")
        if len(arrays) != 1:
            raise DataError(
                f"series: {path} must hold one array, (time,) or (time, channels). "
                f"Received: {', '.join(sorted(arrays)) or 'no arrays'}"
            )
        values = next(iter(arrays.values()))
        if values.ndim not in (1, 2) or not np.issubdtype(values.dtype, np.number):
            raise DataError(
                f"series: the array in {path} must be numbers shaped (time,) or (time, channels). "
                f"Received: shape={values.shape}, dtype={values.dtype}"
            )
        values = values.reshape(len(values), -1).astype(np.float64)
        return values, [str(i) for i in range(values.shape[1])]
    if not path.is_file():
        raise DataError(f"series: no such file: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"series: cannot read {path} as CSV text ({err})") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise DataError(f"series: {path} is empty")
    first = [cell.strip() for cell in lines[0][1].split(",")]
    try:
        [float(cell) for cell in first]
        names = [str(i) for i in range(len(first))]
    except ValueError:
        names, lines = first, lines[1:]
    values = np.empty((len(lines), len(names)))
    for row, (number, line) in enumerate(lines):
        cells = line.split(",")
        if len(cells) != len(names):
            raise DataError(
                f"series: {path} line {number} has {len(cells)} values, expected {len(names)}"
            )
        try:
            values[row] = [float(cell) for cell in cells]
        except ValueError:
            raise DataError(f"series: {path} line {number} is not all numbers: {line!r}") from None
    return values, names


def _target_columns(target, names: list[str]) -> list[int]:
    """Indices of the forecast channels: all of them, or the one `target` names or numbers."""
    if target is None:
        return list(range(len(names)))
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if 0 <= target < len(names):
            return [int(target)]
    elif str(target) in names:
        return [names.index(str(target))]
    raise ValueError(
        f"target must be a channel name or index 0..{len(names) - 1}. Received: target={target!r}"
        f"; channels: {', '.join(names)}"
    )


def _windows(segment: np.ndarray, window: int, horizon: int, targets: list[int]):
    """Every (window, next `horizon` values of the target channels) pair inside one segment."""
    idx = np.arange(len(segment) - window - horizon + 1)[:, None]
    x = segment[idx + np.arange(window)]
    y = segment[idx + window + np.arange(horizon)][..., targets]
    return x.astype(np.float32), y.reshape(len(y), -1).astype(np.float32)


@register_task(epochs=30, batch_size=64)
def series(
    *,
    data: str | os.PathLike | None = None,
    window: int = 20,
    horizon: int = 1,
    target: str | int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Task:
    """Forecast your own series: from `window` values predict the next `horizon` of each channel.

    `data` is a CSV (one column per channel, optional header) or an `.npz` holding one array,
    (time,) or (time, channels). The series is cut in time order into train, validation and
    test segments (the last `test_fraction` of the steps is test), each windowed on its own, so
    no window crosses a split. Every channel is standardised with the training segment's mean
    and std, targets too, so a forecast can be fed back as an input. Targets are
    (samples, horizon * targets) in step-major order: `y.reshape(-1, horizon, targets)`.
    `target` (a channel name or index) forecasts that channel alone; by default all of them.
    """
    if data is None:
        raise DataError("series: give the file with --data PATH (or data=PATH)")
    check_positive(window=window, horizon=horizon)
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 0.5:
            raise ValueError(f"{key} must be in (0, 0.5). Received: {key}={value}")
    values, names = read_series(data)
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        row, col = bad[0]
        raise DataError(
            f"series: {data} holds {len(bad)} non-finite values (first at step {row}, "
            f"channel {names[col]!r}: {values[row, col]}); fill or drop them first"
        )
    steps = len(values)
    if horizon >= steps:
        raise DataError(f"series: horizon={horizon} is not shorter than the series ({steps} steps)")
    targets = _target_columns(target, names)
    n_test, n_val = int(steps * test_fraction), int(steps * val_fraction)
    bounds = [0, steps - n_val - n_test, steps - n_test, steps]
    need = window + horizon
    if min(np.diff(bounds)) < need:
        raise DataError(
            f"series: {steps} steps are too few for window={window}, horizon={horizon}: train, "
            f"validation and test ({np.diff(bounds).tolist()} steps) each need at least {need}"
        )
    segments = [values[None, a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=False)]
    scaled, (mean, std) = standardize(*segments)
    (xtr, ytr), (xva, yva), (xte, yte) = (_windows(s[0], window, horizon, targets) for s in scaled)

    def persistence(x, y):  # the last value of each target channel, repeated over the horizon
        return float(np.mean((y - np.tile(x[:, -1, targets], horizon)) ** 2))

    return Task(
        name="series",
        x_train=xtr,
        y_train=ytr,
        x_val=xva,
        y_val=yva,
        x_test=xte,
        y_test=yte,
        output_kind="regression",
        num_outputs=horizon * len(targets),
        info={
            "source": str(data),
            "steps": steps,
            "channels": names,
            "targets": targets,
            "window": window,
            "horizon": horizon,
            "split_steps": np.diff(bounds).tolist(),
            "mean": mean,
            "std": std,
            "persistence_mse_val": persistence(xva, yva),
            "persistence_mse_test": persistence(xte, yte),
        },
    )
