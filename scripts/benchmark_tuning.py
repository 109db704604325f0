"""Benchmarks of the tuning workflow (issue #12): per-trial overhead, and defaults on small data.

--mode overhead: one random search run in this process as `python -m tuning.search` runs it
(`prepare`, `write_settings`, `search`, `finish`), with a Keras callback timing every training
epoch. A trial's wall time runs from the end of the one before (or the search's start) to its
end, so it holds the oracle's draw, build, compile, fit, checkpoints and reports. Overhead is
that wall time less the time in its epochs, as a share of it; "adjusted" also counts the first
epoch's excess over the median later epoch (tracing, and XLA compiling where it is on) as
overhead. `--code DIR` (default: the first PYTHONPATH entry, else this checkout) is the code
measured, so an older worktree can be measured with the same script.

--mode small: on small data sets (digits cut to 100 training windows; 200 UCI HAR windows in
frames of 4 steps, written to an npz), `python -m zoo.train TASK MODEL` with no training flags
(the small-data defaults), then a cross-validated random search and its best configuration
replayed by `python -m zoo.train --hparams`; with `--before DIR`, also the defaults of the code
in DIR on the npz set. Every run is its own process; logs and run folders are kept in --out.
A run goes to a fresh folder (NAME, else NAME-2, ...) and its row, rows/NAME.json, names the
folder and the code's commit (`git describe --dirty`); `--resume` reuses a row of the same
commit and runs any other again, so the tables always show figures of the code that ran.

--mode memory: a HAR search of many cheap trials (frames of 4 steps, 1 epoch, small models) in
its own process, `python -m tuning.search` of `--code`, with `--search-arg` added (e.g.
`--search-arg=--isolate-trials`) and `--env NAME=VALUE` set (e.g. MALLOC_ARENA_MAX=2); the
searching process's RSS after each trial (trials.csv `rss_mb`), and trial 5 against trial 40.

    python scripts/benchmark_tuning.py --mode overhead --out /tmp/bench/overhead-new
    PYTHONPATH=/tmp/wt-before python scripts/benchmark_tuning.py --mode overhead --out DIR
    python scripts/benchmark_tuning.py --mode small --har-data ../shared/data/uci_har_dataset.zip
    python scripts/benchmark_tuning.py --mode small --resume --time-budget 30m   # more trials
    python scripts/benchmark_tuning.py --mode memory --out /tmp/bench/memory

Every mode prints Markdown tables and write them, with the raw figures as JSON, to --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HAR_SMALL = {"train": 200, "test": 1000, "frame_steps": 4}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--mode", choices=("overhead", "small", "memory"), required=True)
    p.add_argument("--out", default="/tmp/benchmark_tuning", help="folder for runs and tables")
    p.add_argument("--seed", type=int, default=0, help="seed of the searches")
    p.add_argument("--max-trials", type=int, help="trials a search (default: 20; memory: 40)")
    o = p.add_argument_group("overhead mode")
    o.add_argument(
        "--code",
        help="checkout whose zoo and tuning are measured "
        "(default: first PYTHONPATH entry, else this checkout)",
    )
    o.add_argument("--task", default="echo", help="task searched")
    o.add_argument("--epochs", type=int, default=5, help="epochs a trial")
    o.add_argument(
        "--models",
        # every echo candidate except stacked_lstm and deep_lstm, which the new code drops as
        # duplicates of lstm: the same list in old and new code, so both draw the same trials
        default="lstm,gru,rnn,peephole_lstm,conv_lstm,attention_lstm",
        help="--models of the search",
    )
    o.add_argument(
        "--fix", action="append", default=None, help="--fix of the search (default: units=32)"
    )
    s = p.add_argument_group("small mode")
    s.add_argument(
        "--har-data",
        default=os.environ.get("RNN_ZOO_HAR_DATA")
        or str(ROOT.parent / "shared/data/uci_har_dataset.zip"),
        help="UCI HAR zip the small HAR set is drawn from (default: $RNN_ZOO_HAR_DATA, else "
        "../shared/data/uci_har_dataset.zip beside the checkout)",
    )
    s.add_argument("--sets", default="digits,har_small", help="comma-separated small data sets")
    s.add_argument("--search-models", default="lstm,gru", help="--models of the searches")
    s.add_argument("--time-budget", default="10m", help="--time-budget of each search")
    s.add_argument("--before", help="older checkout whose defaults run on the npz set too")
    s.add_argument(
        "--resume",
        action="store_true",
        help="keep finished runs in --out and "
        "resume the searches (with a new --time-budget) instead of starting afresh",
    )
    m = p.add_argument_group("memory mode (also --code, --har-data)")
    m.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment variable of the search process; repeatable",
    )
    m.add_argument(
        "--search-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument of the search, e.g. --search-arg=--isolate-trials",
    )
    m.add_argument(
        "--compare",
        nargs=2,
        type=int,
        default=(5, 40),
        metavar=("A", "B"),
        help="trials whose RSS after them is compared",
    )
    return p.parse_args(argv)


def load_average() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def commit_of(folder: Path) -> str:
    result = subprocess.run(
        ["git", "-C", str(folder), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() or "unknown"


def markdown(rows: list[dict], columns: list[str]) -> str:
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_outputs(out: Path, name: str, data: dict, tables: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    text = "\n\n".join(tables) + "\n"
    (out / f"{name}.md").write_text(text)
    print(text)


# --- overhead mode ---------------------------------------------------------------------------


def epoch_timer():
    """A Keras callback recording the seconds of each training epoch (its validation
    included) under `timer.trial`, and whether the model runs with XLA (`timer.jit`)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.trial = None
            self.epochs: dict[str, list[float]] = {}
            self.jit: dict[str, object] = {}
            self.started = 0.0

        def __deepcopy__(self, memo):  # keras-tuner copies callbacks: keep recording here
            return self

        def on_train_begin(self, logs=None):
            self.jit[self.trial] = getattr(self.model, "jit_compile", None)

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.setdefault(self.trial, []).append(time.perf_counter() - self.started)

    return EpochTimer()


