"""Per-window scaling for forecasting, as model layers: raw windows in, data units out.

DeepAR and N-BEATS divide each window by its own level, so one network serves series of any
size and a series whose level moves. `WindowScaling` does that (optionally after a log
transform) and turns the season position into sin and cos; `WindowUnscaling` takes the
network's outputs back to data units. `scaled_model` puts them around any zoo model, so a saved
`.keras` file takes raw windows and returns forecasts in the data's units (STYLE.md:
preprocessing belongs to the model). The series task (`zoo.tasks.series`) describes the
scaling in `Task.preprocessing["scaling"]`; its NumPy twin of the level is
`zoo.tasks.series.window_level`.
"""

from __future__ import annotations

import inspect
import math

import keras
from keras import ops

LEVELS = ("season", "last", "window", "global")
LEVEL_FLOOR_SHARE = 0.1  # as zoo.tasks.series.LEVEL_FLOOR_SHARE (a test holds them equal)


@keras.saving.register_keras_serializable(package="zoo")
class WindowScaling(keras.layers.Layer):
    """Raw forecasting windows to scaled ones, and the level each was divided by.

    Dividing each window by its own level lets one network serve series of any size and a series
    whose level moves (DeepAR, N-BEATS). Channel 0 holds the values. Without `log`:
    z = x / level - 1 (0 where a value equals the level); with `log`: z = log(x / level). The
    level is the mean magnitude of the window's last `season` values ("season"), its last
    value's magnitude ("last") or its mean magnitude ("window"), at least
    `LEVEL_FLOOR_SHARE` (0.1) of the window's mean magnitude and at least `floor`; "global"
    scales every window alike, z = (x - mean) / std (of log x with `log`), and its level is
    `std`. With `season_inputs`, channel 1 holds each step's position p in the season, handed to
    the network as sin(2 pi p / season) and cos(2 pi p / season). `zoo.scaling.scaled_model`
    puts it, with `WindowUnscaling`, around a zoo model; its NumPy twin of the level is
    `zoo.tasks.series.window_level` (a test holds them equal).

    Args:
        level: One of "season", "last", "window" or "global", what each window is divided by.
            Defaults to `"season"`.
        season: Positive integer, the season length. Defaults to `1`.
        log: Boolean, scale log values (positive data only). Defaults to `False`.
        floor: Float, the smallest level, in data units. Defaults to `0.0`.
        mean: Float, the "global" standardisation's mean. Defaults to `0.0`.
        std: Float, the "global" standardisation's standard deviation. Defaults to `1.0`.
        season_inputs: Boolean, channel 1 is the season position. Defaults to `False`.
        **kwargs: `keras.layers.Layer`'s (`name`, `dtype`, ...). It has no weights.

    Call arguments:
        x: `(batch, steps, 1)` raw windows, or `(batch, steps, 2)` with `season_inputs`.

    Returns:
        A tuple `(z, level)`: the scaled windows `(batch, steps, 1)` (`(batch, steps, 3)` with
        `season_inputs`: z, sin, cos) and the level `(batch, 1)`.

    Raises:
        ValueError: for a `level` not among the four.

    Example:

    >>> z, level = WindowScaling(level="last")(np.array([[[2.0], [4.0]]], "float32"))
    >>> print(keras.ops.convert_to_numpy(z)[..., 0], keras.ops.convert_to_numpy(level))
    [[-0.5  0. ]] [[4.]]

    Reference:
        Salinas, Flunkert, Gasthaus & Januschowski, "DeepAR: Probabilistic forecasting with
        autoregressive recurrent networks", International Journal of Forecasting 36 (2020)
        1181-1191 (each window divided by its own scale); Oreshkin, Carpov, Chapados & Bengio,
        "N-BEATS: Neural basis expansion analysis for interpretable time series forecasting",
        ICLR 2020.
    """

    def __init__(
        self,
        level: str = "season",
        season: int = 1,
        log: bool = False,
        floor: float = 0.0,
        mean: float = 0.0,
        std: float = 1.0,
        season_inputs: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}. Received: level={level!r}")
        self.level, self.season, self.log = level, int(season), bool(log)
        self.floor, self.mean, self.std = float(floor), float(mean), float(std)
        self.season_inputs = bool(season_inputs)

    def window_level(self, values):
        """(batch, 1) levels of (batch, steps) raw values."""
        if self.level == "global":
            return ops.ones_like(values[:, :1]) * self.std
        magnitude = ops.abs(values)
        mean = ops.mean(magnitude, axis=1, keepdims=True)
        if self.level == "season":
            level = ops.mean(magnitude[:, -self.season :], axis=1, keepdims=True)
        elif self.level == "last":
            level = magnitude[:, -1:]
        else:
            level = mean
        return ops.maximum(ops.maximum(level, LEVEL_FLOOR_SHARE * mean), self.floor)

    def call(self, x):
        values = x[..., 0]
        level = self.window_level(values)
        if self.level == "global":
            moved = ops.log(values) if self.log else values
            z = (moved - self.mean) / self.std
        elif self.log:
            z = ops.log(values / level)
        else:
            z = values / level - 1.0
        parts = [ops.expand_dims(z, -1)]
        if self.season_inputs:
            angle = x[..., 1] * (2.0 * math.pi / self.season)
            parts += [ops.expand_dims(ops.sin(angle), -1), ops.expand_dims(ops.cos(angle), -1)]
        return ops.concatenate(parts, axis=-1), level

    def compute_output_shape(self, input_shape):
        channels = 3 if self.season_inputs else 1
        return (*input_shape[:2], channels), (input_shape[0], 1)

    def get_config(self):
        return {
            **super().get_config(),
            "level": self.level,
            "season": self.season,
            "log": self.log,
            "floor": self.floor,
            "mean": self.mean,
            "std": self.std,
            "season_inputs": self.season_inputs,
        }


