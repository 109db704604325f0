"""The model zoo: one family builder for recurrent networks, and its variants registered by name.

`recurrent_model` builds every model. A variant is one `variant(...)` line: the settings it fixes
(cell, bidirectional, pooling, ...) and the defaults it changes (depth=2); from that follow its
builder, its signature (for `--help`, the CLI's key check and the tuner's space), whether it looks
ahead (from `bidirectional`) and its description. Each default lives in one place:
`recurrent_model`'s signature. Keras is imported when a model is built, so listing the zoo is
instant.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Sequence

from zoo.registry import Registry

MODELS = Registry("model")

OUTPUT_KINDS = ("classification", "sequence_classification", "regression", "sequence_regression")
CELLS = ("rnn", "lstm", "gru", "peephole")
POOLINGS = ("last", "average", "attention")
# What a variant may fix; every other argument of `recurrent_model` is a hyperparameter.
STRUCTURE = ("cell", "bidirectional", "residual", "pooling")
# The hyperparameters every variant takes; a variant may expose more of the family's.
COMMON = ("units", "depth", "dropout", "recurrent_dropout", "l2")
# Arguments every builder takes that come from the task, not from a choice of hyperparameters.
NOT_TUNED = ("output_kind", "preprocessing", "stateful_batch", "name")


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted model names, filtered by an fnmatch glob (or comma-separated globs)."""
    return MODELS.list(pattern)


