"""Every registered model: builds for each output kind, trains, saves and reloads.

Parametrized over the registry, so a model added later is tested with no new test code.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from zoo import create_model, list_models
from zoo.layers import PeepholeLSTMCell
from zoo.models import OUTPUT_KINDS, model_hyperparameters, model_output_kinds

STEPS, FEATURES, OUTPUTS = 12, 3, 4
SIZES = {"units": 8, "filters": 4, "kernel_size": 3}  # the RNN-FCN's 128-256-128 filters: slow


def small(name: str) -> dict:
    """Small sizes for the hyperparameters model `name` takes."""
    return {k: v for k, v in SIZES.items() if k in model_hyperparameters(name)}


def _batch(kind: str, n: int = 16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, STEPS, FEATURES)).astype("float32")
    if kind == "classification":
        y = rng.integers(0, OUTPUTS, size=n)
    elif kind == "sequence_classification":
        y = rng.integers(0, OUTPUTS, size=(n, STEPS))
    elif kind == "regression":
        y = rng.normal(size=(n, OUTPUTS)).astype("float32")
    else:
        y = rng.normal(size=(n, STEPS, OUTPUTS)).astype("float32")
    return x, y


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
@pytest.mark.parametrize("name", list_models())
def test_builds_for_every_output_kind(name, kind):
    if kind not in model_output_kinds(name):  # one output a window: refused in one line
        with pytest.raises(ValueError, match=f"{name} gives one output a window") as err:
            create_model(name, (STEPS, FEATURES), OUTPUTS, output_kind=kind, **small(name))
        assert "\n" not in str(err.value)
        return
    model = create_model(name, (STEPS, FEATURES), OUTPUTS, output_kind=kind, **small(name))
    assert isinstance(model, keras.Model) and model.name == name
    assert not model.compiled
    x, _ = _batch(kind)
    y = model.predict(x, verbose=0)
    expected = (len(x), STEPS, OUTPUTS) if kind.startswith("sequence") else (len(x), OUTPUTS)
    assert y.shape == expected
    assert np.all(np.isfinite(y))
    if kind.endswith("classification"):
        np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", list_models())
def test_takes_any_sequence_length(name):
    model = create_model(name, (STEPS, FEATURES), OUTPUTS, **small(name))
    if name == "es_rnn":  # its smoothing runs over a whole window of fixed length
        assert model.input_shape[1] == STEPS
        with pytest.raises(ValueError, match="fixed number of steps"):
            create_model(name, (None, FEATURES), OUTPUTS, **small(name))
        return
    if model.input_shape[1] is not None:  # the dimension shuffle reads a whole window
        assert model.input_shape[1] == STEPS and "shuffle" in model_hyperparameters(name)
        model = create_model(name, (STEPS, FEATURES), OUTPUTS, shuffle=False, **small(name))
    assert model.predict(np.zeros((2, 5, FEATURES), "float32"), verbose=0).shape == (2, OUTPUTS)


# the slowest to train (over 5 s each on 2 cores): outside the fast subset
SLOW_TO_TRAIN = {
    *("bigru", "birnn", "deep_lstm", "es_rnn", "res_bilstm"),
    *("gru_fcn", "lstm_fcn", "mlstm_fcn"),
}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TO_TRAIN else n for n in list_models()],
)
def test_training_steps_lower_the_loss_on_a_fixed_batch(name):
    kind = model_output_kinds(name)[0]  # a variant's default: es_rnn forecasts (regression)
    model = create_model(name, (STEPS, FEATURES), OUTPUTS, **small(name))
    loss = "mse" if kind == "regression" else "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    x, y = _batch(kind, 32)
    before = model.evaluate(x, y, verbose=0)
    for _ in range(10):
        model.train_on_batch(x, y)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < before


@pytest.mark.parametrize("name", list_models())
def test_save_and_plain_reload_give_the_same_predictions(name, tmp_path):
    model = create_model(name, (STEPS, FEATURES), OUTPUTS, dropout=0.1, l2=1e-4, **small(name))
    x, _ = _batch("classification")
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)  # no custom_objects
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6
    )
    assert [w.shape for w in reloaded.weights] == [w.shape for w in model.weights]


@pytest.mark.parametrize(
    ("name", "per_layer"),
    [
        ("lstm", lambda u, f: 4 * (u * (u + f) + u)),
        ("gru", lambda u, f: 3 * (u * (u + f) + 2 * u)),  # Keras' reset_after GRU: two biases
        ("rnn", lambda u, f: u * (u + f) + u),
    ],
)
@pytest.mark.parametrize("depth", [1, 2])
def test_parameter_counts_follow_the_textbook_formula(name, per_layer, depth):
    units, features, classes = 64, 9, 6
    model = create_model(name, (128, features), classes, units=units, depth=depth)
    recurrent = per_layer(units, features) + (depth - 1) * per_layer(units, units)
    assert model.count_params() == recurrent + units * classes + classes


def test_stacked_and_deep_are_lstm_with_depth():
    assert (
        create_model("stacked_lstm", (128, 9), 6).count_params()
        == create_model("lstm", (128, 9), 6, depth=2).count_params()
    )
    assert (
        create_model("deep_lstm", (128, 9), 6).count_params()
        == create_model("lstm", (128, 9), 6, depth=4).count_params()
    )


def test_none_keyword_keeps_the_builders_default():
    assert (
        create_model("lstm", (128, 9), 6, units=None).count_params()
        == create_model("lstm", (128, 9), 6).count_params()
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"units": 0}, "units must be a positive integer. Received: units=0"),
        ({"units": 2.5}, "units must be a positive integer. Received: units=2.5"),
        ({"depth": -1}, "depth must be a positive integer. Received: depth=-1"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\). Received: dropout=1.0"),
        ({"recurrent_dropout": -0.1}, "recurrent_dropout must be in"),
        ({"l2": -1e-3}, "l2 must be a number >= 0. Received: l2=-0.001"),
        ({"output_kind": "ranking"}, "output_kind must be one of"),
    ],
)
def test_bad_hyperparameters_fail_at_build_time(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_model("lstm", (128, 9), 6, **kwargs)


def test_residual_stack_with_last_step_pooling_is_refused():
    from zoo.models import recurrent_model

    with pytest.raises(ValueError, match="residual needs pooling 'average' or 'attention'"):
        recurrent_model((None, 3), 2, residual=True, depth=2)  # would add a step to every step
    assert recurrent_model(
        (None, 3), 2, residual=True, depth=2, pooling="average"
    ).output_shape == (
        None,
        2,
    )


def test_variants_declare_only_what_differs():
    from zoo.models import MODELS, looks_ahead, model_hyperparameters

    assert model_hyperparameters("conv_lstm") == [
        "units", "depth", "dropout", "recurrent_dropout", "l2", "conv_layers", "filters",
        "kernel_size",
    ]  # fmt: skip
    assert MODELS.get("stacked_lstm").structure == {"cell": "lstm"}
    assert looks_ahead("res_bilstm") and not looks_ahead("stacked_lstm")
    assert MODELS.describe("deep_lstm").startswith("Four-layer LSTM")


def test_bad_shapes_fail_at_build_time():
    with pytest.raises(ValueError, match="input_shape must be"):
        create_model("gru", (128,), 6)
    with pytest.raises(ValueError, match="num_outputs must be a positive integer"):
        create_model("gru", (128, 9), 0)
    with pytest.raises(TypeError):
        create_model("gru", (128, 9), 6, kernel_size=3)  # not a gru argument


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_peephole_cell_matches_a_numpy_reference():
    units, features, steps = 5, 3, 7
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, steps, features)).astype("float32")
    layer = keras.layers.RNN(PeepholeLSTMCell(units), return_sequences=True)
    layer.build((None, steps, features))
    cell = layer.cell
    cell.peephole.assign(rng.normal(size=(3, units)).astype("float32"))  # zeros would hide bugs
    cell.bias.assign(rng.normal(size=(4 * units,)).astype("float32"))
    kernel, recurrent, bias, peep = (np.asarray(w) for w in (cell.kernel, cell.recurrent_kernel, cell.bias, cell.peephole))  # fmt: skip

    h = np.zeros((2, units))
    c = np.zeros((2, units))
    expected = []
    for t in range(steps):
        z = x[:, t] @ kernel + h @ recurrent + bias
        zi, zf, zc, zo = np.split(z, 4, axis=-1)
        i = _sigmoid(zi + peep[0] * c)
        f = _sigmoid(zf + peep[1] * c)
        c = f * c + i * np.tanh(zc)
        o = _sigmoid(zo + peep[2] * c)
        h = o * np.tanh(c)
        expected.append(h)
    np.testing.assert_allclose(
        np.asarray(layer(x)), np.stack(expected, axis=1), rtol=1e-5, atol=1e-5
    )


def test_peephole_cell_without_peepholes_equals_keras_lstm():
    """With zero peephole weights the cell is a plain LSTM: same weights, same outputs."""
    x = np.random.default_rng(2).normal(size=(3, 6, 4)).astype("float32")
    reference = keras.layers.LSTM(5, return_sequences=True)
    reference.build((None, 6, 4))
    ours = keras.layers.RNN(PeepholeLSTMCell(5), return_sequences=True)
    ours.build((None, 6, 4))
    ours.cell.kernel.assign(reference.cell.kernel)
    ours.cell.recurrent_kernel.assign(reference.cell.recurrent_kernel)
    ours.cell.bias.assign(reference.cell.bias)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(reference(x)), atol=1e-6)


def test_peephole_cell_draws_one_recurrent_dropout_mask_a_sequence():
    """As keras.layers.LSTMCell: one mask for all the steps, not a new one at every step."""
    from zoo.layers import PeepholeLSTMCell

    cell = PeepholeLSTMCell(4, recurrent_dropout=0.5, seed=1)
    layer = keras.layers.RNN(cell, return_sequences=True)
    x = np.ones((2, 9, 3), "float32")
    layer(x)
    before = keras.ops.convert_to_numpy(cell.seed_generator.state).copy()
    layer(x, training=True)
    draws = keras.ops.convert_to_numpy(cell.seed_generator.state) - before
    assert draws.tolist() == [0, 1]  # one draw for 9 steps
