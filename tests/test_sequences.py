"""Generation and multi-step forecasts (`zoo.generate`, `zoo.forecast`) and the `series` task."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from zoo import forecast as forecast_cli
from zoo import generate as generate_cli
from zoo import get_task, train
from zoo.forecasting import forecast, forecaster, horizon_windows, open_run, sine_start_times
from zoo.generation import generate

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["--units", "8", "--depth", "2", "--epochs", "2", "--quiet"]  # depth 2: no XLA compile
TINY += ["--recurrent-dropout", "0"]  # a small split's default; Keras' loop with it is slower
SINE = ["sine", "lstm", "--task-option", "train_size=200", "--task-option", "val_size=20",
        "--task-option", "test_size=30", "--task-option", "steps=10"]  # fmt: skip
WALK = ["random_walk", "gru", "--task-option", "length=600", "--task-option", "steps=10"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny trained runs: sine (next-step), random_walk with horizon 1 and with horizon 3."""
    root = tmp_path_factory.mktemp("runs")
    for name, args in [
        ("sine", SINE),
        ("walk1", WALK),
        ("walk3", [*WALK, "--task-option", "horizon=3"]),
    ]:
        assert train.main([*args, *TINY, "--out", str(root / name)]) == 0
    return root


def snapshot(folder: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


@pytest.mark.slow
def test_generation_feeds_its_predictions_back(runs):
    fc, task, _ = open_run(runs / "sine")
    seed = task.x_test[0, :, 0]
    out = generate(fc.model, seed, 12)
    assert out.shape == (12,) and np.isfinite(out).all()
    window = seed.copy()
    for k in range(12):  # step k is the model's next value after the previously generated window
        expected = fc.model.predict(window[None, :, None], verbose=0)[0, -1, 0]
        np.testing.assert_allclose(out[k], expected, rtol=1e-4, atol=1e-5)
        window = np.append(window[1:], out[k])
    assert generate(fc, task.x_test[0], 5).shape == (5, 1)  # a 2-D seed keeps its channels


@pytest.mark.slow
def test_generate_cli_writes_csv_plot_and_summary(runs, tmp_path, capsys):
    out = tmp_path / "gen"
    assert generate_cli.main([str(runs / "sine"), "--steps", "40", "--out", str(out)]) == 0
    with open(out / "generated.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and set(rows[0]) == {"step", "generated", "true"}
    assert (out / "generated.png").read_bytes()[:8] == PNG
    summary = json.loads((out / "generation.json").read_text())
    assert summary["seed_series"] == "zeros" and 0 <= summary["close_steps"] <= 40
    assert "within 0.5 of the true curve" in capsys.readouterr().out
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.slow  # the module's trained runs: outside the fast subset
def test_generation_from_a_test_window_is_scored_on_its_continuation(runs, tmp_path):
    out = tmp_path / "gen"
    argv = [str(runs / "sine"), "--steps", "15", "--seed-series", "test", "--window", "2"]
    assert generate_cli.main([*argv, "--out", str(out), "--tolerance", "0.3"]) == 0
    summary = json.loads((out / "generation.json").read_text())
    data = np.loadtxt(out / "generated.csv", delimiter=",", skiprows=1)
    err = np.abs(data[:, 1] - data[:, 2])
    assert summary["close_steps"] == (np.argmax(err >= 0.3) if (err >= 0.3).any() else 15)


@pytest.mark.slow  # the module's trained runs: outside the fast subset
def test_sine_windows_are_placed_on_the_curve(runs):
    fc, task, config = open_run(runs / "sine")
    t0 = sine_start_times(task.x_test[..., 0], 0.1, 30.0)
    assert t0.shape == (30,) and (t0 >= 0).all()
    x, future, persistence = horizon_windows(config, task, 4)
    assert future.shape == persistence.shape == (30, 4, 1)
    np.testing.assert_allclose(future[:, 0, 0], task.y_test[:, -1, 0], atol=1e-4)
    np.testing.assert_array_equal(persistence[:, 3], x[:, -1])


@pytest.mark.slow  # the module's trained runs: outside the fast subset
def test_recursive_horizon_one_is_the_one_step_prediction(runs):
    fc, task, _ = open_run(runs / "walk1")
    x = task.x_test
    one_step = fc.model.predict(x, verbose=0)
    np.testing.assert_allclose(forecast(fc, x, 1)[:, 0, 0], one_step[:, 0], rtol=1e-4, atol=1e-5)
    second = forecast(fc, x, 2)[:, 1, 0]  # fed back, re-expressed relative to its own last value
    window = np.concatenate([x[:, 1:, 0], one_step], axis=1)
    again = fc.model.predict((window - window[:, -1:])[..., None], verbose=0)[:, 0]
    np.testing.assert_allclose(second, again + one_step[:, 0], rtol=1e-4, atol=1e-5)
    fc, task, _ = open_run(runs / "walk3")  # direct: its 3 outputs are the 3 steps
    np.testing.assert_allclose(
        forecast(fc, task.x_test, 3)[..., 0], fc.model.predict(task.x_test, verbose=0), atol=1e-5
    )


@pytest.mark.slow  # the module's trained runs: outside the fast subset
def test_forecast_cli_table_and_persistence(runs, capsys):
    argv = [str(runs / "walk1"), str(runs / "walk3"), "--horizon", "5"]
    assert forecast_cli.main(argv) == 0
    table = json.loads((runs / "walk1" / "forecast.json").read_text())
    assert (runs / "walk1" / "forecast_horizon.png").read_bytes()[:8] == PNG
    assert [f["method"] for f in table["forecasts"]] == ["recursive", "recursive, blocks of 3"]
    assert all(len(f["mse"]) == 5 for f in table["forecasts"])
    # persistence: the last value (0 in a window relative to it) held, against the true walk
    rebuilt = get_task("random_walk", length=600, steps=10, horizon=5)
    expected = np.mean(rebuilt.y_test**2, axis=0)
    np.testing.assert_allclose(table["persistence_mse"], expected, rtol=1e-5)
    one = get_task("random_walk", length=600, steps=10, horizon=1)
    assert (
        forecast_cli.main([str(runs / "walk1"), "--horizon", "1", "--out", str(runs / "h1")]) == 0
    )
    h1 = json.loads((runs / "h1" / "forecast.json").read_text())
    assert h1["persistence_mse"][0] == pytest.approx(one.info["persistence_mse_test"], rel=1e-5)
    assert "step  persistence" in capsys.readouterr().out


def write_csv(path: Path, steps: int = 300, header: bool = True) -> Path:
    t = np.arange(steps)
    values = np.c_[np.sin(t / 5), np.cos(t / 7) + 2]
    np.savetxt(path, values, delimiter=",", header="a,b" if header else "", comments="")
    return path


def test_series_task_from_csv_and_npz(tmp_path):
    # since issue 25 each column is a series of a panel (one model across them), tested on its
    # last `horizon` steps, in data units; the model scales each window (zoo.scaling)
    task = get_task("series", data=write_csv(tmp_path / "s.csv"), window=12, horizon=3)
    assert task.input_shape == (12, 1) and task.num_outputs == 3
    assert task.info["series"] == ["a", "b"] and task.info["test_origin"] == [297, 297]
    # targets are the next values: step 1 of window i is the last input of window i+1
    a = task.info["series_train"] == 0
    np.testing.assert_allclose(task.y_train[a][:-1, 0], task.x_train[a][1:, -1, 0], atol=1e-6)
    target = get_task("series", data=write_csv(tmp_path / "n.csv", header=False), target=1)
    assert target.num_outputs == 1 and target.info["series"] == ["1"]
    np.savez(tmp_path / "s.npz", series=np.sin(np.arange(200) / 5))
    one = get_task("series", data=tmp_path / "s.npz", window=8, horizon=2)
    assert one.input_shape == (8, 1) and one.y_test.shape[1] == 2


@pytest.mark.slow
def test_forecast_on_a_series_run(tmp_path):
    data = write_csv(tmp_path / "s.csv")
    args = ["series", "rnn", "--data", str(data), "--task-option", "window=8"]
    args += ["--task-option", "horizon=4"]
    assert train.main([*args, *TINY, "--out", str(tmp_path / "run")]) == 0
    assert forecast_cli.main([str(tmp_path / "run")]) == 0
    table = json.loads((tmp_path / "run" / "forecast.json").read_text())
    assert table["folds"][0]["horizon"] == 4 and "seasonal_naive" in table["folds"][0]["methods"]
    argv = [str(tmp_path / "run"), "--steps", "4", "--seed-series", "test"]
    assert generate_cli.main(argv) == 0


@pytest.mark.parametrize(
    "content, message",
    [
        ("a,b\n1,2\n3,nan\n" + "1,2\n" * 300, "missing values"),
        ("a\n" + "1\n" * 4, "too few"),
        ("a,b\n1,2\n3\n", "line 3 has 1 values"),
        ("a\n1\nx\n", "'x' in value column 'a' is not a number"),
    ],
)
def test_series_refuses_bad_files(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(ValueError, match=message):
        get_task("series", data=tmp_path / "bad.csv")


def test_series_refuses_a_horizon_longer_than_the_series(tmp_path):
    with pytest.raises(ValueError, match="needs at least 101"):
        get_task("series", data=write_csv(tmp_path / "s.csv", steps=100), horizon=100)


def refused(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


@pytest.mark.slow  # the module's trained runs: outside the fast subset
def test_refusals_are_one_line_and_write_nothing(runs, tmp_path, capsys):
    before = snapshot(runs / "walk1")
    err = refused(forecast_cli.main, [str(runs / "walk1"), "--horizon", "1000"], capsys)
    assert "horizon 1000 does not fit" in err
    assert snapshot(runs / "walk1") == before
    assert "no model at" in refused(generate_cli.main, [str(tmp_path / "none")], capsys)
    assert "no model at" in refused(forecast_cli.main, [str(tmp_path / "none")], capsys)
    mixed = [str(runs / "walk1"), str(runs / "sine")]
    assert "runs of one task only" in refused(forecast_cli.main, mixed, capsys)
    classifier = tmp_path / "count_ones"
    options = ["--task-option", "length=6", "--task-option", "train_size=40", "--task-option"]
    argv = ["count_ones", "rnn", *options, "val_size=8", *TINY, "--out", str(classifier)]
    assert train.main(argv) == 0
    before = snapshot(classifier)
    err = refused(generate_cli.main, [str(classifier), "--steps", "5"], capsys)
    assert "generation needs a regression run" in err and "classification" in err
    assert snapshot(classifier) == before


def test_generation_refuses_a_model_that_forecasts_some_channels():
    from zoo import create_model

    model = create_model("rnn", (8, 2), 1, output_kind="regression", units=4)
    with pytest.raises(ValueError, match="forecasts 1 of 2"):
        generate(forecaster(model, channels=1), np.zeros((8, 2)), 3)