def create_model(name: str, input_shape: Sequence[int | None], num_outputs: int, **kwargs):
    """Build the model registered as `name`; keyword arguments that are None keep its defaults.
    A forecasting task's per-window scaling (`preprocessing["scaling"]`) is put around it
    (`zoo.scaling`) unless the builder scales by itself (`scales_itself = True`)."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    build = MODELS.get(name)
    if "scaling" in kwargs.get("preprocessing", {}) and not getattr(build, "scales_itself", False):
        from zoo.scaling import scaled_model  # Keras only when a model is built

        return scaled_model(build, tuple(input_shape), num_outputs, **kwargs)
    return build(tuple(input_shape), num_outputs, **kwargs)


def model_defaults(name: str) -> dict:
    """The hyperparameters model `name` takes (`python -m zoo.train` flags, the tuner's names),
    with their defaults."""
    params = inspect.signature(MODELS.get(name)).parameters.values()
    return {
        p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name not in NOT_TUNED
    }


def model_hyperparameters(name: str) -> list[str]:
    """The names of the hyperparameters model `name` takes."""
    return list(model_defaults(name))


def looks_ahead(name: str) -> bool:
    """True when the model reads sequences backwards too, so an output at step t sees inputs
    after t (bidirectional models). Such a model must not be used where a later input is the
    target (next-step prediction)."""
    return bool(MODELS.get(name).structure.get("bidirectional"))


def average_models(models: Sequence, name: str = "ensemble"):
    """One functional model whose output is the mean of `models`' outputs on the same input
    (softmax probabilities for classifiers): a seed ensemble as one `.keras` file. The
    models need distinct names."""
    import keras

    inputs = keras.Input(shape=models[0].input_shape[1:], name="inputs")
    outputs = [model(inputs) for model in models]
    if len(outputs) > 1:
        outputs = [keras.layers.Average(name="average")(outputs)]
    return keras.Model(inputs, outputs[0], name=name)


def _check(condition: bool, what: str, **received):
    if not condition:
        shown = ", ".join(f"{k}={v!r}" for k, v in received.items())
        raise ValueError(f"{what}. Received: {shown}")


def _positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _fraction(value) -> bool:
    return isinstance(value, numbers.Real) and 0.0 <= value < 1.0


def layer_class(cell: str, bidirectional: bool):
    """The Keras layer class of a recurrent layer. TensorFlow's fused LSTM kernel trains
    bidirectional LSTMs 1.35-1.7x faster on CPU, the zoo's C++ LSTM op (`NativeLSTM`) single and
    stacked ones 1.1-3x faster than Keras (5 of 6 interleaved runs; scripts/benchmark_speed.py;
    it is Keras' LSTM where the op cannot be built); elsewhere Keras' own layers win."""
    import keras

    from zoo.fused import FusedLSTM, NativeLSTM

    if cell == "lstm":
        return FusedLSTM if bidirectional else NativeLSTM
    return {"rnn": keras.layers.SimpleRNN, "gru": keras.layers.GRU}[cell]


def _recurrent_layer(
    cell, units, *, return_sequences, recurrent_dropout, l2, bidirectional, stateful, name
):
    """One recurrent layer (optionally bidirectional or stateful) with the zoo's settings."""
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


def _standardization(stats: dict, name: str):
    """(x - mean) / std as a `Rescaling` layer (x * scale + offset): exports everywhere."""
    import keras

    pairs = zip(stats["mean"], stats["std"], strict=True)
    scale, offset = zip(*((1.0 / s, -m / s) for m, s in pairs), strict=True)
    return keras.layers.Rescaling(list(scale), list(offset), name=name)


def _window_features(inputs, spec: dict):
    """The per-window features of the raw input (`zoo.layers.WindowFeatures`), standardised
    with the training windows' statistics that the task measured (`zoo.features.feature_spec`)."""
    from zoo.layers import WindowFeatures

    f = WindowFeatures(spec["channels"], spec["sampling_hz"], name="window_features")(inputs)
    return _standardization(spec, "feature_standardization")(f)


def _preprocessing_layers(inputs, input_shape, preprocessing: dict):
    """The model's first layers: standardisation with given statistics, then framing."""
    import keras

    from zoo.layers import PaddingMask

    x = PaddingMask(name="padding_mask")(inputs) if preprocessing.get("mask") else inputs
    if "mean" in preprocessing:
        x = _standardization(preprocessing, "standardization")(x)
    frame = preprocessing.get("frame_steps", 1)
    _check(
        _positive_int(frame) and (input_shape[0] is None or input_shape[0] % frame == 0),
        "frame_steps must be a positive integer that divides the steps",
        frame_steps=frame,
        steps=input_shape[0],
    )
    if frame > 1:
        x = keras.layers.Reshape((-1, input_shape[1] * frame), name="framing")(x)
    return x


def output_head(x, output_kind: str, num_outputs: int):
    """The head every builder shares: softmax for the classification kinds, linear otherwise.

    A 3-D `x` gives an output at every step (the sequence kinds), a 2-D `x` one a sample.
    """
    import keras

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
            unlike `Normalization` converts to ONNX) and
    from zoo.layers import PaddingMask

    x = PaddingMask(name="padding_mask")(inputs) if preprocessing.get("mask") else inputs
    if "mean" in preprocessing:
        x = _standardization(preprocessing, "standardization")(x)
        stateful_batch: rows of every batch, for a task of continuous streams side by side
            (`Task.stateful_batch`): the recurrent layers keep each row's state from batch to
            batch. Only a forward recurrent stack can. Defaults to `None`.
        name: the model's name. Defaults to `"recurrent"`.

    Returns:
        An uncompiled functional `keras.Model`.

    Raises:
        ValueError: for a hyperparameter out of range.
    """
    _check(
        len(input_shape) == 2
        and _positive_int(input_shape[1])
        and (input_shape[0] is None or _positive_int(input_shape[0])),
        "input_shape must be (steps, features) with positive integers (steps may be None)",
        input_shape=input_shape,
    )
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
    spec = (preprocessing or {}).get("window_features")
    _check(
        spec is None or (output_kind in ("classification", "regression") and not stateful_batch),
        "window features describe a whole window: output_kind classification or regression, "
        "no stateful_batch",
        output_kind=output_kind,
        stateful_batch=stateful_batch,
    )
    _check(
        _positive_int(depth) or (depth == 0 and not isinstance(depth, bool)),
        "depth must be a positive integer",
        depth=depth,
    )
    _check(
        depth != 0 or (spec is not None and not conv_layers),
        "depth 0 (a features-only model) needs the task's window features "
        "(--task-option window_features=true) and no conv_layers",
        depth=depth,
        conv_layers=conv_layers,
    )
    for key, value in dict(
        units=units,
        filters=filters,
        kernel_size=kernel_size,
        attention_size=attention_size,
    ).items():
        _check(_positive_int(value), f"{key} must be a positive integer", **{key: value})
    for key, value in dict(dropout=dropout, recurrent_dropout=recurrent_dropout).items():
        _check(_fraction(value), f"{key} must be in [0, 1)", **{key: value})
    _check(isinstance(l2, numbers.Real) and l2 >= 0, "l2 must be a number >= 0", l2=l2)
    _check(pooling in POOLINGS, "pooling must be last, average or attention", pooling=pooling)
    _check(
        not residual or depth == 1 or pooling != "last" or output_kind.startswith("sequence"),
        "residual needs pooling 'average' or 'attention', or a sequence output_kind (the last "
        "layer's final output would be added to every step of the sequence before it)",
        residual=residual,
        pooling=pooling,
    )
    _check(
        isinstance(conv_layers, numbers.Integral) and conv_layers >= 0,
        "conv_layers must be an integer >= 0",
        conv_layers=conv_layers,
    )
    forward_stack = not bidirectional and not conv_layers and pooling == "last"
    _check(
        stateful_batch is None or (_positive_int(stateful_batch) and forward_stack),
        "a stateful model carries state forward through a recurrent stack: not bidirectional, "
        "no conv front-end, no attention or average pooling",
        stateful_batch=stateful_batch,
        bidirectional=bidirectional,
        conv_layers=conv_layers,
        pooling=pooling,
    )
    masked = bool((preprocessing or {}).get("mask"))
    _check(
        not masked
        or (not conv_layers and not stateful_batch and preprocessing.get("frame_steps", 1) == 1),
        "padded variable-length input needs a model that carries the mask: no conv front-end, "
        "no framing (frame_steps > 1), not stateful",
        conv_layers=conv_layers,
        frame_steps=preprocessing.get("frame_steps", 1) if masked else 1,
        stateful_batch=stateful_batch,
    )
    import keras

    from zoo.layers import AttentionPooling

    per_step = output_kind.startswith("sequence")
    shape = {"batch_shape": (stateful_batch, None, input_shape[1])} if stateful_batch else {}
    steps = input_shape[0] if spec is not None else None  # features are of a whole window
    inputs = keras.Input(**(shape or {"shape": (steps, input_shape[1])}), name="inputs")
    x = _preprocessing_layers(inputs, input_shape, preprocessing or {})
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
        f = _window_features(inputs, spec)
        x = keras.layers.Concatenate(name="with_window_features")([x, f]) if depth else f
    outputs = output_head(x, output_kind, num_outputs)
    return keras.Model(inputs, outputs, name=name)


_FAMILY = inspect.signature(recurrent_model).parameters


def variant(name: str, doc: str, *, extra: Sequence[str] = (), **settings) -> None:
    """Register `name`, a `recurrent_model` with `settings`: those in STRUCTURE are fixed, the
    others change a hyperparameter's default. It takes COMMON's hyperparameters, those it sets
    and those named in `extra`."""
    unknown = set(settings) - set(_FAMILY)
    if unknown or set(extra) - set(_FAMILY):
        raise TypeError(f"variant {name!r}: recurrent_model takes no {sorted(unknown or extra)}")
    structure = {k: v for k, v in settings.items() if k in STRUCTURE}
    takes = [*COMMON, *(k for k in (*settings, *extra) if k not in STRUCTURE and k not in COMMON)]
    defaults = {key: settings.get(key, _FAMILY[key].default) for key in takes}

    def build(
        input_shape,
        num_outputs,
        *,
        output_kind="classification",
        preprocessing=None,
        stateful_batch=None,
        name=name,
        **hp,
    ):
        unexpected = set(hp) - set(takes)
        if unexpected:
            raise TypeError(
                f"{name}() got an unexpected keyword argument {sorted(unexpected)[0]!r}"
            )
        return recurrent_model(
            input_shape,
            num_outputs,
            **structure,
            **{**defaults, **hp},
            output_kind=output_kind,
            preprocessing=preprocessing,
            stateful_batch=stateful_batch,
            name=name,
        )

    keyword = inspect.Parameter.KEYWORD_ONLY
    build.__signature__ = inspect.Signature(
        [
            _FAMILY["input_shape"],
            _FAMILY["num_outputs"],
            inspect.Parameter("output_kind", keyword, default="classification"),
            *(inspect.Parameter(k, keyword, default=v) for k, v in defaults.items()),
            inspect.Parameter("preprocessing", keyword, default=None),
            inspect.Parameter("stateful_batch", keyword, default=None),
            inspect.Parameter("name", keyword, default=name),
        ]
    )
    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    build.structure = structure
    MODELS.register(build, name=name)


variant(
    "rnn",
    "Vanilla RNN (SimpleRNN, tanh), the tutorials' BasicRNN; stack it with depth.",
    cell="rnn",
)
variant("lstm", "LSTM (Hochreiter & Schmidhuber 1997); stack it with depth.", cell="lstm")
variant("gru", "GRU (Cho et al. 2014), a lighter gated cell; stack it with depth.", cell="gru")
variant(
    "birnn",
    "Bidirectional vanilla RNN: one SimpleRNN reads forwards, one backwards, outputs joined.",
    cell="rnn",
    bidirectional=True,
)
variant(
    "bilstm",
    "Bidirectional LSTM: one LSTM reads forwards, one backwards, outputs joined.",
    cell="lstm",
    bidirectional=True,
)
variant(
    "bigru",
    "Bidirectional GRU: one GRU reads forwards, one backwards, outputs joined.",
    cell="gru",
    bidirectional=True,
)
variant(
    "stacked_lstm",
    "Two-layer stacked LSTM, the HAR tutorial's model (`lstm` with depth 2).",
    cell="lstm",
    depth=2,
)
variant(
    "deep_lstm",
    "Four-layer LSTM, the tutorials' multi-layer RNN (`lstm` with depth 4).",
    cell="lstm",
    depth=4,
)
variant(
    "peephole_lstm",
    "LSTM with peephole connections: the gates also see the cell state (TF1 use_peepholes).",
    cell="peephole",
)
variant(
    "conv_lstm",
    "DeepConvLSTM-style: causal Conv1D feature extractor, then a stacked LSTM.",
    cell="lstm",
    depth=2,
    conv_layers=2,
    extra=("filters", "kernel_size"),
)
variant(
    "attention_lstm",
    "LSTM with attention pooling over all time steps instead of the last output.",
    cell="lstm",
    pooling="attention",
    extra=("attention_size",),
)
variant(
    "res_bilstm",
    "Stacked bidirectional LSTM with residual connections between layers, average-pooled.",
    cell="lstm",
    bidirectional=True,
    residual=True,
    pooling="average",
    depth=2,
)
