"""The RNN-FCN family: parameter counts by the papers' formula, its layers against NumPy, its
variants, masking and its refusals. What every model does (build, train, save, export) is
tested over the registry in test_models.py, test_export.py and test_varlen.py."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from zoo import create_model
from zoo.layers import AttentionLSTM, SqueezeExcite
from zoo.models import MODELS, looks_ahead, model_defaults, model_hyperparameters
from zoo.models.fcn import filter_sizes, kernel_sizes


def conv_blocks(features: int, f: int = 128, k: int = 8) -> int:
    """Three Conv1D blocks f-2f-f with kernels k-5k/8-3k/8 (8-5-3), each with batch
    normalisation (gamma, beta, moving mean and variance: 4 a channel)."""
    widths, kernels, count, before = (f, 2 * f, f), kernel_sizes(k), 0, features
    for width, kernel in zip(widths, kernels, strict=True):
        count += kernel * before * width + width + 4 * width
        before = width
    return count


def lstm(inputs: int, u: int) -> int:
    return 4 * u * (u + inputs + 1)


def gru(inputs: int, u: int) -> int:
    return 3 * u * (u + inputs + 2)  # Keras' reset_after GRU: two biases


def attention_lstm(inputs: int, u: int) -> int:
    """ALSTM: an LSTM whose gates also read the context (an attention kernel like the input
    kernel), plus the scorer's W (inputs x u), U (u x u), b and v (u each)."""
    return lstm(inputs, u) + 4 * u * inputs + inputs * u + u * u + 2 * u


def squeeze_excite(f: int = 128, r: int = 16) -> int:
    """After the first two blocks (f and 2f channels): C x C/r and back, no biases."""
    return sum(2 * c * (c // r) for c in (f, 2 * f))


STEPS, FEATURES, CLASSES, UNITS = 128, 9, 6, 8  # HAR's shape; the papers' 8 cells
HEAD = (UNITS + 128) * CLASSES + CLASSES


@pytest.mark.parametrize(
    ("name", "settings", "expected"),
    [
        # shuffled: one step a channel, the 128 steps its features
        ("lstm_fcn", {}, lstm(STEPS, UNITS) + conv_blocks(FEATURES) + HEAD),
        ("gru_fcn", {}, gru(STEPS, UNITS) + conv_blocks(FEATURES) + HEAD),
        ("mlstm_fcn", {}, lstm(STEPS, UNITS) + conv_blocks(FEATURES) + squeeze_excite() + HEAD),
        ("lstm_fcn", {"attention": True}, attention_lstm(STEPS, UNITS) + conv_blocks(FEATURES) + HEAD),
        ("lstm_fcn", {"shuffle": False}, lstm(FEATURES, UNITS) + conv_blocks(FEATURES) + HEAD),
    ],
    ids=["lstm_fcn", "gru_fcn", "mlstm_fcn", "alstm_fcn", "lstm_fcn-unshuffled"],
)  # fmt: skip
def test_parameter_counts_follow_the_papers_formula(name, settings, expected):
    model = create_model(name, (STEPS, FEATURES), CLASSES, **settings)
    assert model.count_params() == expected


def test_filters_and_kernel_size_are_one_number_each():
    assert filter_sizes(128) == (128, 256, 128) and kernel_sizes(8) == (8, 5, 3)
    assert kernel_sizes(3) == (3, 2, 1) and kernel_sizes(5) == (5, 3, 2)
    model = create_model("gru_fcn", (20, 2), 3, filters=4, kernel_size=5, units=2)
    convs = [model.get_layer(f"conv_{i}") for i in (1, 2, 3)]
    assert [c.filters for c in convs] == [4, 8, 4]
    assert [c.kernel_size for c in convs] == [(5,), (3,), (2,)]


def test_variants_state_only_what_differs():
    assert model_defaults("mlstm_fcn") == {**model_defaults("lstm_fcn"), "squeeze_excite": True}
    assert "attention" not in model_hyperparameters("gru_fcn")  # the attention LSTM's
    assert MODELS.get("gru_fcn").structure == {"cell": "gru"}
    assert all(looks_ahead(n) for n in ("lstm_fcn", "mlstm_fcn", "gru_fcn"))
    assert model_defaults("lstm_fcn")["dropout"] == 0.8  # the papers'


@pytest.mark.parametrize(
    ("shape", "settings", "message"),
    [
        ((6, 3), {}, "a window must be at least kernel_size steps long"),
        ((12, 3), {"preprocessing": {"frame_steps": 3}}, "steps=4, kernel_size=8"),
        ((None, 3), {}, "shuffle reads the whole window"),
        ((12, 3), {"cell": "gru", "attention": True}, "attention is the attention LSTM"),
        ((12, 3), {"shuffle": "yes"}, "shuffle must be true or false"),
        ((12, 3), {"stateful_batch": 4}, "cannot be stateful"),
        ((12, 3), {"filters": 0}, "filters must be a positive integer. Received: filters=0"),
        ((12, 3), {"output_kind": "sequence_regression"}, "one output a window"),
    ],
)
def test_bad_settings_fail_at_build_time_in_one_line(shape, settings, message):
    from zoo.models import rnn_fcn_model

    with pytest.raises(ValueError, match=message) as err:
        rnn_fcn_model(shape, 2, **settings)
    assert "\n" not in str(err.value)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_attention_lstm_matches_a_numpy_reference():
    units, features, steps = 4, 3, 5
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, steps, features)).astype("float32")
    layer = AttentionLSTM(units, return_sequences=True)
    layer.build((None, steps, features))
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    cell = layer.cell
    w = {v.name: np.asarray(v) for v in cell.weights}
    h, c, expected = np.zeros((2, units)), np.zeros((2, units)), []
    for t in range(steps):
        energy = np.tanh(x @ w["score_kernel"] + (h @ w["score_recurrent_kernel"])[:, None]
                         + w["score_bias"])  # fmt: skip
        scores = energy @ w["score_vector"]
        a = np.exp(scores - scores.max(1, keepdims=True))
        a /= a.sum(1, keepdims=True)
        context = (a[..., None] * x).sum(1)
        z = (x[:, t] @ w["kernel"] + h @ w["recurrent_kernel"] + context @ w["attention_kernel"]
             + w["bias"])  # fmt: skip
        zi, zf, zc, zo = np.split(z, 4, axis=-1)
        c = _sigmoid(zf) * c + _sigmoid(zi) * np.tanh(zc)
        h = _sigmoid(zo) * np.tanh(c)
        expected.append(h)
    np.testing.assert_allclose(np.asarray(layer(x)), np.stack(expected, 1), atol=1e-5)


