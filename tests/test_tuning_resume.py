"""Tuning, resumed and distributed: a search killed at any moment resumes and runs every trial
once; a chief and workers on 127.0.0.1 share a search, and a dead worker's trial is retried.

Real searches on a tiny task, no mocks (helpers from test_tuning)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_tuning import (  # noqa: F401  (_local: the autouse fixture, here too)
    FAST,
    ROOT,
    TINY,
    _local,
    assert_no_trial_ran_twice,
    oracle_state,
    poll_oracle,
    read_csv,
)

from tuning import distributed, report
from tuning import search as search_cli

pytestmark = pytest.mark.slow  # end-to-end processes: outside the fast subset


def completed_rows(project: Path) -> list[dict]:
    """The COMPLETED rows of a running search's trials.csv ([] before it exists)."""
    try:
        return [r for r in read_csv(project / "trials.csv") if r["status"] == "COMPLETED"]
    except FileNotFoundError:
        return []


def test_a_search_killed_at_random_instants_ends_as_an_uninterrupted_one(tmp_path):
    """scripts/crash_fuzz.py with 2 seeded SIGKILLs (its full runs are in the README): every
    trial completes once, and the trials, best hyperparameters and best model's metrics equal
    an uninterrupted search's."""
    fuzz = [sys.executable, str(ROOT / "scripts" / "crash_fuzz.py"), "search", "--kills", "2"]
    fuzz += ["--trials", "2", "--seed", "5", "--dir", str(tmp_path)]
    done = subprocess.run(fuzz, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 kills tried, 2 survived" in done.stdout


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 2-trial search's project folder; each test resumes a copy of it."""
    folder = tmp_path_factory.mktemp("finished")
    assert search_cli.main(search_args(folder, 2)) == 0
    return folder / "count_ones-random"


def search_args(folder: Path, trials: int) -> list[str]:
    return ["count_ones", *TINY, "--max-trials", str(trials), *FAST, "--dir", str(folder)]


def copy_of(finished: Path, tmp_path: Path) -> Path:
    project = tmp_path / finished.name
    shutil.copytree(finished, project)
    return project


def test_kill_between_a_new_trials_file_and_oracle_json_runs_that_trial(finished, tmp_path):
    """keras-tuner writes trial_N/trial.json before oracle.json: a kill between the two
    leaves a RUNNING trial that oracle.json does not know. On resume it runs, once."""
    project = copy_of(finished, tmp_path)
    orphan = json.loads((project / "trial_0" / "trial.json").read_text())
    orphan |= {"trial_id": "2", "status": "RUNNING", "score": None, "best_step": 0}
    orphan["metrics"] = {"metrics": {}}
    (project / "trial_2").mkdir()
    (project / "trial_2" / "trial.json").write_text(json.dumps(orphan))
    assert search_cli.main(search_args(tmp_path, 3)) == 0
    state = assert_no_trial_ran_twice(project, 3)
    assert state["run_times"]["2"] == 1


def test_kill_between_a_trials_end_and_oracle_json_does_not_rerun_it(finished, tmp_path):
    """A kill after a trial's end reached trial.json, before oracle.json: not run again."""
    project = copy_of(finished, tmp_path)
    finished_file = (project / "trial_1" / "trial.json").read_text()
    state = oracle_state(project)
    state["end_order"].remove("1")
    state["ongoing_trials"] = {"tuner0": "1"}
    (project / "oracle.json").write_text(json.dumps(state))
    assert search_cli.main(search_args(tmp_path, 2)) == 0
    assert_no_trial_ran_twice(project, 2)
    assert (project / "trial_1" / "trial.json").read_text() == finished_file


def test_kill_before_the_tuners_own_file_resumes_instead_of_starting_afresh(finished, tmp_path):
    """keras-tuner writes tuner0.json after the first trial's end, after oracle.json: a kill in
    between must not start the search afresh (it ran the finished trial again)."""
    project = copy_of(finished, tmp_path)
    (project / "tuner0.json").unlink()
    (project / "oracle.json").write_text(json.dumps(oracle_state(project)))
    files = {t: (project / f"trial_{t}" / "trial.json").read_text() for t in ("0", "1")}
    assert search_cli.main(search_args(tmp_path, 2)) == 0
    state = assert_no_trial_ran_twice(project, 2)
    assert state["run_times"] == {"0": 1, "1": 1}
    for trial_id, text in files.items():
        assert (project / f"trial_{trial_id}" / "trial.json").read_text() == text


def empty(path: Path) -> None:
    """An empty file and no last good copy: the SIGKILL of the issue, under keras-tuner's own
    plain write of tuner0.json."""
    path.write_text("")
    path.with_name(path.name + ".bak").unlink()


def truncate(path: Path) -> None:
    path.write_text(path.read_text()[:40])  # torn, as a plain write killed midway leaves it


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda p: empty(p / "tuner0.json"), "tuner0.json is empty: rewritten"),
        (lambda p: truncate(p / "oracle.json"), "oracle.json was empty or truncated: using its"),
        (
            lambda p: [truncate(p / name) for name in ("oracle.json", "oracle.json.bak")],
            "rebuilt from the 2 trials' trial.json files",
        ),
        (lambda p: truncate(p / "trial_1" / "trial.json"), "trial.json was empty or truncated"),
    ],
    ids=["tuner-empty", "oracle-torn", "oracle-and-copy-torn", "trial-torn"],
)
def test_a_torn_state_file_is_recovered_with_one_line(finished, tmp_path, capsys, damage, says):
    """State files are written atomically, so only something else tears one (a disk error, a
    copy, an older version): the resume takes the last good copy, or rebuilds oracle.json from
    the trial files, says so in one line, and goes on. Never a dead end."""
    project = copy_of(finished, tmp_path)
    before = read_csv(project / "trials.csv")
    damage(project)
    assert search_cli.main(search_args(tmp_path, 2)) == 0
    out = capsys.readouterr().out
    assert sum(says in line for line in out.splitlines()) == 1, out
    assert_no_trial_ran_twice(project, 2)
    after = read_csv(project / "trials.csv")
    same = ("trial_id", "status", "model", "val_accuracy", "learning_rate")
    assert [[r[k] for k in same] for r in after] == [[r[k] for k in same] for r in before]


