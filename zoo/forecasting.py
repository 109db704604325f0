"""Forecasts of trained runs: multi-step forecasts, scored against persistence and baselines.

A `series` run (or a backtest's folder, `--task-option folds=K`) is scored as forecasters do
(`score_series`): its test forecasts, in the data's units, against naive, seasonal-naive, drift
and ETS on the same series and origins (`zoo.backtest`), fold by fold and on average.

For sine and random_walk runs (`score`), a run that predicts one step is forecast recursively
(each forecast is fed back as the next input); a run that predicts H steps at once (random_walk
or series with `horizon=H`) forecasts directly. Every horizon step's test MSE is set against the
persistence forecast (the last value held). Several runs of one task (say horizon=1 and
horizon=H) are scored on the same windows. The command line is `python -m zoo.forecast`.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo import backend, backtest
from zoo.runs import load_model, locate_run, run_task
from zoo.scoring import predict
from zoo.tasks.synthetic import sine, sine_curve

# regression tasks whose targets are the next values of the inputs (sine is checked on its data)
WINDOW_TASKS = ("random_walk", "series")


@dataclass(frozen=True)
class Forecaster:
    """A trained model and how its outputs continue a window.

    `sequence`: a next-step model with one output a step (sine); the last step's output is the
    next value. Otherwise the model maps a window to the next `block` values of `channels`
    channels, step-major. `relative`: windows are given relative to their last value
    (random_walk), so that value is subtracted before and added back after each call.
    """

    model: Any
    sequence: bool
    block: int
    channels: int
    features: int
    relative: bool = False

    @property
    def feeds_back(self) -> bool:
        """True when every input channel is forecast, so forecasts can become inputs."""
        return self.channels == self.features


def forecaster(model, *, relative: bool = False, channels: int | None = None) -> Forecaster:
    """A `Forecaster` for `model`, read off its output shape (steps x values: a next-step model)."""
    features = model.input_shape[-1]
    outputs = model.output_shape
    if len(outputs) == 3:
        return Forecaster(model, True, 1, outputs[-1], features, relative)
    channels = channels or features
    if outputs[-1] % channels:
        raise ValueError(f"{outputs[-1]} outputs are not whole steps of {channels} channels")
    return Forecaster(model, False, outputs[-1] // channels, channels, features, relative)


def next_values(fc: Forecaster, windows: np.ndarray) -> np.ndarray:
    """The model's next `fc.block` values after each window: (n, block, channels)."""
    windows = np.asarray(windows, dtype=np.float32)
    last = windows[:, -1:, :]
    x = windows - last if fc.relative else windows
    # predict_on_batch: model.predict costs ~0.2 s a call here, too much in a loop of 300 calls
    y = np.concatenate([fc.model.predict_on_batch(x[i : i + 4096]) for i in range(0, len(x), 4096)])
    y = y[:, -1:, :] if fc.sequence else y.reshape(len(windows), fc.block, fc.channels)
    return y + last if fc.relative else y


def forecast(fc: Forecaster, windows: np.ndarray, horizon: int) -> np.ndarray:
    """Forecasts of the next `horizon` values after each window: (n, horizon, channels).

    Blocks of `fc.block` values are produced in turn, each appended to the window (whose oldest
    values drop out, keeping its length) before the next: recursive for a one-step model,
    direct when `fc.block >= horizon`.
    """
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim == 2:
        windows = windows[..., None]
    length, parts, have = windows.shape[1], [], 0
    while have < horizon:
        block = next_values(fc, windows)
        parts.append(block)
        have += block.shape[1]
        if have < horizon:
            if not fc.feeds_back:
                raise ValueError(
                    f"the model forecasts {fc.channels} of {fc.features} input channels, so its "
                    f"forecasts cannot be fed back; horizon {horizon} needs a direct model"
                )
            windows = np.concatenate([windows, block], axis=1)[:, -length:]
    return np.concatenate(parts, axis=1)[:, :horizon]


