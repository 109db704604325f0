"""Forecast accuracy as forecasters report it, for a model and the baselines on the same test.

MAE, RMSE, sMAPE and MASE in the data's own units, per horizon step and overall, per series and
averaged over series (the M4 competition's way: each series' figure, then their mean), for
the model and for `zoo.baselines`' naive, seasonal-naive, drift and ETS forecasts of the same
series from the same histories; and the mean over the folds of a rolling-origin backtest.
"""

from __future__ import annotations

import hashlib

import numpy as np

from zoo import baselines

METRICS = ("mase", "smape", "mae", "rmse")


def mase_scale(history: np.ndarray, season: int) -> float:
    """MASE's denominator: the in-sample mean absolute error of the seasonal-naive forecast
    (each value forecast by the one a season before; one step before where the history is not
    longer than a season). NaN where it is undefined (one value) or 0 (a constant history)."""
    history = np.asarray(history, dtype=np.float64)
    m = season if len(history) > season else 1
    if len(history) <= m:
        return float("nan")
    scale = float(np.mean(np.abs(history[m:] - history[:-m])))
    return scale if scale > 0 else float("nan")


def _nanmean(values, axis=None):
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    count = keep.sum(axis=axis)
    total = np.where(keep, values, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def accuracy(actual: np.ndarray, forecast: np.ndarray, scales: np.ndarray) -> dict:
    """The four figures of `forecast` against `actual`, both (series, horizon) in data units.

    Per series: MAE = mean |e|, RMSE = sqrt(mean e^2), sMAPE = mean 200 |e| / (|y| + |f|) (in
    percent, 0 where both are 0), MASE = MAE / `scales` (the series' `mase_scale`), e = f - y
    over its horizon steps. Overall: the mean over series (MASE over the series whose scale is
    defined). Per step: the same over series at each horizon step (RMSE: the root of the mean
    square over series)."""
    actual = np.asarray(actual, dtype=np.float64)
    forecast = np.asarray(forecast, dtype=np.float64)
    err = forecast - actual
    absolute = np.abs(err)
    total = np.abs(actual) + np.abs(forecast)
    safe = np.where(total > 0, total, 1.0)
    sape = np.where(total > 0, 200.0 * absolute / safe, 0.0)
    scaled = absolute / np.asarray(scales, dtype=np.float64)[:, None]
    per_series = {
        "mase": scaled.mean(axis=1),
        "smape": sape.mean(axis=1),
        "mae": absolute.mean(axis=1),
        "rmse": np.sqrt((err**2).mean(axis=1)),
    }
    per_step = {
        "mase": _nanmean(scaled, axis=0),
        "smape": sape.mean(axis=0),
        "mae": absolute.mean(axis=0),
        "rmse": np.sqrt((err**2).mean(axis=0)),
    }
    result = {k: float(_nanmean(v)) for k, v in per_series.items()}
    result["per_step"] = {k: v.tolist() for k, v in per_step.items()}
    result["per_series"] = {k: v.tolist() for k, v in per_series.items()}
    return result


def histories(info: dict) -> list[np.ndarray]:
    """Each series' values before its forecast origin, from a series task's `info`."""
    return [h[:o] for h, o in zip(info["history"], info["test_origin"], strict=True)]


_CACHE: dict = {}  # baselines already fitted to these histories (ETS takes seconds a series)


def _baselines(past: list[np.ndarray], horizon: int, season: int, methods: tuple):
    """`baselines.forecasts`, remembered for the last few sets of histories: a run scores its
    test split more than once (metrics, export checks), each time on the same histories."""
    digest = hashlib.sha1(repr((horizon, season, methods)).encode())
    for h in past:
        digest.update(np.ascontiguousarray(h, dtype=np.float64).tobytes() + b"|")
    key = digest.hexdigest()
    if key not in _CACHE:
        if len(_CACHE) >= 8:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = baselines.forecasts(past, horizon, season, methods)
    others, notes = _CACHE[key]
    return {k: v.copy() for k, v in others.items()}, dict(notes)


def report(
    info: dict, actual: np.ndarray, predicted, methods=baselines.METHODS
) -> tuple[dict, dict[str, np.ndarray]]:
    """The model's accuracy and each baseline's on the test windows of a series task.

    `info` is the task's `info` (`zoo.tasks.series.series`), `actual` its test targets and
    `predicted` the model's forecasts, (series, horizon) in data units, or {label: forecasts}
    for several models. Returns (the report as metrics.json holds it, {method: forecasts
    (series, horizon)}, the models first)."""
    horizon, season = info["horizon"], info["season"]
    past = histories(info)
    scales = np.array([mase_scale(h, season) for h in past])
    models = predicted if isinstance(predicted, dict) else {"model": predicted}
    shape = (len(past), horizon)
    models = {k: np.asarray(v, dtype=np.float64).reshape(shape) for k, v in models.items()}
    actual = np.asarray(actual, dtype=np.float64).reshape(shape)
    others, notes = _baselines(past, horizon, season, tuple(methods))
    forecasts = {**models, **others}
    result = {
        "fold": info["fold"],
        "horizon": horizon,
        "season": season,
        "series": len(past),
        "test_start": info.get("test_start"),
        "mase_scale": scales.tolist(),
        "methods": {name: accuracy(actual, f, scales) for name, f in forecasts.items()},
        **notes,
        "forecasts": {name: f.tolist() for name, f in forecasts.items()},
    }
    return result, forecasts


def mean_over_folds(reports: list[dict]) -> dict:
    """The mean of each method's figures (overall and per step) over the folds' reports; a
    method missing from any fold is left out."""
    names = [m for m in reports[0]["methods"] if all(m in r["methods"] for r in reports)]
    mean = {}
    for name in names:
        figures = [r["methods"][name] for r in reports]
        entry = {k: float(_nanmean([f[k] for f in figures])) for k in METRICS}
        entry["per_step"] = {
            k: _nanmean([f["per_step"][k] for f in figures], axis=0).tolist() for k in METRICS
        }
        mean[name] = entry
    notes = {"ets": reports[0]["ets"]} if "ets" in reports[0] else {}
    return {"folds": len(reports), "methods": mean, **notes}


def format_table(methods: dict, model: str = "model") -> str:
    """The methods' MASE, sMAPE, MAE and RMSE as aligned lines, the model (labelled `model`)
    first."""
    width = max(len(model), *(len(m) for m in methods)) + 2
    lines = [f"{'':<{width}}{'MASE':>8}{'sMAPE':>8}{'MAE':>12}{'RMSE':>12}"]
    for name, m in methods.items():
        label = model if name == "model" else name
        lines.append(
            f"{label:<{width}}{m['mase']:>8.3f}{m['smape']:>8.2f}{m['mae']:>12.4g}{m['rmse']:>12.4g}"
        )
    return "\n".join(lines)


def headline(report: dict) -> str:
    """MASE and sMAPE of the model, with seasonal-naive's and ETS's MASE beside."""
    methods = report["methods"]
    text = f"MASE {methods['model']['mase']:.3f}, sMAPE {methods['model']['smape']:.2f}%"
    beside = [
        f"{label} {methods[key]['mase']:.3f}"
        for key, label in (("seasonal_naive", "seasonal-naive"), ("ets", "ETS"))
        if key in methods
    ]
    return text + (f" (MASE of {', '.join(beside)})" if beside else "")