def test_squeeze_excite_leaves_padded_steps_out_of_its_mean():
    layer = SqueezeExcite(reduction=2)
    x = np.random.default_rng(0).normal(size=(1, 4, 6)).astype("float32")
    padded = np.concatenate([x, np.full((1, 3, 6), 50.0, "float32")], axis=1)
    mask = np.array([[True] * 4 + [False] * 3])
    alone = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(padded, mask=mask))[:, :4], alone,
                               atol=1e-6)  # fmt: skip
    assert len(layer.weights) == 2 and layer.weights[0].shape == (6, 3)


def test_attention_model_with_padding_gives_the_unpadded_prediction():
    """Masked convolutions, pooling and attention: padding changes no prediction."""
    pre = {"mask": True, "mean": [0.5, -1.0], "std": [1.0, 2.0]}
    model = create_model("mlstm_fcn", (None, 2), 3, units=4, filters=4, kernel_size=3,
                         shuffle=False, attention=True, preprocessing=pre)  # fmt: skip
    x = np.random.default_rng(1).normal(size=(1, 5, 2)).astype("float32")
    padded = np.pad(x, ((0, 0), (0, 9), (0, 0)), constant_values=np.nan)
    alone = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(padded)), alone, atol=1e-5)


def test_attention_lstm_saves_and_reloads(tmp_path):
    model = create_model("lstm_fcn", (8, 2), 3, units=4, filters=4, kernel_size=3, attention=True,
                         recurrent_dropout=0.1, l2=1e-4)  # fmt: skip
    x = np.random.default_rng(0).normal(size=(2, 8, 2)).astype("float32")
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(x)),
                               keras.ops.convert_to_numpy(model(x)), atol=1e-6)  # fmt: skip
    layer = reloaded.get_layer("attention_lstm")
    assert layer.cell.recurrent_dropout == 0.1 and layer.cell.kernel_regularizer is not None


def test_window_features_join_both_branches_after_framing():
    from zoo.features import feature_names, feature_spec
    from zoo.tasks.har import CHANNELS

    x = np.random.default_rng(0).normal(size=(6, 32, 9)).astype("float32")
    pre = {"mean": [0.0] * 9, "std": [1.0] * 9, "frame_steps": 4}
    pre["window_features"] = feature_spec(x, CHANNELS, 50.0)
    model = create_model(
        "gru_fcn", (32, 9), 3, units=4, filters=4, kernel_size=5, preprocessing=pre
    )
    assert model.input_shape == (None, 32, 9)  # framed to 8 steps of 36: the shuffle reads 8
    assert model.get_layer("gru").input.shape == (None, 36, 8)
    joined = model.get_layer("with_window_features").output.shape[-1]
    assert joined == 4 + 4 + len(feature_names(CHANNELS))
    assert model.predict(x, verbose=0).shape == (6, 3)


@pytest.mark.slow
def test_zoo_train_builds_an_rnn_fcn_from_its_flags(tmp_path):
    import json

    from zoo import train

    out = tmp_path / "run"
    args = ["count_ones", "lstm_fcn", "--epochs", "1", "--units", "4", "--filters", "4"]
    args += ["--kernel-size", "5", "--squeeze-excite", "true", "--attention", "true"]
    args += "--task-option length=8 --task-option train_size=40 --task-option val_size=8".split()
    assert train.main([*args, "--out", str(out), "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())["hyperparameters"]
    assert config["squeeze_excite"] is True and config["attention"] is True
    assert config["kernel_size"] == 5 and "shuffle" not in config  # the model's own default
    model = keras.models.load_model(out / "model.keras")
    assert {"attention_lstm", "squeeze_excite_2", "dimension_shuffle"} <= {
        layer.name for layer in model.layers
    }
