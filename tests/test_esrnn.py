"""es_rnn (Smyl 2020): the smoothing against its NumPy twin, the model on raw windows, a tiny
training run across the series of one file, save/load and export."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from zoo import create_model, get_task, train
from zoo import forecast as forecast_cli
from zoo.exporting import convert_model, open_runtime
from zoo.files import save_model
from zoo.runs import load_model
from zoo.smoothing import ExponentialSmoothing, seasonal_start, smooth, window_shift

SEASONAL = {"scaling": {"season": 12, "floor": 1e-3}}


def windows(n: int = 5, steps: int = 24, seed: int = 0) -> np.ndarray:
    """Positive seasonal windows with a trend, one with a zero, one all zeros, one negative."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    x = (50 + t) * (1 + 0.2 * np.sin(2 * np.pi * t / 12)) * rng.uniform(0.5, 2, (n, 1))
    x = x + rng.normal(0, 1, (n, steps))
    x[1, 3] = 0.0
    x[2] = 0.0
    x[3, 5] = -4.0
    return x.astype("float32")


@pytest.mark.parametrize("season, trend", [(12, False), (4, True), (1, False), (1, True)])
def test_the_smoothing_matches_its_numpy_twin(season, trend):
    x = windows()
    layer = ExponentialSmoothing(season=season, horizon=7, trend=trend, floor=1e-3)
    z, base, shift = (keras.ops.convert_to_numpy(t) for t in layer(x[..., None]))
    k = {n: float(v) for n, v in layer.coefficients().items()}
    zn, bn, sn = smooth(x, season, 7, trend=trend, floor=1e-3, **k)
    np.testing.assert_allclose(z, zn, atol=2e-5)
    np.testing.assert_allclose(base, bn, atol=2e-5)
    np.testing.assert_allclose(shift, sn, rtol=1e-6)
    assert shift[0, 0] == 0 and shift[2, 0] > 0 and shift[3, 0] > 4  # positive windows: no shift


def test_the_seasonal_start_recovers_a_season_and_ignores_a_level_and_trend():
    season = np.array([0.3, -0.1, 0.2, -0.4])
    y = 5.0 + 0.01 * np.arange(20) + np.tile(season, 5)
    np.testing.assert_allclose(y @ seasonal_start(20, 4), season - season.mean(), atol=1e-9)
    assert not seasonal_start(4, 4).any()  # no full moving average in one season: no season
    np.testing.assert_allclose(window_shift(np.array([[1.0, 2.0], [0.0, 2.0]])), [0.0, 0.1])


def test_an_untrained_model_forecasts_the_es_forecast_in_data_units():
    """The network's last layer starts near zero: a constant series is forecast as itself."""
    model = create_model("es_rnn", (24, 1), 6, preprocessing=SEASONAL, units=4)
    flat = np.full((2, 24, 1), 7.5, "float32")
    np.testing.assert_allclose(model.predict(flat, verbose=0), 7.5, rtol=0.05)
    pred = model.predict(windows()[..., None], verbose=0)
    assert pred.shape == (5, 6) and np.isfinite(pred).all()


def test_training_keeps_the_smoothing_coefficients_in_zero_one():
    model = create_model("es_rnn", (24, 1), 6, preprocessing=SEASONAL, units=4, trend=True)
    model.compile(optimizer=keras.optimizers.Adam(0.5), loss="mse")
    x = windows(16, 30)
    for _ in range(5):
        model.train_on_batch(x[:, :24, None], x[:, 24:])
    k = {n: float(v) for n, v in model.get_layer("smoothing").coefficients().items()}
    assert set(k) == {"alpha", "gamma", "beta", "phi"}
    assert all(0 < k[n] < 1 for n in ("alpha", "gamma", "beta")) and 0.8 <= k["phi"] <= 0.98


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_shape=(None, 1)), "fixed number of steps"),
        (dict(output_kind="classification"), "es_rnn gives one output a window"),
        (dict(units=0), "units must be a positive integer"),
        (dict(preprocessing={"mean": [0.0], "std": [1.0]}), "does its own scaling"),
    ],
)
def test_what_es_rnn_refuses(kwargs, message):
    args = {"input_shape": (12, 1), **kwargs}
    with pytest.raises(ValueError, match=message) as err:
        create_model("es_rnn", args.pop("input_shape"), 3, **args)
    assert "\n" not in str(err.value)


def panel_csv(path: Path) -> Path:
    """Three monthly series of different sizes in long format, one with zeros."""
    lines = ["series,month,value"]
    t = np.arange(60)
    for name, scale in (("small", 1.0), ("large", 1000.0), ("counts", 0.0)):
        values = scale * (20 + t) * (1 + 0.3 * np.sin(2 * np.pi * t / 12))
        if name == "counts":
            values = np.where(t % 3 == 0, 0.0, 1.0 + t % 4)
        lines += [f"{name},{2000 + i // 12}-{i % 12 + 1:02d},{v:.3f}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_a_tiny_run_across_a_files_series_saves_reloads_and_exports(tmp_path):
    data = panel_csv(tmp_path / "p.csv")
    out = tmp_path / "run"
    argv = ["series", "es_rnn", "--data", str(data), "--task-option", "horizon=6"]
    argv += ["--units", "4", "--epochs", "2", "--quiet", "--out", str(out)]
    assert train.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["forecast"]["series"] == 3 and "ets" in metrics["forecast"]["methods"]
    task = get_task("series", data=data, horizon=6)
    model = load_model(out / "model.keras")  # raw windows in, data units out
    pred = model.predict(task.x_test, verbose=0)
    assert pred.shape == (3, 6) and np.isfinite(pred).all()
    assert model.get_layer("smoothing").season == 12
    save_model(model, tmp_path / "again.keras")
    again = keras.models.load_model(tmp_path / "again.keras")
    np.testing.assert_allclose(again.predict(task.x_test, verbose=0), pred, rtol=1e-6)
    formats = ["tflite", "saved_model"]
    if importlib.util.find_spec("tf2onnx") and importlib.util.find_spec("onnxruntime"):
        formats.append("onnx")
    for fmt in formats:
        path = tmp_path / {"tflite": "model.tflite", "saved_model": "sm", "onnx": "m.onnx"}[fmt]
        convert_model(model, fmt, path, task.input_shape)
        got = open_runtime(fmt, path).predict(task.x_test).reshape(pred.shape)
        np.testing.assert_allclose(got, pred, rtol=1e-4, atol=1e-4)
    assert forecast_cli.main([str(out), "--out", str(tmp_path / "fc")]) == 0
    assert (tmp_path / "fc" / "forecast.png").is_file()
