"""Your own time series, forecast as forecasters measure it: the last `horizon` steps are the test.

The file (a CSV with dates, wide or long, or an `.npz`) is read by `zoo.tasks.panel`; this
module cuts each series into windows for one fold of a rolling-origin backtest and hands the
model its per-window scaling (`Task.preprocessing["scaling"]`, done by `zoo.scaling`'s layers).
"""

from __future__ import annotations

import os

import numpy as np

from zoo.tasks.base import DataError, Task, check_flag, check_positive, register_task
from zoo.tasks.panel import day_text, read_panel

LEVELS = ("season", "last", "window", "global")
# a level below this share of the window's mean magnitude is raised to it (a season of zeros)
LEVEL_FLOOR_SHARE = 0.1


def window_level(values: np.ndarray, spec: dict) -> np.ndarray:
    """The level each window is divided by, (windows,) from raw values (windows, steps): the
    NumPy twin of `zoo.scaling.WindowScaling` (a test holds them equal).

    "season": the mean magnitude of the window's last season (its last value where the season
    is 1); "last": the last value's magnitude; "window": the whole window's mean magnitude. At
    least LEVEL_FLOOR_SHARE of the window's mean magnitude and `spec["floor"]`. "global": the
    training values' std (one scale for every window).
    """
    values = np.abs(np.asarray(values, dtype=np.float64))
    if spec["level"] == "global":
        return np.full(len(values), spec["std"])
    mean = values.mean(axis=1)
    level = {
        "season": lambda: values[:, -spec["season"] :].mean(axis=1),
        "last": lambda: values[:, -1],
        "window": lambda: mean,
    }[spec["level"]]()
    return np.maximum(np.maximum(level, LEVEL_FLOOR_SHARE * mean), spec["floor"])


def _cut(values, positions, origins, window: int, horizon: int, season: int, with_positions):
    """Windows of one series before each origin (index of the first target step) and the next
    `horizon` values. Inputs before the series' start repeat its first value."""
    origins = np.asarray(origins, dtype=np.int64)
    pad = max(0, window - int(origins.min())) if len(origins) else 0
    padded = np.concatenate([np.full(pad, values[0]), values])
    rows = origins[:, None] + pad + np.arange(-window, 0)
    x = padded[rows][..., None]
    if with_positions:
        before = (positions[0] - np.arange(pad, 0, -1)) % season
        x = np.concatenate([x, np.concatenate([before, positions])[rows][..., None]], axis=-1)
    y = values[origins[:, None] + np.arange(horizon)]
    return x.astype(np.float32), y.astype(np.float32)


def fold_origins(length: int, *, window: int, horizon: int, val_steps: int, fold: int):
    """(train, validation, test) origins of one series of `length` steps in fold `fold`.

    An origin is the index of a window's first target step. The test origin is `horizon` *
    (`fold` + 1) steps before the end; validation origins are those whose targets all lie in
    the `val_steps` steps before it; training origins those whose targets all lie before the
    validation steps and whose inputs all lie in the series. Validation and test inputs may
    reach back into earlier steps (before the series' start they repeat its first value)."""
    test = length - horizon * (fold + 1)
    val = np.arange(max(1, test - val_steps), test - horizon + 1)
    train = np.arange(window, test - val_steps - horizon + 1)
    return train, val, np.array([test] if test >= 1 else [], dtype=np.int64)


