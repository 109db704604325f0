"""Choose training defaults by cross-validation inside the TRAINING splits of the panel sets.

Each panel set's official training split (never its test split) is cut into K stratified folds;
for each fold an npz holds the other folds as X_train and the fold as X_test, and each recipe
(a set of `python -m zoo.train` flags) trains on it as a user would: `python -m zoo.train npz
MODEL --data fold.npz FLAGS`. The recipe's figure on a set is its mean accuracy over the
held-out folds. Recipes are named below; `{steps:N}` in a recipe's flags becomes the epochs that
make N gradient steps at that fold's batch size (all its windows with `--refit`, else the
windows left after the validation split). Finished cells are kept in --out/cells/ and reused.

    python scripts/cv_defaults.py --sets ItalyPowerDemand,GunPoint,ArrowHead --model lstm_fcn
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's zoo, not another
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark_peers import AEON_SETS, aeon_npz, pick  # noqa: E402

from zoo.files import write_json  # noqa: E402

# name -> zoo.train flags; the model's own defaults (zoo.config.training_defaults_for) are
# the recipe "defaults".
RECIPES = {
    "defaults": [],
    "es_1000_steps": ["--epochs", "{steps:1000}"],
    "refit_1000_steps": ["--refit", "--epochs", "{steps:1000}"],
    "refit_3000_steps": ["--refit", "--epochs", "{steps:3000}"],
    "refit_best": ["--refit-best"],
    "constant_lr": ["--lr-schedule", "constant"],
    "batch_16": ["--batch-size", "16"],
    "filters_64": ["--filters", "64"],
    "units_64_dropout_0.3": ["--units", "64", "--dropout", "0.3"],
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", default="runs/cv_defaults", help="folder for folds, runs and cells")
    p.add_argument("--sets", default="*", help=f"globs of {', '.join(AEON_SETS)}")
    p.add_argument("--model", default="lstm_fcn", help="the zoo model")
    p.add_argument("--recipes", default="*", help=f"globs of {', '.join(RECIPES)}")
    p.add_argument("--folds", type=int, default=3, help="folds of each training split")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and of every run")
    return p.parse_args(argv)


def fold_files(name: str, args) -> list[Path]:
    """K npz files of set `name`'s training split: the other folds train, the fold tests."""
    from sklearn.model_selection import StratifiedKFold

    folder = Path(args.out) / "folds"
    paths = [folder / f"{name}-fold{k}of{args.folds}.npz" for k in range(args.folds)]
    if all(p.is_file() for p in paths):
        return paths
    with np.load(aeon_npz(name, Path(args.out) / "data")) as data:
        x, y = data["X_train"], data["y_train"]  # the official training split only
    folder.mkdir(parents=True, exist_ok=True)
    splits = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed).split(x, y)
    for path, (fit, held) in zip(paths, splits, strict=True):
        np.savez(path, X_train=x[fit], y_train=y[fit], X_test=x[held], y_test=y[held])
    return paths


def resolved_flags(flags: list[str], path: Path, model: str) -> list[str]:
    """`flags` with `{steps:N}` as the epochs of N gradient steps on that fold."""
    from zoo.config import training_defaults_for
    from zoo.tasks import get_task

    if not any("{steps:" in f for f in flags):
        return flags
    task = get_task("npz", data=str(path))
    windows = len(task.x_train) + (len(task.x_val) if "--refit" in flags else 0)
    batch = training_defaults_for(task, model)["batch_size"]
    if "--batch-size" in flags:
        batch = int(flags[flags.index("--batch-size") + 1])
    out = []
    for flag in flags:
        if flag.startswith("{steps:"):
            steps = int(flag[len("{steps:") : -1])
            flag = str(math.ceil(steps / math.ceil(windows / batch)))
        out.append(flag)
    return out


def run_cell(name: str, fold: int, path: Path, recipe: str, args) -> dict:
    """One zoo.train process on one fold; its held-out accuracy (kept in --out/cells/)."""
    label = f"{name}-{args.model}-{recipe}-fold{fold}of{args.folds}-seed{args.seed}"
    cell = Path(args.out) / "cells" / f"{label}.json"
    if cell.is_file():
        return json.loads(cell.read_text())
    flags = resolved_flags(RECIPES[recipe], path, args.model)
    folder = Path(args.out) / "runs" / label
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    command = ["-m", "zoo.train", "npz", args.model, "--data", str(path), *flags]
    command += ["--seed", str(args.seed), "--out", str(folder), "--quiet"]
    log = Path(args.out) / "logs" / f"{label}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, *command], stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"python {' '.join(command)} exited {done.returncode} (log: {log})")
    metrics = json.loads((folder / "metrics.json").read_text())
    config = json.loads((folder / "config.json").read_text())["hyperparameters"]
    result = {
        "set": name,
        "fold": fold,
        "recipe": recipe,
        "accuracy": metrics["accuracy"],
        "epochs": config["epochs"],
        "epochs_run": metrics["epochs_run"],
        "batch_size": config["batch_size"],
        "seconds": time.perf_counter() - started,
        "command": "python " + " ".join(command),
    }
    cell.parent.mkdir(parents=True, exist_ok=True)
    write_json(cell, result)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    sets, recipes = pick(args.sets, AEON_SETS), pick(args.recipes, RECIPES)
    results = []
    for name in sets:
        paths = fold_files(name, args)
        for recipe in recipes:
            for fold, path in enumerate(paths):
                cell = run_cell(name, fold, path, recipe, args)
                results.append(cell)
                print(
                    f"[cv] {name} {args.model} {recipe} fold {fold + 1}/{args.folds}: "
                    f"{cell['accuracy']:.4f} ({cell['epochs_run']} of {cell['epochs']} epochs, "
                    f"batch {cell['batch_size']}, {cell['seconds']:.0f} s)",
                    flush=True,
                )
    print(f"\n| set | {' | '.join(recipes)} |\n|---|{'---:|' * len(recipes)}")
    means = {r: [] for r in recipes}
    for name in sets:
        row = []
        for recipe in recipes:
            mine = [c["accuracy"] for c in results if c["set"] == name and c["recipe"] == recipe]
            means[recipe].append(statistics.mean(mine))
            row.append(f"{100 * statistics.mean(mine):.2f}")
        print(f"| {name} | {' | '.join(row)} |")
    print(f"| mean | {' | '.join(f'{100 * statistics.mean(means[r]):.2f}' for r in recipes)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
