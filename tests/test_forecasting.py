"""Forecasting as forecasters do it: series files with dates, folds, metrics, baselines, scaling."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from zoo import backtest, baselines, get_task, train
from zoo import forecast as forecast_cli
from zoo.tasks.base import DataError
from zoo.tasks.panel import read_panel
from zoo.tasks.series import fold_origins, window_level

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["--units", "4", "--depth", "2", "--epochs", "2", "--quiet", "--recurrent-dropout", "0"]


def monthly(steps: int = 72, start: str = "2001-01", seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Month labels and a positive seasonal series with a trend."""
    import pandas as pd

    months = pd.period_range(start, periods=steps, freq="M").strftime("%Y-%m").tolist()
    t = np.arange(steps)
    rng = np.random.default_rng(seed)
    values = (100 + t) * (1 + 0.2 * np.sin(2 * np.pi * t / 12)) + rng.normal(0, 2, steps)
    return months, np.round(values, 2)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def airline_like(path: Path, steps: int = 72) -> Path:
    months, values = monthly(steps)
    rows = "".join(f"{m},{v}\n" for m, v in zip(months, values, strict=True))
    return write(path, "Date,Passengers\n" + rows)


def long_panel(path: Path) -> Path:
    """Two monthly series of different lengths and starts, in long format."""
    lines = ["unique_id,ds,y"]
    for name, steps, start in (("a", 60, "2001-01"), ("b", 48, "2002-07")):
        months, values = monthly(steps, start, seed=len(name) + steps)
        lines += [f"{name},{m},{v}" for m, v in zip(months, values, strict=True)]
    return write(path, "\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "dates, season, kind",
    [
        (["1959Q1", "1959Q2", "1959Q3", "1959Q4", "1960Q1"], 4, "quarterly"),
        (["2020-01-05", "2020-01-12", "2020-01-19", "2020-01-26"], 52, "weekly"),
        (["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"], 7, "daily"),
        (["2020-01-01 00:00", "2020-01-01 01:00", "2020-01-01 02:00"], 24, "hourly"),
        (["1821", "1822", "1823", "1824"], 1, "yearly"),
        (["1991 Jul", "1991 Aug", "1991 Sep"], 12, "monthly"),
    ],
)
def test_the_frequency_and_season_come_from_the_dates(tmp_path, dates, season, kind):
    column = "year" if dates[0].isdigit() else "when"
    rows = "".join(f"{d},{i + 1}\n" for i, d in enumerate(dates))
    panel = read_panel(write(tmp_path / "s.csv", f"{column},value\n{rows}"))
    assert (panel.season, panel.kind, panel.names) == (season, kind, ["value"])
    assert read_panel(tmp_path / "s.csv", season=3).season == 3  # season= overrides


def test_a_monthly_csv_with_dates_is_tested_on_its_last_horizon(tmp_path):
    task = get_task("series", data=airline_like(tmp_path / "a.csv"), horizon=12)
    info = task.info
    assert (info["season"], info["kind"], info["window"], info["val_steps"]) == (
        12,
        "monthly",
        24,
        12,
    )
    assert info["test_start"] == ["2006-01-01"] and info["test_origin"] == [60]
    assert task.input_shape == (24, 1) and task.num_outputs == 12
    values = read_panel(tmp_path / "a.csv").values[0]
    np.testing.assert_allclose(task.y_test[0], values[60:], rtol=1e-6)  # data units, the end
    np.testing.assert_allclose(task.x_test[0, :, 0], values[36:60], rtol=1e-6)
    default = get_task("series", data=airline_like(tmp_path / "b.csv", steps=96))
    assert default.info["horizon"] == 18  # M4's monthly horizon


def test_long_format_trains_across_series_and_each_window_knows_its_series(tmp_path):
    task = get_task("series", data=long_panel(tmp_path / "p.csv"), horizon=6, window=12)
    info = task.info
    assert info["series"] == ["a", "b"] and len(task.x_test) == 2
    assert info["test_start"] == ["2005-07-01", "2006-01-01"]  # each series' own last 6
    assert set(info["series_train"]) == {0, 1} and len(info["series_train"]) == len(task.x_train)
    panel = read_panel(tmp_path / "p.csv")
    assert [len(v) for v in panel.values] == [60, 48]
    for i in range(len(task.x_train)):  # each window's targets are its series' values there
        s, o = info["series_train"][i], info["origin_train"][i]
        np.testing.assert_allclose(task.y_train[i], panel.values[s][o : o + 6], rtol=1e-6)
    wide = get_task("series", data=airline_like(tmp_path / "w.csv"), horizon=6, target="Passengers")
    assert wide.info["series"] == ["Passengers"]


