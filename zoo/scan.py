"""The zoo's recurrent layers for the JAX backend: `ScanLSTM` and `ScanGRU`, drop-in
`keras.layers.LSTM` and `keras.layers.GRU` that pick the fastest of three time loops.

- `scan`, the zoo's own loop (`zoo.jax_rnn`): the input projection of all steps hoisted out of
  the loop as one large matmul, the gates fused into one (batch, gates x units) matmul a step,
  float32 state, and a hand-written backward pass (the forward keeps each step's gate factors,
  the reverse loop carries only the state gradients, the recurrent kernel's gradient is one
  matmul over all steps). Meant for GPUs, where a step's small kernels cost launches.
- `loop`: Keras' step-by-step cell loop (a `lax.scan` of the cell, the input projection inside
  it, differentiated by JAX): what Keras runs with `use_cudnn=False`.
- `keras`: whatever Keras picks: on a GPU cuDNN for the LSTM (`jax.experimental.rnn`, which
  issue 28 measured at 0.16-0.44x PyTorch's cuDNN at small batches); the GRU's hoisted
  `lax.scan` (`keras.src.backend.jax.rnn.gru`) on any device; else `loop`.

Measured on 2 CPU cores (scripts/benchmark_speed.py --backend jax, README "Without TensorFlow,
and the GPU path"), XLA reads a hoisted projection back a step at a time more slowly than it
recomputes it in the loop: `loop` trains the GRU about twice as fast as Keras' default there,
and `scan` is slower than both. On a GPU nothing is measured yet.

`ScanLSTM` and `ScanGRU` take exactly Keras' arguments and have Keras' weights (`kernel`,
`recurrent_kernel`, `bias`; gates i, f, c, o and z, r, h), so `.keras` files and `set_weights`
move between them and Keras' layers both ways. `loop` and `keras` are Keras' own code; `scan`
agrees with them to float32 rounding in outputs and gradients (tests/backend_check.py,
`check_scan`). `scan` runs only where it computes what Keras' loop would: no mask, no recurrent
dropout while training (input dropout is one mask a sequence, as Keras'), not unrolled, tanh and
sigmoid, float32, GRU with `reset_after=True` (Keras' default); elsewhere the layer takes
`keras`. On other backends both layers are Keras' own.

Which path runs is `POLICY`'s choice per platform, cell and shape; `RNN_ZOO_RNN_PATH=scan`,
`loop` or `keras` forces one (`scan` where it applies), `auto` (or unset) follows `POLICY`. The
choice is made when a model's function is traced (its first fit, predict or call at a shape).
"""

from __future__ import annotations

import os

import keras

__all__ = ["PATHS", "POLICY", "ScanGRU", "ScanLSTM", "choose_path"]

ENV = "RNN_ZOO_RNN_PATH"
PATHS = ("scan", "loop", "keras")
# Which path runs: rows (platform, cell, largest units, largest batch, path); the first row
# that matches decides (None: any). Platform is JAX's (`jax.default_backend()`): cpu, gpu, tpu.
# - cpu: measured (module docstring); for the LSTM `loop` is also what `keras` runs there.
# - gpu: nothing measured yet: Keras' path until `python scripts/benchmark_speed.py --gpu` on a
#   GPU machine says where `scan` or `loop` is faster; it prints the rows to put here.
POLICY = (
    ("cpu", "lstm", None, None, "loop"),
    ("cpu", "gru", None, None, "loop"),
)
DEFAULT_PATH = "keras"  # a platform, cell or shape no row covers


