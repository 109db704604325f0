"""The zoo against the classifiers a user would try first, on the same splits, in one run.

A panel of labelled data sets no one tuned the zoo to: the UCR/UEA sets that ship inside the
aeon package (ACSF1, ArrowHead, GunPoint, ItalyPowerDemand, OSULeaf; read offline, official
train/test splits), UCI HAR (`--har PATH`; skipped with a line where absent) and scikit-learn's
digits (the zoo's `digits` task). aeon also ships BasicMotions, JapaneseVowels and
PickupGestureWiimoteZ: they are held back to check defaults on data no one tuned to, and this
script never loads them.

Each cell (set, method, seed) runs once:

- the zoo as a user runs it: `python -m zoo.train npz MODEL --data SET.npz` (the npz written from
  aeon's arrays with the official split; `har` and `digits` through their tasks) with the
  model's own defaults, and `python -m tuning.best` with `--time-budget` (method `best`);
- aeon's MiniRocketClassifier and RocketClassifier (`pip install -e '.[peers]'`), trained on
  every labelled window outside the test split (the zoo's train and validation splits
  together), one process for the whole script.

Every zoo cell is its own process. Test accuracy is measured once a cell. A finished cell is
kept in --out/cells/ and reused when the script runs again (the full run is long: stop it and
start it again at will). Writes peers.csv and peers.md in --out: accuracy mean, spread (std
and range over seeds) and wall time a cell (noisy on a shared machine).

    python scripts/benchmark_peers.py --har ../shared/data/uci_har_dataset.zip --out runs/peers
    python scripts/benchmark_peers.py --sets GunPoint --methods minirocket,lstm_fcn --seeds 0
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's zoo, not another

from zoo.files import write_csv, write_json  # noqa: E402

AEON_SETS = ("ACSF1", "ArrowHead", "GunPoint", "ItalyPowerDemand", "OSULeaf")
# Shipped with aeon but held back (issue 24): never loaded here.
HELD_BACK = ("BasicMotions", "JapaneseVowels", "PickupGestureWiimoteZ")
SETS = (*AEON_SETS, "HAR", "digits")
ZOO_MODELS = ("lstm", "gru", "lstm_fcn", "mlstm_fcn", "gru_fcn")
PEERS = ("minirocket", "rocket")
METHODS = (*ZOO_MODELS, "best", *PEERS)
MINIROCKET_MIN_STEPS = 9  # aeon's MiniRocket refuses shorter series: digits is zero-padded


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", default="runs/peers", help="folder for data, runs, cells and tables")
    p.add_argument("--sets", default="*", help=f"comma-separated globs of {', '.join(SETS)}")
    p.add_argument("--methods", default="*", help=f"comma-separated globs of {', '.join(METHODS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds a cell")
    p.add_argument("--har", help="UCI HAR zip or folder; without it HAR is skipped")
    p.add_argument(
        "--time-budget", default="15m", help="the `best` method's --time-budget (tuning.best)"
    )
    p.add_argument(
        "--train-args", default="", help="extra flags for every zoo.train cell (e.g. --epochs 2)"
    )
    p.add_argument(
        "--best-args", default="", help="extra flags for every tuning.best cell (e.g. --cv 2)"
    )
    p.add_argument(
        "--rerun", action="store_true", help="run every selected cell again (not the kept ones)"
    )
    args = p.parse_args(argv)
    for name in ("sets", "methods"):
        known = SETS if name == "sets" else METHODS
        chosen = pick(getattr(args, name), known)
        if not chosen:
            p.error(f"--{name} {getattr(args, name)!r} matches none of {', '.join(known)}")
        setattr(args, name, chosen)
    return args


def pick(globs: str, names) -> list[str]:
    """The names matching any of the comma-separated globs, in their own order."""
    patterns = [g.strip() for g in globs.split(",") if g.strip()]
    return [n for n in names if any(fnmatch.fnmatch(n, g) for g in patterns)]


# ---------------------------------------------------------------- data


def aeon_npz(name: str, folder: Path) -> Path:
    """The aeon set `name` as an npz of the official split: X as (windows, steps, channels)
    float32, y as integer labels 0..K-1 (aeon's labels sorted)."""
    if name in HELD_BACK:
        raise ValueError(f"{name} is held back: it is never loaded")
    path = folder / f"{name}.npz"
    if path.is_file():
        return path
    from aeon.datasets import load_classification

    x_train, y_train = load_classification(name, split="train")
    x_test, y_test = load_classification(name, split="test")
    labels = sorted(set(y_train) | set(y_test), key=label_key)
    code = {label: i for i, label in enumerate(labels)}
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.npz"
    np.savez(
        tmp,
        X_train=np.transpose(x_train, (0, 2, 1)).astype(np.float32),
        y_train=np.array([code[v] for v in y_train], dtype=np.int64),
        X_test=np.transpose(x_test, (0, 2, 1)).astype(np.float32),
        y_test=np.array([code[v] for v in y_test], dtype=np.int64),
    )
    os.replace(tmp, path)
    return path


def label_key(label):
    """Sort numeric labels as numbers ('2' before '10'), others as text."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, str(label))


def zoo_command(name: str, args) -> tuple[str, list[str]]:
    """(TASK, data flags) of set `name` for zoo.train and tuning.best."""
    if name == "HAR":
        return "har", ["--data", args.har]
    if name == "digits":
        return "digits", []
    return "npz", ["--data", str(aeon_npz(name, Path(args.out) / "data"))]


def peer_splits(name: str, args):
    """(x_fit, y_fit, x_test, y_test) for aeon, x as (windows, channels, steps): the zoo task's
    train and validation splits together, and its test split."""
    from zoo.tasks import get_task

    task, flags = zoo_command(name, args)
    options = {"data": flags[1]} if flags else {}
    t = get_task(task, **options)
    x_fit = np.concatenate([t.x_train, t.x_val])
    y_fit = np.concatenate([t.y_train, t.y_val])
    x_fit, x_test = (np.transpose(x, (0, 2, 1)).astype(np.float64) for x in (x_fit, t.x_test))
    short = MINIROCKET_MIN_STEPS - x_fit.shape[2]
    if short > 0:  # digits' 8 steps: zero-padded to MiniRocket's 9 (for Rocket too: one input)
        pad = ((0, 0), (0, 0), (0, short))
        x_fit, x_test = np.pad(x_fit, pad), np.pad(x_test, pad)
    return x_fit, y_fit, x_test, t.y_test


# ---------------------------------------------------------------- cells


def run_peer(name: str, method: str, seed: int, args) -> dict:
    """aeon's MiniRocket or Rocket on set `name`, in this process (n_jobs=1)."""
    from aeon.classification.convolution_based import MiniRocketClassifier, RocketClassifier

    x_fit, y_fit, x_test, y_test = peer_splits(name, args)
    make = MiniRocketClassifier if method == "minirocket" else RocketClassifier
    started = time.perf_counter()
    classifier = make(random_state=seed, n_jobs=1).fit(x_fit, y_fit)
    predicted = classifier.predict(x_test)
    wall = time.perf_counter() - started
    result = cell_result(y_test, predicted, wall, har=name == "HAR")
    return {**result, "command": f"aeon {make.__name__}(random_state={seed}, n_jobs=1)"}


def cell_result(y_test, predicted, wall: float, har: bool = False) -> dict:
    """A peer cell's figures: test accuracy and errors (and HAR's SITTING/STANDING errors)."""
    y_test = np.asarray(y_test)
    predicted = np.asarray(predicted).astype(y_test.dtype)
    errors = int((predicted != y_test).sum())
    result = {"accuracy": 1 - errors / len(y_test), "errors": errors, "wall_seconds": wall}
    if har:  # zoo.tasks.har.CLASS_NAMES: 3 is SITTING, 4 STANDING
        confused = (y_test == 3) & (predicted == 4) | (y_test == 4) & (predicted == 3)
        result["sitting_standing"] = int(confused.sum())
    return result


def run_zoo(name: str, method: str, seed: int, args) -> dict:
    """`python -m zoo.train TASK MODEL` (or `python -m tuning.best TASK`) as its own process;
    its test accuracy from the run folder's metrics.json."""
    task, data = zoo_command(name, args)
    folder = Path(args.out) / "runs" / f"{name}-{method}-seed{seed}"
    if folder.exists():  # an unfinished cell (killed): start it again
        shutil.rmtree(folder)
    if method == "best":
        search = Path(args.out) / "searches"
        command = ["-m", "tuning.best", task, *data, "--time-budget", args.time_budget]
        command += ["--dir", str(search), "--project", f"{name}-seed{seed}", "--overwrite"]
        command += args.best_args.split()
    else:
        command = ["-m", "zoo.train", task, method, *data, "--quiet", *args.train_args.split()]
    command += ["--seed", str(seed), "--out", str(folder)]
    log = Path(args.out) / "logs" / f"{name}-{method}-seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, *command], stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    shown = "python " + " ".join(command)
    if done.returncode != 0 or not (folder / "metrics.json").is_file():
        tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{shown} exited {done.returncode}: {tail[0]} (log: {log})")
    metrics = json.loads((folder / "metrics.json").read_text())
    config = json.loads((folder / "config.json").read_text())["hyperparameters"]
    return {
        "accuracy": metrics["accuracy"],
        "errors": metrics["errors"],
        "wall_seconds": wall,
        "command": shown,
        "model": config["model"],
        "epochs_run": metrics.get("epochs_run"),
        "sitting_standing": sitting_standing(metrics),
    }


def sitting_standing(metrics: dict) -> int | None:
    """HAR's main error: SITTING taken for STANDING and back (None on other sets)."""
    names = metrics.get("class_names") or []
    if "SITTING" not in names or "STANDING" not in names:
        return None
    matrix, a, b = metrics["confusion_matrix"], names.index("SITTING"), names.index("STANDING")
    return matrix[a][b] + matrix[b][a]


def run_cell(name: str, method: str, seed: int, args) -> dict:
    """One cell, reused from --out/cells/ when it finished before."""
    path = Path(args.out) / "cells" / f"{name}-{method}-seed{seed}.json"
    if path.is_file() and not args.rerun:
        return {**json.loads(path.read_text()), "reused": True}
    run = run_peer if method in PEERS else run_zoo
    result = {"set": name, "method": method, "seed": seed, **run(name, method, seed, args)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    return result


# ---------------------------------------------------------------- tables


def summarize(cells: list[dict]) -> list[dict]:
    """One row a (set, method): accuracy mean, std and range over seeds, mean wall time."""
    rows = []
    keys = dict.fromkeys((c["set"], c["method"]) for c in cells)
    for name, method in keys:
        done = [c for c in cells if c["set"] == name and c["method"] == method]
        accuracy = [c["accuracy"] for c in done]
        row = {
            "set": name,
            "method": method,
            "seeds": " ".join(str(c["seed"]) for c in done),
            "accuracy_mean": statistics.mean(accuracy),
            "accuracy_std": statistics.pstdev(accuracy) if len(accuracy) > 1 else 0.0,
            "accuracy_min": min(accuracy),
            "accuracy_max": max(accuracy),
            "wall_seconds_mean": statistics.mean(c["wall_seconds"] for c in done),
        }
        standing = [
            c.get("sitting_standing") for c in done if c.get("sitting_standing") is not None
        ]
        row["sitting_standing"] = " ".join(map(str, standing))
        models = sorted({c["model"] for c in done if c.get("model")})
        row["models"] = " ".join(models) if method == "best" else ""
        rows.append(row)
    return rows


COLUMNS = [
    "set",
    "method",
    "seeds",
    "accuracy_mean",
    "accuracy_std",
    "accuracy_min",
    "accuracy_max",
    "wall_seconds_mean",
    "sitting_standing",
    "models",
]


def markdown(rows: list[dict]) -> str:
    """The table as Markdown: accuracy as mean ± std (min-max) in percent."""
    lines = [
        "| set | method | seeds | test accuracy % (mean ± std) | min-max | wall s a cell | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        note = []
        if r["sitting_standing"]:
            note.append(f"SITTING/STANDING errors {r['sitting_standing']}")
        if r["models"]:
            note.append(f"chose {r['models']}")
        lines.append(
            f"| {r['set']} | {r['method']} | {len(r['seeds'].split())} | "
            f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} | "
            f"{100 * r['accuracy_min']:.2f}-{100 * r['accuracy_max']:.2f} | "
            f"{r['wall_seconds_mean']:.0f} | {'; '.join(note)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    names = list(args.sets)
    if "HAR" in names and not (args.har and Path(args.har).exists()):
        print(f"HAR skipped: no --har data ({args.har or 'not given'})")
        names.remove("HAR")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plan = [(n, m, s) for n in names for m in args.methods for s in args.seeds]
    cells, failed = [], 0
    for i, (name, method, seed) in enumerate(plan, start=1):
        try:
            cell = run_cell(name, method, seed, args)
        except (RuntimeError, ValueError, OSError) as err:
            failed += 1
            print(f"[peers] {i}/{len(plan)} {name} {method} seed {seed}: FAILED: {err}", flush=True)
            continue
        cells.append(cell)
        how = "kept" if cell.get("reused") else f"{cell['wall_seconds']:.0f} s"
        print(
            f"[peers] {i}/{len(plan)} {name} {method} seed {seed}: accuracy "
            f"{cell['accuracy']:.4f} ({cell['errors']} errors), {how}",
            flush=True,
        )
    rows = summarize(cells)
    write_csv(out / "peers.csv", rows, COLUMNS)
    (out / "peers.md").write_text(markdown(rows))
    print(markdown(rows), end="")
    print(f"Tables: {out / 'peers.csv'}, {out / 'peers.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
