"""`zoo.scan`'s path choice, and its layers being Keras' LSTM and GRU in arguments and weights.

Its numerics are checked on JAX, where its own loop runs: tests/test_backends.py (`check_scan` in
tests/backend_check.py) holds it to Keras' layers in outputs and gradients.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from zoo import scan
from zoo.scan import ScanGRU, ScanLSTM


@pytest.mark.parametrize("forced", scan.PATHS)
def test_the_environment_variable_forces_a_path(monkeypatch, forced):
    monkeypatch.setenv(scan.ENV, forced)
    assert scan.choose_path("gpu", "lstm", 64, 64) == forced
    assert scan.choose_path("cpu", "gru", 512, None) == forced


def test_the_policy_table_decides_by_platform_cell_and_shape(monkeypatch):
    monkeypatch.delenv(scan.ENV, raising=False)
    rows = (
        ("gpu", "lstm", 128, 128, "scan"),
        ("gpu", "lstm", None, None, "keras"),
        ("gpu", "gru", None, 64, "loop"),
    )
    monkeypatch.setattr(scan, "POLICY", rows)
    assert scan.choose_path("gpu", "lstm", 64, 64) == "scan"
    assert scan.choose_path("gpu", "lstm", 256, 64) == "keras"
    assert scan.choose_path("gpu", "gru", 256, 64) == "loop"
    assert scan.choose_path("gpu", "gru", 256, 256) == scan.DEFAULT_PATH
    assert scan.choose_path("gpu", "gru", 64, None) == scan.DEFAULT_PATH  # batch unknown
    assert scan.choose_path("tpu", "lstm", 64, 64) == scan.DEFAULT_PATH


def test_a_bad_environment_value_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv(scan.ENV, "fast")
    with pytest.raises(ValueError, match="RNN_ZOO_RNN_PATH must be one of scan, loop, keras") as e:
        scan.choose_path("cpu", "lstm", 64, 64)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("cls, base", [(ScanLSTM, keras.layers.LSTM), (ScanGRU, keras.layers.GRU)])
def test_the_layers_are_keras_layers_in_arguments_weights_and_outputs(cls, base):
    kwargs = dict(return_sequences=True, go_backwards=True, dropout=0.1, name="rnn")
    layer, reference = cls(5, **kwargs), base(5, **kwargs)
    assert isinstance(layer, base) and layer.get_config() == reference.get_config()
    x = np.random.default_rng(0).normal(size=(2, 7, 3)).astype("float32")
    layer.build(x.shape)
    reference.build(x.shape)
    assert [w.path for w in layer.weights] == [w.path for w in reference.weights]
    layer.set_weights(reference.get_weights())
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(reference(x)), atol=1e-6)