@keras.saving.register_keras_serializable(package="zoo")
class WindowUnscaling(keras.layers.Layer):
    """The network's outputs back in data units: `WindowScaling` undone with the same level.

    Without `log`: level * (1 + z); with `log`: level * exp(z); "global": mean + std * z (its
    exp with `log`). An output of 0 is a forecast of the level.

    Args:
        level: As the `WindowScaling` it undoes ("global" or any of the others).
            Defaults to `"season"`.
        log: Boolean, as the `WindowScaling` it undoes. Defaults to `False`.
        mean: Float, as the `WindowScaling` it undoes ("global" only). Defaults to `0.0`.
        std: Float, as the `WindowScaling` it undoes ("global" only). Defaults to `1.0`.
        **kwargs: `keras.layers.Layer`'s (`name`, `dtype`, ...). It has no weights.

    Call arguments:
        inputs: `[z, level]`: the network's outputs `(batch, outputs)` and `WindowScaling`'s
            level `(batch, 1)`.

    Returns:
        `(batch, outputs)` forecasts in data units.

    Example:

    >>> unscale = WindowUnscaling(level="last")
    >>> z, level = np.array([[0.0, 0.5]], "float32"), np.array([[4.0]], "float32")
    >>> print(keras.ops.convert_to_numpy(unscale([z, level])))
    [[4. 6.]]

    Reference:
        Salinas, Flunkert, Gasthaus & Januschowski, "DeepAR: Probabilistic forecasting with
        autoregressive recurrent networks", International Journal of Forecasting 36 (2020)
        1181-1191 (each window divided by its own scale); Oreshkin, Carpov, Chapados & Bengio,
        "N-BEATS: Neural basis expansion analysis for interpretable time series forecasting",
        ICLR 2020.
    """

    def __init__(
        self,
        level: str = "season",
        log: bool = False,
        mean: float = 0.0,
        std: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.level, self.log, self.mean, self.std = level, bool(log), float(mean), float(std)

    def call(self, inputs):
        z, level = inputs
        if self.level == "global":
            moved = self.mean + self.std * z
            return ops.exp(moved) if self.log else moved
        return level * (ops.exp(z) if self.log else 1.0 + z)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "level": self.level,
            "log": self.log,
            "mean": self.mean,
            "std": self.std,
        }


def scaled_model(build, input_shape, num_outputs: int, *, preprocessing: dict, **kwargs):
    """`build` (a registered model builder) between `WindowScaling` and `WindowUnscaling`.

    The network is built for the scaled windows (1 channel, or 3 with season inputs) with the
    rest of `preprocessing`, and nested under the name "network"; the whole model takes
    `input_shape` raw windows and is named as `build` names its models (or `name`).
    """
    spec = preprocessing["scaling"]
    rest = {k: v for k, v in preprocessing.items() if k != "scaling"} or None
    name = kwargs.pop("name", inspect.signature(build).parameters["name"].default)
    channels = 3 if spec.get("season_inputs") else 1
    network = build(
        (input_shape[0], channels), num_outputs, preprocessing=rest, name="network", **kwargs
    )
    inputs = keras.Input(shape=(None, input_shape[1]), name="inputs")  # any length, as the zoo
    common = {k: spec[k] for k in ("level", "log", "mean", "std")}
    z, level = WindowScaling(
        season=spec["season"],
        floor=spec["floor"],
        season_inputs=spec.get("season_inputs", False),
        name="window_scaling",
        **common,
    )(inputs)
    outputs = WindowUnscaling(name="window_unscaling", **common)([network(z), level])
    return keras.Model(inputs, outputs, name=name)