@register_task(epochs=30, batch_size=64)
def series(
    *,
    data: str | os.PathLike | None = None,
    horizon: int | None = None,
    window: int | None = None,
    target: str | int | None = None,
    time_column: str | int | None = None,
    series_column: str | int | None = None,
    season: int | None = None,
    fill: str | None = None,
    folds: int = 1,
    fold: int = 0,
    val_steps: int | None = None,
    level: str = "season",
    log: bool = False,
    season_inputs: bool = False,
) -> Task:
    """Your series to forecast (CSV with dates, or npz), tested on each one's last `horizon` steps.

    From `window` values the model predicts the next `horizon`.

    Data: `data` is a CSV or a one-array `.npz` (`zoo.tasks.panel.read_panel`). A CSV is wide
    (an optional time column, then one column a series; `target=NAME`, several as "a,b", picks
    them) or long (a series column, e.g. `series` or `unique_id`, a time column and one value
    column). The time column is `time_column`, else one named date, time, month, year, ... or
    holding dates; the frequency is inferred from the dates (pandas), and with it the season
    (monthly 12, quarterly 4, weekly 52, daily 7, hourly 24, yearly 1; `season` overrides; 1
    without dates) and the default horizon (the M4 competition's: yearly 6, quarterly 8,
    monthly 18, weekly 13, daily 14, hourly 48; 1 without dates). Missing values and skipped
    dates are refused unless `fill` is "interpolate" or "ffill"; duplicate or unordered dates
    and text in a value column are refused.

    Folds: fold k (`fold`, 0 = the last) tests every series on the `horizon` steps that end
    `horizon` * k steps before its end; later steps are not used. Its validation windows
    (early stopping) are those whose targets lie in the `val_steps` steps (default: the
    horizon) before the test origin; its training windows those whose targets lie before
    those. Inputs may reach back over split boundaries, targets never cross them. `folds` = K
    makes `python -m zoo.train` train and report folds 0..K-1 (a run folder each) and their
    mean; each fold's task is this one with `fold` = k.

    Scaling: the model divides each window by its own `level` ("season": the mean magnitude
    of its last season; "last": its last value's; "window": its mean magnitude; "global":
    one mean and std from the training values, no per-window scaling), after a log transform
    with `log` (positive data only), and multiplies its outputs back (`zoo.scaling`), so a
    saved model takes raw windows and returns forecasts in data units. With
    `season_inputs`, each input step also carries its position in the season (0..season-1),
    which the model reads as sin and cos.

    What the task holds (the interface other forecasting models build on):
      x_* (windows, window, 1 or 2), float32: channel 0 the raw values in data units; channel
        1 with `season_inputs`, each step's position in the season (`Panel.positions`).
      y_* (windows, horizon), float32: the next `horizon` values in data units.
      w_* (windows,): 1 / level**2 with the level of `window_level` (for "global", 1 / the
        training values' std**2),
        so the weighted MSE equals the MSE of the scaled values: one loss across series of
        any size.
      x_test row i is series i's one test window (its last `window` steps before the origin).
      preprocessing: {"scaling": {"level", "season", "log", "floor", "mean", "std",
        "season_inputs", "horizon", "window"}}: what `zoo.scaling` builds into the model; a
        builder with `scales_itself = True` gets it instead (it does its own scaling).
      info: "series" (names), "season", "frequency" (pandas string or None), "kind" ("monthly"
        ...), "horizon", "window", "fold", "folds", "val_steps", "level", "log",
        "season_inputs", "series_train"/"series_val"/"series_test" (each window's series
        index), "origin_train"/"origin_val"/"origin_test" (each window's origin: the index
        of its first target step in its series), "test_origin" (each series' test origin),
        "test_start" (each series' first test date, or None), "history" (each series' values
        up to the end of this fold's test, float64), "dates" (their dates, datetime64, or
        None), "positions" (their season positions), "scale_train"/"scale_val"/"scale_test"
        (each window's level), "source", "channels", "fill", "filled".
    """
    if data is None:
        raise DataError("series: give the file with --data PATH (or data=PATH)")
    for key, value in dict(
        folds=folds, window=window, horizon=horizon, val_steps=val_steps
    ).items():
        if value is not None:
            check_positive(**{key: value})
    if not isinstance(fold, (int, np.integer)) or isinstance(fold, bool) or fold < 0:
        raise ValueError(f"fold must be an integer >= 0. Received: fold={fold!r}")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}. Received: level={level!r}")
    check_flag(log=log, season_inputs=season_inputs)

    panel = read_panel(
        data,
        target=target,
        time_column=time_column,
        series_column=series_column,
        season=season,
        fill=fill,
    )
    m = panel.season
    horizon = horizon or panel.default_horizon
    window = window or max(2 * m, horizon)
    val_steps = val_steps or horizon
    if val_steps < horizon:
        raise ValueError(
            f"val_steps must be at least the horizon ({horizon}): a validation window's "
            f"targets lie in them. Received: val_steps={val_steps}"
        )
    if log:
        bad = [n for n, v in zip(panel.names, panel.values, strict=True) if not (v > 0).all()]
        if bad:
            raise DataError(
                f"series: log=true needs positive values; series {bad[0]!r} has values <= 0"
            )
    short = next(
        ((n, len(v)) for n, v in zip(panel.names, panel.values, strict=True)
         if len(v) < horizon * (max(folds, fold + 1)) + 1),
        None,
    )  # fmt: skip
    if short:
        raise DataError(
            f"series: series {short[0]!r} has {short[1]} steps; horizon={horizon} with "
            f"{max(folds, fold + 1)} fold(s) needs at least {horizon * max(folds, fold + 1) + 1}"
        )
    # every fold up to the earliest one must have training and validation windows
    for k in sorted({fold, max(folds, fold + 1) - 1}):
        counts = [
            [len(o) for o in fold_origins(len(v), window=window, horizon=horizon,
                                          val_steps=val_steps, fold=k)[:2]]
            for v in panel.values
        ]  # fmt: skip
        train_count, val_count = np.sum(counts, axis=0)
        if not train_count or not val_count:
            longest = max(len(v) for v in panel.values)
            need = window + val_steps + horizon * (k + 2)
            raise DataError(
                f"series: too few steps for window={window}, horizon={horizon}, "
                f"val_steps={val_steps} in fold {k}: the longest series has {longest}, one "
                f"training window needs {need}; shorten the window or the horizon, or use "
                "fewer folds"
            )
    parts = {"train": [], "val": [], "test": [], "refit": []}
    history, dates, positions, test_origin, test_start = [], [], [], [], []
    for s, (values, when, where) in enumerate(
        zip(panel.values, panel.dates, panel.positions, strict=True)
    ):
        origins = fold_origins(
            len(values), window=window, horizon=horizon, val_steps=val_steps, fold=fold
        )
        refit = np.arange(window, origins[2][0] - horizon + 1)  # every target before the test
        for split, split_origins in zip(parts, (*origins, refit), strict=True):
            if len(split_origins):
                x, y = _cut(values, where, split_origins, window, horizon, m, season_inputs)
                parts[split].append((x, y, np.full(len(x), s), split_origins))
        end = origins[2][0] + horizon
        test_origin.append(int(origins[2][0]))
        history.append(values[:end])
        dates.append(when[:end] if when is not None else None)
        positions.append(where[:end])
        test_start.append(day_text(when[origins[2][0]]) if when is not None else None)
    arrays = {}
    for split, pieces in parts.items():
        arrays[f"x_{split}"] = np.concatenate([p[0] for p in pieces])
        arrays[f"y_{split}"] = np.concatenate([p[1] for p in pieces])
        arrays[f"series_{split}"] = np.concatenate([p[2] for p in pieces]).astype(np.int64)
        arrays[f"origin_{split}"] = np.concatenate([p[3] for p in pieces]).astype(np.int64)
    seen = [
        h[: o - val_steps] if o - val_steps >= 1 else h[:1]
        for h, o in zip(history, test_origin, strict=True)
    ]
    magnitudes = [float(np.mean(np.abs(v))) for v in seen]
    positive = [a for a in magnitudes if a > 0]
    spec = {
        "level": level,
        "season": int(m),
        "log": bool(log),
        "floor": 1e-3 * min(positive) if positive else 1e-12,
        "mean": 0.0,
        "std": 1.0,
        "season_inputs": bool(season_inputs),
        "horizon": int(horizon),
        "window": int(window),
    }
    pooled = np.concatenate(seen)
    if level == "global":  # one standardisation from the training part of every series
        moved = np.log(pooled) if log else pooled
        spec["mean"], spec["std"] = float(moved.mean()), float(moved.std() or 1.0)
    scales = {s: window_level(arrays[f"x_{s}"][..., 0], spec) for s in parts}
    if level == "global":  # the weighted loss: the MSE in units of the values' std
        scales = {s: np.full(len(v), pooled.std() or 1.0) for s, v in scales.items()}
    weights = {f"w_{s}": (1.0 / scales[s] ** 2).astype(np.float32) for s in parts}
    splits = ("train", "val", "test")
    info = {
        "source": panel.source,
        "series": panel.names,
        "frequency": panel.frequency,
        "kind": panel.kind,
        "season": int(m),
        "horizon": int(horizon),
        "window": int(window),
        "fold": int(fold),
        "folds": int(folds),
        "val_steps": int(val_steps),
        "level": level,
        "log": bool(log),
        "season_inputs": bool(season_inputs),
        "channels": ["value", "season_position"] if season_inputs else ["value"],
        "fill": fill,
        "filled": panel.filled,
        "test_origin": test_origin,
        "test_start": test_start,
        "preprocessing": "model",
        **{f"{k}_{s}": arrays[f"{k}_{s}"] for k in ("series", "origin") for s in parts},
        **{f"scale_{s}": scales[s] for s in parts},
        # every window whose targets lie before the test origin, which `--refit` trains on
        "x_refit": arrays["x_refit"],
        "y_refit": arrays["y_refit"],
        "w_refit": weights["w_refit"],
        "history": history,
        "dates": dates,
        "positions": positions,
    }
    return Task(
        name="series",
        **{f"{k}_{s}": arrays[f"{k}_{s}"] for k in ("x", "y") for s in splits},
        **{f"w_{s}": weights[f"w_{s}"] for s in splits},
        output_kind="regression",
        num_outputs=int(horizon),
        info=info,
        preprocessing={"scaling": spec},
    )
