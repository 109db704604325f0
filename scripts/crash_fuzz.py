#!/usr/bin/env python
"""Kill a search or a training run with SIGKILL at random instants, resume it, check the result.

    python scripts/crash_fuzz.py search               # python -m tuning.search, 100 kills
    python scripts/crash_fuzz.py train --kills 20     # python -m zoo.train, then --resume
    python scripts/crash_fuzz.py distributed          # a chief and 2 workers on 127.0.0.1

First an uninterrupted reference run (its wall time T). Then the same command is started,
killed with SIGKILL after a delay drawn uniformly from [0, T] (the seed is printed), and started
again with the same command, until it ends by itself; then a new round, until --kills kills were
made. In `distributed` mode the chief and two workers run side by side; every U(0, T) seconds one
of them (chosen at random) is killed and started again. `train` resumes with
`python -m zoo.train --resume RUN_DIR` (the first command again while the run folder holds no
config.json yet: killed before it started).

Each finished round is checked against the reference:
- search, distributed: every trial completed exactly once (trials.csv has each trial id once,
  COMPLETED; oracle.json ended each once; no trial recorded as finished was started again: the
  oracle's trial creations are watched; a trial's training starts are counted and must be
  explained by kills that hit it), best_hparams.json agrees with trials.csv, and every trial's
  hyperparameters and metrics (losses, accuracies, scores: all but seconds and memory), the
  best hyperparameters and the best model's metrics equal the reference's exactly;
- train: metrics.json (all but train_seconds) and history.csv equal the reference's exactly, no
  epoch trained again after its backup was committed, backup/ removed;
- both: no temporary file left behind.
A kill counts as survived when its round passed. The exit status is 0 when all did.

Training starts and commits are counted through marker lines the processes append to a file
(this script starts them through its own `_child` entry, which adds the markers and then runs
the command's `main`, unchanged). The searches are tiny (count_ones, 8 units, 1 epoch a trial)
and run on the TensorFlow backend; the seed of the search itself is fixed (0).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKERS = "CRASH_FUZZ_MARKERS"
MODES = ("search", "train", "distributed")
WORKERS = ("tuner0", "tuner1")
SEARCH = (
    "count_ones --task-option length=6 --task-option train_size=40 --task-option val_size=8 "
    "--epochs 1 --cv 1 --fix units=8 --fix depth=1 --fix recurrent_dropout=0 --quiet"
).split()
TRAIN = (
    "count_ones gru --units 8 --epochs 12 --patience 4 --task-option length=8 "
    "--task-option train_size=200 --task-option val_size=40 --quiet"
).split()
COSTS = {"seconds", "rss_mb"}  # trial metrics that measure the machine, not the training
HANG_FACTOR = 20  # a process running this many reference durations is taken as hung


# ---------------------------------------------------------------- the processes' markers


def mark(line: str) -> None:
    """Append one line to the marker file (one write: whole, or not at all, under SIGKILL)."""
    path = os.environ.get(MARKERS)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{time.time():.3f} {os.getpid()} {line}\n".encode())
    finally:
        os.close(fd)


def finished_on_disk(project: Path) -> set[str]:
    """Trial ids whose trial.json records a finished trial."""
    done = set()
    for path in project.glob("trial_*/trial.json"):
        try:
            if json.loads(path.read_text())["status"] in ("COMPLETED", "FAILED"):
                done.add(path.parent.name.removeprefix("trial_"))
        except (OSError, ValueError, KeyError):
            pass
    return done


def child(kind: str, args: list[str]) -> int:
    """Run `python -m tuning.search ARGS` or `python -m zoo.train ARGS` with marker lines:
    `start ID` (a trial's training starts), `end ID`, `commit ID STATUS` (the oracle recorded a
    trial's end), `RERUN ID` (the oracle handed out again a trial already finished on disk);
    for training `resume EPOCH` and `commit EPOCH`."""
    if kind == "train":
        from zoo import fit
        from zoo.train import main

        begin, commit = fit.EpochBackup.on_train_begin, fit.EpochBackup._commit

        def on_train_begin(self, logs=None):
            begin(self, logs)
            mark(f"resume {fit.first_epoch(self.state)}")

        def _commit(self, epochs, improved, ended=False):
            commit(self, epochs, improved, ended)
            mark(f"commit {epochs}")

        fit.EpochBackup.on_train_begin, fit.EpochBackup._commit = on_train_begin, _commit
        return main(args)

    from tuning import tuners
    from tuning.search import main

    create, end = tuners.SupervisedOracle.create_trial, tuners.SupervisedOracle.end_trial
    begin, over = tuners.ZooTuner.on_trial_begin, tuners.ZooTuner.on_trial_end

    def create_trial(self, tuner_id):
        done = finished_on_disk(Path(self._project_dir))
        trial = create(self, tuner_id)
        if trial.status == "RUNNING" and trial.trial_id in done:
            mark(f"RERUN {trial.trial_id}")
        return trial

    def end_trial(self, trial):
        ended = trial.trial_id in self.end_order  # a late worker's report is ignored
        end(self, trial)
        status = self.trials[trial.trial_id].status
        if not ended and trial.trial_id in self.end_order and status in ("COMPLETED", "FAILED"):
            mark(f"commit {trial.trial_id} {status}")

    def on_trial_begin(self, trial):
        mark(f"start {trial.trial_id}")
        begin(self, trial)

    def on_trial_end(self, trial):
        over(self, trial)
        mark(f"end {trial.trial_id}")

    tuners.SupervisedOracle.create_trial = create_trial
    tuners.SupervisedOracle.end_trial = end_trial
    tuners.ZooTuner.on_trial_begin = on_trial_begin
    tuners.ZooTuner.on_trial_end = on_trial_end
    return main(args)


def read_markers(path: Path) -> list[tuple[float, int, str, str]]:
    """(time, pid, what, rest) of every marker line."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        stamp, pid, what, *rest = line.split()
        found.append((float(stamp), int(pid), what, " ".join(rest)))
    return found


def running_trials(markers, pid: int | None = None) -> set[str]:
    """Trials started and not ended (by `pid`, or by anyone)."""
    open_ = {}
    for _, who, what, rest in markers:
        if pid is not None and who != pid:
            continue
        if what == "start":
            open_[(who, rest)] = True
        elif what == "end":
            open_.pop((who, rest), None)
    return {trial for (_, trial) in open_}


# ---------------------------------------------------------------- processes


class Process:
    """One command of a round, started again with the same command after each kill."""

    def __init__(self, name: str, command: list[str], folder: Path, markers: Path):
        self.name, self.command, self.folder, self.markers = name, command, folder, markers
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.log = folder / f"{name}.log"

    def start(self, command: list[str] | None = None) -> None:
        env = {**os.environ, MARKERS: str(self.markers), "PYTHONUNBUFFERED": "1"}
        env.setdefault("KERAS_BACKEND", "tensorflow")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with open(self.log, "a") as log:
            log.write(f"$ {' '.join(command or self.command)}\n")
            log.flush()
            self.proc = subprocess.Popen(
                command or self.command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the kill takes its children
            )
        self.started = time.monotonic()

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def tail(self, lines: int = 6) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(f"      {line}" for line in text[-lines:])


def own_command(kind: str, args: list[str]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "_child", kind, "--", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- the modes' commands


def search_args(folder: Path, trials: int) -> list[str]:
    return [*SEARCH, "--max-trials", str(trials), "--dir", str(folder)]


def project_of(folder: Path) -> Path:
    return folder / "count_ones-random"


def train_args(folder: Path, epochs: int) -> list[str]:
    args = [*TRAIN, "--out", str(folder / "run")]
    return [*args[: args.index("--epochs") + 1], str(epochs), *args[args.index("--epochs") + 2 :]]


# ---------------------------------------------------------------- checks


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def temporaries(folder: Path) -> list[str]:
    from zoo.files import is_temporary

    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if is_temporary(p.name))


def trial_results(project: Path) -> dict[str, dict]:
    """trial id -> what must equal the reference's: status, values, score, metrics."""
    results = {}
    for path in sorted(project.glob("trial_*/trial.json")):
        trial = json.loads(path.read_text())
        metrics = {
            name: [o["value"] for o in history["observations"]]
            for name, history in trial["metrics"]["metrics"].items()
            if name not in COSTS
        }
        results[trial["trial_id"]] = {
            "status": trial["status"],
            "values": trial["hyperparameters"]["values"],
            "score": trial["score"],
            "metrics": metrics,
        }
    return results


def check_search(folder: Path, reference: Path, trials: int, markers, kills) -> list[str]:
    """What is wrong with a finished search round (empty: nothing)."""
    from tuning import report

    project, problems = project_of(folder), []
    ids = [f"{i:0{len(str(trials))}d}" for i in range(trials)]
    rows = read_csv(project / "trials.csv")
    if sorted(r["trial_id"] for r in rows) != ids or {r["status"] for r in rows} != {"COMPLETED"}:
        problems.append("trials.csv: " + ", ".join(f"{r['trial_id']} {r['status']}" for r in rows))
    state = json.loads((project / "oracle.json").read_text())
    if sorted(state["end_order"]) != ids:
        problems.append(f"oracle.json end_order {state['end_order']}, expected each of {ids}")
    if state["ongoing_trials"]:
        problems.append(f"oracle.json still lists running trials {state['ongoing_trials']}")
    reruns = [rest for _, _, what, rest in markers if what == "RERUN"]
    if reruns:
        problems.append(f"finished trials handed out again: {reruns}")
    commits = [rest.split()[0] for _, _, what, rest in markers if what == "commit"]
    twice = sorted({t for t in commits if commits.count(t) > 1})
    if twice:
        problems.append(f"trials whose end was recorded twice: {twice}")
    starts = {t: 0 for t in ids}
    for _, _, what, rest in markers:
        if what == "start":
            starts[rest] = starts.get(rest, 0) + 1
    hit = {t: sum(t in k["running"] for k in kills) for t in ids}
    unexplained = {t: (n, hit[t]) for t, n in starts.items() if n > 1 + hit.get(t, 0) or n == 0}
    if unexplained:
        problems.append(
            "training starts not explained by kills (trial: starts, kills that hit it): "
            + ", ".join(f"{t}: {n}, {k}" for t, (n, k) in sorted(unexplained.items()))
        )
    objective, direction = report.read_objective(project)
    typed = [report.trial_row(trial, objective) for trial in report.read_trials(project)]
    best = report.best_row(typed, objective, direction)
    hparams = json.loads((project / "best_hparams.json").read_text())
    best_metrics = json.loads((project / "best_metrics.json").read_text())
    if best is None or best_metrics.get("trial_id") != best["trial_id"]:
        problems.append(f"best_metrics.json names trial {best_metrics.get('trial_id')}, "
                        f"the trials' best is {best and best['trial_id']}")  # fmt: skip
    else:  # the best trial's row of trials.csv, as written
        row = next((r for r in rows if r["trial_id"] == best["trial_id"]), {})
        wrong = {k: (v, row.get(k)) for k, v in hparams.items() if k in row and str(v) != row[k]}
        if wrong or not row:
            problems.append(f"best_hparams.json disagrees with trials.csv's best row: {wrong}")
    ours, theirs = trial_results(project), trial_results(reference)
    for trial_id in sorted(set(ours) | set(theirs)):
        if ours.get(trial_id) != theirs.get(trial_id):
            problems.append(
                f"trial {trial_id} differs from the reference: "
                f"{short(ours.get(trial_id))} against {short(theirs.get(trial_id))}"
            )
    for name in ("best_hparams.json", "best_metrics.json"):
        if json.loads((project / name).read_text()) != json.loads((reference / name).read_text()):
            problems.append(f"{name} differs from the reference's")
    left = temporaries(project)
    if left:
        problems.append(f"temporary files left: {left}")
    return problems


def short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) < 300 else text[:300] + "..."


