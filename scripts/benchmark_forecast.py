"""Forecasting benchmark: the zoo beside naive, seasonal-naive, drift and ETS on shipped series.

Every series here ships inside a pip package (aeon's datasets, statsmodels' datasets), so the
benchmark reads nothing from the network. Each set is written as a CSV with dates (what a user
has) into --out/data/ and tested as `python -m zoo.train series` tests it: the last `horizon`
steps of every series (with --folds K, K rolling origins a horizon apart), errors in the data's
units. Methods: the baselines (computed here from the same task), `python -m zoo.train series
MODEL` with the model's and the task's defaults (lstm, gru, and es_rnn once it is registered),
and a time-boxed search (`python -m tuning.search series --models lstm,gru`). Uschange, also in
aeon, is held back: never loaded here.

Writes --out/results.csv (a row a set and method) and --out/results.md (MASE, sMAPE and RMSE
tables with the mean over sets); it resumes: a finished cell is read back, not run again.

    python scripts/benchmark_forecast.py --out benchmarks/forecast
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's zoo, not another

BASELINES = ("naive", "seasonal_naive", "drift", "ets")
COLUMNS = ["set", "method", "folds", "series", "horizon", "mase", "smape", "mae", "rmse"]
COLUMNS += ["seconds", "note"]


@dataclass(frozen=True)
class Set:
    """One benchmark set: how to load it (a DataFrame with a time column), its horizon and any
    task options beyond the defaults, with why."""

    load: object
    horizon: int
    about: str
    options: dict = field(default_factory=dict)


def _aeon_csv(name: str):
    """A CSV that ships in aeon's package data, read with pandas."""
    import aeon
    import pandas as pd

    return pd.read_csv(Path(aeon.__file__).parent / "datasets" / "data" / name / f"{name}.csv")


def airline():
    return _aeon_csv("Airline").rename(columns={"Date": "month"})


def lynx():
    frame = _aeon_csv("Lynx")  # an unnamed year column, then the counts
    return frame.set_axis(["year", "lynx"], axis=1)


def shampoo():
    return _aeon_csv("ShampooSales").rename(columns={"Time": "month"})


def pbs():
    import pandas as pd

    frame = _aeon_csv("PBS_dataset")
    frame["month"] = pd.to_datetime(frame.pop("Month"), format="%Y %b").dt.strftime("%Y-%m")
    return frame[["month", "Scripts"]]


def m1_yearly():
    import pandas as pd
    from aeon.datasets import load_forecasting

    frame = load_forecasting("m1_yearly_dataset")
    rows = []
    for name, start, values in frame[["series_name", "start_timestamp", "series_value"]].values:
        first = pd.Timestamp(start).year
        rows += [(name, first + i, v) for i, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["series", "year", "value"])


def _statsmodels(name: str):
    import statsmodels.api as sm

    return getattr(sm.datasets, name).load_pandas().data


def co2():
    weekly = _statsmodels("co2")["co2"]
    monthly = weekly.resample("MS").mean().interpolate()  # weeks without a reading: NaN
    return monthly.rename_axis("month").reset_index()


def sunspots():
    frame = _statsmodels("sunspots")
    return frame.assign(year=frame.pop("YEAR").astype(int))[["year", "SUNACTIVITY"]]


def nile():
    frame = _statsmodels("nile")
    return frame.assign(year=frame.pop("year").astype(int))[["year", "volume"]]


def elnino():
    import pandas as pd

    frame = _statsmodels("elnino")
    long = frame.melt(id_vars="YEAR", var_name="month", value_name="sst")
    long["month"] = pd.to_datetime(
        long["YEAR"].astype(int).astype(str) + "-" + long["month"], format="%Y-%b"
    )
    return long.sort_values("month")[["month", "sst"]]


def macrodata():
    frame = _statsmodels("macrodata")
    quarters = (
        frame["year"].astype(int).astype(str) + "Q" + frame["quarter"].astype(int).astype(str)
    )
    return frame.assign(quarter=quarters)[["quarter", "realgdp"]]


