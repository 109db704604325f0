"""Tuning: the hypermodel, every tuner, resume, replay, failed trials and distributed search.

Real keras-tuner searches on tiny tasks, no mocks. Searches run in this process where they can
(importing TensorFlow again costs seconds); the interrupted search and the distributed ones run
as subprocesses, as they would for a user.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sys
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pytest

from tuning import distributed, report
from tuning import search as search_cli
from tuning.hypermodel import ZooHyperModel, training_config
from tuning.search import parse_fixed
from tuning.tuners import TUNERS
from zoo import get_task, list_models, looks_ahead
from zoo import train as train_cli
from zoo.models import model_hyperparameters

ROOT = Path(__file__).resolve().parents[1]
TINY = "--task-option length=6 --task-option train_size=40 --task-option val_size=8".split()
FAST = "--epochs 1 --cv 1 --fix units=8 --fix depth=1 --fix recurrent_dropout=0 --quiet".split()
# sgd at learning rate 1e9 takes the loss to inf on this regression task
DIVERGING = (
    "random_walk --task-option length=300 --task-option steps=5 --tuner grid --models lstm "
    "--fix optimizer=sgd --fix batch_size=32 --fix dropout=0 --fix l2=0"
).split() + FAST
PLOTS = [name for _, _, name in report.PLOTS]
# what `build` declares for every model (batch_size too: the compiled schedule depends on it)
COMMON = set(
    "model depth units dropout recurrent_dropout l2 optimizer learning_rate batch_size".split()
)


@pytest.fixture(autouse=True)
def _local(monkeypatch):
    """No keras-tuner distributed variables leak in: in-process searches run alone."""
    for name in (distributed.IP, distributed.PORT, distributed.TUNER_ID):
        monkeypatch.setenv(name, "")  # recorded, so whatever a test sets is undone after it
        monkeypatch.delenv(name)


def tiny_count_ones():
    return get_task("count_ones", length=6, train_size=40, val_size=8)


def tiny_series(folder: Path):
    """A monthly series of 5 years, forecast 6 months ahead."""
    rows = [f"{2000 + i // 12}-{i % 12 + 1:02d},{20 + i + 5 * (i % 12 == 6)}" for i in range(60)]
    (folder / "s.csv").write_text("month,value\n" + "\n".join(rows) + "\n")
    return get_task("series", data=folder / "s.csv", horizon=6)


def test_es_rnn_is_searched_apart_from_models_on_the_tasks_loss(tmp_path):
    task = tiny_series(tmp_path)
    assert "es_rnn" not in ZooHyperModel(task).models  # the default search: the task's loss
    assert ZooHyperModel(task, models="es_rnn").models == ["es_rnn"]
    with pytest.raises(ValueError, match="search them apart") as err:
        ZooHyperModel(task, models="lstm,es_rnn")
    assert "\n" not in str(err.value)


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def oracle_state(project: Path) -> dict:
    return json.loads((project / "oracle.json").read_text())


def poll_oracle(project: Path) -> dict:
    """oracle.json of a running search, or {} while it is missing or half-written."""
    try:
        return oracle_state(project)
    except (OSError, json.JSONDecodeError):
        return {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tuning.search", *args]


def assert_no_trial_ran_twice(project: Path, trials: int) -> dict:
    """Every trial completed and its end was recorded once; returns oracle.json's state."""
    rows = read_csv(project / "trials.csv")
    assert [r["status"] for r in rows] == ["COMPLETED"] * trials
    state = oracle_state(project)
    assert len(state["end_order"]) == len(set(state["end_order"])) == trials
    return state


# ---------------------------------------------------------------- the hypermodel


@pytest.mark.parametrize("name", list_models())
def test_hypermodel_builds_each_registered_model(name, tmp_path):
    fixed = {"model": [name], "units": [8]}
    fixed |= {k: [4] for k in ("filters",) if k in model_hyperparameters(name)}  # fast
    task = tiny_count_ones() if name != "es_rnn" else tiny_series(tmp_path)  # it forecasts
    hypermodel = ZooHyperModel(task, fixed=fixed)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    assert model.name == name and hp.values["model"] == name
    assert model.output_shape == (None, task.num_outputs) and model.optimizer is not None
    specific = {"conv_lstm": {"conv_layers", "filters", "kernel_size"}}
    specific["attention_lstm"] = {"attention_size"}
    specific["es_rnn"] = {"trend"}
    fcn = {"filters", "kernel_size", "squeeze_excite", "shuffle"}
    specific |= {"gru_fcn": fcn, "lstm_fcn": fcn | {"attention"}, "mlstm_fcn": fcn | {"attention"}}
    assert set(hp.values) - COMMON == specific.get(name, set())
    assert set(hp.values) - set(model_hyperparameters(name)) <= COMMON


