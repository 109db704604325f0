"""Custom Keras layers of the zoo, serializable so `keras.models.load_model` needs no arguments."""

from __future__ import annotations

import keras
from keras import ops

# Keras' own cells take their dropout masks from this mixin: one mask a sequence, made before
# the time loop and reused at every step (there is no public name for it).
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

from zoo.features import check_spec, feature_names, feature_table


class LSTMCellBase(keras.layers.Layer, DropoutRNNCell):
    """The base of the zoo's LSTM cells, `PeepholeLSTMCell` and `AttentionLSTMCell`.

    Their arguments, their config, the (h, c) state and the forget-gate bias of 1 (`forget_bias`,
    as `unit_forget_bias=True` in Keras) live here once; a subclass adds its weights (`build`)
    and its step (`call`). Recurrent dropout comes from Keras' own `DropoutRNNCell`: one mask a
    sequence, drawn before the time loop and reused at every step.

    Args:
        units: Positive integer, size of the hidden state h and the cell state c (and of the
            output).
        kernel_regularizer: Regularizer on the input-side kernels. Defaults to `None`.
        recurrent_regularizer: Regularizer on the recurrent kernels. Defaults to `None`.
        recurrent_dropout: Float in [0, 1), fraction of h dropped before the recurrent step
            while training, one mask a sequence. Defaults to `0.0`.
        seed: Random seed of the recurrent dropout mask. Defaults to `None`.
        **kwargs: `keras.layers.Layer`'s (`name`, `dtype`, ...).

    Call arguments:
        A subclass's `call(inputs, states, training=False)` takes one step: `inputs`
        `(batch, features)`, `states` `[h, c]` each `(batch, units)`, and returns
        `(h, [h, c])`, as `keras.layers.LSTMCell`. Cells run inside `keras.layers.RNN`.

    Example:

    >>> cell = PeepholeLSTMCell(2)
    >>> cell.state_size, cell.output_size
    ([2, 2], 2)
    >>> print(keras.ops.convert_to_numpy(cell.forget_bias((8,))))  # gates i, f, c, o
    [0. 0. 1. 1. 0. 0. 0. 0.]

    Reference:
        Jozefowicz, Zaremba & Sutskever, "An Empirical Exploration of Recurrent Network
        Architectures", ICML 2015 (the forget-gate bias of 1).
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
    """LSTM cell with peephole connections (Gers & Schmidhuber 2000).

    As TF1's `LSTMCell(use_peepholes=True)`: the input and forget gates also see the previous
    cell state c[t-1], the output gate the new one c[t], each through a diagonal (one weight a
    unit) connection, so the gates can time their opening on what the cell holds:

        i = sigmoid(x W_i + h[t-1] U_i + p_i * c[t-1] + b_i)
        f = sigmoid(x W_f + h[t-1] U_f + p_f * c[t-1] + b_f)
        c[t] = f * c[t-1] + i * tanh(x W_c + h[t-1] U_c + b_c)
        o = sigmoid(x W_o + h[t-1] U_o + p_o * c[t] + b_o)
        h[t] = o * tanh(c[t])

    Weights: `kernel` `(features, 4 * units)` (Glorot uniform), `recurrent_kernel`
    `(units, 4 * units)` (orthogonal), `bias` `(4 * units,)` (1 for the forget gate, 0
    elsewhere), gate order i, f, c, o as in `keras.layers.LSTMCell`; `peephole` `(3, units)`
    (rows: input, forget, output gate), starting at zeros, so an untrained cell computes what
    `keras.layers.LSTMCell` does. The zoo's `peephole_lstm` model runs it in
    `keras.layers.RNN`; `zoo.stream` steps it one sample at a time.

    Args:
        units: Positive integer, size of the hidden and cell state (and of the output).
        kernel_regularizer: Regularizer on `kernel`. Defaults to `None`.
        recurrent_regularizer: Regularizer on `recurrent_kernel`. Defaults to `None`.
        recurrent_dropout: Float in [0, 1), fraction of h dropped before the recurrent step
            while training, with one mask for all the steps of a sequence, as
            `keras.layers.LSTMCell`. Defaults to `0.0`.
        seed: Random seed of the recurrent dropout mask. Defaults to `None`.
        **kwargs: `keras.layers.Layer`'s (`name`, `dtype`, ...).

    Call arguments:
        inputs: One step, `(batch, features)`.
        states: `[h, c]`, each `(batch, units)`.
        training: Python boolean, whether recurrent dropout applies. Defaults to `False`.

    Returns:
        `(h, [h, c])`: the output `(batch, units)` and the new states.

    Example:

    >>> layer = keras.layers.RNN(PeepholeLSTMCell(4), return_sequences=True)
    >>> keras.ops.shape(layer(np.ones((2, 5, 3), "float32")))
    (2, 5, 4)

    Reference:
        Gers & Schmidhuber, "Recurrent Nets that Time and Count", IJCNN 2000.
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
    """Additive attention pooling over time: a learned softmax-weighted sum of the steps.

    Each step is scored by a one-hidden-layer network, the scores are turned into weights by a
    softmax over the steps, and the output is the weighted sum of the steps, so the model learns
    which steps matter (where the last step or the plain mean may miss them):

        score[t] = v . tanh(W h[t] + b)
        output = sum_t softmax(score)[t] * h[t]

    Weights: `hidden` (a `Dense(attention_size, activation="tanh")`: W, b) and `score` (a
    `Dense(1, use_bias=False)`: v). Padded steps (mask False) get no weight, so they never
    change the output. Used by the zoo's recurrent models with `pooling="attention"`; it
    streams as a running softmax (`zoo.stream`).

    Args:
        attention_size: Positive integer, width of the scoring network's hidden layer.
            Defaults to `64`.
        **kwargs: `keras.layers.Layer`'s (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, steps, features)`, e.g. a recurrent layer's outputs with
            `return_sequences=True`.
        mask: Optional boolean `(batch, steps)`, False at padding. The output carries no mask.

    Returns:
        `(batch, features)`.

    Example:

    >>> pool = AttentionPooling(attention_size=8)
    >>> x = np.array([[[1.0], [3.0], [100.0]]], "float32")
    >>> keras.ops.shape(pool(x))
    (1, 1)
    >>> masked = pool(x, mask=np.array([[True, True, False]]))  # step 3 is padding
    >>> bool(np.allclose(masked, pool(x[:, :2])))
    True

    Reference:
        Bahdanau, Cho & Bengio, "Neural Machine Translation by Jointly Learning to Align and
        Translate", ICLR 2015 (the additive score); Raffel & Ellis, "Feed-Forward Networks with
        Attention Can Solve Some Long-Term Memory Problems", ICLR 2016 workshop,
        arXiv:1512.08756 (attention as pooling over time).
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
    """Marks steps whose features are all NaN as padding, for the layers after it.

    A Keras mask (True at real steps) for the layers after it, and zeros in place of the NaN
    so no NaN reaches a weight. `keras.layers.Masking` compares with a finite `mask_value`,
    which real data can hold; the zoo refuses NaN in data, so a NaN step can only be padding
    (`zoo.tasks.pad_ragged` pads ragged sequences with it). Models built with
    `preprocessing={"mask": True}` start with it.

    Args:
        **kwargs: `keras.layers.Layer`'s (`name`, `dtype`, ...). It has no weights.

    Call arguments:
        inputs: `(batch, steps, features)`, NaN at every feature of a padded step.

    Returns:
        `inputs` with NaN replaced by 0, the same shape, carrying the mask `(batch, steps)`:
        False where every feature of a step is NaN.

    Example:

    >>> x = np.array([[[1.0, 2.0], [3.0, 4.0], [np.nan, np.nan]]], "float32")
    >>> layer = PaddingMask()
    >>> print(keras.ops.convert_to_numpy(layer(x)))
    [[[1. 2.]
      [3. 4.]
      [0. 0.]]]
    >>> print(keras.ops.convert_to_numpy(layer.compute_mask(x)))
    [[ True  True False]]
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

    The same code as `zoo.features.window_features`, its NumPy twin (written against an array
    namespace: here `keras.ops`; `tests/test_window_features.py` holds them equal), in float32,
    so a saved model takes raw windows and needs no feature input. Per signal (each channel,
    each 3-axis sensor's magnitude, jerk and jerk magnitude) 24 time and frequency statistics,
    per 3-axis sensor its magnitude area and axis correlations, and gravity angles where a
    `total_acc` sensor is present, as UCI HAR's `features_info.txt` describes them (see
    `zoo.features` for the list and `zoo.features.feature_names` for the column names). The
    zoo's models add it with `preprocessing={"window_features": ...}`.

    Args:
        channels: Sequence of unique strings, the name of each input channel; `S_x`, `S_y`,
            `S_z` make a 3-axis sensor `S`, and a sensor named `total_acc` holds gravity.
        sampling_hz: Positive float, samples a second, for the jerk and the frequencies.
            Defaults to `50.0`.
        **kwargs: `keras.layers.Layer`'s (`name`, `dtype`, ...). It has no weights.

    Call arguments:
        inputs: `(batch, steps, len(channels))` raw windows, at least 8 steps.

    Returns:
        `(batch, len(zoo.features.feature_names(channels)))` features.

    Example:

    >>> from zoo.features import feature_names
    >>> layer = WindowFeatures(["x"], sampling_hz=10.0)
    >>> keras.ops.shape(layer(np.random.rand(2, 16, 1).astype("float32")))
    (2, 24)
    >>> feature_names(["x"])[:3]
    ['x_mean', 'x_std', 'x_mad']

    Reference:
        Anguita, Ghio, Oneto, Parra & Reyes-Ortiz, "A Public Domain Dataset for Human Activity
        Recognition Using Smartphones", ESANN 2013 (the features of UCI HAR).
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
    """Squeeze-and-excitation over time: each channel scaled by a gate from all channels' means.

    The "squeeze" averages each channel over the steps; the "excitation", a two-layer bottleneck,
    turns those means into one gate in (0, 1) a channel, so the block reweighs its channels by
    what the whole sequence holds:

        s = sigmoid(relu(mean_t(x[t]) W1) W2)
        output[t] = x[t] * s

    `W1` is `(channels, max(1, channels // reduction))`, `W2` its way back; no biases, He-normal
    initialised, as in MLSTM-FCN's code, where it follows the first two convolution blocks
    (`zoo.models.fcn`, `squeeze_excite=True`).

    Args:
        reduction: Positive integer, how many times narrower the gate's hidden layer is than
            the channels. Defaults to `16`.
        kernel_regularizer: Regularizer on both kernels. Defaults to `None`.
        **kwargs: `keras.layers.Layer`'s (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, steps, channels)`.
        mask: Optional boolean `(batch, steps)`: steps that are False (padding) are left out
            of the mean; the mask passes on.

    Returns:
        `inputs` scaled channel by channel, the same shape.

    Example:

    >>> layer = SqueezeExcite(reduction=16)
    >>> keras.ops.shape(layer(np.ones((2, 10, 64), "float32")))
    (2, 10, 64)
    >>> keras.ops.shape(layer.squeeze_kernel), keras.ops.shape(layer.excite_kernel)
    ((64, 4), (4, 64))

    Reference:
        Hu, Shen & Sun, "Squeeze-and-Excitation Networks", CVPR 2018; Karim, Majumdar, Darabi &
        Harford, "Multivariate LSTM-FCNs for time series classification", Neural Networks 116
        (2019) 237-245.
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
    """`keras.layers.Conv1D` that carries a padding mask.

    The padded steps of its input are zeroed first, so with `padding="same"` and stride 1 a
    real step's output is what it would be with the padding cut off (`same` pads with zeros
    too), and the mask passes on to the layers after it (Keras' Conv1D drops it). The FCN
    family's convolution blocks use it for padded variable-length input (`shuffle=False`).
    Without a mask it is Conv1D.

    Args:
        *args, **kwargs: `keras.layers.Conv1D`'s (`filters`, `kernel_size`, `strides`,
            `padding`, `dilation_rate`, `activation`, `use_bias`, the initializers and
            regularizers, ...), with its defaults; it has Conv1D's weights.

    Call arguments:
        inputs: `(batch, steps, channels)`.
        mask: Optional boolean `(batch, steps)`, False at padding (at the end of a sequence).

    Returns:
        Conv1D's output `(batch, new_steps, filters)`, carrying `mask` unchanged.

    Example:

    >>> conv = MaskedConv1D(1, 2, padding="same", kernel_initializer="ones", use_bias=False)
    >>> x = np.array([[[1.0], [2.0], [5.0]]], "float32")
    >>> mask = np.array([[True, True, False]])  # step 3 is padding
    >>> print(keras.ops.convert_to_numpy(conv(x))[..., 0])  # x[t] + x[t + 1]
    [[3. 7. 5.]]
    >>> print(keras.ops.convert_to_numpy(conv(x, mask=mask))[..., 0])
    [[3. 2. 0.]]
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
    """LSTM cell whose gates also read an attention context over the input sequence (ALSTM).

    At each step an additive (Bahdanau) attention over the input sequence, scored against the
    previous hidden state, gives a context vector that enters the gates beside the step's input:

        a[t] = softmax_j(v . tanh(x[j] W + h[t-1] U + b))   (padded steps j get no weight)
        z[t] = sum_j a[t, j] x[j]
        i, f, c~, o = x[t] K + h[t-1] R + z[t] A + bias      (gates as keras.layers.LSTMCell)

    It runs inside `AttentionLSTM`, which hands it the sequence before the time loop
    (`attend_to`) and forgets it after. The weights are those of the ALSTM-FCN code: `kernel`
    (K), `recurrent_kernel` (R), `attention_kernel` (A), `bias` (1 for the forget gate), and
    the scorer's `score_kernel` (W), `score_recurrent_kernel` (U), `score_bias` (b),
    `score_vector` (v).

    Args:
        units: Positive integer, size of the hidden and cell state (and of the output).
        kernel_regularizer: Regularizer on the input-side kernels (K, A, W, v).
            Defaults to `None`.
        recurrent_regularizer: Regularizer on the recurrent-side kernels (R, U).
            Defaults to `None`.
        recurrent_dropout: Float in [0, 1), fraction of h dropped before the recurrent step
            while training, one mask a sequence, as `keras.layers.LSTMCell`. Defaults to `0.0`.
        seed: Random seed of the recurrent dropout mask. Defaults to `None`.
        **kwargs: `keras.layers.Layer`'s (`name`, `dtype`, ...).

    Call arguments:
        inputs: One step, `(batch, features)`.
        states: `[h, c]`, each `(batch, units)`.
        training: Python boolean, whether recurrent dropout applies. Defaults to `False`.

    Returns:
        `(h, [h, c])`: the output `(batch, units)` and the new states. Raises `ValueError` when
        called with no sequence to attend to (outside `AttentionLSTM`).

    Example:

    >>> cell = AttentionLSTMCell(4)
    >>> x = np.ones((2, 5, 3), "float32")
    >>> cell.build((2, 3))
    >>> cell.attend_to(x)  # what AttentionLSTM does before its time loop
    >>> h, (h, c) = cell(x[:, 0], [np.zeros((2, 4), "float32")] * 2)
    >>> keras.ops.shape(h), keras.ops.shape(c)
    ((2, 4), (2, 4))
    >>> cell.attend_to(None)

    Reference:
        Karim, Majumdar, Darabi & Chen, "LSTM Fully Convolutional Networks for Time Series
        Classification", IEEE Access 6 (2018) 1662-1669; Bahdanau, Cho & Bengio, "Neural
        Machine Translation by Jointly Learning to Align and Translate", ICLR 2015.
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
    """The attention LSTM of ALSTM-FCN: an LSTM attending over its whole input at every step.

    `keras.layers.RNN` over an `AttentionLSTMCell`: each step's gates read an additive attention
    context over all the input steps, scored against the previous hidden state. Its output at a
    step therefore reads later steps too: it does not stream. The FCN family builds it with
    `attention=True` (ALSTM-FCN, MALSTM-FCN).

    Args:
        units: Positive integer, size of the hidden and cell state (and of the output).
        kernel_regularizer: Regularizer on the cell's input-side kernels. Defaults to `None`.
        recurrent_regularizer: Regularizer on the cell's recurrent-side kernels.
            Defaults to `None`.
        recurrent_dropout: Float in [0, 1), fraction of h dropped before the recurrent step
            while training, one mask a sequence. Defaults to `0.0`.
        seed: Random seed of the recurrent dropout mask. Defaults to `None`.
        **kwargs: `keras.layers.RNN`'s (`return_sequences`, `return_state`, `go_backwards`,
            `name`, ...), with its defaults.

    Call arguments:
        sequences: `(batch, steps, features)`.
        initial_state: Optional `[h, c]`, each `(batch, units)`; zeros when `None`.
        mask: Optional boolean `(batch, steps)`: padded steps (False) are skipped and get no
            attention.
        training: Python boolean, whether recurrent dropout applies. Defaults to `False`.

    Returns:
        `(batch, units)`, or `(batch, steps, units)` with `return_sequences=True` (followed by
        the final h and c with `return_state=True`), as `keras.layers.LSTM`.

    Example:

    >>> keras.ops.shape(AttentionLSTM(8)(np.ones((2, 5, 3), "float32")))
    (2, 8)
    >>> layer = AttentionLSTM(8, return_sequences=True)
    >>> keras.ops.shape(layer(np.ones((2, 5, 3), "float32")))
    (2, 5, 8)

    Reference:
        Karim, Majumdar, Darabi & Chen, "LSTM Fully Convolutional Networks for Time Series
        Classification", IEEE Access 6 (2018) 1662-1669; Bahdanau, Cho & Bengio, "Neural
        Machine Translation by Jointly Learning to Align and Translate", ICLR 2015.
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
