"""Export one run to every format and print the parity, size and latency table (Markdown).

python scripts/benchmark_export.py RUN_DIR [--latency-calls 300]

Each export is `zoo.exporting.export_run` (so RUN_DIR/export/ keeps the files and their JSON
reports); the Keras row is the run's model itself, batch 1 through `predict_on_batch`.
"""

from __future__ import annotations

import argparse
import os

from zoo.exporting import FORMATS, LATENCY_CALLS, Runtime, export_run

RUNTIME = {"tflite": "LiteRT", "saved_model": "TF SavedModel", "onnx": "ONNX Runtime"}


class KerasRuntime(Runtime):
    """The Keras model itself, timed like the exports."""

    def __init__(self, model):
        self.model = model

    def run(self, x):
        return self.model.predict_on_batch(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a zoo.train run folder")
    p.add_argument("--latency-calls", type=int, default=LATENCY_CALLS)
    args = p.parse_args()
    exports = [(fmt, False) for fmt in FORMATS] + [("tflite", True)]
    reports = [
        export_run(args.run, fmt, quantize, calls=args.latency_calls) for fmt, quantize in exports
    ]

    from zoo.runs import load_model, locate_run, run_task

    model_path, config = locate_run(args.run)
    x = run_task(config).split("test")[0]
    keras_ms = KerasRuntime(load_model(model_path)).latency_ms(x[0], args.latency_calls)
    first = reports[0]
    metric = first["metric"]
    print(f"{first['run']}: {first['test_samples']} test samples, {os.cpu_count()} cpus; "
          f"batch-1 latency is the median of {args.latency_calls} calls")  # fmt: skip
    print(f"\n| format | runtime | size (KiB) | max abs diff vs Keras | test {metric} | "
          "batch-1 latency (ms) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|")
    size = os.path.getsize(model_path) / 1024
    print(f"| Keras `.keras` | Keras {first['versions']['keras']} `predict_on_batch` | "
          f"{size:,.1f} | 0 | {first['keras']:.4f} | {keras_ms:.3f} |")  # fmt: skip
    for (fmt, quantize), r in zip(exports, reports, strict=True):
        name = f"{fmt} int8" if quantize else fmt
        print(f"| {name} | {RUNTIME[fmt]} | {r['size_bytes'] / 1024:,.1f} | "
              f"{r['max_abs_diff']:.1e} | {r['export']:.4f} | {r['latency_ms_batch1']:.3f} |")  # fmt: skip
    print("\nruntimes: " + "; ".join(sorted({r["runtime"] for r in reports})))


if __name__ == "__main__":
    main()
