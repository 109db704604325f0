"""Generation and multi-step forecasts on sine and random_walk: one table of what they reach.

Trains (as `python -m zoo.train` processes, reused with --resume) sine/lstm, random_walk/lstm and
random_walk/lstm with `horizon=H`, then measures: for how many steps a sine series generated
from each test window stays within a tolerance of its true continuation (and from a zero seed,
its longest stretch on the true curve), and the test MSE per horizon step of the recursive and
direct forecasts against persistence. Writes sequences.json and sequences.md in --out.

    python scripts/benchmark_sequences.py --out benchmarks/sequences
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's zoo, not another


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", default="benchmarks/sequences", help="folder for runs and tables")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--steps", type=int, default=300, help="values to generate")
    p.add_argument("--horizon", type=int, default=10, help="forecast horizon")
    p.add_argument("--tolerances", type=float, nargs="+", default=[0.5, 1.0])
    p.add_argument("--resume", action="store_true", help="reuse runs already finished in --out")
    return p.parse_args(argv)


def train(args, name: str, task: str, model: str, *flags: str) -> Path:
    folder = Path(args.out) / "runs" / name
    if args.resume and (folder / "metrics.json").exists():
        return folder
    if folder.exists():
        raise SystemExit(f"{folder} exists: remove it, use --resume or choose another --out")
    cmd = [sys.executable, "-m", "zoo.train", task, model, "--seed", str(args.seed),
           "--out", str(folder), "--quiet", *flags]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(f"trained {name} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return folder


def generation(run: Path, steps: int, tolerances: list[float]) -> dict:
    """Steps within tolerance: from every test window (true continuation) and from zeros."""
    from zoo.forecasting import forecast, horizon_windows, open_run
    from zoo.generation import best_stretch, close_steps, generate

    fc, task, config = open_run(run)
    x, future, _ = horizon_windows(config, task, steps)
    generated = forecast(fc, x, steps)
    zeros = generate(fc, np.zeros(task.input_shape, dtype=np.float32), steps)
    result = {"windows": len(x), "steps": steps, "by_tolerance": {}}
    for tol in tolerances:
        counts = np.array([close_steps(g, f, tol) for g, f in zip(generated, future, strict=True)])
        start, length, _ = best_stretch(config, task, zeros, tol)
        result["by_tolerance"][str(tol)] = {
            "median": float(np.median(counts)), "mean": float(counts.mean()),
            "p10": float(np.percentile(counts, 10)), "p90": float(np.percentile(counts, 90)),
            "max": int(counts.max()), "zero_seed_stretch": length, "zero_seed_start": start,
        }  # fmt: skip
    return result


def markdown(result: dict) -> str:
    gen = result["sine_generation"]
    lines = [
        f"Sine generation, {gen['steps']} steps, seeded with each of the {gen['windows']} test "
        "windows (steps until the first absolute error >= tolerance against the true "
        "continuation) and with zeros (longest stretch on the true curve where it fits best):",
        "",
        "| tolerance | median | mean | 10th pct | 90th pct | max | zero seed: longest stretch |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tol, r in gen["by_tolerance"].items():
        lines.append(
            f"| {tol} | {r['median']:.0f} | {r['mean']:.1f} | {r['p10']:.0f} | {r['p90']:.0f} | "
            f"{r['max']} | {r['zero_seed_stretch']} (from step {r['zero_seed_start']}) |"
        )
    for key in ("sine_forecast", "random_walk_forecast"):
        table = result[key]
        names = [f["method"] for f in table["forecasts"]]
        lines += [
            "",
            f"{table['task']}: test MSE per horizon step ({table['windows']} test windows)",
            "",
            "| step | persistence | " + " | ".join(names) + " | " + " | ".join(
                f"{n} / persistence" for n in names) + " |",
            "|---:|---:|" + "---:|" * (2 * len(names)),
        ]  # fmt: skip
        for h in range(table["horizon"]):
            mse = [f"{f['mse'][h]:.4f}" for f in table["forecasts"]]
            ratio = [f"{f['mse_to_persistence'][h]:.3f}" for f in table["forecasts"]]
            lines.append(
                f"| {h + 1} | {table['persistence_mse'][h]:.4f} | " + " | ".join(mse + ratio) + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    sine = train(args, "sine-lstm", "sine", "lstm")
    walk1 = train(args, "random_walk-lstm-h1", "random_walk", "lstm")
    walk_h = train(args, f"random_walk-lstm-h{args.horizon}", "random_walk", "lstm",
                   "--task-option", f"horizon={args.horizon}")  # fmt: skip
    from zoo import backend

    backend.load()
    from zoo.forecasting import score

    result = {
        "sine_generation": generation(sine, args.steps, args.tolerances),
        "sine_forecast": score([sine], args.horizon),
        "random_walk_forecast": score([walk1, walk_h], args.horizon),
    }
    (Path(args.out) / "sequences.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (Path(args.out) / "sequences.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
