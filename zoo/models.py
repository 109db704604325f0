"""The model zoo: a functional Keras builder for every recurrent variant, registered by name.

Every builder takes `(input_shape, num_outputs)` and keyword-only hyperparameters with literal
defaults, and returns an uncompiled `keras.Model` with stable layer names. One generic builder,
`recurrent_model`, does the work; each registered variant is a thin function over it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras

from zoo.fused import FusedLSTM
from zoo.layers import AttentionPooling, PeepholeLSTMCell
from zoo.registry import Registry
from zoo.tasks.base import OUTPUT_KINDS

MODELS = Registry("model")

_LAYERS = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
CELLS = (*_LAYERS, "peephole")


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted model names, filtered by an fnmatch glob (or comma-separated globs)."""
    return MODELS.list(pattern)


def create_model(name: str, input_shape: Sequence[int | None], num_outputs: int, **kwargs):
    """Build the model registered as `name`; keyword arguments that are None keep its defaults."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return MODELS.get(name)(tuple(input_shape), num_outputs, **kwargs)


def average_models(models: Sequence[keras.Model], name: str = "ensemble") -> keras.Model:
    """One functional model whose output is the mean of `models`' outputs on the same input
    (softmax probabilities for classifiers): a seed ensemble as one `.keras` file. The
    models need distinct names."""
    inputs = keras.Input(shape=models[0].input_shape[1:], name="inputs")
    outputs = [model(inputs) for model in models]
    if len(outputs) > 1:
        outputs = [keras.layers.Average(name="average")(outputs)]
    return keras.Model(inputs, outputs[0], name=name)


def looks_ahead(name: str) -> bool:
    """True when the model reads sequences backwards too, so an output at step t sees inputs
    after t (bidirectional models). Such a model must not be used where a later input is the
    target (next-step prediction)."""
    return getattr(MODELS.get(name), "looks_ahead", False)


def _bidirectional(fn):
    fn.looks_ahead = True
    return fn


def _check(condition: bool, what: str, **received):
    if not condition:
        shown = ", ".join(f"{k}={v!r}" for k, v in received.items())
        raise ValueError(f"{what}. Received: {shown}")


def _positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _fraction(value) -> bool:
    return isinstance(value, numbers.Real) and 0.0 <= value < 1.0


def _recurrent_layer(cell, units, *, return_sequences, recurrent_dropout, l2, bidirectional, name):
    """One recurrent layer (optionally bidirectional) with the zoo's common settings."""
    penalty = {"kernel_regularizer": keras.regularizers.L2(l2) if l2 else None}
    penalty["recurrent_regularizer"] = penalty["kernel_regularizer"]
    if cell == "peephole":
        layer = keras.layers.RNN(
            PeepholeLSTMCell(units, recurrent_dropout=recurrent_dropout, **penalty),
            return_sequences=return_sequences,
            name=name,
        )
    else:
        # TensorFlow's fused LSTM kernel trains bidirectional LSTMs 1.35-1.7x faster on CPU
        # (scripts/benchmark_speed.py); elsewhere Keras' own layers, compiled with XLA, win.
        kind = FusedLSTM if cell == "lstm" and bidirectional else _LAYERS[cell]
        layer = kind(
            units,
            return_sequences=return_sequences,
            recurrent_dropout=recurrent_dropout,
            name=name,
            **penalty,
        )
    if bidirectional:
        return keras.layers.Bidirectional(layer, name=f"bi{name}")
    return layer


def output_head(x, output_kind: str, num_outputs: int):
    """The head every builder shares: softmax for the classification kinds, linear otherwise.

    A 3-D `x` gives an output at every step (the sequence kinds), a 2-D `x` one a sample.
    """
    activation = "softmax" if output_kind.endswith("classification") else None
    return keras.layers.Dense(num_outputs, activation=activation, name="output")(x)