def test_bidirectional_switch_builds_the_twin_and_replays_as_it():
    hypermodel = ZooHyperModel(tiny_count_ones(), models="lstm,bilstm,gru")
    assert hypermodel.models == ["gru", "lstm"] and hypermodel.twins == {"lstm": "bilstm"}
    hp = kt.HyperParameters()
    hp.values |= {"model": "lstm", "bidirectional": True, "units": 8}
    assert hypermodel.build(hp).name == "bilstm"
    config = training_config(hp.values | {"batch_size": 32}, epochs=3, patience=2, seed=0)
    assert config["model"] == "bilstm" and "bidirectional" not in config
    assert config["units"] == 8 and config["epochs"] == 3


def test_fix_and_models_narrow_the_space():
    fixed = parse_fixed(["optimizer=adam", "units=16,32", "l2=0,1e-4", "bidirectional=false"])
    assert fixed["l2"] == [0.0, 1e-4] and fixed["bidirectional"] == [False]
    hypermodel = ZooHyperModel(tiny_count_ones(), models="*lstm", fixed=fixed)
    hp = kt.HyperParameters()
    hypermodel.build(hp)
    space = {p.name: p for p in hp.space}
    assert type(space["optimizer"]).__name__ == "Fixed"
    assert list(space["units"].values) == [16, 32] and list(space["l2"].values) == [0.0, 1e-4]
    # bilstm is lstm + bidirectional; stacked_lstm and deep_lstm are lstm with depth 2 and 4
    models = ["attention_lstm", "conv_lstm", "lstm", "peephole_lstm", "res_bilstm"]
    assert list(space["model"].values) == models
    assert [c.values for c in space["kernel_size"].conditions] == [["conv_lstm"]]
    assert [c.values for c in space["bidirectional"].conditions] == [["lstm"]]
    narrow = ZooHyperModel(tiny_count_ones(), models="lstm,gru")
    hp = kt.HyperParameters()
    narrow.declare_hyperparameters(hp)
    narrow.build(hp)
    # no conditional or bidirectional entries for models not in play
    assert {p.name for p in hp.space} == COMMON | {"batch_size"}


def test_the_rnn_fcn_hyperparameters_are_scoped_to_their_models_with_no_duplicate_points():
    hypermodel = ZooHyperModel(tiny_count_ones(), models="lstm,gru,conv_lstm,*_fcn")
    # mlstm_fcn is lstm_fcn with squeeze_excite: one point
    assert hypermodel.models == ["conv_lstm", "gru", "gru_fcn", "lstm", "lstm_fcn"]
    hp = kt.HyperParameters()
    hypermodel.build(hp)
    names = [p.name for p in hp.space]
    assert len(names) == len(set(names))  # one declaration a name (see MODEL_SPACE)
    scopes = {p.name: [c.values for c in p.conditions] for p in hp.space}
    assert scopes["units"] == scopes["dropout"] == []  # every model's
    assert scopes["depth"] == [["conv_lstm", "gru", "lstm"]]
    assert scopes["filters"] == scopes["kernel_size"] == [["conv_lstm", "gru_fcn", "lstm_fcn"]]
    assert scopes["squeeze_excite"] == scopes["shuffle"] == [["gru_fcn", "lstm_fcn"]]
    assert scopes["attention"] == [["lstm_fcn"]]
    space = {p.name: p for p in hp.space}
    assert list(space["kernel_size"].values) == [3, 5]  # windows of 6 steps
    assert 8 in space["units"].values and 0.8 in space["dropout"].values  # the papers'
    hp = kt.HyperParameters()
    hp.values |= {"model": "lstm_fcn", "squeeze_excite": True, "attention": True, "filters": 4}
    assert hypermodel.build(hp).get_layer("squeeze_excite_1") is not None
    config = training_config(hp.values | {"batch_size": 8}, epochs=3, patience=2, seed=0)
    assert config["model"] == "lstm_fcn" and config["attention"] is True and "depth" not in config
    assert set(config) - {"model", "epochs", "patience", "seed", "optimizer", "learning_rate",
                          "batch_size"} == set(model_hyperparameters("lstm_fcn"))  # fmt: skip