def trial_figures(wall: float, epochs: list[float]) -> dict:
    """Epoch time and overhead share of one trial, raw and with the first epoch's excess over
    the median later epoch counted as overhead (tracing and compiling)."""
    raw = sum(epochs)
    steady = statistics.median(epochs[1:]) if len(epochs) > 1 else raw
    adjusted = min(raw, steady * len(epochs))
    return {
        "wall_s": wall,
        "epochs": len(epochs),
        "epoch_s": raw,
        "first_epoch_s": epochs[0] if epochs else None,
        "steady_epoch_s": steady if epochs else None,
        "overhead_share": 1 - raw / wall,
        "overhead_share_adjusted": 1 - adjusted / wall,
    }


def search_argv(args, parser, differences: list[str]) -> list[str]:
    """The search's arguments; options this code's parser lacks are left out and noted."""
    argv = [
        args.task,
        "--tuner",
        "random",
        "--max-trials",
        str(args.max_trials),
        "--epochs",
        str(args.epochs),
        "--models",
        args.models,
        "--seed",
        str(args.seed),
        "--dir",
        str(Path(args.out) / "search"),
        "--project",
        "overhead",
        "--overwrite",
        "--quiet",
    ]
    for fix in args.fix or ["units=32"]:
        argv += ["--fix", fix]
    if "--cv" in parser._option_string_actions:
        argv += ["--cv", "1"]
    else:
        differences.append("no --cv option (this code never cross-validates)")
    return argv