def choose_path(platform: str, cell: str, units: int, batch: int | None) -> str:
    """The path for a layer of `cell` ("lstm" or "gru") with `units` on a batch of `batch` on
    JAX's `platform`: $RNN_ZOO_RNN_PATH unless it is `auto` or unset, else `POLICY`."""
    forced = os.environ.get(ENV, "auto")
    if forced not in (*PATHS, "auto"):
        raise ValueError(
            f"{ENV} must be one of {', '.join(PATHS)} or auto. Received: {ENV}={forced!r}"
        )
    if forced != "auto":
        return forced
    for row_platform, row_cell, max_units, max_batch, path in POLICY:
        if (
            row_platform == platform
            and row_cell == cell
            and (max_units is None or units <= max_units)
            and (max_batch is None or (batch is not None and batch <= max_batch))
        ):
            return path
    return DEFAULT_PATH


def _path(layer, sequences, mask, training) -> str:
    """The path `layer` takes for this call: `keras` off JAX, and where `scan` is chosen but
    does not compute what Keras' loop would (module docstring)."""
    if keras.backend.backend() != "jax":
        return "keras"
    import jax  # the JAX backend is running: JAX is there

    kind = "lstm" if isinstance(layer, keras.layers.LSTM) else "gru"
    path = choose_path(jax.default_backend(), kind, layer.units, sequences.shape[0])
    cell = layer.cell
    scan_applies = (
        mask is None
        and not layer.unroll
        and not (training and layer.recurrent_dropout)
        and cell.activation is keras.activations.tanh
        and cell.recurrent_activation is keras.activations.sigmoid
        and keras.backend.standardize_dtype(sequences.dtype) == "float32"
        and getattr(cell, "reset_after", True)
    )
    return "keras" if path == "scan" and not scan_applies else path


def _input_dropout(layer, sequences, training):
    """The cell's input dropout for the whole sequence: one mask a sequence, the one Keras' loop
    uses (`RNN.call` draws it before the loop)."""
    if not (training and layer.dropout):
        return sequences
    return sequences * keras.ops.expand_dims(layer.cell.get_dropout_mask(sequences[:, 0, :]), 1)


def _time_major(sequences, go_backwards: bool):
    """(batch, steps, features) to (steps, batch, features), in the order the loop reads them."""
    # lazy: JAX loads only on the JAX backend
    import jax.numpy as jnp

    x = jnp.swapaxes(sequences, 0, 1)
    return x[::-1] if go_backwards else x


def _outputs(layer, hs, states):
    """`inner_loop`'s (last output, outputs, states) from the time-major outputs `hs`: in the
    order read (reversed for go_backwards, as Keras'), or only the last step."""
    # lazy: JAX loads only on the JAX backend
    import jax.numpy as jnp

    last = hs[-1]
    outputs = jnp.swapaxes(hs, 0, 1) if layer.return_sequences else last[:, None, :]
    return last, outputs, states


def _keras_loop(layer, path: str, sequences, initial_state, mask, training):
    """`loop`: the RNN base class's cell loop; `keras`: the LSTM or GRU class's own choice."""
    if path == "loop":
        return keras.layers.RNN.inner_loop(layer, sequences, initial_state, mask, training=training)
    parent = keras.layers.LSTM if isinstance(layer, keras.layers.LSTM) else keras.layers.GRU
    return parent.inner_loop(layer, sequences, initial_state, mask, training=training)


