"""Variable-length sequences: masking against plain zero padding, and batching by length.

A synthetic task whose answer depends on the real steps only: random walks of 20 to 200 steps,
label 1 when the walk ends above its start. The same sequences are written twice as an npz, zero-
padded to 200 steps: once plain (the model reads the padding as data) and once with
`X_*_lengths` (the model masks it). Each is trained by `python -m zoo.train npz MODEL` with the
same seed (early stopping on validation, the test split scored once); then each model's test
predictions are compared with those on the same sequences padded 100 steps longer. Separately,
training epochs on the masked data, padded to the longest sequence against batched by length
(`zoo.buckets.LengthBatches`), are timed interleaved. Writes varlen.json, varlen.md and
varlen.png (test accuracy by sequence length) in --out.

    python scripts/benchmark_varlen.py --out benchmarks/varlen
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's zoo, not another

SPLITS = {"train": 1600, "val": 400, "test": 1000}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", default="benchmarks/varlen", help="folder for data, runs and tables")
    p.add_argument("--model", default="lstm", help="zoo model to train")
    p.add_argument("--seed", type=int, default=0, help="data and training seed")
    p.add_argument("--units", type=int, default=32, help="recurrent units")
    p.add_argument("--repeats", type=int, default=8, help="timed epochs of each batching")
    p.add_argument("--batch-size", type=int, default=64, help="batch size")
    return p.parse_args(argv)


def make_data(seed: int) -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """Random walks of 20..200 steps per split; label 1 when a walk ends above its start."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in SPLITS.items():
        walks = [np.cumsum(rng.normal(size=(k, 1)), axis=0) for k in rng.integers(20, 201, n)]
        data[split] = (walks, np.array([int(w[-1, 0] > w[0, 0]) for w in walks]))
    return data


def write_npz(data, folder: Path) -> dict[str, Path]:
    """The same sequences zero-padded to 200 steps: plain, and with X_*_lengths."""
    from zoo.tasks import pad_ragged

    plain, masked = {}, {}
    for split, (walks, y) in data.items():
        x, lengths = pad_ragged(walks)
        x = np.nan_to_num(np.pad(x, ((0, 0), (0, 200 - x.shape[1]), (0, 0)), constant_values=0))
        plain.update({f"X_{split}": x, f"y_{split}": y})
        masked.update({f"X_{split}": x, f"X_{split}_lengths": lengths, f"y_{split}": y})
    files = {"padded": folder / "padded.npz", "masked": folder / "masked.npz"}
    np.savez(files["padded"], **plain)
    np.savez(files["masked"], **masked)
    return files


