"""Custom Keras layers of the zoo, serializable so `keras.models.load_model` needs no arguments."""

from __future__ import annotations

import keras
from keras import ops

# Keras' own cells take their dropout masks from this mixin: one mask a sequence, made before
# the time loop and reused at every step (there is no public name for it).
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

from zoo.features import check_spec, feature_names, feature_table


class LSTMCellBase(keras.layers.Layer, DropoutRNNCell):
    """What the zoo's own LSTM cells share: their arguments (`units`, the kernel and recurrent
    penalties, `recurrent_dropout` with one mask a sequence, `seed`), their config, the (h, c)
    state, and the forget-gate bias of 1 (`forget_bias`, as `unit_forget_bias` in Keras)."""

    def __init__(
        self,
        units: int,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = units
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.recurrent_dropout = recurrent_dropout
        self.dropout = 0.0  # DropoutRNNCell reads it; the zoo drops inputs between layers
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.state_size = [units, units]
        self.output_size = units

    def forget_bias(self, shape, dtype=None):
        """Initializer of a 4-gate bias (i, f, c, o): 1 for the forget gate, 0 elsewhere."""
        zeros = ops.zeros((self.units,), dtype=dtype)
        return ops.concatenate([zeros, ops.ones((self.units,), dtype=dtype), zeros, zeros])

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": keras.regularizers.serialize(self.recurrent_regularizer),
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="zoo")
class PeepholeLSTMCell(LSTMCellBase):
    """An LSTM cell with peephole connections (Gers & Schmidhuber 2000), as TF1's
    `LSTMCell(use_peepholes=True)`: the input and forget gates see c[t-1], the output gate c[t].

    Gate order in `kernel`/`recurrent_kernel`/`bias` is i, f, c, o, as in `keras.layers.LSTMCell`.

    Args:
        units: size of the hidden and cell state.
        kernel_regularizer, recurrent_regularizer: optional weight penalties.
        recurrent_dropout: fraction of the recurrent state dropped while training, with one mask
            for all the steps of a sequence, as `keras.layers.LSTMCell`.
    """

    def build(self, input_shape):
        features = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(features, 4 * self.units),
            initializer="glorot_uniform",
            regularizer=self.kernel_regularizer,
            name="kernel",
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, 4 * self.units),
            initializer="orthogonal",
            regularizer=self.recurrent_regularizer,
            name="recurrent_kernel",
        )
        self.bias = self.add_weight(
            shape=(4 * self.units,), initializer=self.forget_bias, name="bias"
        )
        self.peephole = self.add_weight(
            shape=(3, self.units), initializer="zeros", name="peephole"
        )  # rows: input, forget, output gate

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states[0], states[1]
        if training and self.recurrent_dropout > 0:
            h_prev = h_prev * self.get_recurrent_dropout_mask(h_prev)
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel) + self.bias
        zi, zf, zc, zo = ops.split(z, 4, axis=-1)
        i = ops.sigmoid(zi + self.peephole[0] * c_prev)
        f = ops.sigmoid(zf + self.peephole[1] * c_prev)
        c = f * c_prev + i * ops.tanh(zc)
        o = ops.sigmoid(zo + self.peephole[2] * c)
        h = o * ops.tanh(c)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="zoo")
