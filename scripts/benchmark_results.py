"""Train the tutorial configurations with `zoo.train` and print one table of results.

Each configuration runs once per seed as its own `python -m zoo.train` process (so wall times
are honest and runs do not share memory). Writes results.csv and results.md in --out.

    python scripts/benchmark_results.py --data ../shared/data/uci_har_dataset.zip
    python scripts/benchmark_results.py --only 'har:*' --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

# (task, model, extra zoo.train flags): the seed tutorials' configurations, defaults otherwise.
CONFIGS = [
    ("har", "rnn", []),
    ("har", "lstm", []),
    ("har", "lstm", ["--preset", "har_lstm_ensemble"]),
    ("har", "lstm", ["--preset", "har_lstm_unframed"]),
    ("har", "lstm", ["--preset", "har_lstm_per_subject"]),
    ("har", "gru", []),
    ("har", "bilstm", []),
    ("har", "stacked_lstm", []),
    ("har", "deep_lstm", []),
    ("har", "lstm", ["--task-option", "window_features=true"]),
    ("har", "lstm", ["--depth", "0", "--task-option", "window_features=true"]),
    ("har", "mlstm_fcn", []),  # its preset joins the window features
    ("har", "mlstm_fcn", ["--preset", "none"]),
    ("har", "linear_svm", []),  # the reference: scripts/benchmark_features.py's linear SVM
    ("echo", "lstm", []),
    ("count_ones", "lstm", []),
    ("sine", "lstm", []),
    ("random_walk", "lstm", []),
    ("digits", "lstm", []),
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--only",
        default="*",
        help="task:model globs, comma-separated; a glob with a space also matches the flags, "
        "e.g. 'har:lstm --depth 0*'",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to run each with")
    p.add_argument("--data", help="UCI HAR zip or folder, passed to the har runs")
    p.add_argument("--out", default="benchmarks", help="folder for runs and the tables")
    p.add_argument("--train-args", default="", help="extra zoo.train flags for every run")
    p.add_argument("--resume", action="store_true", help="reuse the runs already finished in --out")
    return p.parse_args(argv)


def selected(only: str) -> list[tuple[str, str, list[str]]]:
    globs = [g.strip() for g in only.split(",") if g.strip()]

    def matches(config, glob: str) -> bool:
        name = f"{config[0]}:{config[1]}"
        return fnmatch.fnmatch(" ".join([name, *config[2]]) if " " in glob else name, glob)

    return [c for c in CONFIGS if any(matches(c, g) for g in globs)]


def run_one(task: str, model: str, flags: list[str], seed: int, args) -> dict:
    """One zoo.train process; its metrics, config and wall time (reused with --resume)."""
    label = "".join(f"-{flag.lstrip('-')}" for flag in flags)
    folder = Path(args.out) / "runs" / f"{task}-{model}{label}-seed{seed}"
    done = folder / "benchmark.json"
    if args.resume and done.exists():
        return {**read_run(folder), "wall": json.loads(done.read_text())["wall_seconds"]}
    if folder.exists():
        raise SystemExit(f"{folder} exists: remove it, use --resume or choose another --out")
    cmd = [sys.executable, "-m", "zoo.train", task, model, "--seed", str(seed),
           "--out", str(folder), "--quiet", *flags, *args.train_args.split()]  # fmt: skip
    if task == "har" and args.data:
        cmd += ["--data", args.data]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    done.write_text(json.dumps({"wall_seconds": wall, "command": cmd}) + "\n")
    return {**read_run(folder), "wall": wall}


def svm_row(args) -> dict:
    """The reference row: a linear SVM on the same per-window features (benchmark_features.py;
    C chosen on the validation subjects; deterministic, so one run)."""
    import benchmark_features as bf

    started = time.perf_counter()
    data = args.data or str(bf.DEFAULT_DATA)
    arrays, val, features, names, _ = bf.har_features(data)
    r = bf.run("svm", features, arrays, val, bf.GRID)
    return {
        "task": "har",
        "model": "linear_svm",
        "preset": f"C={r['c']:g}",
        "seeds": 1,
        "epochs": 0,
        "wall_s": time.perf_counter() - started,
        "metric": "test accuracy",
        "mean": r["test"],
        "std": 0.0,
        "parameters": (len(names) + 1) * 6,
        "baseline": f"errors {r['errors']}, SITTING/STANDING {r['sit_stand']}",
    }


def read_run(folder: Path) -> dict:
    """A finished run's metrics and config."""
    return {
        "metrics": json.loads((folder / "metrics.json").read_text()),
        "config": json.loads((folder / "config.json").read_text()),
    }


def summarize(task, model, runs: list[dict]) -> dict:
    """One table row: the headline test metric as mean ± std over seeds."""
    first = runs[0]["metrics"]
    key = "accuracy" if "accuracy" in first else "mse"
    values = [r["metrics"][key] for r in runs]
    row = {
        "task": task,
        "model": model,
        "preset": runs[0]["config"]["hyperparameters"].get("preset") or "-",
        "seeds": len(runs),
        "epochs": statistics.mean(r["metrics"]["epochs_run"] for r in runs),
        "wall_s": statistics.mean(r["wall"] for r in runs),
        "metric": f"test {key}",
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "parameters": runs[0]["config"]["parameters"],
    }
    if "persistence_mse" in first:
        row["baseline"] = f"persistence MSE {first['persistence_mse']:.4f}"
    elif key == "accuracy":
        row["baseline"] = f"errors {statistics.mean(r['metrics']['errors'] for r in runs):.0f}"
    return row


def markdown(rows: list[dict]) -> str:
    lines = [
        "| task | model | preset | seeds | epochs | wall time (s) | test metric | mean ± std | parameters | note |",
        "|---|---|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['model']} | {r['preset']} | {r['seeds']} | {r['epochs']:.0f} | {r['wall_s']:.0f} | "
            f"{r['metric']} | {r['mean']:.4f} ± {r['std']:.4f} | {r['parameters']:,} | "
            f"{r.get('baseline', '')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    configs = selected(args.only)
    if not configs:
        print(f"no configuration matches --only {args.only!r}", file=sys.stderr)
        return 2
    Path(args.out).mkdir(parents=True, exist_ok=True)
    rows = []
    for task, model, flags in configs:
        if model == "linear_svm":
            rows.append(svm_row(args))
            continue
        runs = []
        for seed in args.seeds:
            runs.append(run_one(task, model, flags, seed, args))
            print(f"{task} {model} seed {seed}: {runs[-1]['wall']:.0f} s", file=sys.stderr)
        rows.append(summarize(task, model, runs))
        if flags and flags[0] != "--preset":  # the preset column names the others
            rows[-1]["model"] = f"{model} `{' '.join(flags)}`"
    with open(Path(args.out) / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)
    table = markdown(rows)
    (Path(args.out) / "results.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
