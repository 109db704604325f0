"""Exponential smoothing as Keras layers: the ES half of `es_rnn` (Smyl 2020).

`ExponentialSmoothing` runs Holt-Winters over each raw window, in logs (a multiplicative level
and season in the data's units), with smoothing coefficients learned by gradient descent like
any weight: it hands the network the window deseasonalised and divided by its last level, and
the ES forecast of the next `horizon` steps (the last level times the season ahead).
`ESForecast` puts the network's correction on that forecast and returns data units. A window
with a value <= 0 is shifted up first (`window_shift`), so counts with zeros are smoothed too.
`smooth` is the NumPy twin of `ExponentialSmoothing` (a test holds them equal).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

# A window holding a value <= 0 is shifted by -min + SHIFT_SHARE * its mean magnitude (+ the
# floor) before the log; a positive window is not shifted.
SHIFT_SHARE = 0.1
# The bounds of the damping factor phi of the damped trend (as statsmodels' 0.8-0.98).
PHI_RANGE = (0.8, 0.98)
# Log forecasts are clipped here before exp: an untrained network cannot overflow float32.
LOG_CLIP = 80.0


def seasonal_start(steps: int, season: int) -> np.ndarray:
    """(steps, season) matrix P: `log_window @ P` is the window's starting seasonality, the
    classical decomposition's (the deviation from a centred 2 x season moving average, averaged
    per position in the season, centred to sum 0). Zeros where the window holds no full moving
    average (fewer than season + 1 steps, or an odd season's season steps)."""
    if season <= 1:
        return np.zeros((steps, 1), np.float32)
    if season % 2 == 0:
        weights = np.r_[0.5, np.ones(season - 1), 0.5] / season
    else:
        weights = np.ones(season) / season
    half = len(weights) // 2
    P = np.zeros((steps, season))
    for t in range(half, steps - half):
        # y[t] - sum_k w[k] y[t - half + k], added to position t % season
        P[t, t % season] += 1.0
        P[t - half : t + half + 1, t % season] -= weights
    counts = np.bincount(np.arange(half, steps - half) % season, minlength=season)
    P = P / np.maximum(counts, 1)
    P = P - P.mean(axis=1, keepdims=True)  # each position's deviation from the season's mean
    return P.astype(np.float32)


def window_shift(values: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """(windows,) shifts that make log(values + shift) finite: 0 for a positive window, else
    -min + SHIFT_SHARE * mean magnitude + floor. The NumPy twin of the layer's."""
    values = np.asarray(values, dtype=np.float64)
    low = values.min(axis=1)
    scale = SHIFT_SHARE * np.abs(values).mean(axis=1) + floor
    return np.where(low > 0, 0.0, -low + scale)


def smooth(values, season, horizon, alpha, gamma=0.0, beta=0.0, phi=1.0, trend=False, floor=0.0):
    """NumPy Holt-Winters in logs, as `ExponentialSmoothing` runs it: (z, base, shift) for raw
    windows `values` (windows, steps)."""
    values = np.asarray(values, dtype=np.float64)
    shift = window_shift(values, floor)
    y = np.log(values + shift[:, None])
    steps = y.shape[1]
    m = max(season, 1)
    seas = y @ seasonal_start(steps, season) if season > 1 else np.zeros((len(y), 1))
    level = y[:, 0] - seas[:, 0]
    slope = np.zeros(len(y))
    used = np.zeros_like(y)
    for t in range(steps):
        s = seas[:, t % m] if season > 1 else 0.0
        used[:, t] = s
        previous = level + phi * slope if trend else level
        new = alpha * (y[:, t] - s) + (1 - alpha) * previous
        if trend:
            slope = beta * (new - level) + (1 - beta) * phi * slope
        level = new
        if season > 1:
            seas[:, t % m] = gamma * (y[:, t] - level) + (1 - gamma) * s
    z = y - used - level[:, None]
    ahead = [seas[:, (steps + h) % m] if season > 1 else np.zeros(len(y)) for h in range(horizon)]
    base = level[:, None] + np.stack(ahead, axis=1)
    if trend:
        base += slope[:, None] * np.cumsum(phi ** np.arange(1, horizon + 1))[None, :]
    return z, base, shift[:, None]


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


@keras.saving.register_keras_serializable(package="zoo")
class ExponentialSmoothing(keras.layers.Layer):
    """Holt-Winters smoothing of each window in logs, with learned smoothing coefficients.

    The ES half of ES-RNN (Smyl 2020): it hands the network each window deseasonalised and
    divided by its last level, and the ES forecast of the next `horizon` steps. Each raw window
    x (channel 0 of the input) is shifted where it holds a value <= 0 (`window_shift`),
    y = log(x + shift), and smoothed step by step from a start taken from the window itself
    (the season: the classical decomposition's, `seasonal_start`; the level: the first value
    less its season):

        level[t] = alpha (y[t] - s[t]) + (1 - alpha) (level[t-1] + phi slope[t-1])
        s[t + season] = gamma (y[t] - level[t]) + (1 - gamma) s[t]
        slope[t] = beta (level[t] - level[t-1]) + (1 - beta) phi slope[t-1]   (with `trend`)

    alpha, gamma and beta are sigmoids of trained weights (`alpha_logit`, `gamma_logit` where
    `season > 1`, `beta_logit` with `trend`, starting at 0.1), so they stay in (0, 1); phi
    (`phi_logit`, with `trend`) stays in `PHI_RANGE` (0.8, 0.98). The coefficients are shared
    by every window (every series of a file); the starting level and season are each window's
    own, where Smyl (2020) learns a start per series. The time loop is unrolled: windows have a
    fixed number of steps. `zoo.smoothing.smooth` is its NumPy twin (a test holds them equal).

    Args:
        season: Positive integer, the season length (1: no season). Defaults to `1`.
        horizon: Positive integer, steps forecast. Defaults to `1`.
        trend: Boolean, a damped additive trend in logs (a damped multiplicative trend in the
            data's units). Defaults to `False`.
        alpha: Float in (0, 1), the level coefficient's starting value. Defaults to `0.3`.
        gamma: Float in (0, 1), the season coefficient's starting value. Defaults to `0.2`.
        floor: Float, added to the shift of a window with a value <= 0, in data units (a
            window of zeros is shifted by it). Defaults to `1e-6`.
        **kwargs: `keras.layers.Layer`'s (`name`, `dtype`, ...).

    Call arguments:
        x: `(batch, steps)` or `(batch, steps, channels)` raw windows, `steps` fixed; channel 0
            is smoothed.

    Returns:
        A tuple `(z, base, shift)`: z `(batch, steps)`, y less the season used at each step and
        the last level; base `(batch, horizon)`, the ES forecast in logs; shift `(batch, 1)`.

    Raises:
        ValueError: for `alpha` or `gamma` outside (0, 1), or windows of no fixed length.

    Example:

    >>> smoothing = ExponentialSmoothing(horizon=2)  # no season, no trend, alpha 0.3
    >>> z, base, shift = smoothing(np.array([[1.0, 2.0, 4.0]], "float32"))
    >>> print(np.round(keras.ops.convert_to_numpy(z), 3))
    [[-0.561  0.132  0.825]]
    >>> print(np.round(np.exp(keras.ops.convert_to_numpy(base)), 3))  # in data units
    [[1.753 1.753]]

    Reference:
        Smyl, "A hybrid method of exponential smoothing and recurrent neural networks for time
        series forecasting", International Journal of Forecasting 36 (2020) 75-85.
        Holt-Winters: Hyndman & Athanasopoulos, "Forecasting: Principles and Practice", 8.3.
    """

    def __init__(
        self,
        season: int = 1,
        horizon: int = 1,
        trend: bool = False,
        alpha: float = 0.3,
        gamma: float = 0.2,
        floor: float = 1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for key, value in dict(alpha=alpha, gamma=gamma).items():
            if not 0.0 < value < 1.0:
                raise ValueError(f"{key} must be in (0, 1). Received: {key}={value}")
        self.season, self.horizon, self.trend = int(season), int(horizon), bool(trend)
        self.alpha, self.gamma, self.floor = float(alpha), float(gamma), float(floor)

    def build(self, input_shape):
        steps = input_shape[1]
        if steps is None:
            raise ValueError("ExponentialSmoothing needs windows of a fixed number of steps")
        start = keras.initializers.Constant
        self.alpha_logit = self.add_weight(
            shape=(), initializer=start(_logit(self.alpha)), name="alpha_logit"
        )
        if self.season > 1:
            self.gamma_logit = self.add_weight(
                shape=(), initializer=start(_logit(self.gamma)), name="gamma_logit"
            )
        if self.trend:
            self.beta_logit = self.add_weight(
                shape=(), initializer=start(_logit(0.1)), name="beta_logit"
            )
            self.phi_logit = self.add_weight(shape=(), initializer="zeros", name="phi_logit")
        self.start = seasonal_start(steps, self.season)

    def coefficients(self) -> dict:
        """The smoothing coefficients as tensors: alpha (and gamma, beta, phi where used)."""
        out = {"alpha": ops.sigmoid(self.alpha_logit)}
        if self.season > 1:
            out["gamma"] = ops.sigmoid(self.gamma_logit)
        if self.trend:
            out["beta"] = ops.sigmoid(self.beta_logit)
            low, high = PHI_RANGE
            out["phi"] = low + (high - low) * ops.sigmoid(self.phi_logit)
        return out

    def call(self, x):
        values = x[..., 0] if len(x.shape) == 3 else x
        low = ops.min(values, axis=1, keepdims=True)
        scale = SHIFT_SHARE * ops.mean(ops.abs(values), axis=1, keepdims=True) + self.floor
        shift = ops.where(low > 0, ops.zeros_like(low), scale - low)
        y = ops.log(values + shift)
        steps, m = values.shape[1], self.season
        k = self.coefficients()
        alpha = k["alpha"]
        if m > 1:
            start = ops.matmul(y, ops.convert_to_tensor(self.start))
            seas = [start[:, j] for j in range(m)]
            level = y[:, 0] - seas[0]
        else:
            level = y[:, 0]
        slope = ops.zeros_like(level)
        used = []
        for t in range(steps):  # unrolled: a fixed window, exported as plain arithmetic
            s = seas[t % m] if m > 1 else None
            step = y[:, t] if s is None else y[:, t] - s
            previous = level + k["phi"] * slope if self.trend else level
            new = alpha * step + (1.0 - alpha) * previous
            if self.trend:
                slope = k["beta"] * (new - level) + (1.0 - k["beta"]) * k["phi"] * slope
            level = new
            if m > 1:
                used.append(s)
                seas[t % m] = k["gamma"] * (y[:, t] - level) + (1.0 - k["gamma"]) * s
        z = y - level[:, None]
        if m > 1:
            z = z - ops.stack(used, axis=1)
            base = ops.stack([seas[(steps + h) % m] for h in range(self.horizon)], axis=1)
            base = base + level[:, None]
        else:
            base = ops.repeat(level[:, None], self.horizon, axis=1)
        if self.trend:
            powers = k["phi"] ** ops.arange(1, self.horizon + 1, dtype=base.dtype)
            base = base + slope[:, None] * ops.cumsum(powers)[None, :]
        return z, base, shift

    def compute_output_shape(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        return (batch, steps), (batch, self.horizon), (batch, 1)

    def get_config(self):
        return {
            **super().get_config(),
            "season": self.season,
            "horizon": self.horizon,
            "trend": self.trend,
            "alpha": self.alpha,
            "gamma": self.gamma,
            "floor": self.floor,
        }


@keras.saving.register_keras_serializable(package="zoo")
class ESForecast(keras.layers.Layer):
    """The ES-RNN forecast in data units: the ES forecast corrected by the network.

    exp(base + correction) - shift: `ExponentialSmoothing`'s forecast in logs (the last level
    and the season ahead) plus the network's correction, re-seasonalised and re-levelled by
    the exp, less the window's shift. The log forecast is clipped to +-`LOG_CLIP` (80) first,
    so an untrained network cannot overflow float32.

    Args:
        **kwargs: `keras.layers.Layer`'s (`name`, `dtype`, ...). It has no weights.

    Call arguments:
        inputs: `[correction, base, shift]`: `(batch, horizon)`, `(batch, horizon)` and
            `(batch, 1)`, the last two from `ExponentialSmoothing`.

    Returns:
        `(batch, horizon)` forecasts in data units.

    Example:

    >>> z, base, shift = ExponentialSmoothing(horizon=2)(np.array([[1.0, 2.0, 4.0]], "float32"))
    >>> correction = np.zeros((1, 2), "float32")  # no correction: the ES forecast
    >>> print(np.round(keras.ops.convert_to_numpy(ESForecast()([correction, base, shift])), 3))
    [[1.753 1.753]]

    Reference:
        Smyl, "A hybrid method of exponential smoothing and recurrent neural networks for time
        series forecasting", International Journal of Forecasting 36 (2020) 75-85.
    """

    def call(self, inputs):
        correction, base, shift = inputs
        return ops.exp(ops.clip(base + correction, -LOG_CLIP, LOG_CLIP)) - shift

    def compute_output_shape(self, input_shape):
        return input_shape[1]


def log_error(values, targets, forecasts, floor):
    """(batch, horizon) differences of log(targets + shift) and log(forecasts + shift), the
    shift of each raw window `values` (batch, steps) as `ExponentialSmoothing` takes it; a
    value at or below -shift counts as SHIFT_SHARE of the window's mean magnitude."""
    low = ops.min(values, axis=1, keepdims=True)
    least = SHIFT_SHARE * ops.mean(ops.abs(values), axis=1, keepdims=True) + floor
    shift = ops.where(low > 0, ops.zeros_like(low), least - low)
    return ops.log(ops.maximum(targets + shift, least)) - ops.log(
        ops.maximum(forecasts + shift, least)
    )


@keras.saving.register_keras_serializable(package="zoo")
class ESRNNModel(keras.Model):
    """A functional model that trains on the error of its forecasts in logs, as ES-RNN.

    As Smyl (2020) trains ES-RNN: the pinball loss (tau 0.5: half the mean absolute error) of
    log(forecast + shift) against log(target + shift), the shift of each window as its
    `ExponentialSmoothing` takes it (`log_error`). The loss is the same for series of any size,
    so one model trains across every series of a file with no weights: the loss given to
    `compile` and the sample weights (the series task's 1 / level**2, for a squared error in
    data units) are not used; the model's regularisation losses are added. Metrics are the
    compiled ones. `zoo.models.esrnn` builds it.

    Args:
        *args, **kwargs: `keras.Model`'s functional form (`inputs`, `outputs`, `name`). The
            model must hold its `ExponentialSmoothing` under the name `"smoothing"` (the loss
            reads its `floor`).

    Call arguments:
        inputs: `(batch, steps)` or `(batch, steps, channels)` raw windows.
        training: Python boolean, training or inference mode. Defaults to `None`.

    Returns:
        The functional model's outputs: `(batch, horizon)` forecasts in data units.

    Example:

    >>> inputs = keras.Input((6, 1))
    >>> z, base, shift = ExponentialSmoothing(horizon=2, name="smoothing")(inputs)
    >>> correction = keras.layers.Dense(2, kernel_initializer="zeros")(z)
    >>> model = ESRNNModel(inputs, ESForecast()([correction, base, shift]))
    >>> x = np.array([[[1.0], [2.0], [4.0], [8.0], [16.0], [32.0]]], "float32")
    >>> forecast = keras.ops.convert_to_numpy(model(x))
    >>> round(float(model.compute_loss(x, forecast * np.e, forecast)), 6)  # log error 1
    0.5

    Reference:
        Smyl, "A hybrid method of exponential smoothing and recurrent neural networks for time
        series forecasting", International Journal of Forecasting 36 (2020) 75-85.
    """

    tau = 0.5

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        values = x[..., 0] if len(x.shape) == 3 else x
        floor = self.get_layer("smoothing").floor
        d = log_error(ops.cast(values, y_pred.dtype), ops.cast(y, y_pred.dtype), y_pred, floor)
        loss = ops.mean(ops.maximum(self.tau * d, (self.tau - 1.0) * d))
        for extra in self.losses:  # the L2 penalties of the kernels
            loss = loss + ops.cast(extra, loss.dtype)
        return loss