def recurrent_model(
    input_shape: Sequence[int | None],
    num_outputs: int,
    *,
    cell: str = "lstm",
    output_kind: str = "classification",
    units: int = 64,
    depth: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    l2: float = 0.0,
    bidirectional: bool = False,
    residual: bool = False,
    pooling: str = "last",
    conv_layers: int = 0,
    filters: int = 64,
    kernel_size: int = 5,
    attention_size: int = 64,
    name: str = "recurrent",
) -> keras.Model:
    """The generic builder behind every registered model.

    Args:
        input_shape: `(steps, features)`; steps may be None. The model accepts any length.
        num_outputs: classes, or values to predict.
        cell: one of `rnn`, `lstm`, `gru`, `peephole`. Defaults to `"lstm"`.
        output_kind: `classification`, `sequence_classification`, `regression` or
            `sequence_regression`. Defaults to `"classification"`.
        units: width of each recurrent layer (each direction). Defaults to `64`.
        depth: number of stacked recurrent layers. Defaults to `1`.
        dropout: dropout after each recurrent layer. Defaults to `0.0`.
        recurrent_dropout: dropout on the recurrent state. Defaults to `0.0`.
        l2: L2 penalty on kernels and recurrent kernels. Defaults to `0.0`.
        bidirectional: read the sequence both ways. Defaults to `False`.
        residual: add each layer's input to its output from the second layer on.
            Defaults to `False`.
        pooling: how a per-sample output summarises the steps: `last`, `average` or
            `attention`. Defaults to `"last"`.
        conv_layers: Conv1D layers before the recurrent stack. Defaults to `0`.
        filters: Conv1D filters. Defaults to `64`.
        kernel_size: Conv1D kernel size. Defaults to `5`.
        attention_size: width of the attention scorer. Defaults to `64`.
        name: the model's name. Defaults to `"recurrent"`.

    Returns:
        An uncompiled functional `keras.Model`.

    Raises:
        ValueError: for a hyperparameter out of range.
    """
    _check(
        len(input_shape) == 2 and _positive_int(input_shape[1])
        and (input_shape[0] is None or _positive_int(input_shape[0])),
        "input_shape must be (steps, features) with positive integers (steps may be None)",
        input_shape=input_shape,
    )  # fmt: skip
    _check(
        _positive_int(num_outputs),
        "num_outputs must be a positive integer",
        num_outputs=num_outputs,
    )
    _check(
        output_kind in OUTPUT_KINDS,
        f"output_kind must be one of {OUTPUT_KINDS}",
        output_kind=output_kind,
    )
    _check(cell in CELLS, f"cell must be one of {CELLS}", cell=cell)
    _check(_positive_int(units), "units must be a positive integer", units=units)
    _check(_positive_int(depth), "depth must be a positive integer", depth=depth)
    _check(_fraction(dropout), "dropout must be in [0, 1)", dropout=dropout)
    _check(
        _fraction(recurrent_dropout),
        "recurrent_dropout must be in [0, 1)",
        recurrent_dropout=recurrent_dropout,
    )
    _check(isinstance(l2, numbers.Real) and l2 >= 0, "l2 must be a number >= 0", l2=l2)
    _check(
        pooling in ("last", "average", "attention"),
        "pooling must be last, average or attention",
        pooling=pooling,
    )
    _check(
        isinstance(conv_layers, numbers.Integral) and conv_layers >= 0,
        "conv_layers must be an integer >= 0",
        conv_layers=conv_layers,
    )
    _check(_positive_int(filters), "filters must be a positive integer", filters=filters)
    _check(
        _positive_int(kernel_size),
        "kernel_size must be a positive integer",
        kernel_size=kernel_size,
    )
    _check(_positive_int(attention_size), "attention_size must be a positive integer", attention_size=attention_size)  # fmt: skip

    per_step = output_kind.startswith("sequence")
    inputs = keras.Input(shape=(None, input_shape[1]), name="inputs")
    x = inputs
    for i in range(1, conv_layers + 1):
        # causal padding: an output at step t never sees inputs after t
        x = keras.layers.Conv1D(
            filters, kernel_size, padding="causal", activation="relu", name=f"conv_{i}"
        )(x)
    for i in range(1, depth + 1):
        last = i == depth
        layer = _recurrent_layer(
            cell,
            units,
            return_sequences=per_step or not last or pooling != "last",
            recurrent_dropout=recurrent_dropout,
            l2=l2,
            bidirectional=bidirectional,
            name=f"{cell}_{i}",
        )
        h = layer(x)
        x = keras.layers.Add(name=f"residual_{i}")([x, h]) if residual and i > 1 else h
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    if pooling == "attention":
        if per_step:  # each step attends over itself and the steps before it
            context = keras.layers.Attention(name="attention")([x, x], use_causal_mask=True)
            x = keras.layers.Concatenate(name="with_context")([x, context])
        else:
            x = AttentionPooling(attention_size, name="attention_pooling")(x)
    elif pooling == "average" and not per_step:
        x = keras.layers.GlobalAveragePooling1D(name="average_pooling")(x)
    outputs = output_head(x, output_kind, num_outputs)
    return keras.Model(inputs, outputs, name=name)


