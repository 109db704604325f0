"""The RNN-FCN family: a recurrent branch beside a fully convolutional one, the line of models
that does well on the UCR/UEA time-series classification benchmarks.

`rnn_fcn_model` builds every member: LSTM-FCN and ALSTM-FCN (Karim et al. 2018), MLSTM-FCN and
MALSTM-FCN (Karim et al. 2019, squeeze-and-excitation in the convolutional branch), GRU-FCN
(Elsayed et al. 2018). Its variants fix the cell and change defaults; the attention LSTM and
squeeze-and-excitation are hyperparameters (`attention`, `squeeze_excite`), so `lstm_fcn` with
`squeeze_excite=True` is `mlstm_fcn` and the tuner holds them as one.

Both branches see the whole window at once (the convolutions pad both ends, the shuffled
recurrent branch reads every step as a feature), so every member looks ahead: refused on causal
tasks and by `zoo.stream`. They give one output a window (classification or regression).
"""

from __future__ import annotations

from collections.abc import Sequence

from zoo.models.base import (
    check,
    check_common,
    check_task_arguments,
    family,
    frame_steps,
    output_head,
    preprocessing_layers,
    variant,
    window_features,
)
from zoo.models.recurrent import recurrent_layer

FCN_CELLS = ("rnn", "lstm", "gru")
SE_REDUCTION = 16  # the papers' squeeze-and-excitation reduction ratio


def filter_sizes(filters: int) -> tuple[int, int, int]:
    """The three convolution blocks' filters for `filters`: (f, 2f, f), the papers' 128-256-128
    for 128."""
    return (filters, 2 * filters, filters)


def kernel_sizes(kernel_size: int) -> tuple[int, int, int]:
    """The three convolution blocks' kernel sizes for `kernel_size` k: (k, 5k/8, 3k/8) rounded
    (at least 1), the papers' 8-5-3 for 8 (3-2-1 for 3, 5-3-2 for 5, 12-8-4 for 12)."""
    return (kernel_size, max(1, round(kernel_size * 5 / 8)), max(1, round(kernel_size * 3 / 8)))


def _looks_ahead(structure: dict) -> str | None:
    return "convolves over the whole window (an output reads steps after it)"


