"""The zoo's one XLA policy: whether `model.compile` gets `jit_compile`, for training and for
inference (`zoo.fit.compile_model`, `zoo.runs.load_model`)."""

from __future__ import annotations

import keras

from zoo.config import JIT_CHOICES
from zoo.fused import fused_path_available
from zoo.layers import PaddingMask

# XLA compiles a model in about 20 s on 2 CPU cores and then trains a single recurrent layer
# 1.2-1.6x faster (docs/speed.md): it pays once a run is long enough. "auto" turns it on from
# this many planned training sample-steps (epochs x training windows x steps a window).
XLA_MIN_SAMPLE_STEPS = 10_000_000


def use_xla(model: keras.Model, choice: str = "auto", sample_steps: int = 0) -> bool | str:
    """The zoo's one XLA policy: `jit_compile` for `model.compile`.

    "on" and "off" are obeyed. "auto" on TensorFlow without a GPU turns XLA on only where it pays
    for its ~20 s compile: a model with ONE recurrent layer (a bidirectional one counts as one, if
    it is a GRU) whose layers all support XLA, and a run of at least XLA_MIN_SAMPLE_STEPS planned
    sample-steps, not variable-length (masked). XLA trains a single recurrent layer 1.2-1.6x and
    a bidirectional GRU 1.21x faster; stacked layers, a bidirectional LSTM (0.67x) or SimpleRNN
    (0.92x) no faster (docs/speed.md). Elsewhere "auto" is Keras' own.
    """
    if choice not in JIT_CHOICES:
        raise ValueError(
            f"jit_compile must be one of {', '.join(JIT_CHOICES)}. Received: {choice!r}"
        )
    if choice != "auto":
        return choice == "on"
    if not fused_path_available():
        return "auto"
    layers = list(model._flatten_layers())
    both_ways = [layer for layer in layers if isinstance(layer, keras.layers.Bidirectional)]
    inside = {id(x) for b in both_ways for x in (b.forward_layer, b.backward_layer)}
    recurrent = [x for x in layers if isinstance(x, keras.layers.RNN) and id(x) not in inside]
    return (
        len(recurrent) + len(both_ways) == 1
        # variable length trains in batches of their own length: an XLA compile for each
        and not any(isinstance(layer, PaddingMask) for layer in layers)
        and all(isinstance(b.forward_layer, keras.layers.GRU) for b in both_ways)
        and all(getattr(layer, "supports_jit", True) for layer in layers)
        and sample_steps >= XLA_MIN_SAMPLE_STEPS
    )
