"""`zoo.fused.FusedLSTM` and `NativeLSTM` are `keras.layers.LSTM`: same outputs and gradients,
save, train; `NativeLSTM` falls back to Keras' loop where its C++ op cannot be had."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from zoo.fused import FusedLSTM, NativeLSTM, fused_path_available, native_path_available
from zoo.xla import XLA_MIN_SAMPLE_STEPS, use_xla

BATCH, STEPS, FEATURES, UNITS = 4, 11, 3, 5


def _x(seed: int = 0, batch: int = BATCH) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, STEPS, FEATURES)).astype("float32")


LAYERS = pytest.mark.parametrize("cls", [FusedLSTM, NativeLSTM], ids=lambda c: c.__name__)


def _pair(cls=FusedLSTM, units=UNITS, **kwargs):
    """A keras LSTM with perturbed weights (a non-trivial forget bias too) and a `cls` layer
    built with the same arguments and given the same weights."""
    reference = keras.layers.LSTM(units, **kwargs)
    reference.build((None, STEPS, FEATURES))
    rng = np.random.default_rng(1)
    weights = [
        w + 0.5 * rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()
    ]
    reference.set_weights(weights)
    fused = cls(units, **kwargs)
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
@LAYERS
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
def test_same_outputs_and_gradients_as_keras_lstm(cls, kwargs):
    _assert_same_as_keras(*_pair(cls, **kwargs), _x())


def _assert_same_as_keras(reference, layer, x):
    out_ref, grad_ref = _outputs_and_gradients(reference, x)
    out, grad = _outputs_and_gradients(layer, x)
    for a, b in zip(out_ref + grad_ref, out + grad, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


@needs_tf
@LAYERS
def test_initial_state_is_used(cls):
    reference, fused = _pair(cls, return_sequences=True)
    rng = np.random.default_rng(2)
    state = [rng.normal(size=(BATCH, UNITS)).astype("float32") for _ in range(2)]
    np.testing.assert_allclose(
        fused(_x(), initial_state=state), reference(_x(), initial_state=state), atol=1e-5
    )


@LAYERS
def test_mask_falls_back_to_the_keras_loop(cls):
    """A mask is not something the fused kernel can do: the layer uses Keras' loop instead."""
    reference, fused = _pair(cls, return_sequences=True)
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


def _model(layer_cls=FusedLSTM):
    inputs = keras.Input((STEPS, FEATURES))
    h = keras.layers.Bidirectional(layer_cls(UNITS, return_sequences=True), name="bi")(inputs)
    h = layer_cls(UNITS, dropout=0.1, name="top")(h)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(h))


@LAYERS
def test_save_and_load_round_trip(tmp_path, cls):
    model = _model(cls)
    x = _x()
    path = tmp_path / "fused.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.get_layer("top")) is cls
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@LAYERS
def test_weights_interchange_with_a_keras_model(cls):
    fused, plain = _model(cls), _model(keras.layers.LSTM)
    plain.set_weights(fused.get_weights())
    x = _x()
    np.testing.assert_allclose(fused.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-5)


@LAYERS
def test_training_lowers_the_loss(cls):
    model = _model(cls)
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
    plain = (keras.layers.SimpleRNN, keras.layers.LSTM, FusedLSTM)
    for layer, xla in [(keras.layers.GRU, True), *((cls, False) for cls in plain)]:
        both = keras.layers.Bidirectional(layer(UNITS))  # XLA trains only the GRU faster
        one = keras.Model(inputs, keras.layers.Dense(2)(both(inputs)))
        assert use_xla(one, "auto", long) is xla, layer


needs_native = pytest.mark.skipif(
    not native_path_available(), reason="no C++ compiler or not TensorFlow on CPU"
)


@needs_native
def test_native_lstm_runs_the_cpp_op():
    import tensorflow as tf

    layer = NativeLSTM(UNITS)
    assert not layer.supports_jit
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec((None, STEPS, FEATURES)))
    assert "ZooLstmForward" in {op.type for op in graph.graph.get_operations()}


@needs_native
@pytest.mark.parametrize("batch,units", [(1, 16), (7, 20), (13, 32), (18, 24)])
def test_native_lstm_blocks_equal_keras(batch, units):
    """The op's register blocks: whole and partial SIMD packets of units (16, 20, 24, 32 units),
    whole and partial blocks of rows (13 rows: split between threads; 7 rows, and 9 a thread of
    18, run as two short blocks, not a full block and 1-3 rows), one row."""
    _assert_same_as_keras(*_pair(NativeLSTM, units, return_sequences=True), _x(7, batch))


