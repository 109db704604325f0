"""The recurrent family: one builder, `recurrent_model`, and its variants registered by name.

A variant is one `variant(recurrent_model, ...)` line: the settings it fixes (cell,
bidirectional, pooling, ...) and the defaults it changes (depth=2); from that follow its
builder, its signature (for `--help`, the CLI's flags and key check and the tuner's space),
whether it looks ahead (from `bidirectional`) and its description. Each default lives in one
place: `recurrent_model`'s signature.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from zoo.models.base import (
    check,
    check_common,
    check_task_arguments,
    family,
    output_head,
    positive_int,
    preprocessing_layers,
    variant,
    window_features,
)

CELLS = ("rnn", "lstm", "gru", "peephole")
POOLINGS = ("last", "average", "attention")


def layer_class(cell: str, bidirectional: bool):
    """The Keras layer class of a recurrent layer: the fastest measured on each path (interleaved
    runs of scripts/benchmark_speed.py, docs/speed.md). Every LSTM is `NativeLSTM`, the zoo's C++
    op: single and stacked ones train 1.1-3x faster than Keras, bidirectional ones 1.13x faster
    than TensorFlow's fused `BlockLSTM` (`FusedLSTM`), which stays the bidirectional LSTM only
    where the op cannot be built (there it beats Keras' loop by 1.3-1.7x; a single LSTM is
    better off with Keras' loop and XLA). Elsewhere Keras' own layers win (GRUs with XLA for a
    long run: `zoo.xla.use_xla`)."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    from zoo.fused import FusedLSTM, NativeLSTM, native_path_available
    from zoo.scan import ScanGRU  # and both LSTMs derive from ScanLSTM: JAX's fastest loops

    if cell == "lstm":
        return FusedLSTM if bidirectional and not native_path_available() else NativeLSTM
    return {"rnn": keras.layers.SimpleRNN, "gru": ScanGRU}[cell]


def recurrent_layer(
    cell,
    units,
    *,
    return_sequences,
    recurrent_dropout,
    l2,
    bidirectional=False,
    stateful=False,
    name,
):
    """One recurrent layer (optionally bidirectional or stateful) with the zoo's settings."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    from zoo.layers import PeepholeLSTMCell

    penalty = {"kernel_regularizer": keras.regularizers.L2(l2) if l2 else None}
    penalty["recurrent_regularizer"] = penalty["kernel_regularizer"]
    if cell == "peephole":
        layer = keras.layers.RNN(
            PeepholeLSTMCell(units, recurrent_dropout=recurrent_dropout, **penalty),
            return_sequences=return_sequences,
            stateful=stateful,
            name=name,
        )
    else:
        layer = layer_class(cell, bidirectional)(
            units,
            return_sequences=return_sequences,
            recurrent_dropout=recurrent_dropout,
            stateful=stateful,
            name=name,
            **penalty,
        )
    if bidirectional:
        return keras.layers.Bidirectional(layer, name=f"bi{name}")
    return layer


def _looks_ahead(structure: dict) -> str | None:
    if structure.get("bidirectional"):
        return "is bidirectional (reads sequences backwards)"
    return None


@family(
    structure=("cell", "bidirectional", "residual", "pooling"),
    common=("units", "depth", "dropout", "recurrent_dropout", "l2"),
    looks_ahead=_looks_ahead,
)
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
    preprocessing: dict | None = None,
    stateful_batch: int | None = None,
    name: str = "recurrent",
):
    """The family builder behind every registered model.

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
        preprocessing: what the model does to its raw input first (`zoo.tasks.Task`'s
            preprocessing): `mean` and `std` a feature (a `Rescaling` layer, which
            unlike `Normalization` converts to ONNX), `frame_steps` (a `Reshape` joining that
            many steps into one), `mask` (NaN steps are padding: `zoo.layers.PaddingMask`) and
            `window_features` (`zoo.layers.WindowFeatures` beside the recurrent stack).
            Defaults to `None`.
        stateful_batch: rows of every batch, for a task of continuous streams side by side
            (`Task.stateful_batch`): the recurrent layers keep each row's state from batch to
            batch. Only a forward recurrent stack can. Defaults to `None`.
        name: the model's name. Defaults to `"recurrent"`.

    Returns:
        An uncompiled functional `keras.Model`.

    Raises:
        ValueError: for a hyperparameter out of range.
    """
    check_task_arguments(input_shape, num_outputs, output_kind)
    check(cell in CELLS, f"cell must be one of {CELLS}", cell=cell)
    spec = (preprocessing or {}).get("window_features")
    check(
        spec is None or (output_kind in ("classification", "regression") and not stateful_batch),
        "window features describe a whole window: output_kind classification or regression, "
        "no stateful_batch",
        output_kind=output_kind,
        stateful_batch=stateful_batch,
    )
    check(
        positive_int(depth) or (depth == 0 and not isinstance(depth, bool)),
        "depth must be a positive integer",
        depth=depth,
    )
    check(
        depth != 0 or (spec is not None and not conv_layers),
        "depth 0 (a features-only model) needs the task's window features "
        "(--task-option window_features=true) and no conv_layers",
        depth=depth,
        conv_layers=conv_layers,
    )
    check_common(
        units=units,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        l2=l2,
        filters=filters,
        kernel_size=kernel_size,
        attention_size=attention_size,
    )
    check(pooling in POOLINGS, "pooling must be last, average or attention", pooling=pooling)
    check(
        not residual or depth == 1 or pooling != "last" or output_kind.startswith("sequence"),
        "residual needs pooling 'average' or 'attention', or a sequence output_kind (the last "
        "layer's final output would be added to every step of the sequence before it)",
        residual=residual,
        pooling=pooling,
    )
    check(
        isinstance(conv_layers, numbers.Integral) and conv_layers >= 0,
        "conv_layers must be an integer >= 0",
        conv_layers=conv_layers,
    )
    forward_stack = not bidirectional and not conv_layers and pooling == "last"
    check(
        stateful_batch is None or (positive_int(stateful_batch) and forward_stack),
        "a stateful model carries state forward through a recurrent stack: not bidirectional, "
        "no conv front-end, no attention or average pooling",
        stateful_batch=stateful_batch,
        bidirectional=bidirectional,
        conv_layers=conv_layers,
        pooling=pooling,
    )
    masked = bool((preprocessing or {}).get("mask"))
    check(
        not masked
        or (not conv_layers and not stateful_batch and preprocessing.get("frame_steps", 1) == 1),
        "padded variable-length input needs a model that carries the mask: no conv front-end, "
        "no framing (frame_steps > 1), not stateful",
        conv_layers=conv_layers,
        frame_steps=preprocessing.get("frame_steps", 1) if masked else 1,
        stateful_batch=stateful_batch,
    )
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    from zoo.layers import AttentionPooling

    per_step = output_kind.startswith("sequence")
    shape = {"batch_shape": (stateful_batch, None, input_shape[1])} if stateful_batch else {}
    steps = input_shape[0] if spec is not None else None  # features are of a whole window
    inputs = keras.Input(**(shape or {"shape": (steps, input_shape[1])}), name="inputs")
    x = preprocessing_layers(inputs, input_shape, preprocessing or {})
    for i in range(1, conv_layers + 1):
        # causal padding: an output at step t never sees inputs after t
        x = keras.layers.Conv1D(
            filters, kernel_size, padding="causal", activation="relu", name=f"conv_{i}"
        )(x)
    for i in range(1, depth + 1):
        last = i == depth
        layer = recurrent_layer(
            cell,
            units,
            return_sequences=per_step or not last or pooling != "last",
            recurrent_dropout=recurrent_dropout,
            l2=l2,
            bidirectional=bidirectional,
            stateful=bool(stateful_batch),
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
    if spec is not None:
        f = window_features(inputs, spec)
        x = keras.layers.Concatenate(name="with_window_features")([x, f]) if depth else f
    outputs = output_head(x, output_kind, num_outputs)
    return keras.Model(inputs, outputs, name=name)


variant(
    recurrent_model,
    "rnn",
    "Vanilla RNN (SimpleRNN, tanh), the tutorials' BasicRNN; stack it with depth.",
    cell="rnn",
)
variant(
    recurrent_model,
    "lstm",
    "LSTM (Hochreiter & Schmidhuber 1997); stack it with depth.",
    cell="lstm",
)
variant(
    recurrent_model,
    "gru",
    "GRU (Cho et al. 2014), a lighter gated cell; stack it with depth.",
    cell="gru",
)
variant(
    recurrent_model,
    "birnn",
    "Bidirectional vanilla RNN: one SimpleRNN reads forwards, one backwards, outputs joined.",
    cell="rnn",
    bidirectional=True,
)
variant(
    recurrent_model,
    "bilstm",
    "Bidirectional LSTM: one LSTM reads forwards, one backwards, outputs joined.",
    cell="lstm",
    bidirectional=True,
)
variant(
    recurrent_model,
    "bigru",
    "Bidirectional GRU: one GRU reads forwards, one backwards, outputs joined.",
    cell="gru",
    bidirectional=True,
)
variant(
    recurrent_model,
    "stacked_lstm",
    "Two-layer stacked LSTM, the HAR tutorial's model (`lstm` with depth 2).",
    cell="lstm",
    depth=2,
)
variant(
    recurrent_model,
    "deep_lstm",
    "Four-layer LSTM, the tutorials' multi-layer RNN (`lstm` with depth 4).",
    cell="lstm",
    depth=4,
)
variant(
    recurrent_model,
    "peephole_lstm",
    "LSTM with peephole connections: the gates also see the cell state (TF1 use_peepholes).",
    cell="peephole",
)
variant(
    recurrent_model,
    "conv_lstm",
    "DeepConvLSTM-style: causal Conv1D feature extractor, then a stacked LSTM.",
    cell="lstm",
    depth=2,
    conv_layers=2,
    extra=("filters", "kernel_size"),
)
variant(
    recurrent_model,
    "attention_lstm",
    "LSTM with attention pooling over all time steps instead of the last output.",
    cell="lstm",
    pooling="attention",
    extra=("attention_size",),
)
variant(
    recurrent_model,
    "res_bilstm",
    "Stacked bidirectional LSTM with residual connections between layers, average-pooled.",
    cell="lstm",
    bidirectional=True,
    residual=True,
    pooling="average",
    depth=2,
)