def overhead(args) -> int:
    code = Path(args.code or os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or ROOT)
    sys.path.insert(0, str(code.resolve()))
    started = time.perf_counter()
    from tuning import search

    differences: list[str] = []
    parser = search.build_parser()
    argv = search_argv(args, parser, differences)
    search_args = parser.parse_args(argv)
    load_before = load_average()
    role, task, hypermodel, tuner, epochs = search.prepare(search_args)
    project_dir = Path(tuner.project_dir)
    search.write_settings(search_args, task, project_dir, epochs)
    timer = epoch_timer()
    begins, ends = {}, {}
    on_begin, on_end = tuner.on_trial_begin, tuner.on_trial_end

    def trial_begin(trial):
        timer.trial = trial.trial_id
        begins[trial.trial_id] = time.perf_counter()
        on_begin(trial)

    def trial_end(trial):
        on_end(trial)
        ends[trial.trial_id] = time.perf_counter()

    tuner.on_trial_begin, tuner.on_trial_end = trial_begin, trial_end
    prepared = time.perf_counter()
    tuner.search(epochs=epochs, callbacks=[timer], verbose=0)
    searched = time.perf_counter()
    status = search.finish(tuner, hypermodel, task, search_args, project_dir, epochs)
    finished = time.perf_counter()

    rows, previous = [], prepared
    for trial_id in sorted(ends, key=ends.get):
        trial = tuner.oracle.trials[trial_id]
        values = trial.hyperparameters.values
        row = {
            "trial": trial_id,
            "status": str(trial.status),
            "model": values.get("model"),
            "depth": values.get("depth"),
            "batch_size": values.get("batch_size"),
            "optimizer": values.get("optimizer"),
            "jit_compile": timer.jit.get(trial_id),
        }
        row |= trial_figures(ends[trial_id] - previous, timer.epochs.get(trial_id, []))
        row["before_begin_s"] = begins[trial_id] - previous
        rows.append(row)
        previous = ends[trial_id]
    shares = [r["overhead_share"] for r in rows]
    adjusted = [r["overhead_share_adjusted"] for r in rows]
    summary = {
        "code": f"{code} ({commit_of(code)})",
        "trials": len(rows),
        "completed": sum(r["status"] == "COMPLETED" for r in rows),
        "mean_overhead_share": statistics.mean(shares),
        "median_overhead_share": statistics.median(shares),
        "mean_overhead_share_adjusted": statistics.mean(adjusted),
        "median_overhead_share_adjusted": statistics.median(adjusted),
        "mean_trial_s": statistics.mean(r["wall_s"] for r in rows),
        "median_trial_s": statistics.median(r["wall_s"] for r in rows),
        "xla_trials": sum(r["jit_compile"] is True for r in rows),
        "prepare_s": prepared - started,
        "search_s": searched - prepared,
        "finish_s": finished - searched,
        "total_s": finished - started,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "exit_status": status,
        "differences": differences,
        "argv": argv,
    }
    columns = [
        "trial",
        "status",
        "model",
        "depth",
        "batch_size",
        "optimizer",
        "jit_compile",
        "epochs",
        "wall_s",
        "epoch_s",
        "first_epoch_s",
        "steady_epoch_s",
        "overhead_share",
        "overhead_share_adjusted",
    ]
    head = [{"figure": k, "value": v} for k, v in summary.items() if k != "argv"]
    write_outputs(
        Path(args.out),
        "overhead",
        {"summary": summary, "trials": rows},
        [markdown(head, ["figure", "value"]), markdown(rows, columns)],
    )
    return 0


# --- small mode ------------------------------------------------------------------------------


