"""ES-RNN (Smyl 2020), the hybrid that won the M4 competition: exponential smoothing and a
recurrent network in one Keras model, trained across every series of a file.

`es_rnn_model` smooths each raw window with Holt-Winters in logs (`zoo.smoothing`: a
multiplicative level and season with learned coefficients), feeds the window deseasonalised
and divided by its last level to a stack of LSTMs, and adds the network's output to the ES
forecast in logs before re-seasonalising and re-levelling it: the model takes raw windows and
returns forecasts in the data's units, so it does its own scaling (`scales_itself`) instead of
the series task's `zoo.scaling` layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from zoo.models.base import (
    check,
    check_common,
    check_task_arguments,
    family,
    variant,
)
from zoo.models.recurrent import recurrent_layer

ES_CELLS = ("lstm", "gru")
# The network's last layer starts near zero, so an untrained model forecasts the ES forecast.
HEAD_INIT_STD = 0.01


def _looks_ahead(structure: dict) -> str | None:
    return "smooths the whole window (its starting season and last level read every step)"


def season_of(preprocessing: dict | None) -> int:
    """The season length the series task hands over (`preprocessing["scaling"]["season"]`);
    1 for any other task."""
    return int(((preprocessing or {}).get("scaling") or {}).get("season", 1))


@family(
    structure=("cell",),
    common=("units", "depth", "dropout", "recurrent_dropout", "l2", "trend"),
    looks_ahead=_looks_ahead,
    output_kinds=("regression",),
    scales_itself=True,
    loss="the absolute error of log forecasts (zoo.smoothing.ESRNNModel)",
)
def es_rnn_model(
    input_shape: Sequence[int | None],
    num_outputs: int,
    *,
    cell: str = "lstm",
    output_kind: str = "regression",
    units: int = 16,
    depth: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    l2: float = 0.0,
    trend: bool = False,
    preprocessing: dict | None = None,
    stateful_batch: int | None = None,
    name: str = "es_rnn",
):
    """The family builder of ES-RNN.

    Channel 0 of each raw window is the series: `zoo.smoothing.ExponentialSmoothing` gives its
    log values less the season and the last level (z), and the ES forecast of the next
    `num_outputs` steps in logs. z (with any further input channels beside it) goes through
    `depth` recurrent layers; a dense layer on the last step's output (starting near zero)
    corrects the ES forecast, and `zoo.smoothing.ESForecast` takes the sum back to the data's
    units. The season length comes from the series task (`preprocessing["scaling"]`), 1 for
    other tasks.

    Smyl's per-series smoothing coefficients and starting seasons become coefficients shared
    by all series of a file and a start estimated from each window: the model keeps one input
    (raw windows), so it trains, saves, exports and serves like every zoo model, and a new
    series needs no training of its own.

    Args:
        input_shape: `(steps, features)`; steps must be fixed (the smoothing runs over the
            window), channel 0 is the series.
        num_outputs: steps forecast (the horizon).
        cell: the recurrent cell, `lstm` or `gru`. Defaults to `"lstm"`.
        output_kind: `regression` only. Defaults to `"regression"`.
        units: width of each recurrent layer. Defaults to `16`.
        depth: recurrent layers. Defaults to `1`.
        dropout: dropout on the last recurrent output. Defaults to `0.0`.
        recurrent_dropout: dropout on the recurrent state. Defaults to `0.0`.
        l2: L2 penalty on the recurrent and dense kernels. Defaults to `0.0`.
        trend: a damped trend in the smoothing (Smyl's has none: the network forecasts the
            trend). Defaults to `False`.
        preprocessing: the series task's `{"scaling": {...}}` (its `season` and `floor` are
            used); other preprocessing is refused. Defaults to `None`.
        stateful_batch: must be None: the model reads whole windows. Defaults to `None`.
        name: the model's name. Defaults to `"es_rnn"`.

    Returns:
        An uncompiled functional `keras.Model` from raw windows (batch, steps, features) to
        forecasts (batch, num_outputs) in the data's units.

    Raises:
        ValueError: for a hyperparameter out of range, windows of no fixed length, an output
            kind other than regression, or a stateful batch.

    Reference:
        Smyl, "A hybrid method of exponential smoothing and recurrent neural networks for time
        series forecasting", International Journal of Forecasting 36 (2020) 75-85.
    """
    check_task_arguments(
        input_shape, num_outputs, output_kind, es_rnn_model.family.output_kinds, name
    )
    check(cell in ES_CELLS, f"cell must be one of {ES_CELLS}", cell=cell)
    check_common(
        units=units, dropout=dropout, recurrent_dropout=recurrent_dropout, l2=l2, depth=depth
    )
    check(isinstance(trend, bool), "trend must be true or false", trend=trend)
    check(
        input_shape[0] is not None,
        "es_rnn smooths a whole window: input_shape needs a fixed number of steps",
        input_shape=input_shape,
    )
    check(
        stateful_batch is None,
        "es_rnn reads whole windows: no stateful_batch",
        stateful_batch=stateful_batch,
    )
    other = sorted(set(preprocessing or {}) - {"scaling"})
    check(
        not other,
        "es_rnn does its own scaling: preprocessing other than the series task's scaling",
        preprocessing=other,
    )
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    from zoo.smoothing import ESForecast, ESRNNModel, ExponentialSmoothing

    steps, features = input_shape
    spec = (preprocessing or {}).get("scaling") or {}
    inputs = keras.Input(shape=(steps, features), name="inputs")
    season = season_of(preprocessing)
    z, base, shift = ExponentialSmoothing(
        season=season,
        horizon=num_outputs,
        trend=trend,
        floor=float(spec.get("floor", 1e-6)) or 1e-6,
        name="smoothing",
    )(inputs)
    x = keras.layers.Reshape((steps, 1), name="normalised")(z)
    if features > 1:  # further channels go to the network beside z
        rest = inputs[..., 1:]
        if spec.get("season_inputs"):  # channel 1: the place in the season, as sin and cos
            angle = rest[..., :1] * (2.0 * math.pi / season)
            rest = keras.ops.concatenate(
                [keras.ops.sin(angle), keras.ops.cos(angle), rest[..., 1:]], axis=-1
            )
        x = keras.layers.Concatenate(name="with_inputs")([x, rest])
    penalty = keras.regularizers.L2(l2) if l2 else None
    for i in range(1, depth + 1):
        layer = recurrent_layer(
            cell,
            units,
            return_sequences=i < depth,
            recurrent_dropout=recurrent_dropout,
            l2=l2,
            name=f"{cell}_{i}",
        )
        x = layer(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    correction = keras.layers.Dense(
        num_outputs,
        kernel_initializer=keras.initializers.RandomNormal(stddev=HEAD_INIT_STD),
        kernel_regularizer=penalty,
        name="correction",
    )(x)
    outputs = ESForecast(name="forecast")([correction, base, shift])
    return ESRNNModel(inputs, outputs, name=name)


variant(
    es_rnn_model,
    "es_rnn",
    "ES-RNN (Smyl 2020): Holt-Winters in logs with learned coefficients, an LSTM correcting it.",
    cell="lstm",
)
