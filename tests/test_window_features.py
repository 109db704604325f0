"""Per-window features inside the model: the layer equals zoo.features, the models that join
them build, train, save and reload, and the har and npz tasks' `window_features` option."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest

from zoo import create_model, get_task, train
from zoo.features import feature_names, feature_spec, window_features
from zoo.layers import WindowFeatures
from zoo.tasks.har import CHANNELS

HAR_ZIP = Path(
    os.environ.get(
        "RNN_ZOO_HAR_DATA", Path(__file__).parents[2] / "shared/data/uci_har_dataset.zip"
    )
)
STEPS, OUTPUTS = 32, 3


def _windows(n: int = 24, seed: int = 0) -> np.ndarray:
    """HAR-like raw windows: gravity on total_acc plus noise of different scales a channel."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, STEPS, 9)) * rng.uniform(0.05, 1.0, size=(n, 1, 9))
    x[:, :, 6:] += rng.normal(size=(n, 1, 3))  # a gravity direction per window
    return x.astype("float32")


@pytest.fixture(scope="module")
def spec() -> dict:
    return feature_spec(_windows(), CHANNELS, 50.0)


def test_layer_equals_zoo_features_on_the_same_windows():
    """One implementation, two namespaces: keras.ops in float32 against NumPy in float64."""
    x = _windows(seed=1)
    expected, names = window_features(x, CHANNELS, 50.0)
    layer = WindowFeatures(CHANNELS, 50.0)
    got = keras.ops.convert_to_numpy(layer(x))
    assert got.shape == expected.shape == (len(x), len(feature_names(CHANNELS)))
    scale = np.abs(expected).max(axis=0) + 1e-6  # each feature on its own scale
    worst = (np.abs(got - expected) / scale).max(axis=0)
    assert worst.max() < 1e-3, names[int(worst.argmax())]


@pytest.mark.parametrize("depth", [1, 0])
def test_models_with_window_features_train_save_and_reload(spec, depth, tmp_path):
    """depth 1: the recurrent summary joined with the features; depth 0: the features alone."""
    preprocessing = {"mean": [0.0] * 9, "std": [1.0] * 9, "frame_steps": 4, "window_features": spec}
    model = create_model(
        "lstm", (STEPS, 9), OUTPUTS, units=4, depth=depth, preprocessing=preprocessing
    )
    assert model.input_shape == (None, STEPS, 9)  # features are of a whole window
    names = {layer.name for layer in model.layers}
    assert {"window_features", "feature_standardization"} <= names
    assert ("with_window_features" in names) == bool(depth)
    x, y = _windows(seed=2), np.arange(24) % OUTPUTS
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    before = model.evaluate(x, y, verbose=0)
    for _ in range(5):
        model.train_on_batch(x, y)
    assert model.evaluate(x, y, verbose=0) < before
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    # float32 (eps 1.2e-7): a reloaded model may sum in another order (another kernel or CPU),
    # a few ulps apart, which failed an rtol of 1e-7 by 9e-9 on another machine; 1e-6 is well
    # above reordering and well below a real difference (a wrong weight moves outputs by 1e-2)
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": 0}, "depth 0 (a features-only model) needs the task's window features"),
        ({"output_kind": "sequence_classification"}, "window features describe a whole window"),
        ({"depth": 0, "conv_layers": 1}, "and no conv_layers"),
    ],
)
def test_refusals_at_build_time(spec, kwargs, message):
    features = {} if kwargs == {"depth": 0} else {"window_features": spec}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        name = "conv_lstm" if "conv_layers" in kwargs else "lstm"
        create_model(name, (STEPS, 9), OUTPUTS, preprocessing=features, **kwargs)


def test_layer_refuses_bad_channels():
    with pytest.raises(ValueError, match="channel names must be unique"):
        WindowFeatures(["a", "a"])
    with pytest.raises(ValueError, match="sampling_hz must be > 0"):
        WindowFeatures(CHANNELS, 0.0)


@pytest.fixture(scope="module")
def npz_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("npz") / "windows.npz"
    x = _windows(60, seed=3)
    y = (x[:, :, 6].mean(axis=1) > 0).astype("int64") + (x[:, :, 7].mean(axis=1) > 0)
    channels = np.array(
        ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z", "g_x", "g_y", "g_z"]
    )
    np.savez(path, X_train=x[:40], y_train=y[:40], X_test=x[40:], y_test=y[40:], channels=channels)
    return path


def test_npz_option_trains_a_model_that_takes_raw_windows(npz_file, tmp_path):
    """Through `zoo.train`: the saved model holds the feature layer and takes raw windows."""
    task = get_task("npz", data=npz_file, window_features=True, sampling_hz=25.0)
    spec = task.preprocessing["window_features"]
    assert spec["channels"][0] == "acc_x" and spec["sampling_hz"] == 25.0
    assert len(spec["mean"]) == len(feature_names(spec["channels"]))
    out = tmp_path / "run"
    args = ["npz", "lstm", "--data", str(npz_file), "--task-option", "window_features=true"]
    args += ["--units", "4", "--epochs", "2", "--recurrent-dropout", "0"]  # tiny and fast
    args += ["--out", str(out), "--quiet"]
    assert train.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    model = keras.models.load_model(out / "model.keras")
    assert "window_features" in {layer.name for layer in model.layers}
    with np.load(npz_file) as data:
        labels = model.predict(data["X_test"], verbose=0).argmax(axis=-1)
        assert int((labels != data["y_test"]).sum()) == metrics["errors"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["window_features=maybe"], "window_features must be true or false"),
        (["window_features=true", "sampling_hz=0"], "sampling_hz must be > 0"),
        (["window_features=true", "sampling_hz=fast"], "sampling_hz must be a number > 0"),
    ],
)
def test_bad_options_are_one_line(npz_file, tmp_path, monkeypatch, capsys, options, message):
    monkeypatch.chdir(tmp_path)
    args = ["npz", "lstm", "--data", str(npz_file), "--quiet"]
    for option in options:
        args += ["--task-option", option]
    with pytest.raises(SystemExit) as exit_info:
        train.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_npz_channels_must_name_every_feature(tmp_path):
    from zoo.tasks.base import DataError

    path = tmp_path / "bad.npz"
    x, y = _windows(30), np.arange(30) % 2
    np.savez(path, X_train=x, y_train=y, X_test=x, y_test=y, channels=np.array(["a", "b"]))
    with pytest.raises(DataError, match="channels must name each of the 9 features"):
        get_task("npz", data=path, window_features=True)


@pytest.mark.skipif(not HAR_ZIP.is_file(), reason="UCI HAR zip not available")
def test_har_option_hands_the_train_windows_statistics():
    task = get_task("har", data=HAR_ZIP, window_features=True, frame_steps=4)
    spec = task.preprocessing["window_features"]
    assert spec["channels"] == list(CHANNELS) and len(spec["mean"]) == 497
    table, _ = window_features(task.x_train[:100], CHANNELS, 50.0)
    assert np.isfinite(table).all() and task.info["window_features"] is True
    assert get_task("har", data=HAR_ZIP).preprocessing.get("window_features") is None