def sine_start_times(windows: np.ndarray, resolution: float, t_max: float, check: bool = True):
    """The time t0 at which each window (n, steps) lies on `sine_curve(t0 + k * resolution)`.

    A coarse grid over [0, t_max], then two finer grids around the best point. With `check`, a
    window more than 1e-3 away from the curve anywhere is an error (it is not from the curve).
    """
    windows = np.asarray(windows, dtype=np.float64).reshape(len(windows), -1)
    offsets = np.arange(windows.shape[1]) * resolution
    grid = np.arange(0.0, t_max, 0.01)
    curves = sine_curve(grid[:, None] + offsets)
    sse = -2 * windows @ curves.T + (curves**2).sum(axis=1)
    t0 = grid[np.argmin(sse, axis=1)]
    for step in (1e-4, 1e-6):
        local = t0[:, None] + np.arange(-100, 101) * step
        err = ((sine_curve(local[..., None] + offsets) - windows[:, None, :]) ** 2).sum(axis=2)
        t0 = local[np.arange(len(t0)), np.argmin(err, axis=1)]
    if check:
        worst = np.abs(sine_curve(t0[:, None] + offsets) - windows).max()
        if worst > 1e-3:
            raise ValueError(f"a window is not on the sine curve (off by {worst:.3g})")
    return t0


def sine_option(config: dict, key: str):
    options = config["hyperparameters"].get("task_options", {})
    return options.get(key, inspect.signature(sine).parameters[key].default)


def open_run(run: str | os.PathLike, data=None, purpose: str = "forecasts need"):
    """(Forecaster, Task, config) of a run folder whose model forecasts its own inputs' future.

    Raises a one-line ValueError for a missing run or model, a classification run, or a task
    whose targets are not the next values of its inputs.
    """
    backend.load()
    model_path, config = locate_run(run)
    name = config["hyperparameters"]["task"]
    kind = config.get("task", {}).get("output_kind", "")
    if kind.endswith("classification"):
        raise ValueError(f"{purpose} a regression run; {run} is a {kind} run (task {name!r})")
    task = run_task(config, data)
    if task.output_kind == "sequence_regression":
        x, y, _ = task.split("test")
        if not (task.causal and y.shape == x.shape and np.allclose(y[:, :-1], x[:, 1:])):
            raise ValueError(
                f"{purpose} targets that are the inputs moved one step ahead; "
                f"task {name!r} of {run} has other targets"
            )
        fc = forecaster(load_model(model_path))
    elif name == "series":  # one value a step, whatever the input channels
        fc = forecaster(load_model(model_path), channels=1)
    elif name in WINDOW_TASKS:
        targets = task.info.get("targets", range(task.input_shape[1]))
        fc = forecaster(
            load_model(model_path), relative="test_anchor" in task.info, channels=len(targets)
        )
    else:
        raise ValueError(
            f"{purpose} a task whose targets are its inputs' next values (sine, "
            f"{', '.join(WINDOW_TASKS)}); {run} is a {name!r} run"
        )
    return fc, task, config


def horizon_windows(config: dict, task, horizon: int, data=None):
    """Test windows with their true next `horizon` values and the persistence forecast.

    Returns (x (n, steps, features), future (n, horizon, targets), persistence (same shape)).
    sine: the test windows, placed on the curve (`sine_start_times`) and continued on it.
    random_walk and series: the task rebuilt with `horizon=H` (its test split).
    """
    hp = config["hyperparameters"]
    if hp["task"] == "series":  # its test windows and targets: the run's own horizon only
        check_series_horizon(task, horizon)
        x, y = task.x_test, task.y_test
        return x, y[..., None], np.repeat(x[:, -1:, :1], horizon, axis=1)
    if hp["task"] == "sine":
        x = task.x_test
        resolution = task.info["resolution"]
        t0 = sine_start_times(x[..., 0], resolution, sine_option(config, "t_max"))
        steps = np.arange(x.shape[1], x.shape[1] + horizon) * resolution
        future = sine_curve(t0[:, None] + steps)[..., None].astype(np.float32)
        targets = [0]
    else:
        options = {**hp.get("task_options", {}), "horizon": horizon}
        try:
            rebuilt = run_task({"hyperparameters": {**hp, "task_options": options}}, data)
        except ValueError as err:
            raise ValueError(
                f"horizon {horizon} does not fit the {hp['task']} data: {err}"
            ) from None
        x, y = rebuilt.x_test, rebuilt.y_test
        targets = rebuilt.info.get("targets", range(x.shape[2]))
        future = y.reshape(len(y), horizon, len(targets))
    persistence = np.repeat(x[:, -1:, targets], horizon, axis=1)
    return x, future, persistence


def check_series_horizon(task, horizon: int | None) -> None:
    """A series run is tested on the last `horizon` steps it was trained to forecast: another
    horizon would move its test period into its training data."""
    if horizon is not None and horizon != task.info["horizon"]:
        raise ValueError(
            f"a series run forecasts the horizon it was trained for ({task.info['horizon']}), "
            f"tested on the last {task.info['horizon']} steps; drop --horizon {horizon} or "
            f"train with --task-option horizon={horizon}"
        )