@MODELS.register
def rnn(
    input_shape,
    num_outputs,
    *,
    output_kind="classification",
    units=64,
    depth=1,
    dropout=0.0,
    recurrent_dropout=0.0,
    l2=0.0,
    name="rnn",
):
    """Vanilla RNN (SimpleRNN, tanh), the tutorials' BasicRNN; stack it with depth."""
    return recurrent_model(input_shape, num_outputs, cell="rnn", output_kind=output_kind, units=units, depth=depth, dropout=dropout, recurrent_dropout=recurrent_dropout, l2=l2, name=name)  # fmt: skip


@MODELS.register
def lstm(
    input_shape,
    num_outputs,
    *,
    output_kind="classification",
    units=64,
    depth=1,
    dropout=0.0,
    recurrent_dropout=0.0,
    l2=0.0,
    name="lstm",
):
    """LSTM (Hochreiter & Schmidhuber 1997); stack it with depth."""
    return recurrent_model(input_shape, num_outputs, cell="lstm", output_kind=output_kind, units=units, depth=depth, dropout=dropout, recurrent_dropout=recurrent_dropout, l2=l2, name=name)  # fmt: skip


@MODELS.register
def gru(
    input_shape,
    num_outputs,
    *,
    output_kind="classification",
    units=64,
    depth=1,
    dropout=0.0,
    recurrent_dropout=0.0,
    l2=0.0,
    name="gru",
):
    """GRU (Cho et al. 2014), a lighter gated cell; stack it with depth."""
    return recurrent_model(input_shape, num_outputs, cell="gru", output_kind=output_kind, units=units, depth=depth, dropout=dropout, recurrent_dropout=recurrent_dropout, l2=l2, name=name)  # fmt: skip


@MODELS.register
@_bidirectional
def birnn(
    input_shape,
    num_outputs,
    *,
    output_kind="classification",
    units=64,
    depth=1,
    dropout=0.0,
    recurrent_dropout=0.0,
    l2=0.0,
    name="birnn",
):
    """Bidirectional vanilla RNN: one SimpleRNN reads forwards, one backwards, outputs joined."""
    return recurrent_model(input_shape, num_outputs, cell="rnn", bidirectional=True, output_kind=output_kind, units=units, depth=depth, dropout=dropout, recurrent_dropout=recurrent_dropout, l2=l2, name=name)  # fmt: skip


@MODELS.register
@_bidirectional
def bilstm(
    input_shape,
    num_outputs,
    *,
    output_kind="classification",
    units=64,
    depth=1,
    dropout=0.0,
    recurrent_dropout=0.0,
    l2=0.0,
    name="bilstm",
):
    """Bidirectional LSTM: one LSTM reads forwards, one backwards, outputs joined."""
    return recurrent_model(input_shape, num_outputs, cell="lstm", bidirectional=True, output_kind=output_kind, units=units, depth=depth, dropout=dropout, recurrent_dropout=recurrent_dropout, l2=l2, name=name)  # fmt: skip


@MODELS.register
@_bidirectional
def bigru(
    input_shape,
    num_outputs,
    *,
    output_kind="classification",
    units=64,
    depth=1,
    dropout=0.0,
    recurrent_dropout=0.0,
    l2=0.0,
    name="bigru",
):
    """Bidirectional GRU: one GRU reads forwards, one backwards, outputs joined."""
    return recurrent_model(input_shape, num_outputs, cell="gru", bidirectional=True, output_kind=output_kind, units=units, depth=depth, dropout=dropout, recurrent_dropout=recurrent_dropout, l2=l2, name=name)  # fmt: skip


