"""The forecasts a forecaster sets any model against: naive, seasonal-naive, drift and ETS.

Each takes one series' history (the values before the forecast origin, in time order) and
returns the next `horizon` values. ETS is statsmodels' Holt-Winters `ExponentialSmoothing`,
its trend (none, additive, damped) and season (none, additive, multiplicative) chosen by AIC
on the history; statsmodels is the optional extra
`forecast` (`pip install 'rnn-zoo[forecast]'`), and without it `ets` is not among the methods.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np

METHODS = ("naive", "seasonal_naive", "drift", "ets")
ETS_MISSING = (
    "ETS left out: statsmodels is not installed (pip install 'rnn-zoo[forecast]', or statsmodels)"
)


def ets_available() -> bool:
    """True where statsmodels can be imported (the `forecast` extra)."""
    try:
        return importlib.util.find_spec("statsmodels") is not None
    except ValueError:  # in sys.modules as None: imports of it are blocked
        return False


def naive(history: np.ndarray, horizon: int) -> np.ndarray:
    """The last value, held."""
    return np.full(horizon, float(history[-1]))


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The last season repeated (the naive forecast where the season is 1 or longer than the
    history)."""
    if season <= 1 or len(history) < season:
        return naive(history, horizon)
    last = np.asarray(history[-season:], dtype=np.float64)
    return np.resize(last, horizon)


def drift(history: np.ndarray, horizon: int) -> np.ndarray:
    """The last value plus the mean step of the history, once a step ahead (a line through the
    first and last values)."""
    history = np.asarray(history, dtype=np.float64)
    slope = (history[-1] - history[0]) / (len(history) - 1) if len(history) > 1 else 0.0
    return history[-1] + slope * np.arange(1, horizon + 1)


def ets_forms(history: np.ndarray, season: int) -> list[tuple[str | None, bool, str | None]]:
    """The (trend, damped, seasonal) forms tried: trend none, additive or additive damped;
    season none, additive or (positive data) multiplicative where the history holds two
    seasons. Multiplicative trends are left out, as R's `forecast::ets` leaves them out by
    default: they forecast badly (Hyndman & Athanasopoulos, FPP3, 8.6)."""
    trends = (
        [(None, False), ("add", False), ("add", True)] if len(history) >= 4 else [(None, False)]
    )
    seasons = [None]
    if season > 1 and len(history) >= 2 * season + 2:
        seasons += ["add", "mul"] if bool(np.all(np.asarray(history) > 0)) else ["add"]
    return [(t, d, s) for t, d in trends for s in seasons]


def ets(history: np.ndarray, horizon: int, season: int) -> tuple[np.ndarray, str]:
    """Holt-Winters exponential smoothing (statsmodels), the form with the lowest AIC on the
    history; (forecast, form) with form such as "trend=add damped, season=mul". A history too
    short for any fit gets the naive forecast (form "naive: too short")."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing  # the optional `forecast` extra

    history = np.asarray(history, dtype=np.float64)
    best = None
    for trend, damped, seasonal in ets_forms(history, season):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                fit = ExponentialSmoothing(
                    history,
                    trend=trend,
                    damped_trend=damped,
                    seasonal=seasonal,
                    seasonal_periods=season if seasonal else None,
                    initialization_method="estimated",
                ).fit()
                forecast = np.asarray(fit.forecast(horizon), dtype=np.float64)
            except (ValueError, np.linalg.LinAlgError, ZeroDivisionError):
                continue
        if not np.isfinite(fit.aic) or not np.isfinite(forecast).all():
            continue
        if best is None or fit.aic < best[0]:
            form = (
                f"trend={trend or 'none'}{' damped' if damped else ''}, season={seasonal or 'none'}"
            )
            best = (fit.aic, forecast, form)
    if best is None:
        return naive(history, horizon), "naive: too short"
    return best[1], best[2]


def forecasts(
    histories: list[np.ndarray], horizon: int, season: int, methods=METHODS
) -> tuple[dict[str, np.ndarray], dict]:
    """Every method's forecast of every series: ({method: (series, horizon)}, notes), where
    notes holds the ETS form chosen for each series ("ets_forms"), or why ETS is missing
    ("ets")."""
    out, notes = {}, {}
    for method in methods:
        if method == "ets":
            if not ets_available():
                notes["ets"] = ETS_MISSING
                continue
            pairs = [ets(h, horizon, season) for h in histories]
            out["ets"] = np.array([p[0] for p in pairs])
            notes["ets_forms"] = [p[1] for p in pairs]
        elif method == "seasonal_naive":
            out[method] = np.array([seasonal_naive(h, horizon, season) for h in histories])
        elif method in ("naive", "drift"):
            fn = naive if method == "naive" else drift
            out[method] = np.array([fn(h, horizon) for h in histories])
        else:
            raise ValueError(f"method must be one of {', '.join(METHODS)}. Received: {method!r}")
    return out, notes
