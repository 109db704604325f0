"""`python -m zoo.export RUN_DIR --format F`: a run's model as TFLite, SavedModel or ONNX, checked.

The command line of `zoo.exporting`: the export goes to RUN_DIR/export/ with its parity report
(JSON) beside it, and a few lines of that report are printed.
"""

from __future__ import annotations

from pathlib import Path

from zoo.cli import Parser, positive_int
from zoo.exporting import FORMATS, LATENCY_CALLS, ExportError, export_run, report_name
from zoo.registry import UnknownNameError
from zoo.tasks.base import DataError


def summary(report: dict) -> str:
    """A few lines for the terminal."""
    metric = report["metric"]
    size = report["size_bytes"] / 1024
    verdict = {True: "met", False: "MISSED", None: "none for regression"}[report["meets_target"]]
    return "\n".join(
        [
            f"{report['file']}: {size:,.1f} KiB, run in {report['runtime']}",
            f"test split ({report['test_samples']} samples): max |export - Keras| "
            f"{report['max_abs_diff']:.2e}; {metric} {report['keras']:.4f} in Keras, "
            f"{report['export']:.4f} exported",
            f"target ({report['target']}): {verdict}",
            f"batch-1 latency: {report['latency_ms_batch1']:.3f} ms (median of "
            f"{report['latency_calls']} calls)",
        ]
    )


def build_parser() -> Parser:
    p = Parser(
        prog="python -m zoo.export",
        description="Export a zoo.train run's model to TFLite, a SavedModel or ONNX, then run the "
        "export in its own runtime on the run's whole test split and report its parity with "
        "Keras, the test metric, the file size and the batch-1 latency (JSON beside the file).",
        epilog="Examples: python -m zoo.export runs/har-lstm --format tflite | "
        "python -m zoo.export runs/har-lstm --format tflite --quantize | "
        "python -m zoo.export runs/har-lstm --format onnx",
    )
    p.add_argument("run", help="a zoo.train run folder, or a .keras file in one")
    p.add_argument("--format", required=True, choices=FORMATS, help="what to export to")
    p.add_argument(
        "--quantize", action="store_true", help="TFLite only: dynamic-range int8 weights"
    )
    p.add_argument("--data", help="data file or folder, if it moved since training")
    p.add_argument(
        "--latency-calls",
        type=positive_int,
        default=LATENCY_CALLS,
        help="batch-1 calls timed for the median latency",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report = export_run(args.run, args.format, args.quantize, args.data, args.latency_calls)
    except (ExportError, UnknownNameError, DataError, ValueError, KeyError) as err:
        parser.error(str(err))
    print(summary(report))
    print(f"report: {Path(report['file']).parent / report_name(args.format, args.quantize)}")
    return 0 if report["meets_target"] is not False or args.quantize else 1


if __name__ == "__main__":
    raise SystemExit(main())