def test_a_padded_task_searches_the_rnn_fcn_models_without_the_shuffle(tmp_path):
    x = np.random.default_rng(0).normal(size=(24, 8, 2)).astype("float32")
    lengths = np.arange(24) % 5 + 4  # 4 to 8 real steps, zero padding after them
    y = np.arange(24) % 2
    np.savez(tmp_path / "var.npz", X_train=x, X_train_lengths=lengths, y_train=y,
             X_test=x[:4], X_test_lengths=lengths[:4], y_test=y[:4])  # fmt: skip
    task = get_task("npz", data=tmp_path / "var.npz")
    assert task.preprocessing["mask"]
    hypermodel = ZooHyperModel(task, models="gru_fcn", fixed={"units": [4], "filters": [4]})
    hp = kt.HyperParameters()
    hypermodel.build(hp)
    assert hp.values["shuffle"] is False


def test_models_that_cannot_serve_the_task_are_left_out_with_the_reason():
    short = get_task("count_ones", length=2, train_size=3, val_size=1)
    assert ZooHyperModel(short, models="lstm,lstm_fcn").models == ["lstm"]
    with pytest.raises(ValueError, match="need windows of at least 3 steps") as err:
        ZooHyperModel(short, models="*_fcn")
    assert "\n" not in str(err.value)
    echo = get_task("echo", series_length=600)  # a label a step
    with pytest.raises(ValueError, match="give one output a window, and task 'echo' wants"):
        ZooHyperModel(echo, models="*_fcn")