def test_one_column_a_series_and_plain_numbers_and_npz(tmp_path):
    t = np.arange(80)
    np.savetxt(tmp_path / "n.csv", np.c_[t % 7 + 10, t % 5 + 20], delimiter=",")
    task = get_task("series", data=tmp_path / "n.csv", horizon=3, window=8, season=7)
    assert task.info["series"] == ["0", "1"] and task.info["frequency"] is None
    assert task.info["season"] == 7 and len(task.x_test) == 2
    one = get_task("series", data=tmp_path / "n.csv", horizon=3, window=8, target=1)
    assert one.info["series"] == ["1"] and one.info["horizon"] == 3
    np.savez(tmp_path / "s.npz", series=np.sin(np.arange(200) / 5) + 3)
    npz = get_task("series", data=tmp_path / "s.npz", window=8, horizon=2)
    assert npz.input_shape == (8, 1) and npz.y_test.shape == (1, 2)


def test_season_inputs_carry_each_steps_place_in_the_season(tmp_path):
    task = get_task("series", data=airline_like(tmp_path / "a.csv"), horizon=12, season_inputs=True)
    assert task.input_shape == (24, 2)
    np.testing.assert_array_equal(task.x_test[0, :, 1], np.tile(np.arange(12), 2))  # Jan = 0


