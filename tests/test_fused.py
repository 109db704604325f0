"""`zoo.fused.FusedLSTM` is `keras.layers.LSTM`: same outputs and gradients, saves, trains."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from zoo.fit import XLA_MIN_SAMPLE_STEPS, use_xla
from zoo.fused import FusedLSTM, fused_path_available

BATCH, STEPS, FEATURES, UNITS = 4, 11, 3, 5


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(BATCH, STEPS, FEATURES)).astype("float32")


def _pair(**kwargs):
    """A keras LSTM with perturbed weights (a non-trivial forget bias too) and a FusedLSTM
    built with the same arguments and given the same weights."""
    reference = keras.layers.LSTM(UNITS, **kwargs)
    reference.build((None, STEPS, FEATURES))
    rng = np.random.default_rng(1)
    weights = [
        w + 0.5 * rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()
    ]
    reference.set_weights(weights)
    fused = FusedLSTM(UNITS, **kwargs)
    fused.build((None, STEPS, FEATURES))
    fused.set_weights(weights)
    return reference, fused


def _outputs_and_gradients(layer, x):
    """Outputs, and gradients of a loss over them with respect to the input and the weights."""
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x, training=True)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        loss = sum(tf.reduce_mean(tf.sin(3.0 * o)) for o in outs)
    grads = tape.gradient(loss, [x, *layer.trainable_weights])
    return [o.numpy() for o in outs], [g.numpy() for g in grads]


needs_tf = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="gradients taken with tf.GradientTape"
)


@needs_tf
@pytest.mark.parametrize(
    "kwargs",
    [
        {"return_sequences": True},
        {"return_sequences": False},
        {"return_sequences": True, "go_backwards": True},
        {"return_sequences": False, "return_state": True},
        {"return_sequences": True, "use_bias": False},
        {"return_sequences": True, "unit_forget_bias": False},
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_same_outputs_and_gradients_as_keras_lstm(kwargs):
    reference, fused = _pair(**kwargs)
    x = _x()
    out_ref, grad_ref = _outputs_and_gradients(reference, x)
    out_fused, grad_fused = _outputs_and_gradients(fused, x)
    for a, b in zip(out_ref, out_fused, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    for a, b in zip(grad_ref, grad_fused, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


@needs_tf
def test_initial_state_is_used():
    reference, fused = _pair(return_sequences=True)
    rng = np.random.default_rng(2)
    state = [rng.normal(size=(BATCH, UNITS)).astype("float32") for _ in range(2)]
    np.testing.assert_allclose(
        fused(_x(), initial_state=state), reference(_x(), initial_state=state), atol=1e-5
    )


def test_mask_falls_back_to_the_keras_loop():
    """A mask is not something the fused kernel can do: the layer uses Keras' loop instead."""
    reference, fused = _pair(return_sequences=True)
    x = _x()
    x[:, -4:] = 0.0
    mask = np.ones((BATCH, STEPS), dtype=bool)
    mask[:, -4:] = False
    np.testing.assert_allclose(fused(x, mask=mask), reference(x, mask=mask), rtol=1e-5, atol=1e-5)


def test_uses_the_fused_kernel_on_tensorflow_cpu():
    fused = FusedLSTM(UNITS)
    if not fused_path_available():
        pytest.skip("the fused kernel is used with TensorFlow on CPU only")
    assert not fused.supports_jit
    import tensorflow as tf

    graph = tf.function(fused).get_concrete_function(tf.TensorSpec((None, STEPS, FEATURES)))
    assert "BlockLSTM" in {op.type for op in graph.graph.get_operations()}


def _model(layer_cls):
    inputs = keras.Input((STEPS, FEATURES))
    h = keras.layers.Bidirectional(layer_cls(UNITS, return_sequences=True), name="bi")(inputs)
    h = layer_cls(UNITS, dropout=0.1, name="top")(h)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(h))


def test_save_and_load_round_trip(tmp_path):
    model = _model(FusedLSTM)
    x = _x()
    path = tmp_path / "fused.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("top"), FusedLSTM)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_weights_interchange_with_a_keras_model():
    fused, plain = _model(FusedLSTM), _model(keras.layers.LSTM)
    plain.set_weights(fused.get_weights())
    x = _x()
    np.testing.assert_allclose(fused.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-5)


def test_training_lowers_the_loss():
    model = _model(FusedLSTM)
    model.compile(
        optimizer=keras.optimizers.Adam(0.02),
        loss="sparse_categorical_crossentropy",
        jit_compile=False,
    )
    x = np.concatenate([_x(3), _x(4)])
    y = (x[:, :, 0].mean(axis=1) > 0).astype("int32")  # learnable from the inputs
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=15, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.8 * first


def test_one_xla_policy_counts_the_compile_time():
    long = XLA_MIN_SAMPLE_STEPS
    assert use_xla(_model(FusedLSTM), "off", long) is False
    assert use_xla(_model(FusedLSTM), "on", 0) is True
    with pytest.raises(ValueError, match="jit_compile must be one of auto, on, off"):
        use_xla(_model(FusedLSTM), "yes")
    if not fused_path_available():
        assert use_xla(_model(FusedLSTM), "auto", long) == "auto"
        return
    assert use_xla(_model(FusedLSTM), "auto", long) is False  # not XLA-compatible
    assert use_xla(_model(keras.layers.GRU), "auto", long) is False  # two layers, bidirectional
    inputs = keras.Input((STEPS, FEATURES))
    single = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GRU(UNITS)(inputs)))
    assert use_xla(single, "auto", long) is True
    assert use_xla(single, "auto", long - 1) is False  # too short to pay for the compile