def make_har_small(zip_path: str, path: Path, seed: int) -> None:
    """200 random training windows of the train subjects and 1000 of the test split, in frames
    of 4 steps (32 steps of 36 values), as an npz the `npz` task reads."""
    import numpy as np

    from zoo.files import atomic_write
    from zoo.tasks.har import load_arrays

    arrays, _ = load_arrays(zip_path)
    rng = np.random.default_rng(seed)
    out = {}
    for split, count in (("train", HAR_SMALL["train"]), ("test", HAR_SMALL["test"])):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        rows = np.sort(rng.choice(len(x), count, replace=False))
        n, steps, features = x[rows].shape
        frame = HAR_SMALL["frame_steps"]
        out[f"X_{split}"] = x[rows].reshape(n, steps // frame, frame * features)
        out[f"y_{split}"] = y[rows].astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        np.savez(f, **out)


def run(cmd: list[str], log: Path, code: Path) -> tuple[float, int, str]:
    """One process of `code`'s modules; (wall seconds, exit status, its output)."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *cmd], cwd=code, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {' '.join(cmd)}\n{result.stdout}\n--- stderr ---\n{result.stderr}")
    print(
        f"[{time.strftime('%H:%M:%S')}] {' '.join(cmd)}: exit {result.returncode}, "
        f"{seconds:.0f} s, load {load_average()}",
        file=sys.stderr,
        flush=True,
    )
    return seconds, result.returncode, result.stdout + result.stderr


def fresh_folder(out: Path, name: str) -> Path:
    """out/name, or out/name-2, -3, ... where that exists: `zoo.train` refuses a folder that
    exists, and an earlier run's files must never be read as this run's."""
    folder, k = out / name, 1
    while folder.exists():
        k += 1
        folder = out / f"{name}-{k}"
    return folder


def train_run(name: str, cmd: list[str], out: Path, code: Path, resume: bool = False) -> dict:
    """`zoo.train` with `cmd` into a fresh folder out/name[-K]; test accuracy and what the
    defaults chose. Its row (out/rows/name.json) names the folder and the code's commit; with
    `resume`, a row of the same commit is read, not run again, and any other is run again."""
    from zoo.files import write_json

    row_file = out / "rows" / f"{name}.json"
    commit = commit_of(code)
    if resume and row_file.exists():
        row = json.loads(row_file.read_text())
        if row.get("code") == commit and row.get("exit_status") == 0:
            return row
    folder = fresh_folder(out, name)
    seconds, status, text = run(
        [*cmd, "--out", str(folder)], out / "logs" / f"{folder.name}.log", code
    )
    row = {
        "run": name,
        "folder": str(folder),
        "code": commit,
        "wall_s": seconds,
        "exit_status": status,
    }
    note = [line for line in text.splitlines() if line.startswith("Small training split")]
    row["chose"] = note[0] if note else ""
    if status == 0:
        metrics = json.loads((folder / "metrics.json").read_text())
        row |= {
            "test_accuracy": metrics.get("accuracy"),
            "epochs_run": metrics.get("epochs_run"),
            "val_accuracy": metrics.get("val", {}).get("accuracy"),
        }
        config = json.loads((folder / "config.json").read_text())["hyperparameters"]
        row |= {k: config.get(k) for k in ("batch_size", "epochs", "patience")}
    else:
        row["error"] = text.strip().splitlines()[-1] if text.strip() else ""
    row_file.parent.mkdir(parents=True, exist_ok=True)
    write_json(row_file, row)  # atomic: a killed benchmark leaves no half-written row
    return row


def small_set(name: str, args, out: Path) -> tuple[list[str], dict]:
    """The set's `TASK [options]` and facts."""
    if name == "digits":
        return ["digits", "--task-option", "train_size=100"], {}
    if name == "har_small":
        path = out / "har_small.npz"
        if not path.exists():
            make_har_small(args.har_data, path, args.seed)
        return ["npz", "--data", str(path)], {"npz": str(path), **HAR_SMALL}
    raise SystemExit(f"unknown set {name!r}: choose digits or har_small")


def small(args) -> int:
    sys.path.insert(0, str(ROOT))
    out = Path(args.out).resolve()
    rows, runs = [], []
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        task_args, facts = small_set(name, args, out)
        task, options = task_args[0], task_args[1:]
        row = {"set": name, **facts, "load_average_before": load_average()}
        for model in ("lstm", "gru"):
            r = train_run(
                f"{name}-{model}-defaults",
                ["-m", "zoo.train", task, model, *options],
                out,
                ROOT,
                args.resume,
            )
            runs.append(r)
            row[f"{model}_test"] = r.get("test_accuracy")
            row[f"{model}_wall_s"] = r["wall_s"]
            row["chose"] = r["chose"]
        project = out / "search" / name
        cmd = [
            "-m",
            "tuning.search",
            task,
            *options,
            "--models",
            args.search_models,
            "--max-trials",
            str(args.max_trials),
            "--time-budget",
            args.time_budget,
            "--seed",
            str(args.seed),
            "--dir",
            str(project.parent),
            "--project",
            name,
            "--quiet",
            *([] if args.resume else ["--overwrite"]),
        ]
        walls_file = out / "logs" / f"{name}-search-walls.json"
        walls = json.loads(walls_file.read_text()) if args.resume and walls_file.exists() else []
        seconds, status, text = run(cmd, out / "logs" / f"{name}-search-{len(walls)}.log", ROOT)
        walls.append(seconds)
        walls_file.write_text(json.dumps(walls) + "\n")
        row |= {
            "search_wall_s": sum(walls),
            "search_runs": len(walls),
            "search_exit_status": status,
        }
        if (project / "best_metrics.json").exists():
            best = json.loads((project / "best_metrics.json").read_text())
            settings = json.loads((project / "search.json").read_text())["settings"]
            with open(project / "trials.csv", newline="") as f:
                statuses = [r["status"] for r in csv.DictReader(f)]
            row |= {
                "cv_folds": settings.get("cv"),
                "trials_completed": statuses.count("COMPLETED"),
                "trials": len(statuses),
                "search_best_val": best.get("val_accuracy"),
                "search_best_model_test": best.get("accuracy"),
                "best_hparams": best.get("hyperparameters"),
            }
            replay = f"{name}-replay-trial{best.get('trial_id')}"
            r = train_run(
                replay,
                ["-m", "zoo.train", task, "--hparams", str(project / "best_hparams.json")],
                out,
                ROOT,
                args.resume,
            )
            runs.append(r)
            row |= {"replay_test": r.get("test_accuracy"), "replay_wall_s": r["wall_s"]}
        else:
            row["search_error"] = text.strip().splitlines()[-1] if text.strip() else ""
        if args.before and task == "npz":
            before = Path(args.before).resolve()
            for model in ("lstm", "gru"):
                r = train_run(
                    f"{name}-{model}-before",
                    ["-m", "zoo.train", task, model, *options],
                    out,
                    before,
                    args.resume,
                )
                r["code"] = f"{before} ({commit_of(before)})"
                runs.append(r)
                row[f"before_{model}_test"] = r.get("test_accuracy")
        row["load_average_after"] = load_average()
        rows.append(row)
    columns = [
        "set",
        "chose",
        "lstm_test",
        "gru_test",
        "lstm_wall_s",
        "gru_wall_s",
        "cv_folds",
        "trials_completed",
        "trials",
        "search_runs",
        "search_best_val",
        "search_best_model_test",
        "replay_test",
        "search_wall_s",
        "replay_wall_s",
        "before_lstm_test",
        "before_gru_test",
        "load_average_before",
        "load_average_after",
    ]
    run_columns = [
        "run",
        "code",
        "exit_status",
        "batch_size",
        "epochs",
        "patience",
        "epochs_run",
        "val_accuracy",
        "test_accuracy",
        "wall_s",
        "error",
    ]
    write_outputs(
        out,
        "small",
        {"sets": rows, "runs": runs, "code": commit_of(ROOT)},
        [markdown(rows, columns), markdown(runs, run_columns)],
    )
    return 0


# --- memory mode -----------------------------------------------------------------------------

MEMORY_SEARCH = [
    "har",
    "--task-option",
    "frame_steps=4",
    "--tuner",
    "random",
    "--epochs",
    "1",
    "--models",
    "lstm,gru,rnn,conv_lstm,attention_lstm,peephole_lstm",
    "--fix",
    "units=16,32",
    "--fix",
    "depth=1,2",
    "--fix",
    "batch_size=128",
    "--project",
    "memory",
    "--overwrite",
    "--quiet",
    "--report-rss",
]


def memory(args) -> int:
    code = Path(args.code or os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or ROOT)
    out = Path(args.out).resolve()
    cmd = [
        "-m",
        "tuning.search",
        *MEMORY_SEARCH,
        "--data",
        args.har_data,
        "--max-trials",
        str(args.max_trials),
        "--seed",
        str(args.seed),
        "--dir",
        str(out / "search"),
        *args.search_arg,
    ]
    env = dict(e.split("=", 1) for e in args.env)
    load_before = load_average()
    os.environ.update(env)
    seconds, status, text = run(cmd, out / "logs" / "memory-search.log", code.resolve())
    if not (out / "search" / "memory" / "trials.csv").is_file():  # the search failed at once
        last = (text.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(
            f"benchmark_tuning: error: the search wrote no trials (exit {status}): {last}"
        )
    with open(out / "search" / "memory" / "trials.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f)]
    rss = [float(r["rss_mb"]) if r["rss_mb"] else None for r in rows]
    a, b = args.compare
    known = len(rss) >= b and rss[a - 1] is not None and rss[b - 1] is not None
    summary = {
        "code": f"{code} ({commit_of(code)})",
        "env": env,
        "search_args": args.search_arg,
        "trials": len(rows),
        "completed": sum(r["status"] == "COMPLETED" for r in rows),
        f"rss_mb_after_trial_{a}": rss[a - 1] if len(rss) >= a else None,
        f"rss_mb_after_trial_{b}": rss[b - 1] if len(rss) >= b else None,
        "growth_mb": rss[b - 1] - rss[a - 1] if known else None,
        "peak_line": next((ln for ln in text.splitlines() if ln.startswith("Peak RSS")), ""),
        "search_s": seconds,
        "mean_trial_s": statistics.mean(float(r["seconds"] or 0) for r in rows) if rows else None,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "exit_status": status,
        "argv": cmd,
    }
    trials = [
        {
            "trial": r["trial_id"],
            "status": r["status"],
            "model": r.get("model"),
            "seconds": r["seconds"],
            "rss_mb": r["rss_mb"],
        }
        for r in rows
    ]
    head = [{"figure": k, "value": v} for k, v in summary.items() if k != "argv"]
    write_outputs(
        out,
        "memory",
        {"summary": summary, "trials": trials},
        [
            markdown(head, ["figure", "value"]),
            markdown(trials, ["trial", "status", "model", "seconds", "rss_mb"]),
        ],
    )
    return 0 if status == 0 else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    args.max_trials = args.max_trials or (40 if args.mode == "memory" else 20)
    modes = {"overhead": overhead, "small": small, "memory": memory}
    return modes[args.mode](args)


if __name__ == "__main__":
    raise SystemExit(main())
