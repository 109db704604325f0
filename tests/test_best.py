"""What a user runs first on new data: `tuning.best`, replays that train as the trial did, the
bad inputs of small data sets, and the peers' benchmark.

Real searches and real run folders on tiny npz files; no accuracy thresholds (the replay test
measures its own tolerance: the spread of the replay's figure over seeds).
"""

from __future__ import annotations

import json
from pathlib import Path

import keras_tuner as kt
import numpy as np
import pytest

from tuning import best as best_cli
from tuning import search as search_cli
from tuning.tuners import TUNERS, HalvingOracle, rung_schedule
from zoo import evaluate as evaluate_cli
from zoo import train as train_cli

pytestmark = pytest.mark.slow  # end-to-end processes: outside the fast subset

FAST_TRAINING = ["--fix", "units=8", "--fix", "recurrent_dropout=0", "--fix", "depth=1"]


def tiny_npz(tmp_path: Path, windows: int = 40, steps: int = 12, classes: int = 2) -> Path:
    """`windows` training windows (steps x 2 channels) and 24 test ones; the class is the sign
    of channel 0's mean (one class: all 0)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(windows + 24, steps, 2)).astype("float32")
    y = (x[:, :, 0].mean(axis=1) > 0).astype("int64") if classes > 1 else np.zeros(len(x), int)
    path = tmp_path / f"tiny-{windows}x{steps}-{classes}.npz"
    np.savez(path, X_train=x[:windows], y_train=y[:windows], X_test=x[windows:], y_test=y[windows:])
    return path


# ---------------------------------------------------------------- the halving oracle


def test_rungs_rise_by_the_factor_up_to_the_epochs():
    assert rung_schedule(600, 3, 3) == [67, 200, 600]
    assert rung_schedule(3, 3, 3) == [1, 3]  # no rung of 0 epochs, none twice
    assert rung_schedule(1, 3, 3) == [1]


def halving_oracle(tmp_path, starts=()) -> HalvingOracle:
    oracle = TUNERS.get("halving")(kt.Objective("val_accuracy", "max"), 50, 9, seed=1)[1]
    oracle.starts = list(starts)
    oracle._set_project_dir(str(tmp_path), "halving")
    hp = kt.HyperParameters()
    hp.Choice("model", ["gru", "lstm"], default="lstm")
    hp.Choice("units", [8, 16, 32], default=16)
    oracle.update_space(hp)
    oracle.verbose, oracle.progress = 0, False
    return oracle


def finish(oracle, tuner_id: str, score: float, seconds: float = 1.0):
    """Run the trial `tuner_id` is given to its end with `score` (and its costs)."""
    trial = oracle.create_trial(tuner_id)
    metrics = {"val_accuracy": score, "seconds": seconds, "epochs_run": 1, "executions": 1}
    oracle.update_trial(trial.trial_id, metrics)
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    return trial


def test_starts_come_first_with_defaults_then_the_best_third_goes_up(tmp_path):
    oracle = halving_oracle(tmp_path, starts=[{"model": "gru"}, {"model": "lstm", "units": 99}])
    first = finish(oracle, "t", 0.5)
    # the starts, their other values the defaults (not drawn at random); units=99 is not in
    # the space: the default instead
    assert {k: v for k, v in first.hyperparameters.values.items() if "/" not in k} == {
        "model": "gru",
        "units": 16,
    }
    assert first.hyperparameters.values["tuner/epochs"] == 1  # rung 1 of [1, 3, 9]
    second = finish(oracle, "t", 0.9)
    assert second.hyperparameters.values["units"] == 16
    third = finish(oracle, "t", 0.7)  # three finished at rung 1: the best one goes up
    assert third.hyperparameters.values["tuner/rung"] == 0
    promoted = oracle.create_trial("t")
    values = promoted.hyperparameters.values
    assert values["tuner/rung"] == 1 and values["tuner/epochs"] == 3
    assert values["tuner/parent"] == "01"  # the 0.9 trial


def test_no_trial_starts_that_the_time_left_cannot_hold(tmp_path):
    oracle = halving_oracle(tmp_path)
    oracle.set_time_budget(100.0)
    finish(oracle, "t", 0.5, seconds=60.0)  # 60 s an epoch: rung 1 (1 epoch) fits once
    assert not oracle.out_of_time()
    oracle.set_time_budget(50.0)
    assert oracle.out_of_time()
    assert oracle.create_trial("t").status == "STOPPED" and oracle.budget_spent


def test_time_capped_rungs_give_every_model_the_same_time(tmp_path):
    oracle = halving_oracle(tmp_path)
    oracle.set_rung_seconds(2.0)
    assert oracle.rung_seconds == [2.0, 6.0, 18.0]
    oracle.set_time_budget(100.0)
    assert oracle.expected_seconds({}, 0) == 2.5  # the cap and a quarter, before any trial
    trial = oracle.create_trial("t")
    values = trial.hyperparameters.values
    assert values["tuner/seconds"] == 2.0 and values["tuner/epochs"] == 9  # the cap on both


# ---------------------------------------------------------------- the command


def test_best_command_leaves_a_run_folder_with_the_retrained_winner(tmp_path, capsys):
    data = tiny_npz(tmp_path)
    out = tmp_path / "run"
    args = ["npz", "--data", str(data), "--time-budget", "40s", "--epochs", "3"]
    args += ["--models", "gru,lstm_fcn", "--max-trials", "4", "--dir", str(tmp_path / "s")]
    args += ["--fix", "filters=8", "--fix", "units=8", "--fix", "recurrent_dropout=0"]
    assert best_cli.main([*args, "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "[best] trial 0" in printed and f"Run folder: {out}" in printed
    for name in ("config.json", "model.keras", "metrics.json", "history.csv", "best_hparams.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "search_summary.json").read_text())
    rows = (tmp_path / "s" / "npz-best" / "trials.csv").read_text().splitlines()
    assert 2 <= len(rows) <= 5 and summary["folds"] == 3
    config = json.loads((out / "config.json").read_text())["hyperparameters"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["samples"] == 24
    if config.get("refit"):  # all the pooled windows, for the epochs the folds kept
        assert config["epochs"] == max(1, round(summary["best_epoch"]))
        assert metrics["epochs_run"] == config["epochs"]
    else:  # its trial was cut by its rung's time (a loaded machine): early stopping instead
        assert config.get("early_stopping", True) and config["epochs"] == 3
    assert evaluate_cli.main([str(out)]) == 0  # zoo.evaluate takes the folder
    assert f"{metrics['accuracy']:.4f}" in capsys.readouterr().out


def test_a_replay_trains_as_the_trial_did(tmp_path, capsys):
    """The search's best trial against `zoo.train --hparams best_hparams.json` over seeds: the
    replay's config holds the trial's epochs, schedule and batch, and the trial's test figure
    lies within the replays' spread over seeds."""
    data = tiny_npz(tmp_path, windows=60)
    args = ["npz", "--data", str(data), "--cv", "1", "--max-trials", "1", "--epochs", "12"]
    args += ["--models", "gru", *FAST_TRAINING, "--patience", "4", "--fix", "batch_size=16"]
    args += ["--fix", "learning_rate=0.01", "--fix", "optimizer=adam", "--quiet"]
    assert search_cli.main([*args, "--dir", str(tmp_path)]) == 0
    project = tmp_path / "npz-random"
    trial = json.loads((project / "best_metrics.json").read_text())
    row = search_cli_rows(project)[0]
    hparams = json.loads((project / "best_hparams.json").read_text())
    assert hparams["epochs"] == round(float(row["best_epoch"])) <= 12  # early stopping's epoch
    assert hparams["early_stopping"] is False and hparams["batch_size"] == 16
    assert hparams["lr_schedule"] == "constant"
    figures = []
    for seed in range(3):
        out = tmp_path / f"replay-{seed}"
        argv = ["npz", "--hparams", str(project / "best_hparams.json"), "--seed", str(seed)]
        assert train_cli.main([*argv, "--out", str(out), "--quiet"]) == 0
        config = json.loads((out / "config.json").read_text())["hyperparameters"]
        assert {k: config[k] for k in ("epochs", "batch_size", "lr_schedule")} == {
            k: hparams[k] for k in ("epochs", "batch_size", "lr_schedule")
        }
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["epochs_run"] == hparams["epochs"]  # no early stopping in the replay
        figures.append(metrics["accuracy"])
    spread = max(figures) - min(figures)
    assert abs(trial["accuracy"] - np.mean(figures)) <= spread or trial["accuracy"] in figures