@family(
    structure=("cell",),
    common=(
        "units",
        "dropout",
        "recurrent_dropout",
        "l2",
        "filters",
        "kernel_size",
        "squeeze_excite",
        "shuffle",
    ),
    looks_ahead=_looks_ahead,
    output_kinds=("classification", "regression"),
)
def rnn_fcn_model(
    input_shape: Sequence[int | None],
    num_outputs: int,
    *,
    cell: str = "lstm",
    output_kind: str = "classification",
    units: int = 8,
    dropout: float = 0.8,
    recurrent_dropout: float = 0.0,
    l2: float = 0.0,
    filters: int = 128,
    kernel_size: int = 8,
    squeeze_excite: bool = False,
    shuffle: bool = True,
    attention: bool = False,
    preprocessing: dict | None = None,
    stateful_batch: int | None = None,
    name: str = "rnn_fcn",
):
    """The family builder of the RNN-FCN models.

    A recurrent branch (one layer; over the dimension-shuffled input when `shuffle`, then
    dropout) beside a fully convolutional branch (three blocks of Conv1D with `same` padding,
    batch normalisation and ReLU; squeeze-and-excitation after the first two when
    `squeeze_excite`; global average pooling), the two concatenated into the zoo's output head.

    Args:
        input_shape: `(steps, features)`; steps may be None only with `shuffle=False`.
        num_outputs: classes, or values to predict.
        cell: the recurrent branch's cell, `lstm`, `gru` or `rnn`. Defaults to `"lstm"`.
        output_kind: `classification` or `regression` (one output a window).
            Defaults to `"classification"`.
        units: width of the recurrent layer. Defaults to `8` (the authors' code; the papers
            search 8, 64 and 128).
        dropout: dropout on the recurrent branch's output. Defaults to `0.8` (the papers').
        recurrent_dropout: dropout on the recurrent state. Defaults to `0.0`.
        l2: L2 penalty on the convolution, recurrent and squeeze-and-excitation kernels.
            Defaults to `0.0`.
        filters: the convolution blocks' filters `f`, as f-2f-f (`filter_sizes`).
            Defaults to `128` (128-256-128).
        kernel_size: the convolution blocks' kernel sizes `k`, as k-5k/8-3k/8 (`kernel_sizes`).
            Defaults to `8` (8-5-3). A window must be at least `k` steps long.
        squeeze_excite: squeeze-and-excitation (`zoo.layers.SqueezeExcite`, reduction 16)
            after the first two convolution blocks, the "M" of MLSTM-FCN. Defaults to `False`.
        shuffle: the dimension shuffle: the recurrent branch reads one step a channel with the
            whole series as its features (a fixed number of steps, no padding mask); without
            it, one step a time step. Defaults to `True` (the papers').
        attention: the attention LSTM of ALSTM-FCN (`zoo.layers.AttentionLSTM`); `cell` lstm
            only. Defaults to `False`.
        preprocessing: what the model does to its raw input first (`zoo.tasks.Task`'s
            preprocessing, see `recurrent_model`): standardisation, framing, the padding mask
            (with `shuffle=False`: masked convolutions and pooling, `zoo.layers.MaskedConv1D`)
            and window features (beside both branches). Defaults to `None`.
        stateful_batch: must be None: the family reads whole windows. Defaults to `None`.
        name: the model's name. Defaults to `"rnn_fcn"`.

    Returns:
        An uncompiled functional `keras.Model`.

    Raises:
        ValueError: for a hyperparameter out of range, a window shorter than `kernel_size`, a
            sequence output kind, or a padding mask with `shuffle`.

    Reference:
        Karim, Majumdar, Darabi & Chen, "LSTM Fully Convolutional Networks for Time Series
        Classification", IEEE Access 6 (2018) 1662-1669 (LSTM-FCN, ALSTM-FCN).
        Karim, Majumdar, Darabi & Harford, "Multivariate LSTM-FCNs for time series
        classification", Neural Networks 116 (2019) 237-245 (MLSTM-FCN, MALSTM-FCN).
        Elsayed, Maida & Bayoumi, "Deep Gated Recurrent and Convolutional Network Hybrid Model
        for Univariate Time Series Classification", arXiv:1812.07683 (2018) (GRU-FCN).
    """
    check_task_arguments(
        input_shape, num_outputs, output_kind, rnn_fcn_model.family.output_kinds, name
    )
    check(cell in FCN_CELLS, f"cell must be one of {FCN_CELLS}", cell=cell)
    check_common(
        units=units,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        l2=l2,
        filters=filters,
        kernel_size=kernel_size,
    )
    for key, value in dict(
        squeeze_excite=squeeze_excite, shuffle=shuffle, attention=attention
    ).items():
        check(isinstance(value, bool), f"{key} must be true or false", **{key: value})
    check(
        not attention or cell == "lstm",
        "attention is the attention LSTM of ALSTM-FCN: cell lstm",
        attention=attention,
        cell=cell,
    )
    check(
        stateful_batch is None,
        "the RNN-FCN models read whole windows: they cannot be stateful",
        stateful_batch=stateful_batch,
    )
    preprocessing = preprocessing or {}
    masked = bool(preprocessing.get("mask"))
    frame = frame_steps(input_shape, preprocessing)
    check(
        not masked or (not shuffle and frame == 1),
        "padded variable-length input needs shuffle=False (--shuffle false; the dimension shuffle "
        "reads the whole window as one step's features, padding too) and no framing "
        "(frame_steps > 1)",
        shuffle=shuffle,
        frame_steps=frame,
    )
    check(
        not shuffle or input_shape[0] is not None,
        "shuffle reads the whole window as one step's features: it needs a fixed number of steps "
        "(or shuffle=False)",
        steps=input_shape[0],
    )
    steps = None if input_shape[0] is None else input_shape[0] // frame
    check(
        steps is None or steps >= kernel_size,
        f"a window must be at least kernel_size steps long{' after framing' if frame > 1 else ''}"
        " (a longer kernel reads mostly padding): use a smaller kernel_size (--kernel-size)",
        steps=steps,
        kernel_size=kernel_size,
    )
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    from zoo.layers import AttentionLSTM, MaskedConv1D, SqueezeExcite

    spec = preprocessing.get("window_features")
    fixed = shuffle or spec is not None  # the shuffle and window features read a whole window
    inputs = keras.Input(shape=(input_shape[0] if fixed else None, input_shape[1]), name="inputs")
    x = preprocessing_layers(inputs, input_shape, preprocessing)
    penalty = keras.regularizers.L2(l2) if l2 else None

    r = keras.layers.Permute((2, 1), name="dimension_shuffle")(x) if shuffle else x
    if attention:
        r = AttentionLSTM(
            units,
            kernel_regularizer=penalty,
            recurrent_regularizer=penalty,
            recurrent_dropout=recurrent_dropout,
            name="attention_lstm",
        )(r)
    else:
        r = recurrent_layer(
            cell,
            units,
            return_sequences=False,
            recurrent_dropout=recurrent_dropout,
            l2=l2,
            name=cell,
        )(r)
    if dropout:
        r = keras.layers.Dropout(dropout, name="rnn_dropout")(r)

    convolution = MaskedConv1D if masked else keras.layers.Conv1D
    y = x
    blocks = zip(filter_sizes(filters), kernel_sizes(kernel_size), strict=True)
    for i, (width, kernel) in enumerate(blocks, start=1):
        y = convolution(
            width,
            kernel,
            padding="same",
            kernel_initializer="he_uniform",
            kernel_regularizer=penalty,
            name=f"conv_{i}",
        )(y)
        y = keras.layers.BatchNormalization(name=f"batch_norm_{i}")(y)
        y = keras.layers.Activation("relu", name=f"relu_{i}")(y)
        if squeeze_excite and i < 3:
            y = SqueezeExcite(SE_REDUCTION, kernel_regularizer=penalty, name=f"squeeze_excite_{i}")(
                y
            )
    y = keras.layers.GlobalAveragePooling1D(name="average_pooling")(y)
    x = keras.layers.Concatenate(name="concatenate")([r, y])
    if spec is not None:
        x = keras.layers.Concatenate(name="with_window_features")(
            [x, window_features(inputs, spec)]
        )
    outputs = output_head(x, output_kind, num_outputs)
    return keras.Model(inputs, outputs, name=name)


variant(
    rnn_fcn_model,
    "lstm_fcn",
    "LSTM-FCN (Karim et al. 2018): an LSTM over the shuffled series beside three conv blocks.",
    cell="lstm",
    extra=("attention",),
)
variant(
    rnn_fcn_model,
    "mlstm_fcn",
    "MLSTM-FCN (Karim et al. 2019): LSTM-FCN with squeeze-and-excitation, for many channels.",
    cell="lstm",
    squeeze_excite=True,
    extra=("attention",),
)
variant(
    rnn_fcn_model,
    "gru_fcn",
    "GRU-FCN (Elsayed et al. 2018): LSTM-FCN with a GRU in the recurrent branch.",
    cell="gru",
)