def train(args, name: str, data: Path) -> Path:
    folder = Path(args.out) / "runs" / name
    if folder.exists():
        raise SystemExit(f"{folder} exists: remove it or choose another --out")
    cmd = [sys.executable, "-m", "zoo.train", "npz", args.model, "--data", str(data),
           "--seed", str(args.seed), "--units", str(args.units), "--out", str(folder),
           "--quiet"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(f"trained {name} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return folder


def padding_effect(run: Path, x: np.ndarray, y: np.ndarray, lengths, pad_value: float) -> dict:
    """Test accuracy, per length bin too, and how far 100 more padded steps move the outputs."""
    from zoo.runs import load_model

    model = load_model(run / "model.keras")
    p = model.predict(x, batch_size=256, verbose=0)
    longer = np.pad(x, ((0, 0), (0, 100), (0, 0)), constant_values=pad_value)
    q = model.predict(longer, batch_size=256, verbose=0)
    metrics = json.loads((run / "metrics.json").read_text())
    right = p.argmax(-1) == y
    bins = np.array([20, 40, 60, 80, 100, 120, 140, 160, 180, 201])
    return {
        "test_accuracy": metrics["accuracy"],
        "val_accuracy": metrics["val"]["accuracy"],
        "epochs_run": metrics["epochs_run"],
        "seconds_per_epoch": metrics["train_seconds"] / metrics["epochs_run"],
        "max_output_change_padded_100_more": float(np.abs(p - q).max()),
        "test_accuracy_padded_100_more": float(np.mean(q.argmax(-1) == y)),
        "accuracy_by_length": [
            float(right[(lengths >= lo) & (lengths < hi)].mean())
            for lo, hi in zip(bins[:-1], bins[1:], strict=True)
        ],
        "length_bins": bins.tolist(),
    }


def batching_speed(args, walks, y) -> dict:
    """Seconds per training epoch, padded to the longest against batched by length, interleaved
    (one epoch of each in turn, after one untimed epoch each that traces the functions)."""
    import keras

    from zoo.buckets import LengthBatches
    from zoo.models import create_model
    from zoo.tasks import pad_ragged

    x, _ = pad_ragged(walks)
    fits = {}
    for kind in ("padded", "by_length"):
        keras.utils.set_random_seed(args.seed)
        model = create_model(args.model, (None, 1), 2, units=args.units,
                             preprocessing={"mask": True})  # fmt: skip
        model.compile("adam", "sparse_categorical_crossentropy", jit_compile=False)
        data = {"x": x, "y": y, "batch_size": args.batch_size}
        if kind == "by_length":
            data = {"x": LengthBatches(x, y, batch_size=args.batch_size, seed=args.seed)}
        fits[kind] = (model, data)
    seconds = {kind: [] for kind in fits}
    for repeat in range(args.repeats + 1):
        for kind, (model, data) in fits.items():
            started = time.perf_counter()
            model.fit(**data, epochs=1, verbose=0)
            if repeat:
                seconds[kind].append(time.perf_counter() - started)
    ratios = np.array(seconds["padded"]) / np.array(seconds["by_length"])
    return {
        "seconds": seconds,
        "median_seconds": {k: float(np.median(v)) for k, v in seconds.items()},
        "speedup_median": float(np.median(ratios)),
        "speedup_range": [float(ratios.min()), float(ratios.max())],
        "load_average": os.getloadavg()[0],
    }


def plot(result: dict, path: Path) -> None:
    from zoo import plots

    fig, ax = plots.figure(figsize=(6.5, 3.6))
    for name, r in result["runs"].items():
        mids = np.convolve(r["length_bins"], [0.5, 0.5], mode="valid")  # bin centres
        ax.plot(
            mids, r["accuracy_by_length"], marker="o", label=f"{name} ({r['test_accuracy']:.3f})"
        )
    ax.set(xlabel="sequence length (steps)", ylabel="test accuracy", ylim=(0.4, 1.02),
           title="Walk ends above its start: zero padding read as data vs masked")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    plots.save(fig, path)


def markdown(result: dict) -> str:
    speed = result["batching"]
    lines = [
        "| padding | test accuracy | val accuracy | epochs | s/epoch (loaded) | "
        "test acc., padded 100 steps more | largest output change |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["runs"].items():
        lines.append(
            f"| {name} | {r['test_accuracy']:.4f} | {r['val_accuracy']:.4f} | {r['epochs_run']} | "
            f"{r['seconds_per_epoch']:.1f} | {r['test_accuracy_padded_100_more']:.4f} | "
            f"{r['max_output_change_padded_100_more']:.2g} |"
        )
    lines += [
        "",
        f"Batching by length (masked data, {len(speed['seconds']['padded'])} interleaved epochs "
        f"each, load average {speed['load_average']:.1f}): padded to the longest "
        f"{speed['median_seconds']['padded']:.2f} s/epoch, by length "
        f"{speed['median_seconds']['by_length']:.2f} s/epoch; speed-up median "
        f"{speed['speedup_median']:.2f}x (range {speed['speedup_range'][0]:.2f}-"
        f"{speed['speedup_range'][1]:.2f}x).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = make_data(args.seed)
    files = write_npz(data, out)
    from zoo import backend

    backend.load()
    result = {"model": args.model, "units": args.units, "seed": args.seed}
    result["batching"] = batching_speed(args, *data["train"])
    print(f"batching by length: {result['batching']['speedup_median']:.2f}x", file=sys.stderr)
    from zoo.tasks import pad_ragged

    walks, y = data["test"]
    x, lengths = pad_ragged(walks)
    x = np.pad(x, ((0, 0), (0, 200 - x.shape[1]), (0, 0)), constant_values=np.nan)
    runs = {name: train(args, name, path) for name, path in files.items()}
    result["runs"] = {
        "zero padding, no mask": padding_effect(runs["padded"], np.nan_to_num(x), y, lengths, 0.0),
        "masked": padding_effect(runs["masked"], x, y, lengths, np.nan),
    }
    (out / "varlen.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "varlen.png")
    text = markdown(result)
    (out / "varlen.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
