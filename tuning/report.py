"""`python -m tuning.report DIR`: trials.csv and plots from a keras-tuner project folder.

Reads only files (`search.json`, `trial_*/trial.json`), so it works on a finished search, on a
running one and on a distributed search's shared folder, whichever process wrote the trials.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from zoo import backend, plots
from zoo.cli import Parser
from zoo.files import CorruptFile, read_json_recovering, write_csv

# Trial metrics recorded by `tuning.tuners.ZooTuner`, shown after the hyperparameters.
COSTS = ("objective_std", "best_epoch", "epochs_run", "seconds", "rss_mb")
PLOTS = (  # (x, colour by, file name)
    ("learning_rate", "model", "objective_vs_learning_rate_by_model.png"),
    ("learning_rate", "optimizer", "objective_vs_learning_rate_by_optimizer.png"),
    ("units", "model", "objective_vs_units.png"),
)


def read_objective(project_dir: Path) -> tuple[str, str]:
    """(name, direction) of the search's objective, from search.json; ("score", "max") without."""
    try:
        objective = json.loads((project_dir / "search.json").read_text())["objective"]
        return objective["name"], objective["direction"]
    except (OSError, KeyError, json.JSONDecodeError):
        return "score", "max"


def read_trials(project_dir: Path) -> list[dict]:
    """Every trial.json (else its last good copy), by trial id; an unreadable one is skipped."""
    trials = []
    for path in sorted(project_dir.glob("trial_*/trial.json")):
        try:
            trials.append(read_json_recovering(path)[0])
        except (OSError, CorruptFile) as err:
            print(f"skipping {path}: {err}", file=sys.stderr)
    return trials


def last_value(trial: dict, metric: str) -> float | None:
    """The last recorded value of a trial metric, or None."""
    history = trial.get("metrics", {}).get("metrics", {}).get(metric)
    if not history or not history["observations"]:
        return None
    return history["observations"][-1]["value"][-1]


def trial_row(trial: dict, objective: str) -> dict:
    """One trial as a flat row. `model` is the registered model (a bidirectional twin is named
    as such), so the row reads as `python -m zoo.train` arguments."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    from tuning.hypermodel import model_name

    hyperparameters = trial["hyperparameters"]
    values = dict(hyperparameters["values"])
    if "model" in values:
        values["model"] = model_name(values)
    space = [hp["config"]["name"] for hp in hyperparameters.get("space", [])]
    values |= {name: None for name in space if name not in values}  # inactive ones
    message = (trial.get("message") or "").strip().splitlines()
    row = {"trial_id": trial["trial_id"], "status": trial["status"], **values}
    row[objective] = trial.get("score")
    row |= {key: last_value(trial, key) for key in COSTS}
    row["message"] = message[-1] if message else ""
    return row


def columns(rows: list[dict], objective: str) -> list[str]:
    """trial_id, status, the hyperparameters (the zoo's in their usual order, then any others,
    such as hyperband's tuner/epochs), objective, costs, message."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    from tuning.hypermodel import NAMES

    head, tail = ["trial_id", "status"], [objective, *COSTS, "message"]
    seen = [k for row in rows for k in row if k not in head and k not in tail]
    names = [n for n in NAMES if n in seen]
    names += [n for n in dict.fromkeys(seen) if n not in names]
    return head + names + tail


def draw_plots(rows, objective: str, direction: str, folder: Path) -> list[Path]:
    """The HAR tutorial's search figures, from the completed trials that have the values."""
    drawn = []
    for x, colour, name in PLOTS:
        points = [
            r for r in ranked(rows, objective, direction) if isinstance(r.get(x), (int, float))
        ]
        if points:
            best = best_row(points, objective, direction)
            drawn.append(plots.search_scatter(points, x, colour, objective, best, folder / name))
    return drawn


def ranked(rows: list[dict], objective: str, direction: str) -> list[dict]:
    """Completed rows with a finite objective, best first. The one rule for "best" that the
    search, the report and the plots share: the best objective; among equal objectives, the
    earliest trial."""
    done = [
        r
        for r in rows
        if r["status"] == "COMPLETED"
        and isinstance(r.get(objective), (int, float))
        and math.isfinite(r[objective])
    ]
    sign = -1 if direction == "max" else 1
    return sorted(done, key=lambda r: (sign * r[objective], int(r["trial_id"])))


def best_row(rows: list[dict], objective: str, direction: str) -> dict | None:
    """The best trial's row (see `ranked`), or None before any trial completed."""
    order = ranked(rows, objective, direction)
    return order[0] if order else None


def write_trials_csv(project_dir: str | os.PathLike) -> list[dict]:
    """Write trials.csv from the trial files (atomically); return the rows. Run after every
    trial, so a long search can be watched."""
    project_dir = Path(project_dir)
    objective, _ = read_objective(project_dir)
    rows = [trial_row(trial, objective) for trial in read_trials(project_dir)]
    write_csv(project_dir / "trials.csv", rows, columns(rows, objective))
    return rows


def write_report(project_dir: str | os.PathLike) -> list[dict]:
    """Write trials.csv and the plots into the project folder; return the rows."""
    project_dir = Path(project_dir)
    rows = write_trials_csv(project_dir)
    draw_plots(rows, *read_objective(project_dir), project_dir)
    return rows


def summary(rows: list[dict], objective: str, direction: str, top: int = 10) -> str:
    """Counts by status and the best trials, as text."""
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    lines = [f"{len(rows)} trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    for r in ranked(rows, objective, direction)[:top]:
        lines.append(
            f"  trial {r['trial_id']}: {objective} {r[objective]:.4f}  {r.get('model')}  "
            f"units={r.get('units')} lr={r.get('learning_rate')} optimizer={r.get('optimizer')}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m tuning.report",
        description="Redraw trials.csv and the plots of a search project folder (finished, "
        "running, or a distributed search's shared folder).",
    )
    parser.add_argument("dir", help="the project folder: DIR/PROJECT of python -m tuning.search")
    args = parser.parse_args(argv)
    try:  # the trials name models through the registry, which imports Keras: quietly
        backend.load()
    except backend.BackendError as err:
        parser.error(str(err))
    project_dir = Path(args.dir)
    if not any(project_dir.glob("trial_*/trial.json")):
        parser.error(f"{project_dir} holds no keras-tuner trials (trial_*/trial.json)")
    rows = write_report(project_dir)
    print(summary(rows, *read_objective(project_dir)))
    print(f"Wrote {project_dir / 'trials.csv'} and plots")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