def run_config(run: str | os.PathLike) -> dict:
    """The config.json of a run folder (or of the folder of a .keras file); {} if none."""
    path = Path(run)
    folder = path if path.is_dir() else path.parent
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def run_folds(run: str | os.PathLike) -> list[Path]:
    """The fold runs of a backtest's folder (fold-0/, fold-1/, ... with a model each), else
    [run]."""
    path = Path(run)
    folds = [p for p in path.glob("fold-*") if (p / "model.keras").is_file()]
    return sorted(folds, key=lambda p: int(p.name.split("-")[1])) or [path]


def score_series(runs: list, horizon: int | None = None, data=None) -> dict:
    """Every run's test forecasts (series runs, or backtests of the same folds) beside the
    baselines, fold by fold: {"task", "runs", "folds": [report], "mean": ...}; each report as
    `zoo.backtest.report` (with every method's forecasts), the models labelled by name."""
    folds = [run_folds(run) for run in runs]
    if len({len(f) for f in folds}) != 1:
        counts = ", ".join(f"{run}: {len(f)}" for run, f in zip(runs, folds, strict=True))
        raise ValueError(f"runs of one backtest only (the same folds); folds: {counts}")
    names = [run_config(f[0]).get("hyperparameters", {}).get("model", "model") for f in folds]
    if len(set(names)) < len(names):
        names = [f"{n} ({Path(r).name})" for n, r in zip(names, runs, strict=True)]
    reports = []
    for k in range(len(folds[0])):
        opened = [open_run(f[k], data) for f in folds]
        _, task, _ = opened[0]
        check_one_task(runs, opened)
        check_series_horizon(task, horizon)
        predicted = {
            name: predict(fc.model, task.x_test)
            for name, (fc, _, _) in zip(names, opened, strict=True)
        }
        report, _ = backtest.report(task.info, task.y_test, predicted)
        report["info"] = task.info  # for the plot; not written
        reports.append(report)
    table = {"task": "series", "runs": [str(r) for r in runs], "models": names, "folds": reports}
    if len(reports) > 1:
        table["mean"] = backtest.mean_over_folds(reports)
    return table


def check_one_task(runs: list, opened: list) -> None:
    """Refuse runs (`open_run`'s of each in `opened`) trained on different tasks."""
    key = _task_key(opened[0][2])
    for run, (_, _, other) in zip(runs[1:], opened[1:], strict=False):
        if _task_key(other) != key:
            raise ValueError(
                f"runs of one task only: {run} is {_task_key(other)}, {runs[0]} is {key}"
            )


def step_mse(forecasts: np.ndarray, future: np.ndarray) -> list[float]:
    """MSE at each horizon step, over windows and channels."""
    return np.mean((forecasts - future) ** 2, axis=(0, 2)).tolist()


def method(fc: Forecaster, horizon: int) -> str:
    if fc.block == 1:
        return "recursive"
    return "direct" if fc.block >= horizon else f"recursive, blocks of {fc.block}"


def score(runs: list, horizon: int, data=None) -> dict:
    """The per-step table of every run (one task) and of persistence, on the same windows."""
    opened = [open_run(run, data) for run in runs]
    _, task, config = opened[0]
    check_one_task(runs, opened)
    x, future, persistence = horizon_windows(config, task, horizon, data)
    table = {
        "task": task.name,
        "task_options": _task_key(config)[1],
        "horizon": horizon,
        "split": "test",
        "windows": len(x),
        "units": "standardised" if task.name == "series" else "the task's own",
        "persistence_mse": step_mse(persistence, future),
        "forecasts": [],
    }
    for run, (fc, _, _) in zip(runs, opened, strict=False):
        mse = step_mse(forecast(fc, x, horizon), future)
        table["forecasts"].append(
            {
                "run": str(run),
                "method": method(fc, horizon),
                "block": fc.block,
                "mse": mse,
                "mse_to_persistence": [
                    m / p for m, p in zip(mse, table["persistence_mse"], strict=True)
                ],
            }
        )
    return table


def _task_key(config: dict):
    hp = config["hyperparameters"]
    options = {k: v for k, v in hp.get("task_options", {}).items() if k != "horizon"}
    if hp.get("data"):
        options["data"] = hp["data"]
    return hp["task"], options
