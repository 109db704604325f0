"""Faster recurrent layers for TensorFlow on CPU: `FusedLSTM` and `NativeLSTM`, drop-in
`keras.layers.LSTM`s.

`NativeLSTM` (every LSTM of the zoo's models) runs the whole time loop, forward and backward,
in the zoo's own C++ op (`zoo/kernels/lstm_op.cc`, built on first use, see `zoo.kernels`); it
is plain Keras where the op is not built. `FusedLSTM` (bidirectional LSTMs where the op cannot
be built; `NativeLSTM` trains them 1.13x faster, docs/speed.md) runs TensorFlow's `BlockLSTM`.

On CPU, Keras runs an LSTM as a `tf.while_loop` of small ops, one iteration a time step, and
differentiates the loop op by op. TensorFlow ships a fused kernel, `BlockLSTM`, that runs the
whole sequence (and its gradient, `BlockLSTMGrad`) as one op each; Keras does not use it.
`FusedLSTM` calls it on TensorFlow without a GPU and is `keras.layers.LSTM` everywhere else:

- same constructor, same weights (`kernel`, `recurrent_kernel`, `bias`, gates i, f, c, o), so
  `set_weights` from a `keras.layers.LSTM` works both ways, and the outputs agree to ~1e-7;
- on a GPU Keras' cuDNN path is kept; on PyTorch the layer is plain Keras, on JAX it is
  `zoo.scan.ScanLSTM` (the fastest measured loop there; both layers derive from it);
- cases the kernel cannot do fall back to Keras' loop (correct, only not faster): a mask,
  recurrent dropout while training, `unroll=True`, activations other than tanh/sigmoid,
  dtypes other than float32/float16.

Why `BlockLSTM` and not `BlockLSTMV2` (whose gate layout i, f, c, o is Keras'): TensorFlow
registers V1's gradient function for V2 (`tensorflow/python/ops/rnn_grad.py`), which computes
V1's gradient (gate layout i, c, f, o) and so gives wrong gradients for V2. `BlockLSTM` with its
own gradient is correct once the gates are reordered and `forget_bias=0` (Keras keeps the forget
bias in `bias`) and `cell_clip=-1` (V1 clips the cell state at 3 by default).

`BlockLSTM` has no XLA kernel: a model using the fused path does not support `jit_compile=True`
(Keras then warns and compiles without XLA). `zoo.xla.use_xla` picks XLA where it helps.

Measured on 2 shared cores (scripts/benchmark_speed.py; ratios of training samples/s against
`keras.layers.LSTM` without XLA, interleaved in one run): single LSTM 1.06-1.29x (XLA does
1.23-1.34x: use XLA there), bidirectional LSTM 1.35-1.70x (XLA 0.78-1.08x), 2-layer LSTM
0.85-0.96x. Inference at batch 256 is slower than Keras' loop (0.7-0.96x), batch 1 faster
(3-5x lower latency, XLA lower still). So it pays for bidirectional LSTMs in training.
"""

from __future__ import annotations

import functools

import keras

from zoo.kernels import lstm_op
from zoo.scan import ScanLSTM

__all__ = ["FusedLSTM", "NativeLSTM", "fused_path_available", "native_path_available"]


@functools.cache
def fused_path_available() -> bool:
    """True where `FusedLSTM` uses TensorFlow's fused kernel: TensorFlow backend, no GPU."""
    if keras.backend.backend() != "tensorflow":
        return False
    # lazy: TensorFlow loads only on its own backend
    import tensorflow as tf

    return not tf.config.list_logical_devices("GPU")


def _kernel_can_run(layer, sequences, mask, training, dtypes) -> bool:
    """True when a fused kernel computes what `layer`'s Keras loop would: no mask, no recurrent
    dropout while training, no unroll, tanh and sigmoid, a dtype in `dtypes`."""
    cell = layer.cell
    return (
        mask is None
        and not layer.unroll
        and not (training and layer.recurrent_dropout)
        and cell.activation is keras.activations.tanh
        and cell.recurrent_activation is keras.activations.sigmoid
        and keras.backend.standardize_dtype(sequences.dtype) in dtypes
    )


def _input_dropout(layer, sequences, training):
    """The cell's input dropout for a whole-sequence kernel: one mask a sequence, as the cell
    and Keras' cuDNN path."""
    if not (training and layer.dropout):
        return sequences
    return sequences * keras.ops.expand_dims(layer.cell.get_dropout_mask(sequences[:, 0, :]), 1)