SETS = {
    "airline": Set(airline, 12, "aeon Airline: monthly passengers 1949-1960; test 1960"),
    "lynx": Set(lynx, 6, "aeon Lynx: yearly trappings 1821-1934; M4's yearly horizon"),
    "shampoo": Set(
        shampoo,
        6,
        "aeon ShampooSales: 36 months; horizon 6 and window 12 (the default window, 24, and a "
        "horizon of 12 leave no training window in 36 months)",
        {"window": 12},
    ),
    "pbs": Set(
        pbs, 18, "aeon PBS_dataset: monthly scripts 1991-2008 (counts); M4's monthly horizon"
    ),
    "m1_yearly": Set(m1_yearly, 6, "aeon m1_yearly_dataset: 181 yearly series; the M1/M4 horizon"),
    "co2": Set(co2, 18, "statsmodels co2: weekly 1958-2001 as monthly means; M4's monthly"),
    "sunspots": Set(sunspots, 6, "statsmodels sunspots: yearly activity 1700-2008; M4's yearly"),
    "nile": Set(nile, 6, "statsmodels nile: yearly flow 1871-1970; M4's yearly"),
    "elnino": Set(
        elnino, 18, "statsmodels elnino: monthly sea temperature 1950-2010; M4's monthly"
    ),
    "macrodata": Set(macrodata, 8, "statsmodels macrodata: quarterly real GDP 1959-2009; M4's"),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", default="benchmarks/forecast", help="folder for data, runs, tables")
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated sets")
    p.add_argument(
        "--methods",
        default="naive,seasonal_naive,drift,ets,lstm,gru,es_rnn,search",
        help="comma-separated: baselines, zoo models (trained with their defaults), search",
    )
    p.add_argument("--folds", type=int, default=1, help="rolling origins a set (folds=K)")
    p.add_argument("--seed", type=int, default=0, help="training and search seed")
    p.add_argument(
        "--search-budget", default="10m", help="time budget of each search (tuning.search)"
    )
    p.add_argument("--search-trials", type=int, default=30, help="most trials a search")
    p.add_argument(
        "--train-args", default="", help="extra zoo.train flags, e.g. '--epochs 2' for a smoke run"
    )
    p.add_argument("--search-args", default="", help="extra tuning.search flags, e.g. '--epochs 2'")
    return p.parse_args(argv)


def write_data(out: Path, name: str) -> Path:
    """The set as a CSV with dates in out/data/NAME.csv (written once)."""
    path = out / "data" / f"{name}.csv"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():  # aeon marks Lynx and ShampooSales deprecated
            warnings.simplefilter("ignore", FutureWarning)
            frame = SETS[name].load()
        tmp = path.with_suffix(".tmp")
        frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    return path


def task_options(name: str, folds: int) -> dict:
    return {"horizon": SETS[name].horizon, **SETS[name].options, "folds": folds}


def option_flags(options: dict) -> list[str]:
    return [a for k, v in options.items() for a in ("--task-option", f"{k}={v}")]


def row_of(name: str, method: str, figures: dict, folds: int, series: int, seconds, note=""):
    return {
        "set": name,
        "method": method,
        "folds": folds,
        "series": series,
        "horizon": SETS[name].horizon,
        **{k: f"{figures[k]:.6g}" for k in ("mase", "smape", "mae", "rmse")},
        "seconds": f"{seconds:.0f}",
        "note": note,
    }


def baseline_rows(name: str, data: Path, folds: int) -> list[dict]:
    """Every baseline on every fold of the set, from the task itself (no model)."""
    from zoo import backtest
    from zoo.tasks import get_task

    started = time.perf_counter()
    reports = []
    for k in range(folds):
        task = get_task("series", data=data, **task_options(name, folds), fold=k)
        reports.append(backtest.report(task.info, task.y_test, {})[0])
    mean = backtest.mean_over_folds(reports)
    seconds = time.perf_counter() - started
    series = reports[0]["series"]
    rows = [
        row_of(name, m, f, folds, series, seconds / len(mean["methods"]))
        for m, f in mean["methods"].items()
    ]
    if "ets" in mean:
        rows.append({"set": name, "method": "ets", "note": mean["ets"]})
    return rows


def run_cell(cmd: list[str], folder: Path, result: Path) -> float:
    """Run `cmd` (a zoo command writing `result`) unless `result` exists; a folder left by a
    killed run is removed first. Returns the seconds it took (0 if reused)."""
    if result.is_file():
        return 0.0
    if folder.exists():
        shutil.rmtree(folder)
    started = time.perf_counter()
    log = folder.with_suffix(".log")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    if done.returncode or not result.is_file():
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - started


def model_row(args, name: str, model: str, data: Path) -> dict:
    """`python -m zoo.train series MODEL` with its defaults on the set (every fold)."""
    import json

    options = task_options(name, args.folds)
    folder = Path(args.out) / "runs" / f"{name}-{model}"
    cmd = [sys.executable, "-m", "zoo.train", "series", model, "--data", str(data),
           *option_flags(options), "--seed", str(args.seed), "--out", str(folder), "--quiet",
           *args.train_args.split()]  # fmt: skip
    seconds = run_cell(cmd, folder, folder / "metrics.json")
    metrics = json.loads((folder / "metrics.json").read_text())
    report = metrics["forecast"]
    figures = report["methods"]["model"]
    series = report.get("series") or metrics["folds"][0]["series"]
    seconds = seconds or metrics.get("train_seconds", 0)
    return row_of(name, model, figures, args.folds, series, seconds)


def search_row(args, name: str, data: Path) -> dict:
    """A time-boxed search over lstm and gru (fold 0, the test: a search scores one split)."""
    import json

    options = {k: v for k, v in task_options(name, 1).items() if k != "folds"}
    root = Path(args.out) / "search"
    folder = root / name
    cmd = [sys.executable, "-m", "tuning.search", "series", "--data", str(data),
           *option_flags(options), "--models", "lstm,gru", "--max-trials",
           str(args.search_trials), "--time-budget", args.search_budget, "--seed",
           str(args.seed), "--dir", str(root), "--project", name, "--quiet",
           *args.search_args.split()]  # fmt: skip
    seconds = run_cell(cmd, folder, folder / "best_metrics.json")
    metrics = json.loads((folder / "best_metrics.json").read_text())
    report = metrics["forecast"]
    hp = metrics["hyperparameters"]
    note = f"best: {hp['model']}, units {hp.get('units')}, depth {hp.get('depth')}"
    return row_of(name, "search", report["methods"]["model"], 1, report["series"], seconds, note)


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def tables(rows: list[dict], sets: list[str], methods: list[str]) -> str:
    """MASE, sMAPE and RMSE tables (sets x methods) with the mean over sets of MASE and sMAPE."""
    cell = {(r["set"], r["method"]): r for r in rows if r.get("mase")}
    shown = [m for m in methods if any((s, m) in cell for s in sets)]
    lines = []
    for metric, title in (("mase", "MASE"), ("smape", "sMAPE (%)"), ("rmse", "RMSE (data units)")):
        lines += [f"{title}:", "", "| set | " + " | ".join(shown) + " |"]
        lines.append("|---" * (len(shown) + 1) + "|")
        for s in sets:
            values = [cell.get((s, m), {}).get(metric) for m in shown]
            lines.append(
                f"| {s} | " + " | ".join(f"{float(v):.3f}" if v else "-" for v in values) + " |"
            )
        if metric != "rmse":
            means = []
            for m in shown:
                values = [float(cell[(s, m)][metric]) for s in sets if (s, m) in cell]
                complete = len(values) == len(sets)
                means.append(
                    f"{np.nanmean(values):.3f}" + ("" if complete else "*") if values else "-"
                )
            lines.append("| **mean** | " + " | ".join(means) + " |")
        lines.append("")
    notes = sorted({r["note"] for r in rows if r.get("note")})
    if any(m.endswith("*") for m in lines):
        notes.append("* the mean over the sets that method finished")
    return "\n".join(lines + [f"- {n}" for n in notes])


def main(argv=None) -> int:
    args = parse_args(argv)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [s for s in sets if s not in SETS]
    if unknown:
        raise SystemExit(f"unknown set {unknown[0]!r}; sets: {', '.join(SETS)}")
    from zoo.models import MODELS

    models = [m for m in methods if m not in BASELINES and m != "search"]
    for model in models:
        if model not in MODELS and model != "es_rnn":
            raise SystemExit(f"unknown method {model!r}: a baseline, a zoo model or search")
    if "es_rnn" in models and "es_rnn" not in MODELS:
        print("es_rnn is not registered in this checkout: left out", file=sys.stderr)
        models.remove("es_rnn")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.csv"
    rows = read_rows(results)
    done = {(r["set"], r["method"]) for r in rows}
    order = [m for m in methods if m in BASELINES] + models
    order += ["search"] if "search" in methods else []
    methods = order
    cells = [(s, m) for m in order for s in sets]  # every set of a method, then the next
    for name, method in cells:
        if (name, method) in done:
            continue
        data = write_data(out, name)
        started = time.perf_counter()
        if method in BASELINES:  # every baseline of the set at once, from one task
            new = [r for r in baseline_rows(name, data, args.folds) if r["method"] in methods]
        elif method == "search":
            new = [search_row(args, name, data)]
        else:
            new = [model_row(args, name, method, data)]
        new = [r for r in new if (r["set"], r["method"]) not in done]
        rows += new
        done |= {(r["set"], r["method"]) for r in new}
        write_rows(results, rows)
        for r in new:
            if r.get("mase"):
                print(
                    f"[{cells.index((r['set'], r['method'])) + 1}/{len(cells)}] {r['set']} "
                    f"{r['method']}: MASE {float(r['mase']):.3f}, sMAPE {float(r['smape']):.2f}, "
                    f"RMSE {float(r['rmse']):.4g} ({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
    text = tables(rows, sets, methods)
    (out / "results.md").write_text(
        "Forecast benchmark (python scripts/benchmark_forecast.py): the test is the last "
        f"horizon of every series, {args.folds} fold(s).\n\n" + text + "\n"
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