def test_causal_task_leaves_out_models_that_look_ahead():
    sine = get_task("sine", train_size=20, val_size=5, test_size=5)
    models = ZooHyperModel(sine).models
    assert models and not any(looks_ahead(m) for m in models)
    assert "lstm" in models and "bilstm" not in models


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fix", "unit=8"], "Unknown hyperparameter 'unit'. Did you mean: 'units'?"),
        (["--models", "nosuch*"], "no model matches --models 'nosuch*'"),
        (["--fix", "optimizer=fast"], "--fix optimizer must be one of adam"),
        (["--models", "lstm", "--fix", "kernel_size=3"], "none of the candidate models (lstm)"),
        (["--fix", "model=bilstm", "--models", "lstm"], "not a candidate"),
        (["--fix", "units=0"], "units must be a positive integer. Received: units=0"),
        (["--fix", "units=abc"], "units must be a positive integer. Received: units='abc'"),
        (["--task-option", "size=3"], "--task-option size: task 'count_ones' takes length,"),
        (["--task-option", "size"], "--task-option takes KEY=VALUE. Received: 'size'"),
        (["--worker-id", "tuner0"], "--worker-id needs --chief HOST:PORT"),
        (["--chief", "localhost"], "--chief must be HOST:PORT"),
    ],
)
def test_bad_settings_are_one_line_errors(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        search_cli.main(["count_ones", *TINY, *args, "--dir", str(tmp_path), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())  # no project folder left (keras-tuner makes it early)


def test_causal_task_refuses_a_bidirectional_glob(tmp_path, capsys):
    with pytest.raises(SystemExit):
        search_cli.main(["sine", "--models", "bi*", "--dir", str(tmp_path)])
    assert "look ahead, and task 'sine' is causal" in capsys.readouterr().err


# ---------------------------------------------------------------- searches


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """finished(tuner): the project folder of a 2-trial search on a tiny count_ones task (run
    once a tuner)."""
    projects = {}

    def run(tuner: str) -> Path:
        if tuner not in projects:
            root = tmp_path_factory.mktemp(tuner)
            args = ["count_ones", *TINY, "--tuner", tuner, "--max-trials", "2"]
            args += ["--models", "lstm,gru", *FAST, "--dir", str(root)]
            assert search_cli.main(args) == 0
            projects[tuner] = root / f"count_ones-{tuner}"
        return projects[tuner]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("tuner", TUNERS.list())
def test_every_tuner_runs_a_search(tuner, finished):
    project = finished(tuner)
    rows = read_csv(project / "trials.csv")
    assert 1 <= len(rows) <= 2 and {r["status"] for r in rows} == {"COMPLETED"}
    for row in rows:
        assert row["model"] in ("lstm", "gru") and row["units"] == "8"
        assert float(row["val_accuracy"]) >= 0 and float(row["seconds"]) > 0
        assert float(row["epochs_run"]) == 1 and float(row["rss_mb"]) > 0
    metrics = json.loads((project / "best_metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and metrics["samples"] == 64 - 40  # the test split
    assert metrics["val_accuracy"] == max(float(r["val_accuracy"]) for r in rows)
    # one rule for "best": the best objective, then the earliest trial, as the report ranks
    objective = "val_accuracy"
    ranked = sorted(rows, key=lambda r: (-float(r[objective]), int(r["trial_id"])))
    assert metrics["trial_id"] == ranked[0]["trial_id"]
    for name in PLOTS:
        assert (project / name).read_bytes()[:4] == b"\x89PNG", name


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_best_hparams_replay_with_zoo_train(finished, tmp_path):
    project = finished("random")
    best = json.loads((project / "best_hparams.json").read_text())
    assert best["task"] == "count_ones" and best["epochs"] == 1 and best["units"] == 8
    assert best["task_options"] == {"length": 6, "train_size": 40, "val_size": 8}
    assert "bidirectional" not in best and best["model"] in ("lstm", "gru")
    hparams = str(project / "best_hparams.json")
    out = tmp_path / "replay"
    assert train_cli.main(["count_ones", "--hparams", hparams, "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["samples"] == 64 - 40  # same task
    tuned = keras.models.load_model(project / "best_model.keras")
    replayed = keras.models.load_model(out / "model.keras")
    assert [type(layer) for layer in replayed.layers] == [type(layer) for layer in tuned.layers]
    assert replayed.count_params() == tuned.count_params()
    assert [layer.name for layer in replayed.layers] == [layer.name for layer in tuned.layers]


def test_report_redraws_table_and_plots_from_the_folder(finished, capsys):
    project = finished("random")
    before = (project / "trials.csv").read_text()
    for name in ["trials.csv", *PLOTS]:
        (project / name).unlink()
    assert report.main([str(project)]) == 0
    assert (project / "trials.csv").read_text() == before
    assert all((project / name).exists() for name in PLOTS)
    assert "2 trials: 2 COMPLETED" in capsys.readouterr().out


@pytest.mark.slow
def test_failed_trial_is_recorded_and_the_search_goes_on(tmp_path):
    args = [*DIVERGING, "--fix", "learning_rate=1e9,0.01", "--max-trials", "2"]
    assert search_cli.main([*args, "--dir", str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "random_walk-grid" / "trials.csv")
    assert [r["status"] for r in rows] == ["FAILED", "COMPLETED"]
    assert [float(r["learning_rate"]) for r in rows] == [1e9, 0.01]
    assert "loss is not finite" in rows[0]["message"] and rows[0]["val_loss"] == ""
    assert float(rows[0]["epochs_run"]) == 1 and float(rows[0]["seconds"]) > 0
    assert (tmp_path / "random_walk-grid" / "best_model.keras").exists()


def test_search_whose_trials_all_failed_exits_non_zero(tmp_path, capsys):
    args = [*DIVERGING, "--fix", "learning_rate=1e9", "--max-trials", "1"]
    assert search_cli.main([*args, "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Search failed: none of its 1 trials completed" in err and "not finite" in err
    project = tmp_path / "random_walk-grid"
    assert [r["status"] for r in read_csv(project / "trials.csv")] == ["FAILED"]
    assert not (project / "best_model.keras").exists()


@pytest.mark.slow
def test_progress_line_and_no_running_trial_left_in_oracle_json(tmp_path, capsys):
    args = ["count_ones", *TINY, "--max-trials", "2", *FAST[:-1], "--dir", str(tmp_path)]
    old = os.umask(0o022)
    try:
        assert search_cli.main([*args, "--time-budget", "1h"]) == 0
    finally:
        os.umask(old)
    project = tmp_path / "count_ones-random"
    ours = [
        "search.json",
        "trials.csv",
        "best_hparams.json",
        "best_metrics.json",
        "best_model.keras",
    ]
    for name in ours:  # readable by a colleague, as the umask says
        assert (project / name).stat().st_mode & 0o777 == 0o644, name
    out = capsys.readouterr().out
    assert "[search] 1 of 2 trials finished; best so far trial 0" in out
    assert "[search] 2 of 2 trials finished" in out and "min of budget left" in out
    assert oracle_state(tmp_path / "count_ones-random")["ongoing_trials"] == {}


def test_one_rule_for_the_best_trial_when_scores_tie():
    rows = [
        {"trial_id": "1", "status": "COMPLETED", "val_accuracy": 1.0},
        {"trial_id": "3", "status": "COMPLETED", "val_accuracy": 1.0},
        {"trial_id": "0", "status": "COMPLETED", "val_accuracy": 1.0},
        {"trial_id": "2", "status": "COMPLETED", "val_accuracy": 0.5},
        {"trial_id": "4", "status": "FAILED", "val_accuracy": None},
    ]
    assert [r["trial_id"] for r in report.ranked(rows, "val_accuracy", "max")] == [
        "0",
        "1",
        "3",
        "2",
    ]
    assert report.best_row(rows, "val_accuracy", "max")["trial_id"] == "0"
    for row in rows:
        row["val_loss"] = row.pop("val_accuracy")
    assert report.best_row(rows, "val_loss", "min")["trial_id"] == "2"


def test_time_budget_starts_no_trial_that_would_not_fit():
    oracle = TUNERS.get("random")(kt.Objective("val_loss", "min"), 5, 1, seed=1)[1]
    assert not oracle.out_of_time()  # no budget
    oracle.set_time_budget(3600)
    assert not oracle.out_of_time()
    oracle.durations["0"] = 7200.0  # the mean trial is longer than the time left
    assert oracle.out_of_time()
    assert search_cli.duration("30m") == 1800 and search_cli.duration("90") == 90


@pytest.mark.parametrize("text", ["soon", "0s", "-5m"])
def test_bad_time_budget_is_one_line(text, tmp_path, capsys):
    with pytest.raises(SystemExit):
        search_cli.main(["count_ones", f"--time-budget={text}", "--dir", str(tmp_path)])
    assert "--time-budget: must be a time" in capsys.readouterr().err


@pytest.mark.slow
def test_executions_of_a_trial_start_from_different_seeds(tmp_path):
    hypermodel = ZooHyperModel(tiny_count_ones(), fixed={"model": ["gru"], "units": [8]})
    weights = []
    for execution in (0, 1, 0):
        hypermodel.execution = execution
        weights.append(hypermodel.build(kt.HyperParameters()).get_weights()[0])
    assert (weights[0] == weights[2]).all() and not (weights[0] == weights[1]).all()
    args = [*DIVERGING, "--fix", "learning_rate=0.01", "--max-trials", "1"]
    assert search_cli.main([*args, "--executions-per-trial", "2", "--dir", str(tmp_path)]) == 0
    row = read_csv(tmp_path / "random_walk-grid" / "trials.csv")[0]
    assert float(row["objective_std"]) > 0  # two different models, not one trained twice


def test_folds_cover_the_pooled_splits_once_each():
    task = tiny_count_ones()
    hypermodel = ZooHyperModel(task, fixed={"model": ["gru"], "units": [8]})
    hypermodel.use_folds(4)
    x, y, _ = hypermodel.pooled()
    assert len(x) == len(task.x_train) + len(task.x_val)
    held = []
    for execution in range(4):
        hypermodel.execution = execution
        (x_fit, _, _), (x_val, _) = hypermodel.training_data()
        assert len(x_fit) + len(x_val) == len(x)
        held.append(x_val)
    assert sum(len(h) for h in held) == len(x)  # every window validates once


@pytest.mark.slow
def test_small_training_split_is_cross_validated_by_default(tmp_path):
    no_cv = " ".join(FAST).replace("--cv 1 ", "").split()
    args = ["count_ones", *TINY, "--max-trials", "1", *no_cv, "--dir", str(tmp_path)]
    for extra, folds in (([], 5), (["--cv", "3"], 3), (["--cv", "1"], 0)):
        parsed = search_cli.build_parser().parse_args([*args, *extra, "--overwrite"])
        _, task, hypermodel, tuner, _ = search_cli.prepare(parsed)
        assert len(task.x_train) < search_cli.CV_BELOW
        assert len(hypermodel.folds) == folds and tuner.executions_per_trial == max(folds, 1)


def test_keras_tuner_condition_prints_are_held_back(capsys):
    from keras_tuner.src.engine import conditions

    conditions.Parent("model", ["gru", "lstm"]).to_proto()
    assert capsys.readouterr().out == ""