def _to_icfo(t, axis: int):
    """Keras' gate order i, f, c, o to BlockLSTM's i, c, f, o along `axis`."""
    # lazy: TensorFlow loads only on its own backend
    import tensorflow as tf

    i, f, c, o = tf.split(t, 4, axis=axis)
    return tf.concat([i, c, f, o], axis)


@keras.saving.register_keras_serializable(package="zoo")
class FusedLSTM(ScanLSTM):
    """`keras.layers.LSTM` that runs as one fused TensorFlow op on CPU.

    On TensorFlow without a GPU the whole sequence, and its gradient, run as TensorFlow's
    `BlockLSTM` and `BlockLSTMGrad` ops instead of Keras' `tf.while_loop` of small ops: 1.35-1.7x
    faster training for bidirectional LSTMs here (module docstring), so the zoo uses it for
    them. It falls back to Keras' own loop (correct, only not faster) for a mask, recurrent
    dropout while training, `unroll=True`, activations other than tanh/sigmoid, and dtypes
    other than float32/float16. On a GPU Keras' cuDNN path is kept; on JAX it is
    `zoo.scan.ScanLSTM`; on PyTorch Keras' LSTM. `BlockLSTM` has no XLA kernel: where the fused
    path is used the layer does not support `jit_compile=True`.

    It has Keras' weights (`kernel`, `recurrent_kernel`, `bias`; gates i, f, c, o), so
    `set_weights` from a `keras.layers.LSTM` works both ways; outputs agree to about 1e-7.

    Args:
        units: Positive integer, dimensionality of the output space.
        **kwargs: Every other `keras.layers.LSTM` argument (`activation`, `dropout`,
            `recurrent_dropout`, `return_sequences`, `return_state`, `go_backwards`,
            `stateful`, `unroll`, the initializers, regularizers and constraints, ...), with
            the same defaults and meaning.

    Call arguments:
        inputs: `(batch, steps, features)`.
        mask: Optional boolean `(batch, steps)`, False at steps to skip (padding).
            Defaults to `None`.
        training: Python boolean, whether dropout and recurrent dropout apply.
            Defaults to `None`.
        initial_state: Optional list of initial state tensors, `[h, c]` each
            `(batch, units)`; zeros when `None`.

    Returns:
        As `keras.layers.LSTM`: `(batch, units)`, or `(batch, steps, units)` with
        `return_sequences=True`, followed by the final h and c with `return_state=True`.

    Example:

    >>> x = np.random.default_rng(0).random((2, 5, 3)).astype("float32")
    >>> layer, reference = FusedLSTM(4), keras.layers.LSTM(4)
    >>> keras.ops.shape(layer(x))
    (2, 4)
    >>> _ = reference(x)
    >>> reference.set_weights(layer.get_weights())  # the same weights, both ways
    >>> bool(np.allclose(layer(x), reference(x), atol=1e-5))
    True

    Reference:
        Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural Computation 9 (1997)
        1735-1780; Gers, Schmidhuber & Cummins, "Learning to Forget: Continual Prediction with
        LSTM", Neural Computation 12 (2000) 2451-2471 (the forget gate).
    """

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        if fused_path_available():
            self.supports_jit = False  # BlockLSTM has no XLA kernel

    def _fused_ok(self, sequences, mask, training) -> bool:
        return fused_path_available() and _kernel_can_run(
            self, sequences, mask, training, ("float32", "float16")
        )

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self._fused_ok(sequences, mask, training):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        # lazy: TensorFlow loads only on its own backend
        import tensorflow as tf

        cell = self.cell
        sequences = _input_dropout(self, sequences, training)
        h0, c0 = initial_state
        x = tf.transpose(sequences, [1, 0, 2])  # BlockLSTM is time-major
        if self.go_backwards:
            x = tf.reverse(x, [0])
        w = _to_icfo(tf.concat([cell.kernel, cell.recurrent_kernel], 0), axis=1)
        if cell.use_bias:
            b = _to_icfo(tf.convert_to_tensor(cell.bias), axis=0)
        else:
            b = tf.zeros([4 * self.units], x.dtype)
        no_peephole = tf.zeros([self.units], x.dtype)
        _, cs, _, _, _, _, h = tf.raw_ops.BlockLSTM(
            seq_len_max=tf.shape(x, out_type=tf.int64)[0],
            x=x,
            cs_prev=c0,
            h_prev=h0,
            w=w,
            wci=no_peephole,
            wcf=no_peephole,
            wco=no_peephole,
            b=b,
            forget_bias=0.0,
            cell_clip=-1.0,
            use_peephole=False,
        )
        last = h[-1]
        outputs = tf.transpose(h, [1, 0, 2]) if self.return_sequences else tf.expand_dims(last, 1)
        return last, outputs, [last, cs[-1]]