def search_cli_rows(project: Path) -> list[dict]:
    import csv

    with open(project / "trials.csv") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "command, extra, message",
    [
        ("train", ["lstm_fcn", "--kernel-size", "8"], "at least kernel_size steps long"),
        ("best", ["--models", "lstm_fcn"], "need windows of at least 3 steps"),
        ("train", ["lstm"], "hold one class"),
        ("best", ["--cv", "5"], "fewer than the folds"),
        ("search", ["--cv", "5"], "fewer than the folds"),
    ],
)
def test_bad_small_data_is_one_line_and_leaves_nothing(
    tmp_path, monkeypatch, capsys, command, extra, message
):
    if "one class" in message:
        data = tiny_npz(tmp_path, classes=1)
    elif "folds" in message:
        data = tiny_npz(tmp_path, windows=4)
    else:
        data = tiny_npz(tmp_path, steps=2)  # shorter than every kernel
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    argv = ["npz", "--data", str(data)]
    if command == "train":
        main, argv = train_cli.main, ["npz", extra[0], "--data", str(data), *extra[1:]]
    elif command == "best":
        main, argv = best_cli.main, [*argv, "--time-budget", "1m", *extra]
    else:
        main, argv = search_cli.main, [*argv, *extra]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and "Traceback" not in err
    assert list(folder.iterdir()) == []  # nothing written