def check_train(folder: Path, reference: Path, markers) -> list[str]:
    """What is wrong with a finished training round (empty: nothing)."""
    run, problems = folder / "run", []
    ours = json.loads((run / "metrics.json").read_text())
    theirs = json.loads((reference / "metrics.json").read_text())
    for metrics in (ours, theirs):
        metrics.pop("train_seconds", None)
    if ours != theirs:
        diff = {
            k: (ours.get(k), theirs.get(k)) for k in ours | theirs if ours.get(k) != theirs.get(k)
        }
        problems.append(f"metrics.json differs from the reference's: {short(diff)}")
    if (run / "history.csv").read_text() != (reference / "history.csv").read_text():
        problems.append("history.csv differs from the reference's")
    if (run / "backup").exists():
        problems.append("backup/ is left behind")
    committed = 0
    for _, _, what, rest in markers:
        if what == "commit":
            committed = max(committed, int(rest))
        elif what == "resume" and int(rest) < committed:
            problems.append(f"resumed from epoch {rest} after epoch {committed} was committed")
    left = temporaries(run)
    if left:
        problems.append(f"temporary files left: {left}")
    return problems


# ---------------------------------------------------------------- rounds


class Fuzzer:
    def __init__(self, mode: str, folder: Path, kills: int, seed: int, trials: int, epochs: int):
        self.mode, self.folder, self.target, self.seed = mode, folder, kills, seed
        self.trials, self.epochs = trials, epochs
        self.rng = random.Random(seed)
        self.kills: list[dict] = []  # every kill made
        self.rounds: list[dict] = []
        self.duration = 0.0

    # the commands of one round
    def processes(self, folder: Path) -> list[Process]:
        markers = folder / "markers.txt"
        if self.mode == "train":
            return [Process("train", own_command("train", train_args(folder, self.epochs)),
                            folder, markers)]  # fmt: skip
        args = search_args(folder, self.trials)
        if self.mode == "search":
            return [Process("search", own_command("search", args), folder, markers)]
        chief = ["--chief", f"127.0.0.1:{free_port()}"]
        procs = [Process("chief", own_command("search", [*args, *chief]), folder, markers)]
        for name in WORKERS:
            command = own_command("search", [*args, *chief, "--worker-id", name])
            procs.append(Process(name, command, folder, markers))
        return procs

    def restart_command(self, proc: Process) -> list[str] | None:
        """train: --resume once the run folder has its config.json."""
        run = proc.folder / "run"
        if self.mode == "train" and (run / "config.json").exists():
            return own_command("train", ["--resume", str(run), "--quiet"])
        return None

    def reference(self) -> Path:
        folder = self.folder / "reference"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        started = time.monotonic()
        outcome = self.play(folder, kill=False)
        self.duration = time.monotonic() - started
        if outcome:
            raise SystemExit(f"the reference run failed: {outcome}")
        print(f"reference run: {self.duration:.1f} s ({folder})", flush=True)
        return folder / "run" if self.mode == "train" else project_of(folder)

    def play(self, folder: Path, kill: bool) -> str | None:
        """Run a round to its end, killing while kills are due; a dead end's evidence, or None."""
        procs = self.processes(folder)
        main = procs[0]
        for proc in procs:
            proc.start()
        next_kill = self.next_kill() if kill else None
        hang = time.monotonic() + HANG_FACTOR * max(self.duration, 60)
        while True:
            time.sleep(0.02)
            code = main.poll()
            if code is not None:
                if code != 0:
                    return f"{main.name} exited with status {code}:\n{main.tail()}"
                self.stop(procs[1:])
                bad = [p for p in procs[1:] if p.poll() not in (0, None, -9)]
                if bad:
                    return f"{bad[0].name} exited with status {bad[0].poll()}:\n{bad[0].tail()}"
                return None
            for proc in procs[1:]:  # a worker that ends before the chief: the search is over
                if proc.poll() not in (None, 0):
                    return f"{proc.name} exited with status {proc.poll()}:\n{proc.tail()}"
            if next_kill is not None and time.monotonic() >= next_kill:
                self.kill_one(procs, folder)
                next_kill = self.next_kill() if len(self.kills) < self.target else None
            if time.monotonic() > hang:
                self.stop(procs)
                return f"hung: still running after {HANG_FACTOR} reference durations"

    def next_kill(self) -> float:
        return time.monotonic() + self.rng.uniform(0, self.duration)

    def kill_one(self, procs: list[Process], folder: Path) -> None:
        alive = [p for p in procs if p.poll() is None]
        victim = self.rng.choice(alive) if self.mode == "distributed" else alive[0]
        markers = read_markers(folder / "markers.txt")
        running = running_trials(markers, None if victim.name == "chief" else victim.proc.pid)
        age = time.monotonic() - victim.started
        victim.kill()
        self.kills.append(
            {"round": len(self.rounds), "victim": victim.name, "after": age, "running": running}
        )
        victim.start(self.restart_command(victim))

    def stop(self, procs: list[Process]) -> None:
        deadline = time.monotonic() + 30  # workers end once they hear the search is over
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.2)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    def run(self) -> int:
        reference = self.reference()
        while len(self.kills) < self.target:
            number = len(self.rounds)
            folder = self.folder / f"round-{number}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            before = len(self.kills)
            problem = self.play(folder, kill=True)
            kills = self.kills[before:]
            markers = read_markers(folder / "markers.txt")
            problems = [problem] if problem else []
            if not problems:
                try:
                    if self.mode == "train":
                        problems = check_train(folder, reference, markers)
                    else:
                        problems = check_search(folder, reference, self.trials, markers, kills)
                except (OSError, ValueError, KeyError) as err:
                    problems = [f"cannot check the round: {type(err).__name__}: {err}"]
            self.rounds.append({"number": number, "kills": kills, "problems": problems})
            state = "passed" if not problems else "FAILED"
            print(
                f"round {number}: {len(kills)} kills, {state} "
                f"({len(self.kills)} of {self.target} kills made)",
                flush=True,
            )
            for line in problems:
                print(f"  {line}", flush=True)
        return self.summary()

    def summary(self) -> int:
        survived = sum(len(r["kills"]) for r in self.rounds if not r["problems"])
        failed = [r for r in self.rounds if r["problems"]]
        victims = {}
        for kill in self.kills:
            victims[kill["victim"]] = victims.get(kill["victim"], 0) + 1
        print(
            f"crash_fuzz {self.mode} (seed {self.seed}): {len(self.kills)} kills tried, "
            f"{survived} survived; {len(self.rounds)} rounds, {len(failed)} failed; "
            f"kills by process: {', '.join(f'{k} {v}' for k, v in sorted(victims.items()))}; "
            f"reference run {self.duration:.1f} s",
            flush=True,
        )
        for r in failed:
            print(f"round {r['number']} failed; its kills:", flush=True)
            for k in r["kills"]:
                hit = f", trials running {sorted(k['running'])}" if k["running"] else ""
                print(f"    {k['victim']} killed {k['after']:.2f} s after it started{hit}")
            for line in r["problems"]:
                print(f"  evidence: {line}", flush=True)
        return 0 if survived == len(self.kills) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:  # python scripts/crash_fuzz.py _child KIND -- ARGS
        return child(argv[1], argv[3:])
    parser = argparse.ArgumentParser(
        description="Kill a search or a training run with SIGKILL at random instants, resume "
        "it with the same command, and check it ends as an uninterrupted run does.",
        epilog="Example: python scripts/crash_fuzz.py search --kills 100",
    )
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--kills", type=int, default=100, help="kills to make (default: 100)")
    parser.add_argument("--seed", type=int, help="seed of the kill instants (default: random)")
    parser.add_argument("--trials", type=int, default=6, help="trials a search (default: 6)")
    parser.add_argument("--epochs", type=int, default=12, help="epochs a run, train mode")
    parser.add_argument(
        "--dir", help="folder for the runs (default: a new temporary folder, removed at the end)"
    )
    args = parser.parse_args(argv)
    if args.kills < 1 or args.trials < 1 or args.epochs < 1:
        parser.error("--kills, --trials and --epochs must be at least 1")
    seed = random.randrange(2**31) if args.seed is None else args.seed
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="crash-fuzz-"))
    print(f"crash_fuzz {args.mode}: seed {seed}, {args.kills} kills, runs in {folder}", flush=True)
    try:
        return Fuzzer(args.mode, folder, args.kills, seed, args.trials, args.epochs).run()
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # the zoo, for the children and the checks
    raise SystemExit(main())
