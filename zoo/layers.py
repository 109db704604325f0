"""Custom Keras layers of the zoo, serializable so `keras.models.load_model` needs no arguments."""

from __future__ import annotations

import keras
from keras import ops

# Keras' own cells take their dropout masks from this mixin: one mask a sequence, made before
# the time loop and reused at every step (there is no public name for it).
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell


@keras.saving.register_keras_serializable(package="zoo")
class PeepholeLSTMCell(keras.layers.Layer, DropoutRNNCell):
    """An LSTM cell with peephole connections (Gers & Schmidhuber 2000), as TF1's
    `LSTMCell(use_peepholes=True)`: the input and forget gates see c[t-1], the output gate c[t].

    Gate order in `kernel`/`recurrent_kernel`/`bias` is i, f, c, o, as in `keras.layers.LSTMCell`.

    Args:
        units: size of the hidden and cell state.
        kernel_regularizer, recurrent_regularizer: optional weight penalties.
        recurrent_dropout: fraction of the recurrent state dropped while training, with one mask
            for all the steps of a sequence, as `keras.layers.LSTMCell`.
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

        def bias_init(shape, dtype=None):  # forget-gate bias 1, as unit_forget_bias in Keras
            zeros = ops.zeros((self.units,), dtype=dtype)
            ones = ops.ones((self.units,), dtype=dtype)
            return ops.concatenate([zeros, ones, zeros, zeros])

        self.bias = self.add_weight(shape=(4 * self.units,), initializer=bias_init, name="bias")
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
        from zoo.features import check_spec

        super().__init__(**kwargs)
        check_spec(None, channels, sampling_hz)
        self.channels = list(channels)
        self.sampling_hz = float(sampling_hz)

    def call(self, inputs):
        from zoo.features import feature_table

        return feature_table(inputs, self.channels, self.sampling_hz, ops)

    def compute_output_shape(self, input_shape):
        from zoo.features import feature_names

        return (input_shape[0], len(feature_names(self.channels)))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "sampling_hz": self.sampling_hz}