# ---------------------------------------------------------------- the peers' benchmark


def test_benchmark_peers_runs_minirocket_on_a_tiny_subset_and_resumes(tmp_path, capsys):
    pytest.importorskip("aeon")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import benchmark_peers

    args = ["--out", str(tmp_path), "--sets", "ItalyPowerDemand", "--methods", "minirocket"]
    assert benchmark_peers.main([*args, "--seeds", "0"]) == 0
    first = capsys.readouterr().out
    assert "[peers] 1/1 ItalyPowerDemand minirocket seed 0: accuracy" in first
    assert benchmark_peers.main([*args, "--seeds", "0", "--har", str(tmp_path / "none")]) == 0
    assert "kept" in capsys.readouterr().out  # the finished cell is reused
    table = (tmp_path / "peers.md").read_text()
    assert "| ItalyPowerDemand | minirocket | 1 |" in table
    assert (tmp_path / "peers.csv").read_text().startswith("set,method,seeds,accuracy_mean")
    with pytest.raises(ValueError, match="held back"):
        benchmark_peers.aeon_npz("BasicMotions", tmp_path)


def test_a_winner_its_rung_time_cut_short_retrains_with_early_stopping():
    """A time-capped trial still improving at its cap says nothing of the epochs its model
    needs: the final training then stops early on validation instead of replaying its count."""

    def trial(capped: bool, best: int, ran: int):
        hp = kt.HyperParameters()
        hp.Fixed("tuner/epochs", 30)
        if capped:
            hp.Fixed("tuner/seconds", 6.8)
        made = kt.engine.trial.Trial(hp, trial_id="t")
        made.metrics.update("best_epoch", best)
        made.metrics.update("epochs_run", ran)
        return made

    assert best_cli.cut_by_its_cap(trial(True, best=9, ran=10), patience=5)
    assert not best_cli.cut_by_its_cap(
        trial(True, best=2, ran=20), patience=5
    )  # early stopping ended it
    assert not best_cli.cut_by_its_cap(
        trial(False, best=9, ran=10), patience=5
    )  # an epoch-capped rung


def test_a_rungs_time_cap_counts_training_steps_not_the_first_one_that_traces():
    import keras

    from tuning.tuners import TimeCap

    x, y = np.zeros((40, 3, 2), "float32"), np.zeros(40, "int64")
    model = keras.Sequential([keras.Input((3, 2)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cap = TimeCap(0.0)  # any time at all: stop after the first step that counts
    history = model.fit(x, y, batch_size=4, epochs=5, callbacks=[cap], verbose=0)
    assert cap.steps == 2 and 0 < cap.spent and len(history.history["loss"]) == 1
    roomy = TimeCap(3600.0)
    model.fit(x, y, batch_size=4, epochs=2, callbacks=[roomy], verbose=0)
    assert roomy.steps == 20 and roomy.spent < 3600