@MODELS.register
def stacked_lstm(
    input_shape,
    num_outputs,
    *,
    output_kind="classification",
    units=64,
    depth=2,
    dropout=0.0,
    recurrent_dropout=0.0,
    l2=0.0,
    name="stacked_lstm",
):
    """Two-layer stacked LSTM, the HAR tutorial's model (`lstm` with depth 2)."""
    return recurrent_model(input_shape, num_outputs, cell="lstm", output_kind=output_kind, units=units, depth=depth, dropout=dropout, recurrent_dropout=recurrent_dropout, l2=l2, name=name)  # fmt: skip


@MODELS.register
def deep_lstm(
    input_shape,
    num_outputs,
    *,
    output_kind="classification",
    units=64,
    depth=4,
    dropout=0.0,
    recurrent_dropout=0.0,
    l2=0.0,
    name="deep_lstm",
):
    """Four-layer LSTM, the tutorials' multi-layer RNN (`lstm` with depth 4)."""
    return recurrent_model(input_shape, num_outputs, cell="lstm", output_kind=output_kind, units=units, depth=depth, dropout=dropout, recurrent_dropout=recurrent_dropout, l2=l2, name=name)  # fmt: skip


@MODELS.register
def peephole_lstm(
    input_shape,
    num_outputs,
    *,
    output_kind="classification",
    units=64,
    depth=1,
    dropout=0.0,
    recurrent_dropout=0.0,
    l2=0.0,
    name="peephole_lstm",
):
    """LSTM with peephole connections: the gates also see the cell state (TF1 use_peepholes)."""
    return recurrent_model(input_shape, num_outputs, cell="peephole", output_kind=output_kind, units=units, depth=depth, dropout=dropout, recurrent_dropout=recurrent_dropout, l2=l2, name=name)  # fmt: skip


@MODELS.register
def conv_lstm(
    input_shape,
    num_outputs,
    *,
    output_kind="classification",
    units=64,
    depth=2,
    dropout=0.0,
    recurrent_dropout=0.0,
    l2=0.0,
    conv_layers=2,
    filters=64,
    kernel_size=5,
    name="conv_lstm",
):
    """DeepConvLSTM-style: causal Conv1D feature extractor, then a stacked LSTM."""
    return recurrent_model(input_shape, num_outputs, cell="lstm", conv_layers=conv_layers, filters=filters, kernel_size=kernel_size, output_kind=output_kind, units=units, depth=depth, dropout=dropout, recurrent_dropout=recurrent_dropout, l2=l2, name=name)  # fmt: skip


@MODELS.register
def attention_lstm(
    input_shape,
    num_outputs,
    *,
    output_kind="classification",
    units=64,
    depth=1,
    dropout=0.0,
    recurrent_dropout=0.0,
    l2=0.0,
    attention_size=64,
    name="attention_lstm",
):
    """LSTM with attention pooling over all time steps instead of the last output."""
    return recurrent_model(input_shape, num_outputs, cell="lstm", pooling="attention", attention_size=attention_size, output_kind=output_kind, units=units, depth=depth, dropout=dropout, recurrent_dropout=recurrent_dropout, l2=l2, name=name)  # fmt: skip


@MODELS.register
@_bidirectional
def res_bilstm(
    input_shape,
    num_outputs,
    *,
    output_kind="classification",
    units=64,
    depth=2,
    dropout=0.0,
    recurrent_dropout=0.0,
    l2=0.0,
    name="res_bilstm",
):
    """Stacked bidirectional LSTM with residual connections between layers, average-pooled."""
    return recurrent_model(input_shape, num_outputs, cell="lstm", bidirectional=True, residual=True, pooling="average", output_kind=output_kind, units=units, depth=depth, dropout=dropout, recurrent_dropout=recurrent_dropout, l2=l2, name=name)  # fmt: skip