@pytest.mark.parametrize(
    "content, message",
    [
        ("Date,v\n2001-01,1\n2001-02,\n2001-03,3\n", "1 missing values"),
        ("Date,v\n2001-01,1\n2001-02,2\n2001-02,3\n2001-03,4\n", "duplicate date 2001-02-01"),
        ("Date,v\n2001-01,1\n2001-03,2\n2001-02,3\n", "not in order"),
        ("Date,v\n2001-01,1\n2001-02,2\n2001-04,3\n2001-05,4\n", "dates skip steps"),
        (
            "Date,v\n2001-01,1\n2001-02,two\n2001-03,3\n",
            "'two' in value column 'v' is not a number",
        ),
        ("Date,v\n2001-01,1\n2001-02,inf\n", "not finite"),
        ("a,b\n1,2\n3\n", "line 3 has 1 values"),
        ("Date,v\n2001-01,1\nlater,2\n", "'later' in time column 'Date' is not a date"),
        (
            "Date,v\n" + "".join(f"20{i // 12 + 10}-{i % 12 + 1:02d},1\n" for i in range(20)),
            "too few",
        ),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, content, message):
    with pytest.raises(DataError, match=message) as info:
        get_task("series", data=write(tmp_path / "bad.csv", content), horizon=2)
    assert "\n" not in str(info.value)


def test_the_fill_option_fills_missing_values_and_skipped_dates(tmp_path):
    gaps = "Date,v\n2001-01,1\n2001-02,\n2001-03,3\n2001-05,5\n2001-06,6\n"
    panel = read_panel(write(tmp_path / "g.csv", gaps), fill="interpolate")
    np.testing.assert_allclose(panel.values[0], [1, 2, 3, 4, 5, 6])
    assert panel.filled == 2
    assert read_panel(tmp_path / "g.csv", fill="ffill").values[0].tolist() == [1, 1, 3, 3, 5, 6]


def test_a_bad_file_stops_zoo_train_before_anything_is_written(tmp_path, capsys):
    bad = write(tmp_path / "bad.csv", "Date,v\n2001-01,1\n2001-03,2\n2001-02,3\n")
    with pytest.raises(SystemExit) as exit_info:
        train.main(["series", "gru", "--data", str(bad), "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not in order" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("folds, val_steps", [(1, None), (3, 12), (2, 7)])
def test_no_target_of_a_fold_lies_in_its_training_or_validation_windows(tmp_path, folds, val_steps):
    data = long_panel(tmp_path / "p.csv")
    lengths = [60, 48]
    horizon, window = 6, 8
    for k in range(folds):
        task = get_task(
            "series", data=data, horizon=horizon, window=window, folds=folds, fold=k,
            val_steps=val_steps,
        )  # fmt: skip
        info = task.info
        for s, n in enumerate(lengths):
            test = set(range(n - horizon * (k + 1), n - horizon * k))
            assert info["test_origin"][s] == min(test) and len(info["history"][s]) == max(test) + 1

            def targets(split, s=s, info=info):
                origins = info[f"origin_{split}"][info[f"series_{split}"] == s]
                return {int(o) + h for o in origins for h in range(horizon)}

            def inputs(split, s=s, info=info):
                origins = info[f"origin_{split}"][info[f"series_{split}"] == s]
                return {int(o) - w for o in origins for w in range(1, window + 1)}

            train_t, val_t, refit_t = targets("train"), targets("val"), targets("refit")
            assert train_t and val_t and not (train_t | val_t) & test
            # --refit: every window whose targets all precede the test, and only those
            assert refit_t == set(range(window, min(test))) and train_t | val_t <= refit_t
            assert min(inputs("refit")) == 0
            assert max(train_t) < min(val_t)  # training before validation, none shared
            assert max(val_t) < min(test)
            assert min(inputs("train")) >= 0  # training inputs are real steps
            assert all(o + horizon <= n - horizon * k for o in info["origin_train"])


def test_fold_origins_by_hand():
    train_o, val_o, test_o = fold_origins(30, window=5, horizon=3, val_steps=4, fold=1)
    assert test_o.tolist() == [24]  # targets 24, 25, 26; 27-29 are fold 0's
    assert val_o.tolist() == [20, 21]  # targets within 20..23
    assert train_o.tolist() == list(range(5, 18))  # targets end by 19


def test_metrics_against_hand_computed_values():
    actual = np.array([[10.0, 20.0], [1.0, 0.0]])
    forecast = np.array([[12.0, 17.0], [1.0, 0.0]])
    history = np.array([1.0, 3.0, 2.0, 6.0])  # season 2: |2 - 1|, |6 - 3| -> scale 2
    assert backtest.mase_scale(history, 2) == pytest.approx(2.0)
    assert backtest.mase_scale(history, 1) == pytest.approx((2 + 1 + 4) / 3)
    assert np.isnan(backtest.mase_scale(np.ones(5), 1))  # a constant history: undefined
    result = backtest.accuracy(actual, forecast, np.array([2.0, np.nan]))
    assert result["per_series"]["mae"] == [2.5, 0.0]
    assert result["per_series"]["rmse"][0] == pytest.approx(np.sqrt((4 + 9) / 2))
    smape = (200 * 2 / 22 + 200 * 3 / 37) / 2
    assert result["per_series"]["smape"] == pytest.approx([smape, 0.0])  # 0/0 counts 0
    assert result["mase"] == pytest.approx(1.25)  # series 2's scale is undefined: left out
    assert result["mae"] == pytest.approx(1.25) and result["smape"] == pytest.approx(smape / 2)
    assert result["per_step"]["mae"] == [1.0, 1.5]
    assert result["per_step"]["rmse"] == pytest.approx([np.sqrt(2), np.sqrt(4.5)])


def test_naive_seasonal_naive_and_drift_by_hand():
    history = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    assert baselines.naive(history, 2).tolist() == [30.0, 30.0]
    assert baselines.seasonal_naive(history, 4, 3).tolist() == [10.0, 20.0, 30.0, 10.0]
    assert baselines.seasonal_naive(history, 2, 12).tolist() == [30.0, 30.0]  # too short
    assert baselines.drift(history, 2).tolist() == pytest.approx([35.8, 41.6])


def test_the_report_sets_the_model_beside_seasonal_naive_and_ets(tmp_path):
    quarters = "".join(f"{2000 + i // 4}Q{i % 4 + 1},{10 + i + 3 * (i % 4)}\n" for i in range(28))
    data = write(tmp_path / "q.csv", "quarter,sales\n" + quarters)
    task = get_task("series", data=data, horizon=4, window=8)
    repeat = task.x_test[:, -4:, 0]  # a forecast: the same quarters a year before
    report, forecasts = backtest.report(task.info, task.y_test, repeat)
    methods = report["methods"]
    assert list(methods) == ["model", "naive", "seasonal_naive", "drift", "ets"]
    assert methods["model"]["mase"] == pytest.approx(methods["seasonal_naive"]["mase"])
    assert report["ets_forms"][0].startswith("trend=") and "season=" in report["ets_forms"][0]
    assert np.isfinite(forecasts["ets"]).all() and len(methods["ets"]["per_step"]["mase"]) == 4
    assert "seasonal-naive" in backtest.headline(report)


def test_without_statsmodels_the_report_says_so_and_has_no_ets(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "statsmodels", None)  # imports of it fail, as if absent
    task = get_task("series", data=airline_like(tmp_path / "a.csv", steps=50), horizon=3)
    report, _ = backtest.report(task.info, task.y_test, task.y_test)
    assert "ets" not in report["methods"] and report["ets"] == baselines.ETS_MISSING
    assert report["methods"]["model"]["mae"] == 0.0


@pytest.mark.parametrize(
    "level, log", [("season", False), ("last", True), ("window", False), ("global", True)]
)
def test_the_scaling_layers_match_their_numpy_twin_and_invert(level, log):
    from zoo import scaling
    from zoo.tasks import series

    assert scaling.LEVEL_FLOOR_SHARE == series.LEVEL_FLOOR_SHARE and scaling.LEVELS == series.LEVELS
    rng = np.random.default_rng(1)
    x = rng.uniform(0.5, 50, size=(5, 16, 1)).astype(np.float32)
    x[0, -4:, 0] = 1e-6  # a season of near zeros: the floor share holds the level up
    spec = dict(level=level, season=4, log=log, floor=0.01, mean=1.0, std=2.0)
    z, lev = scaling.WindowScaling(**spec)(x)
    expected = window_level(x[..., 0], spec)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(lev)[:, 0], expected, rtol=1e-5)
    common = {k: spec[k] for k in ("level", "log", "mean", "std")}
    back = scaling.WindowUnscaling(**common)([z[..., 0], lev])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(back), x[..., 0], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_any_zoo_model_wraps_in_the_scaling_saves_and_exports(tmp_path):
    from zoo import create_model
    from zoo.exporting import convert_model, open_runtime
    from zoo.files import save_model
    from zoo.runs import load_model

    task = get_task("series", data=airline_like(tmp_path / "a.csv"), horizon=6, season_inputs=True)
    kwargs = dict(output_kind="regression", preprocessing=task.preprocessing, units=4)
    model = create_model("gru", task.input_shape, task.num_outputs, **kwargs)
    assert model.name == "gru" and model.get_layer("window_scaling").season == 12
    out = model.get_layer("network").get_layer("output")
    out.kernel.assign(np.zeros(out.kernel.shape))  # the network says 0: every forecast = level
    out.bias.assign(np.zeros(out.bias.shape))
    pred = model.predict(task.x_test, verbose=0)
    level = window_level(task.x_test[..., 0], task.preprocessing["scaling"])
    np.testing.assert_allclose(pred, np.repeat(level[:, None], 6, axis=1), rtol=1e-5)
    save_model(model, tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(task.x_test, verbose=0), pred, rtol=1e-6)
    convert_model(again, "saved_model", tmp_path / "sm", task.input_shape)
    runtime = open_runtime("saved_model", tmp_path / "sm")
    np.testing.assert_allclose(runtime.predict(task.x_test).reshape(pred.shape), pred, rtol=1e-5)


def quarterly_panel(path: Path) -> Path:
    """Two short quarterly series in long format (cheap ETS fits)."""
    lines = ["series,quarter,sales"]
    for name, steps, first in (("north", 36, 2000), ("south", 30, 2001)):
        lines += [
            f"{name},{first + i // 4}Q{i % 4 + 1},{20 + i + 4 * (i % 4) + (i * 7) % 3}"
            for i in range(steps)
        ]
    return write(path, "\n".join(lines) + "\n")


@pytest.mark.slow
def test_every_zoo_model_forecasts_in_data_units_on_the_series_task(tmp_path):
    from zoo import create_model, list_models

    task = get_task("series", data=airline_like(tmp_path / "a.csv"), horizon=3, log=True)
    for name in list_models():
        model = create_model(
            name, task.input_shape, 3, output_kind="regression", preprocessing=task.preprocessing
        )
        pred = model.predict(task.x_test, verbose=0)
        assert pred.shape == (1, 3) and np.isfinite(pred).all(), name
        assert 0.2 < pred.mean() / task.x_test[..., 0].mean() < 5, name  # data units, not scaled


@pytest.fixture(scope="module")
def backtest_run(tmp_path_factory):
    """A tiny two-fold backtest of a panel (zoo.train series ... folds=2)."""
    root = tmp_path_factory.mktemp("bt")
    data = quarterly_panel(root / "p.csv")
    options = ["horizon=4", "window=8", "folds=2"]
    argv = ["series", "gru", "--data", str(data), *TINY, "--out", str(root / "run")]
    argv += [a for o in options for a in ("--task-option", o)]
    assert train.main(argv) == 0
    return root / "run"


@pytest.mark.slow
def test_folds_train_a_run_each_and_report_each_fold_and_the_mean(backtest_run, capsys):
    metrics = json.loads((backtest_run / "metrics.json").read_text())
    assert [f["fold"] for f in metrics["folds"]] == [0, 1]
    mean = metrics["forecast"]["methods"]
    assert set(mean) == {"model", "naive", "seasonal_naive", "drift", "ets"}
    fold_mase = [f["methods"]["model"]["mase"] for f in metrics["folds"]]
    assert mean["model"]["mase"] == pytest.approx(np.mean(fold_mase))
    for k in (0, 1):
        fold = backtest_run / f"fold-{k}"
        config = json.loads((fold / "config.json").read_text())["hyperparameters"]
        assert config["task_options"]["fold"] == k and (fold / "forecast.png").is_file()
        assert json.loads((fold / "metrics.json").read_text())["forecast"]["fold"] == k


@pytest.mark.slow
def test_zoo_forecast_plots_and_prints_the_backtest(backtest_run, tmp_path, capsys):
    out = tmp_path / "fc"
    assert forecast_cli.main([str(backtest_run), "--out", str(out)]) == 0
    assert (out / "forecast.png").read_bytes()[:8] == PNG
    table = json.loads((out / "forecast.json").read_text())
    assert len(table["folds"]) == 2 and table["models"] == ["gru"]
    assert set(table["folds"][0]["forecasts"]) == {"gru", "naive", "seasonal_naive", "drift", "ets"}
    text = capsys.readouterr().out
    assert "mean over 2 folds" in text and "seasonal_naive" in text
    with pytest.raises(SystemExit):  # another horizon would test on training data
        forecast_cli.main([str(backtest_run / "fold-0"), "--horizon", "3", "--out", str(out)])
    assert "forecasts the horizon it was trained for" in capsys.readouterr().err


@pytest.mark.slow
def test_refit_best_picks_epochs_on_validation_then_refits_on_all_history_and_resumes(tmp_path):
    """--refit-best: select/ is a run with early stopping; the run's model then trains for its
    best epoch count on every window before the test. Killed after select/ ended, the
    resumed run does not train select/ again and ends as the uninterrupted one."""
    data = quarterly_panel(tmp_path / "p.csv")
    argv = ["series", "gru", "--data", str(data), *TINY, "--refit-best"]
    argv += ["--task-option", "horizon=4", "--task-option", "window=8", "--epochs", "3"]
    run = tmp_path / "run"
    assert train.main([*argv, "--out", str(run)]) == 0
    selected = json.loads((run / "select" / "metrics.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    best = selected["best_epoch"]
    assert metrics["selection"]["best_epoch"] == best and metrics["epochs_run"] == best
    config = json.loads((run / "config.json").read_text())["hyperparameters"]
    assert config["refit"] and config["refit_best"] and config["epochs"] == best
    task = get_task("series", data=data, horizon=4, window=8)
    assert len(task.info["x_refit"]) > len(task.x_train) + len(task.x_val)  # straddling ones too

    again = tmp_path / "again"  # as killed after select/ ended, before the refit's first epoch
    shutil.copytree(run / "select", again / "select")
    first = json.loads((run / "select" / "config.json").read_text())
    first["hyperparameters"] |= {"refit_best": True, "out": str(again)}
    (again / "config.json").write_text(json.dumps(first))
    written = (again / "select" / "metrics.json").stat().st_mtime_ns
    assert train.main(["--resume", str(again), "--quiet"]) == 0
    assert (again / "select" / "metrics.json").stat().st_mtime_ns == written
    resumed = json.loads((again / "metrics.json").read_text())
    assert resumed["forecast"]["methods"]["model"] == metrics["forecast"]["methods"]["model"]
