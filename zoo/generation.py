"""Generation: a next-step model writes a series on its own, and how long it stays true.

The "creative RNN" of the tutorials (`generate`): from a seed window, the model predicts the next
value, which is appended to the window (its oldest value drops out) and fed back, step after
step. `close_steps` counts the steps a generated series stays within a tolerance of its true
continuation; for a zero seed on `sine` (no true continuation exists), `best_stretch` finds the
longest stretch that follows the true curve from wherever a window of it fits best. The command
line is `python -m zoo.generate`.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from zoo.forecasting import Forecaster, forecast, forecaster, sine_option, sine_start_times
from zoo.tasks.synthetic import sine_curve


def generate(model, seed, steps: int) -> np.ndarray:
    """`steps` values generated from `seed`, each of the model's forecasts fed back as an input.

    Args:
        model: a Keras next-step model (one output a step, as sine's) or a `Forecaster`.
        seed: the first window, (window,) or (window, channels).
        steps: how many values to generate.

    Returns:
        (steps,) for a 1-D seed, else (steps, channels).
    """
    fc = check_feeds_back(model if isinstance(model, Forecaster) else forecaster(model))
    seed = np.asarray(seed, dtype=np.float32)
    out = forecast(fc, seed.reshape(1, len(seed), -1), steps)[0]
    return out[:, 0] if seed.ndim == 1 else out


def check_feeds_back(fc: Forecaster) -> Forecaster:
    """`fc`, if its forecasts can be its next inputs (it forecasts every input channel)."""
    if not fc.feeds_back:
        raise ValueError(
            f"generation needs a model that forecasts every input channel; this one forecasts "
            f"{fc.channels} of {fc.features}"
        )
    return fc


def close_steps(generated: np.ndarray, truth: np.ndarray, tolerance: float) -> int:
    """How many leading steps stay within `tolerance` (absolute error, every channel)."""
    far = np.abs(np.asarray(generated) - np.asarray(truth)).reshape(len(truth), -1) >= tolerance
    far = far.any(axis=1)
    return int(np.argmax(far)) if far.any() else len(truth)


def best_stretch(config: dict, task, generated: np.ndarray, tolerance: float):
    """The longest stretch of a generated sine series that stays on the true curve somewhere.

    Every window of `steps` generated values is placed on the curve where it fits best (over
    t in [0, t_max]); from there the curve runs on, and the steps until the first error of
    `tolerance` or more are counted. Returns (start, steps close, the curve (n, 1) of the best).
    """
    resolution, steps = task.info["resolution"], task.input_shape[0]
    series = generated[:, 0]
    windows = sliding_window_view(series, min(steps, len(series)))
    t0 = sine_start_times(windows, resolution, sine_option(config, "t_max"), check=False)
    starts, cols = np.arange(len(windows))[:, None], np.arange(len(series))[None, :]
    curves = sine_curve(t0[:, None] + (cols - starts) * resolution)
    far = (np.abs(curves - series) >= tolerance) & (cols >= starts)
    ends = np.where(far.any(axis=1), np.argmax(far, axis=1), len(series))
    lengths = ends - starts[:, 0]
    best = int(np.argmax(lengths))
    return best, int(lengths[best]), curves[best][:, None]
