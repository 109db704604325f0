"""Linear models on per-window features of UCI HAR: the reference row beside the recurrent models.

    python scripts/benchmark_features.py                     # ../shared/data/uci_har_dataset.zip
    python scripts/benchmark_features.py --data PATH --models svm,logreg   # logistic regression too

`zoo.features.window_features` turns each raw window (128 x 9) into one row of features,
computed from that window alone. Protocol, as for every figure in the README: the features are
standardised with the statistics of the subjects a model trains on; C is chosen on the 5
validation subjects (`zoo.tasks.har.pick_val_subjects`) with the model trained on the other 16;
then the model is refitted on all 21 train subjects with that C and the test split is scored
once. Prints validation accuracy per C, the test accuracy, SITTING/STANDING errors, the
confusion matrix and a Markdown row for the README's results table.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.cli import Parser, positive_int  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "uci_har_dataset.zip"
GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
MODELS = {"svm": "linear SVM", "logreg": "logistic regression"}
SITTING, STANDING = 3, 4


def make_model(kind: str, c: float):
    """Standardisation (fitted on the training rows) then the linear classifier."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind == "svm":
        classifier = LinearSVC(C=c, max_iter=20000, random_state=0)
    else:
        classifier = LogisticRegression(C=c, max_iter=5000)
    return make_pipeline(StandardScaler(), classifier)


def fit(kind: str, c: float, x: np.ndarray, y: np.ndarray):
    """The fitted model; a liblinear / lbfgs convergence warning is counted, not printed."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = make_model(kind, c).fit(x, y)
    model.converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return model


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    return np.bincount(y_true * classes + y_pred, minlength=classes * classes).reshape(
        classes, classes
    )


def print_confusion(matrix: np.ndarray, names) -> None:
    short = [n[:10] for n in names]
    print("| true \\ predicted | " + " | ".join(short) + " |")
    print("|---|" + "---:|" * len(short))
    for name, row in zip(names, matrix, strict=True):
        print(f"| {name} | " + " | ".join(str(v) for v in row) + " |")


def run(kind: str, features, arrays, val, grid) -> dict:
    """Choose C on the validation subjects, refit on all train subjects, score test once."""
    x_train, y_train, s_train = features["train"], arrays["y_train"], arrays["s_train"]
    held = np.isin(s_train, val)
    print(f"\n## {MODELS[kind]}\n\n| C | validation accuracy | fit (s) | converged |")
    print("|---:|---:|---:|---|")
    scores = {}
    for c in grid:
        start = time.perf_counter()
        model = fit(kind, c, x_train[~held], y_train[~held])
        seconds = time.perf_counter() - start
        scores[c] = float((model.predict(x_train[held]) == y_train[held]).mean())
        print(f"| {c:g} | {scores[c]:.4f} | {seconds:.1f} | {model.converged} |")
    best = max(grid, key=lambda c: (scores[c], -c))  # ties: the smaller C, the simpler model
    start = time.perf_counter()
    model = fit(kind, best, x_train, y_train)
    seconds = time.perf_counter() - start
    predicted = model.predict(features["test"])
    matrix = confusion(arrays["y_test"], predicted, 6)
    accuracy = float(np.trace(matrix) / matrix.sum())
    return {
        "kind": kind,
        "c": best,
        "val": scores[best],
        "test": accuracy,
        "errors": int(matrix.sum() - np.trace(matrix)),
        "sit_stand": int(matrix[SITTING, STANDING] + matrix[STANDING, SITTING]),
        "matrix": matrix,
        "fit_seconds": seconds,
        "converged": model.converged,
    }


def har_features(data, val_subjects: int = 5):
    """UCI HAR's arrays, the validation subjects, the features of each split, their names and
    the seconds they took."""
    from zoo.features import window_features
    from zoo.tasks.har import CHANNELS, SAMPLING_HZ, load_arrays, pick_val_subjects

    arrays, _ = load_arrays(data, download_ok=False)
    val = pick_val_subjects(arrays["s_train"], val_subjects)
    start = time.perf_counter()
    features = {}
    for split in ("train", "test"):
        features[split], names = window_features(arrays[f"x_{split}"], CHANNELS, SAMPLING_HZ)
    return arrays, val, features, names, time.perf_counter() - start


def main(argv=None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the UCI HAR zip or folder")
    p.add_argument("--models", default="svm", help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--val-subjects", type=positive_int, default=5, help="train subjects held out")
    p.add_argument("--grid", type=float, nargs="+", default=list(GRID), help="values of C to try")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in MODELS]
    if unknown or not kinds:
        p.error(f"--models: expected some of {', '.join(MODELS)}, got {args.models!r}")
    if any(not c > 0 for c in args.grid):
        p.error(f"--grid: every C must be > 0, got {args.grid}")

    from zoo.tasks.base import DataError
    from zoo.tasks.har import CLASS_NAMES

    try:
        arrays, val, features, names, seconds = har_features(args.data, args.val_subjects)
    except (DataError, ValueError, OSError) as err:
        p.error(str(err))
    windows = len(features["train"]) + len(features["test"])
    print(f"{len(names)} features of {windows} windows in {seconds:.1f} s")
    print(f"validation subjects: {' '.join(map(str, val))}")

    results = [run(kind, features, arrays, val, args.grid) for kind in kinds]
    for r in results:
        print(f"\n## {MODELS[r['kind']]}: C = {r['c']:g} (validation {r['val']:.4f})")
        print(
            f"test accuracy {r['test']:.4f}: {r['errors']} errors of {r['matrix'].sum()}, "
            f"SITTING/STANDING {r['sit_stand']} (SITTING as STANDING "
            f"{r['matrix'][SITTING, STANDING]}, STANDING as SITTING "
            f"{r['matrix'][STANDING, SITTING]}); refit {r['fit_seconds']:.1f} s, "
            f"converged {r['converged']}\n"
        )
        print_confusion(r["matrix"], CLASS_NAMES)
    print("\n| task | model | features | C | validation accuracy | test metric | test | note |")
    print("|---|---|---:|---:|---:|---|---:|---|")
    for r in results:
        print(
            f"| har | {MODELS[r['kind']]} on window features | {len(names)} | {r['c']:g} | "
            f"{r['val']:.4f} | test accuracy | {r['test']:.4f} | errors {r['errors']}, "
            f"SITTING/STANDING {r['sit_stand']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