def test_a_search_resumed_with_other_settings_is_refused_and_a_running_one_reported(
    finished, tmp_path, capsys
):
    project = copy_of(finished, tmp_path)
    with pytest.raises(SystemExit):  # other settings: refused, not mixed in
        search_cli.main([*search_args(tmp_path, 2), "--fix", "optimizer=sgd"])
    assert "holds a search started with other settings" in capsys.readouterr().err
    trial = json.loads((project / "trial_1" / "trial.json").read_text())
    (project / "trial_1" / "trial.json").write_text(json.dumps(trial | {"status": "RUNNING"}))
    assert report.main([str(project)]) == 0  # the report reads an unfinished search too
    assert [r["status"] for r in read_csv(project / "trials.csv")] == ["COMPLETED", "RUNNING"]


# ---------------------------------------------------------------- distributed


def worker_process(launcher: psutil.Process, name: str) -> psutil.Process:
    """The launcher's child `python -m tuning.search ... --worker-id NAME`."""
    for child in launcher.children():
        if child.cmdline()[-2:] == ["--worker-id", name]:
            return child
    raise AssertionError(f"no worker {name} among {launcher.children()}")


def test_distributed_search_retries_a_dead_workers_trial_and_ends(tmp_path):
    """scripts/tune_distributed.py: a chief and two workers on 127.0.0.1. A worker killed
    mid-trial: the chief reaps it after --worker-timeout, the other worker runs its trial again,
    and the search finishes with every trial completed once."""
    project = tmp_path / "count_ones-random"
    args = ["count_ones", *TINY, "--max-trials", "3", *FAST, "--dir", str(tmp_path)]
    args += ["--epochs", "3", "--worker-timeout", "10"]  # longer trials, to kill one mid-way
    launcher = [sys.executable, str(ROOT / "scripts" / "tune_distributed.py"), "--workers", "2"]
    out = tmp_path / "launcher.log"
    with open(out, "w") as log:
        proc = subprocess.Popen([*launcher, "--", *args], cwd=ROOT, stdout=log, stderr=log)
    try:
        running = {}  # no deadline: wait for a running trial however slow the machine
        while not running and proc.poll() is None:
            time.sleep(0.1)
            running = poll_oracle(project).get("ongoing_trials")
        assert running, out.read_text()[-3000:]
        victim, trial_id = next(iter(running.items()))
        worker_process(psutil.Process(proc.pid), victim).send_signal(signal.SIGKILL)
        # a generous safety net against a hang, not a timing: the search itself takes seconds
        assert proc.wait(timeout=1200) == 0, out.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = out.read_text()
    survivor = ({"tuner0", "tuner1"} - {victim}).pop()
    assert f"[{survivor}] Worker {survivor}: the chief ended the search" in log
    assert f"worker {victim} stopped reporting for 10 s: trial {trial_id} is INVALID" in log
    assert "[chief] 3 of 3 trials completed" in log
    state = assert_no_trial_ran_twice(project, 3)
    assert state["run_times"][trial_id] == 2  # killed once, then run by the other worker
    assert state["ongoing_trials"] == {}  # no finished trial left listed as running
    best = json.loads((project / "best_hparams.json").read_text())
    assert best["task_options"] == {"length": 6, "train_size": 40, "val_size": 8}
    assert (project / "best_model.keras").exists()


def test_configure_sets_keras_tuner_variables():
    assert distributed.configure() == "local"
    assert distributed.configure("127.0.0.1:8000") == "chief"
    assert os.environ[distributed.TUNER_ID] == "chief"
    assert distributed.configure("10.0.0.2:8000", "tuner3") == "worker"
    assert (os.environ[distributed.IP], os.environ[distributed.PORT]) == ("10.0.0.2", "8000")
    assert distributed.configure() == "worker"  # the variables alone keep working