def native_path_available() -> bool:
    """True where `NativeLSTM` runs the zoo's C++ op: TensorFlow without a GPU, and the op built
    (`zoo.kernels.lstm_op_status()` says why not)."""
    return fused_path_available() and lstm_op() is not None


@keras.saving.register_keras_serializable(package="zoo")
class NativeLSTM(ScanLSTM):
    """`keras.layers.LSTM` whose whole time loop, forward and backward, runs in C++ on CPU.

    The recurrence is the zoo's own TensorFlow op (`zoo/kernels/lstm_op.cc`, built once per
    machine on first use and cached, see `zoo.kernels`): each thread of TensorFlow's intra-op
    pool runs every step for its block of the batch, and the backward pass through time is C++
    too. The zoo's models use it for every plain LSTM layer that is not bidirectional. Where the
    op cannot run (no compiler, another backend, a GPU, a mask, `unroll=True`, a dtype other
    than float32, other activations) it is Keras' own loop, with XLA allowed where the op is
    not built (`zoo.fused.native_path_available()` says which). A layer with recurrent dropout
    always runs Keras' loop, XLA allowed, so a model with it (the `har_lstm` preset) keeps
    XLA's speed-up. `RNN_ZOO_NATIVE=0` turns the op off.

    It has Keras' weights (`kernel`, `recurrent_kernel`, `bias`; gates i, f, c, o), so
    `.keras` files and `set_weights` move between it and `keras.layers.LSTM` both ways;
    `zoo.export` swaps it for `keras.layers.LSTM` where the op cannot go (TensorFlow Serving,
    TFLite, ONNX).

    Args:
        units: Positive integer, dimensionality of the output space.
        **kwargs: Every other `keras.layers.LSTM` argument (`activation`, `dropout`,
            `recurrent_dropout`, `return_sequences`, `return_state`, `go_backwards`,
            `stateful`, `unroll`, the initializers, regularizers and constraints, ...), with
            the same defaults and meaning.

    Call arguments:
        inputs: `(batch, steps, features)`.
        mask: Optional boolean `(batch, steps)`, False at steps to skip (padding).
            Defaults to `None`.
        training: Python boolean, whether dropout and recurrent dropout apply.
            Defaults to `None`.
        initial_state: Optional list of initial state tensors, `[h, c]` each
            `(batch, units)`; zeros when `None`.

    Returns:
        As `keras.layers.LSTM`: `(batch, units)`, or `(batch, steps, units)` with
        `return_sequences=True`, followed by the final h and c with `return_state=True`.

    Example:

    >>> x = np.random.default_rng(0).random((2, 5, 3)).astype("float32")
    >>> layer, reference = NativeLSTM(4), keras.layers.LSTM(4)
    >>> keras.ops.shape(layer(x))
    (2, 4)
    >>> _ = reference(x)
    >>> reference.set_weights(layer.get_weights())  # the same weights, both ways
    >>> bool(np.allclose(layer(x), reference(x), atol=1e-5))
    True

    Reference:
        Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural Computation 9 (1997)
        1735-1780; Gers, Schmidhuber & Cummins, "Learning to Forget: Continual Prediction with
        LSTM", Neural Computation 12 (2000) 2451-2471 (the forget gate).
    """

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        self._native = native_path_available() and not self.recurrent_dropout
        if self._native:
            self.supports_jit = False  # a custom op has no XLA kernel

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not (self._native and _kernel_can_run(self, sequences, mask, training, ("float32",))):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        # lazy: TensorFlow loads only on its own backend
        import tensorflow as tf

        cell = self.cell
        x = tf.transpose(_input_dropout(self, sequences, training), [1, 0, 2])  # time-major
        if self.go_backwards:
            x = tf.reverse(x, [0])
        bias = cell.bias if cell.use_bias else tf.zeros([4 * self.units], x.dtype)
        h, c, _ = lstm_op().zoo_lstm_forward(
            x, *initial_state, cell.kernel, cell.recurrent_kernel, bias
        )
        last = h[-1]
        outputs = tf.transpose(h, [1, 0, 2]) if self.return_sequences else tf.expand_dims(last, 1)
        return last, outputs, [last, c[-1]]