@pytest.mark.slow
@needs_native
def test_native_lstm_portable_build_equals_keras():
    """`RNN_ZOO_NATIVE_ARCH` builds the op for another target (here SSE only: 4 floats a packet,
    2 rows a block, where this machine may use 16 and 6): the same results as Keras."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, keras, tensorflow as tf\n"
        "from zoo.fused import NativeLSTM\n"
        "from zoo.kernels import lstm_op_status\n"
        "rng = np.random.default_rng(0)\n"
        "x = tf.constant(rng.normal(size=(7, 6, 3)).astype('float32'))\n"
        "worst = 0.0\n"
        "for units in (4, 9):\n"
        "    a, b = keras.layers.LSTM(units), NativeLSTM(units)\n"
        "    a.build(x.shape); b.build(x.shape)\n"
        "    b.set_weights([w + 0.5 for w in a.get_weights()]); a.set_weights(b.get_weights())\n"
        "    res = []\n"
        "    for layer in (a, b):\n"
        "        with tf.GradientTape() as tape:\n"
        "            tape.watch(x); out = layer(x); loss = tf.reduce_mean(tf.sin(3.0 * out))\n"
        "        res.append([out] + tape.gradient(loss, [x, *layer.trainable_weights]))\n"
        "    for p, q in zip(*res):\n"
        "        worst = max(worst, float(np.max(np.abs(p - q) / (1 + np.abs(p)))))\n"
        "print(worst)\n"
        "print(lstm_op_status())\n"
    )
    env = {**os.environ, "RNN_ZOO_NATIVE_ARCH": "-march=x86-64", "KERAS_BACKEND": "tensorflow"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    worst, status = done.stdout.strip().splitlines()[-2:]
    assert status.startswith("loaded from ") and float(worst) < 1e-5


@needs_native
def test_native_lstm_carries_state_like_keras():
    """Stateful: the second call starts from the first call's final state, as in Keras."""
    layers = []
    for cls in (keras.layers.LSTM, NativeLSTM):
        inputs = keras.Input(batch_shape=(BATCH, None, FEATURES))
        layers.append(keras.Model(inputs, cls(UNITS, stateful=True, seed=0)(inputs)))
    layers[1].set_weights(layers[0].get_weights())
    for seed in (5, 6):
        np.testing.assert_allclose(layers[1](_x(seed)), layers[0](_x(seed)), atol=1e-5)


@needs_native
def test_recurrent_dropout_keeps_keras_loop_and_xla():
    """The op does no recurrent dropout: such a layer is Keras' LSTM, and XLA still pays."""

    def single(layer):
        inputs = keras.Input((STEPS, FEATURES))
        return keras.Model(inputs, keras.layers.Dense(2)(layer(inputs)))

    assert use_xla(single(NativeLSTM(UNITS, recurrent_dropout=0.3)), "auto", XLA_MIN_SAMPLE_STEPS)
    assert not use_xla(single(NativeLSTM(UNITS)), "auto", XLA_MIN_SAMPLE_STEPS)


@pytest.mark.slow
@needs_tf
def test_native_lstm_without_its_op_is_keras(tmp_path):
    """No compiler (and an empty build cache): one line says why, and the layer is Keras' LSTM,
    XLA allowed. `RNN_ZOO_NATIVE=0` turns the op off."""
    import os
    import subprocess
    import sys

    code = (
        "import os, numpy as np, keras\n"
        "from zoo.fused import NativeLSTM\n"
        "from zoo.kernels import lstm_op, lstm_op_status\n"
        "x = np.random.default_rng(0).normal(size=(2, 7, 3)).astype('float32')\n"
        "a, b = keras.layers.LSTM(4), NativeLSTM(4)\n"
        "a.build(x.shape); b.build(x.shape); b.set_weights(a.get_weights())\n"
        "print(b.supports_jit, float(np.abs(a(x) - b(x)).max()))\n"
        "print(lstm_op_status())\n"
        "os.environ['RNN_ZOO_NATIVE'] = '0'; lstm_op.cache_clear()\n"
        "print(lstm_op_status())\n"
    )
    env = {**os.environ, "RNN_ZOO_CACHE": str(tmp_path), "CXX": "no-such-compiler"}
    env["KERAS_BACKEND"] = "tensorflow"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    jit_and_diff, no_compiler, turned_off = done.stdout.strip().splitlines()[-3:]
    supports_jit, diff = jit_and_diff.split()
    assert supports_jit == "True" and float(diff) < 1e-6
    assert no_compiler == "no C++ compiler: no-such-compiler not found"
    assert turned_off == "turned off by RNN_ZOO_NATIVE=0"
    assert not list(tmp_path.rglob("*.so"))


def test_a_bidirectional_lstm_takes_the_fastest_path(monkeypatch):
    """`bilstm` runs the zoo's C++ op where it is built (1.13x TensorFlow's BlockLSTM in
    training, docs/speed.md), else BlockLSTM (`FusedLSTM`, 1.3-1.7x Keras' loop)."""
    import zoo.fused
    from zoo import create_model

    def lstm_classes():
        model = create_model("bilstm", (STEPS, FEATURES), 2, units=UNITS)
        return {type(x) for x in model._flatten_layers() if isinstance(x, keras.layers.LSTM)}

    assert lstm_classes() == {NativeLSTM if native_path_available() else FusedLSTM}
    monkeypatch.setattr(zoo.fused, "native_path_available", lambda: False)  # no compiler
    assert lstm_classes() == {FusedLSTM}