class AttentionPooling(keras.layers.Layer):
    """Additive attention pooling over time: a softmax over steps weights the step outputs.

    score[t] = v . tanh(W h[t] + b); output = sum_t softmax(score)[t] * h[t].

    Args:
        attention_size: width of the scoring layer.
    """

    def __init__(self, attention_size: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.attention_size = attention_size
        self.score_hidden = keras.layers.Dense(attention_size, activation="tanh", name="hidden")
        self.score = keras.layers.Dense(1, use_bias=False, name="score")

    def build(self, input_shape):
        self.score_hidden.build(input_shape)
        self.score.build((*input_shape[:-1], self.attention_size))

    def call(self, inputs, mask=None):
        scores = self.score(self.score_hidden(inputs))
        if mask is not None:  # padded steps get no weight: they never change the output
            scores = ops.where(ops.expand_dims(mask, -1), scores, -1e9)
        weights = ops.softmax(scores, axis=1)
        return ops.sum(weights * inputs, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None  # one vector a sample: no steps left to mask

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "attention_size": self.attention_size}


@keras.saving.register_keras_serializable(package="zoo")
class PaddingMask(keras.layers.Layer):
    """Marks steps whose features are all NaN as padding: a Keras mask for the layers after it,
    and zeros in their place so no NaN reaches a weight.

    `keras.layers.Masking` compares with a finite `mask_value`, which real data can hold; the
    zoo refuses NaN in data, so a NaN step can only be padding (`zoo.tasks.pad_ragged`).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return ops.logical_not(ops.all(ops.isnan(inputs), axis=-1))

    def call(self, inputs):
        return ops.where(ops.isnan(inputs), ops.zeros_like(inputs), inputs)


@keras.saving.register_keras_serializable(package="zoo")
class WindowFeatures(keras.layers.Layer):
    """`zoo.features`' per-window features, computed inside the model from each raw window.

    The same code as `zoo.features.window_features` (written against an array namespace: here
    `keras.ops`), in float32, so a saved model takes raw windows and needs no feature input.

    Args:
        channels: the name of each input channel (see `zoo.features.window_features`).
        sampling_hz: samples a second. Defaults to `50.0`.
    """

    def __init__(self, channels, sampling_hz: float = 50.0, **kwargs):
        super().__init__(**kwargs)
        check_spec(None, channels, sampling_hz)
        self.channels = list(channels)
        self.sampling_hz = float(sampling_hz)

    def call(self, inputs):
        return feature_table(inputs, self.channels, self.sampling_hz, ops)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(feature_names(self.channels)))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "sampling_hz": self.sampling_hz}


@keras.saving.register_keras_serializable(package="zoo")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-excitation over time: each channel scaled by a gate in (0, 1) computed from
    every channel's mean over the steps.

    s = sigmoid(relu(mean_t(x[t]) W1) W2); output[t] = x[t] * s. `W1` is
    `(channels, max(1, channels // reduction))`, `W2` its way back; no biases, He-normal
    initialised, as in MLSTM-FCN's code.

    Args:
        reduction: how much narrower the gate's hidden layer is than the channels.
            Defaults to `16`.
        kernel_regularizer: optional penalty on both kernels.

    Call arguments:
        inputs: `(batch, steps, channels)`.
        mask: optional `(batch, steps)` booleans: steps that are False (padding) are left out of
            the mean; the mask passes on.

    Returns:
        `inputs` scaled channel by channel, the same shape.

    Example:
        >>> SqueezeExcite(reduction=16)(np.ones((2, 10, 64), "float32")).shape
        (2, 10, 64)

    Reference:
        Hu, Shen & Sun, "Squeeze-and-Excitation Networks", CVPR 2018; Karim, Majumdar, Darabi &
        Harford, "Multivariate LSTM-FCNs for time series classification", Neural Networks 116
        (2019).
    """

    def __init__(self, reduction: int = 16, kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.reduction = reduction
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.supports_masking = True

    def build(self, input_shape):
        channels = input_shape[-1]
        hidden = max(1, channels // self.reduction)
        self.squeeze_kernel = self.add_weight(
            shape=(channels, hidden),
            initializer="he_normal",
            regularizer=self.kernel_regularizer,
            name="squeeze_kernel",
        )
        self.excite_kernel = self.add_weight(
            shape=(hidden, channels),
            initializer="he_normal",
            regularizer=self.kernel_regularizer,
            name="excite_kernel",
        )

    def call(self, inputs, mask=None):
        if mask is None:
            mean = ops.mean(inputs, axis=1)
        else:
            weights = ops.expand_dims(ops.cast(mask, inputs.dtype), -1)
            mean = ops.sum(inputs * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
        gate = ops.sigmoid(
            ops.matmul(ops.relu(ops.matmul(mean, self.squeeze_kernel)), self.excite_kernel)
        )
        return inputs * ops.expand_dims(gate, 1)

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        return {
            **super().get_config(),
            "reduction": self.reduction,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }


@keras.saving.register_keras_serializable(package="zoo")
class MaskedConv1D(keras.layers.Conv1D):
    """`keras.layers.Conv1D` that carries a padding mask: the padded steps of its input are
    zeroed first, so with `padding="same"` and stride 1 a real step's output is what it would be
    with the padding cut off (`same` pads with zeros too), and the mask passes on to the layers
    after it (Keras' Conv1D drops it).

    Takes `keras.layers.Conv1D`'s arguments and has its weights; without a mask it is Conv1D.

    Call arguments:
        inputs: `(batch, steps, channels)`.
        mask: optional `(batch, steps)` booleans, False at padding (at the end of a sequence).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is not None:
            inputs = ops.where(ops.expand_dims(mask, -1), inputs, ops.zeros_like(inputs))
        return super().call(inputs)

    def compute_mask(self, inputs, mask=None):
        return mask


@keras.saving.register_keras_serializable(package="zoo")
class AttentionLSTMCell(LSTMCellBase):
    """An LSTM cell whose gates also read a context: an additive (Bahdanau) attention over the
    whole input sequence, scored against the previous hidden state (ALSTM, Karim et al. 2018).

        a[t] = softmax_j(v . tanh(x[j] W + h[t-1] U + b))   (padded steps j get no weight)
        z[t] = sum_j a[t, j] x[j]
        i, f, c~, o = x[t] K + h[t-1] R + z[t] A + bias      (gates as keras.layers.LSTMCell)

    It runs inside `AttentionLSTM`, which hands it the sequence before the time loop
    (`attend_to`); the weights are those of the ALSTM-FCN code (kernel, recurrent kernel,
    attention kernel, bias, and the scorer's W, U, b, v).

    Args:
        units: size of the hidden and cell state.
        kernel_regularizer, recurrent_regularizer: optional penalties (input-side kernels, and
            recurrent-side ones).
        recurrent_dropout: fraction of the recurrent state dropped while training, one mask a
            sequence, as `keras.layers.LSTMCell`.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(units, **kwargs)
        self._sequence = self._keys = self._mask = None

    def build(self, input_shape):
        features, units = input_shape[-1], self.units

        def weight(shape, name, initializer="glorot_uniform", recurrent=False):
            regularizer = self.recurrent_regularizer if recurrent else self.kernel_regularizer
            return self.add_weight(
                shape=shape, initializer=initializer, regularizer=regularizer, name=name
            )

        self.kernel = weight((features, 4 * units), "kernel")
        self.recurrent_kernel = weight((units, 4 * units), "recurrent_kernel", "orthogonal", True)
        self.attention_kernel = weight((features, 4 * units), "attention_kernel")
        self.bias = self.add_weight(shape=(4 * units,), initializer=self.forget_bias, name="bias")
        self.score_kernel = weight((features, units), "score_kernel")
        self.score_recurrent_kernel = weight(
            (units, units), "score_recurrent_kernel", "orthogonal", True
        )
        self.score_bias = self.add_weight(shape=(units,), initializer="zeros", name="score_bias")
        self.score_vector = weight((units,), "score_vector")

    def attend_to(self, sequence, mask=None):
        """The sequence the next time loop attends over (None: forget it)."""
        self._sequence, self._mask = sequence, mask
        self._keys = None if sequence is None else ops.matmul(sequence, self.score_kernel)

    def call(self, inputs, states, training=False):
        if self._sequence is None:
            raise ValueError("AttentionLSTMCell runs inside AttentionLSTM (it needs the sequence)")
        h_prev, c_prev = states[0], states[1]
        if training and self.recurrent_dropout > 0:
            h_prev = h_prev * self.get_recurrent_dropout_mask(h_prev)
        query = ops.matmul(h_prev, self.score_recurrent_kernel) + self.score_bias
        energy = ops.tanh(self._keys + ops.expand_dims(query, 1))
        scores = ops.sum(energy * self.score_vector, axis=-1)  # (batch, steps)
        if self._mask is not None:
            scores = ops.where(self._mask, scores, -1e9)
        weights = ops.softmax(scores, axis=-1)
        context = ops.sum(ops.expand_dims(weights, -1) * self._sequence, axis=1)
        z = (
            ops.matmul(inputs, self.kernel)
            + ops.matmul(h_prev, self.recurrent_kernel)
            + ops.matmul(context, self.attention_kernel)
            + self.bias
        )
        zi, zf, zc, zo = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(zf) * c_prev + ops.sigmoid(zi) * ops.tanh(zc)
        h = ops.sigmoid(zo) * ops.tanh(c)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="zoo")
class AttentionLSTM(keras.layers.RNN):
    """The attention LSTM of ALSTM-FCN: `keras.layers.RNN` over an `AttentionLSTMCell`, which
    attends over the whole input sequence at every step (so its output at a step reads later
    steps: it does not stream).

    Args:
        units: size of the hidden and cell state.
        kernel_regularizer, recurrent_regularizer, recurrent_dropout, seed: the cell's.
        **kwargs: `keras.layers.RNN`'s (`return_sequences`, `name`, ...).

    Call arguments:
        sequences: `(batch, steps, features)`.
        mask: optional `(batch, steps)`: padded steps are skipped and get no attention.

    Example:
        >>> AttentionLSTM(8)(np.ones((2, 5, 3), "float32")).shape
        (2, 8)

    Reference:
        Karim, Majumdar, Darabi & Chen, "LSTM Fully Convolutional Networks for Time Series
        Classification", IEEE Access 6 (2018); Bahdanau, Cho & Bengio, "Neural Machine
        Translation by Jointly Learning to Align and Translate", ICLR 2015.
    """

    def __init__(
        self,
        units: int,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        kwargs.pop("cell", None)  # from_config: the cell is rebuilt from the arguments
        cell = AttentionLSTMCell(
            units,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            name="attention_lstm_cell",
        )
        super().__init__(cell, **kwargs)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        self.cell.attend_to(sequences, mask)
        try:
            return super().call(
                sequences, initial_state=initial_state, mask=mask, training=training
            )
        finally:
            self.cell.attend_to(None)  # no traced tensor outlives the call

    def get_config(self):
        config = super().get_config()
        cell = config.pop("cell")["config"]
        keys = ("units", "kernel_regularizer", "recurrent_regularizer", "recurrent_dropout", "seed")
        return {**config, **{key: cell[key] for key in keys}}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)
