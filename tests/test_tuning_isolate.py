"""Trials in their own processes (`--isolate-trials`): real searches on a tiny task whose
trials train in spawned processes, no mocks. A diverged or killed trial process is a failed
trial with its reason; a killed search leaves no trial process behind and resumes."""

from __future__ import annotations

import signal
import subprocess
import time

import psutil
import pytest
from test_tuning import (  # noqa: F401  (_local: the autouse fixture, here too)
    FAST,
    ROOT,
    TINY,
    _local,
    assert_no_trial_ran_twice,
    command,
    read_csv,
)

from tuning import search as search_cli

pytestmark = pytest.mark.slow  # end-to-end processes: outside the fast subset

ISOLATED = ["count_ones", *TINY, *FAST, "--isolate-trials"]


def trial_processes(pid: int) -> list[psutil.Process]:
    """The spawned trial processes under `pid` (not multiprocessing's resource tracker)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def ended(process: psutil.Process) -> bool:
    """True once `process` is gone (or a zombie nobody reaped)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for_trial_process(proc: subprocess.Popen) -> psutil.Process:
    """The first trial process of a running search (no deadline: it comes or the search ends)."""
    while proc.poll() is None:
        found = trial_processes(proc.pid)
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("the search ended before a trial process started")


def test_isolated_search_with_executions_keeps_checkpoints_and_leaves_no_process(tmp_path):
    args = [*ISOLATED, "--max-trials", "1", "--executions-per-trial", "2", "--dir", str(tmp_path)]
    assert search_cli.main(args) == 0
    project = tmp_path / "count_ones-random"
    assert_no_trial_ran_twice(project, 1)
    for row in read_csv(project / "trials.csv"):
        assert float(row["epochs_run"]) == 1 and row["objective_std"] != ""
        assert (project / f"trial_{row['trial_id']}" / "checkpoint.weights.h5").exists()
        assert (project / f"trial_{row['trial_id']}" / "build_config.json").exists()
    assert (project / "best_model.keras").exists()  # loaded from the trial's checkpoint
    assert trial_processes(psutil.Process().pid) == []


def test_a_diverged_trial_crosses_the_process_boundary_as_diverged():
    """A trial process raises `Diverged`; the search must get `Diverged` back (a FAILED trial,
    not retried), so it pickles as itself."""
    import pickle

    from tuning.hypermodel import Diverged

    back = pickle.loads(pickle.dumps(Diverged("loss is not finite at epoch 2", 2)))
    assert type(back) is Diverged and back.epochs_run == 2 and "not finite" in str(back)


def test_killed_trial_process_fails_its_trial_and_a_killed_search_resumes(tmp_path):
    args = [*ISOLATED, "--max-trials", "2", "--max-retries", "0", "--dir", str(tmp_path)]
    project = tmp_path / "count_ones-random"
    proc = subprocess.Popen(command(*args), cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_for_trial_process(proc).send_signal(signal.SIGKILL)  # trial 0's process
        while proc.poll() is None and not (project / "trial_1").exists():
            time.sleep(0.05)
        child = wait_for_trial_process(proc)  # trial 1's process: now kill the search
        proc.send_signal(signal.SIGKILL)
        psutil.wait_procs([child], timeout=60)  # it dies with its parent, no orphan
        assert ended(child)
    finally:
        proc.kill()
        proc.wait()
    rows = read_csv(project / "trials.csv")
    assert rows[0]["status"] == "FAILED" and "process died" in rows[0]["message"]
    assert search_cli.main(args) == 0  # resumed: trial 1 runs again, trial 0 stays failed
    rows = read_csv(project / "trials.csv")
    assert [r["status"] for r in rows] == ["FAILED", "COMPLETED"]
    assert (project / "trial_1" / "checkpoint.weights.h5").exists()