@keras.saving.register_keras_serializable(package="zoo")
class ScanLSTM(keras.layers.LSTM):
    """`keras.layers.LSTM` that runs the fastest measured time loop on JAX.

    On the JAX backend it picks, per platform, cell and shape (`zoo.scan.POLICY`, or
    `RNN_ZOO_RNN_PATH`), one of three time loops: the zoo's own `scan` (the input projection
    hoisted out of the loop, fused gates, a hand-written backward pass), Keras' step-by-step
    cell `loop`, or whatever Keras picks (`keras`); see the module docstring for what each does
    and what was measured. `scan` runs only where it computes what Keras' loop would (no mask,
    no recurrent dropout while training, not unrolled, tanh and sigmoid, float32). On other
    backends it is Keras' LSTM. The zoo's LSTMs (`NativeLSTM`, `FusedLSTM`) derive from it.

    It has Keras' weights (`kernel`, `recurrent_kernel`, `bias`; gates i, f, c, o), so
    `.keras` files and `set_weights` move between it and `keras.layers.LSTM` both ways.

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
    >>> layer, reference = ScanLSTM(4), keras.layers.LSTM(4)
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

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        path = _path(self, sequences, mask, training)
        if path != "scan":
            return _keras_loop(self, path, sequences, initial_state, mask, training)
        from zoo import jax_rnn  # imports JAX: only on the JAX backend

        cell = self.cell
        x = _time_major(_input_dropout(self, sequences, training), self.go_backwards)
        bias = cell.bias.value if cell.use_bias else None
        h0, c0 = initial_state
        hs, c = jax_rnn.lstm(x, h0, c0, cell.kernel.value, cell.recurrent_kernel.value, bias)
        return _outputs(self, hs, [hs[-1], c])


@keras.saving.register_keras_serializable(package="zoo")
class ScanGRU(keras.layers.GRU):
    """`keras.layers.GRU` that runs the fastest measured time loop on JAX.

    On the JAX backend it picks, per platform, cell and shape (`zoo.scan.POLICY`, or
    `RNN_ZOO_RNN_PATH`), one of three time loops: the zoo's own `scan`, Keras' step-by-step
    cell `loop`, or whatever Keras picks (`keras`: its hoisted `lax.scan` GRU); see the module
    docstring for what each does and what was measured. `scan` runs only where it computes what
    Keras' loop would (no mask, no recurrent dropout while training, not unrolled, tanh and
    sigmoid, float32, `reset_after=True`). On other backends it is Keras' GRU. It is the zoo's
    `gru` layer.

    It has Keras' weights (`kernel`, `recurrent_kernel`, `bias`; gates z, r, h), so `.keras`
    files and `set_weights` move between it and `keras.layers.GRU` both ways.

    Args:
        units: Positive integer, dimensionality of the output space.
        **kwargs: Every other `keras.layers.GRU` argument (`activation`, `dropout`,
            `recurrent_dropout`, `reset_after`, `return_sequences`, `return_state`,
            `go_backwards`, `stateful`, `unroll`, the initializers, regularizers and
            constraints, ...), with the same defaults and meaning.

    Call arguments:
        inputs: `(batch, steps, features)`.
        mask: Optional boolean `(batch, steps)`, False at steps to skip (padding).
            Defaults to `None`.
        training: Python boolean, whether dropout and recurrent dropout apply.
            Defaults to `None`.
        initial_state: Optional list of initial state tensors, `[h]` `(batch, units)`;
            zeros when `None`.

    Returns:
        As `keras.layers.GRU`: `(batch, units)`, or `(batch, steps, units)` with
        `return_sequences=True`, followed by the final h with `return_state=True`.

    Example:

    >>> x = np.random.default_rng(0).random((2, 5, 3)).astype("float32")
    >>> layer, reference = ScanGRU(4), keras.layers.GRU(4)
    >>> keras.ops.shape(layer(x))
    (2, 4)
    >>> _ = reference(x)
    >>> reference.set_weights(layer.get_weights())  # the same weights, both ways
    >>> bool(np.allclose(layer(x), reference(x), atol=1e-5))
    True

    Reference:
        Cho, van Merrienboer, Gulcehre, Bahdanau, Bougares, Schwenk & Bengio, "Learning Phrase
        Representations using RNN Encoder-Decoder for Statistical Machine Translation", EMNLP
        2014.
    """

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        path = _path(self, sequences, mask, training)
        if path != "scan":
            return _keras_loop(self, path, sequences, initial_state, mask, training)
        from zoo import jax_rnn  # imports JAX: only on the JAX backend

        cell = self.cell
        h0 = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        x = _time_major(_input_dropout(self, sequences, training), self.go_backwards)
        bias = cell.bias.value if cell.use_bias else None
        hs = jax_rnn.gru(x, h0, cell.kernel.value, cell.recurrent_kernel.value, bias)
        return _outputs(self, hs, [hs[-1]])
