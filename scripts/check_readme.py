"""Run the README's commands as written, shrunk, and fail on an error, a traceback or a stray write.

    python scripts/check_readme.py                    # every ```bash command and ```python snippet
    python scripts/check_readme.py --list             # the plan: each command shrunk, or why skipped
    python scripts/check_readme.py --only 'echo gru'  # the commands matching a regular expression

Each command is shrunk (one epoch, two trials, small time budgets, `--quick` benchmarks) and run
in README order in one temporary folder that stands in for the repository root (its `scripts`,
`tests`, `docs` and `../shared/data` link to the real ones), so that a run one command writes is
there for the next, as for a reader who types them in order. The inputs the README names but does
not make (`walks.npz`, `airline.csv`, `runs/har-lstm`, ...) are made first, small. A command
fails on a non-zero exit, a traceback on stderr, or a change to the repository's own files.
Commands that need what this machine lacks (other machines, a GPU, jax, torch, the UCI HAR zip)
are skipped with the reason. Exit 1 if any command failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# the README's ../shared/data/uci_har_dataset.zip, or $RNN_ZOO_HAR_DATA (linked there for the check)
HAR_ZIP = Path(
    os.environ.get("RNN_ZOO_HAR_DATA") or ROOT.parent / "shared/data/uci_har_dataset.zip"
)
LINKED = ("scripts", "tests", "docs", "zoo", "tuning", "pyproject.toml")
UNTRACKED = {".git", "__pycache__", ".pytest_cache", ".ruff_cache"}
SHRINK = {"--epochs": "1", "--max-trials": "2", "--trials": "2", "--time-budget": "3m"}
SHRINK_SCRIPT = {
    "benchmark_speed.py": {"--repeats": "1", "--steps": "2"},
    "--mode memory": {"--compare": "1 2"},
}
# what each kind of command gets appended when it lacks the flag (None: a flag without a value)
APPEND = {
    "zoo.train": {"--epochs": "1"},
    "tuning.search": {"--max-trials": "2", "--epochs": "1"},
    "tuning.best": {"--max-trials": "2", "--epochs": "1"},
    "benchmark_tuning.py": {"--max-trials": "2", "--epochs": "1"},
    "tune_distributed.py": {"--epochs": "1"},  # after `--`: the search's own flag
    "benchmark_speed.py": {"--quick": None},
    "--mode memory": {"--compare": "1 2"},
}
# a snippet's free names (the README's `for x_t in signal`), as a reader would have them
PRELUDE = 'import numpy as np\nsignal = np.zeros((8, 9), "float32")\nchunk = np.zeros((8, 9), "float32")\n'


def blocks(text: str) -> list[tuple[int, str, str]]:
    """(line, language, body) of every fenced ```bash and ```python block."""
    found, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"```(\w+)\s*$", lines[i])
        if m:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            if m.group(1) in ("bash", "python"):
                found.append((i + 1, m.group(1), "\n".join(lines[i + 1 : end])))
            i = end
        i += 1
    return found


def commands(text: str) -> list[tuple[int, str, str]]:
    """(README line, "bash" or "python", text): one per shell command line, one per snippet."""
    out = []
    for line, lang, body in blocks(text):
        if lang == "python":
            out.append((line, lang, body))
            continue
        for n, command in enumerate(body.replace("\\\n", " ").splitlines()):
            words = shlex.split(command, comments=True)  # drops the trailing comment
            if words:
                out.append((line + 1 + n, lang, join(words)))
    return out


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def skip_reason(command: str, har: bool) -> str | None:
    """Why this command cannot run here, or None."""
    if "pip install" in command:
        return "installs packages (the check runs in this environment)"
    if "check_readme.py" in command:
        return "this checker itself"
    if "pytest" in command:
        return "runs the test suite (CI's job: .ci/run)"
    if "10.0.0." in command or re.search(r"(^|[ =])/shared/", command):
        return "needs other machines (a cluster)"
    if "--code /tmp/before" in command:
        return "needs an older checkout at /tmp/before"
    if "benchmark_results.py" in command:
        return "the full results benchmark (every model and task: hours at any size)"
    if "--mode small" in command:
        return "trains at the small-data defaults, which it measures (over 15 min shrunk)"
    if "benchmark_varlen.py" in command:
        return "a benchmark with no size flag (two models trained to early stopping)"
    gpu = shutil.which("nvidia-smi")
    if "--gpu" in command and not gpu:
        return "needs a GPU"
    split = re.search(r"RNN_ZOO_CPU_DEVICES|device_count", command)  # the CPU split in devices
    if "--distribute mirrored" in command and not split and not gpu:
        return "needs 2 or more GPUs (the CPU split in two is the README's next commands)"
    for backend in ("jax", "torch"):
        if f"KERAS_BACKEND={backend}" in command and not has(backend):
            return f"needs {backend} (pip install -e '.[{backend}]')"
    needs_har = re.search(
        r"uci_har|runs/(tuning/)?har|--preset har|--mode (small|memory)|\b(zoo\.\w+|search) har\b",
        command,
    )
    if needs_har and not har:
        return f"needs the UCI HAR zip at {HAR_ZIP} (absent)"
    return None


def shrink(command: str, work: Path) -> str:
    """The command with small sizes: one epoch, two trials, quick benchmarks, outputs in `work`."""
    command = command.replace("/tmp/bench/", "bench/").replace(" --seed S", " --seed 0")
    if "runs/series-lstm-..." in command:  # the README's placeholder for a timestamped run
        found = sorted(work.glob("runs/series-lstm-*"))
        command = command.replace("runs/series-lstm-...", str(found[0]) if found else "runs/none")
    if re.match(r"ruff format (?!--check)", command):
        command = command.replace("ruff format ", "ruff format --check ", 1)
    words = shlex.split(command)
    sizes = dict(SHRINK)
    for script, extra in SHRINK_SCRIPT.items():
        if script in command:
            sizes.update(extra)
    for i, word in enumerate(words[:-1]):
        if word in sizes:
            words[i + 1 : i + 2] = sizes[word].split()
    done = "--list" in words or "--help" in words or "--resume" in words
    for kind, extra in APPEND.items():
        if kind in command and not done:
            for flag, value in extra.items():
                if flag not in words:
                    words += [flag, *(value.split() if value else [])]
    return join(words)


def join(words: list[str]) -> str:
    """A shell line from words, operators left as operators."""
    return " ".join(w if w in ("&&", "||", ";") else quote(w) for w in words)


def quote(word: str) -> str:
    """shlex.quote, but an environment assignment stays one (NAME='value')."""
    m = re.match(r"([A-Z_][A-Z0-9_]*)=(.*)$", word, re.S)
    return f"{m.group(1)}={shlex.quote(m.group(2))}" if m else shlex.quote(word)


def inputs(command: str) -> list[str]:
    """The paths under runs/ a command reads (not those it writes: --out, --dir)."""
    words = shlex.split(command)
    return [
        w
        for i, w in enumerate(words)
        if w.startswith("runs/") and i and words[i - 1] not in ("--out", "--dir")
    ]


def make_inputs(work: Path, har: bool) -> list[str]:
    """Write the small files the README's commands read but no command makes; return the
    commands still to run first (the HAR run that export and stream read)."""
    rng = np.random.default_rng(0)
    for name in ("walks.npz", "my.npz"):
        x = {
            s: rng.normal(size=(n, 64, 3)).astype("float32")
            for s, n in (("train", 48), ("test", 16))
        }
        y = {s: rng.integers(0, 2, len(x[s])) for s in x}
        np.savez(
            work / name, X_train=x["train"], y_train=y["train"], X_test=x["test"], y_test=y["test"]
        )
    np.savez(work / "recording.npz", x=rng.integers(0, 2, (200, 1)).astype("float32"))
    months = [f"{1949 + m // 12}-{m % 12 + 1:02d}-01" for m in range(144)]
    trend = 100 + np.arange(144) + 20 * np.sin(np.arange(144) * np.pi / 6)
    rows = [f"{d},{v:.1f},{v * 0.5 + 10:.1f}" for d, v in zip(months, trend, strict=True)]
    (work / "airline.csv").write_text(
        "month,passengers\n" + "\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n"
    )
    (work / "sales.csv").write_text("month,shop_a,shop_b\n" + "\n".join(rows) + "\n")
    return ["python -m zoo.train har lstm --epochs 1 --out runs/har-lstm"] if har else []


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file of the repository tree (size, mtime), skipping caches and git."""
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in UNTRACKED and not d.endswith(".egg-info")]
        for name in names:
            st = os.stat(os.path.join(folder, name))
            files[os.path.relpath(os.path.join(folder, name), root)] = (st.st_size, st.st_mtime_ns)
    return files


def run(command: str, work: Path, env: dict, timeout: float) -> tuple[str | None, float]:
    """Run one command; (why it failed or None, seconds)."""
    cwd = ROOT if command.startswith("ruff ") else work
    before, start = listing(ROOT), time.perf_counter()
    try:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s", time.perf_counter() - start
    seconds, after = time.perf_counter() - start, listing(ROOT)
    stray = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    tail = (done.stderr.strip().splitlines() or [""])[-1]
    if done.returncode != 0:
        return f"exit {done.returncode}: {tail}", seconds
    if "Traceback (most recent call last)" in done.stderr:
        return f"traceback on stderr: {tail}", seconds
    if stray:
        return f"wrote in the repository: {', '.join(stray[:5])}", seconds
    return None, seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readme", type=Path, default=ROOT / "README.md", help="the file to check")
    p.add_argument("--only", help="run only the commands matching this regular expression")
    p.add_argument("--list", action="store_true", help="print the plan, run nothing")
    p.add_argument("--keep", action="store_true", help="keep the working folder (printed)")
    p.add_argument("--timeout", type=float, default=900, help="seconds a command (default 900)")
    args = p.parse_args(argv)
    har = HAR_ZIP.is_file()
    tmp = Path(tempfile.mkdtemp(prefix="check_readme_"))
    work = tmp / "repo"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    if HAR_ZIP.is_file():
        (tmp / "shared" / "data").mkdir(parents=True)
        (tmp / "shared" / "data" / HAR_ZIP.name).symlink_to(HAR_ZIP)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    if HAR_ZIP.is_file():
        env.setdefault("RNN_ZOO_HAR_DATA", str(HAR_ZIP))  # `zoo.train har` without --data
    setup = [(0, "bash", c) for c in make_inputs(work, har)]
    plan = setup + commands(args.readme.read_text())
    counts, failed = {"run": 0, "skipped": 0, "failed": 0}, []
    deferred = set()
    for line, lang, text in plan:  # a deferred command is appended: the loop reaches it again
        if args.only and not re.search(args.only, text) and line != 0:
            continue
        where = f"README:{line}" if line else "input"
        reason = skip_reason(text, har)
        if reason:
            counts["skipped"] += 1
            print(f"skip  {where:11} {text.splitlines()[0][:80]}  ({reason})", flush=True)
            continue
        if lang == "python":
            (work / f"snippet_{line}.py").write_text(PRELUDE + text + "\n")
            command = f"python snippet_{line}.py"
        else:
            command = shrink(text, work)
        missing = [path for path in inputs(command) if not (work / path).exists()]
        if missing and line not in deferred and not args.list:  # a search replayed before it ran
            deferred.add(line)
            plan.append((line, lang, text))
            print(f"later README:{line:<4} ({missing[0]} is made by a later command)", flush=True)
            continue
        if args.list:
            print(f"plan  {where:11} {command.splitlines()[0]}", flush=True)
            continue
        why, seconds = run(command, work, env, args.timeout)
        counts["failed" if why else "run"] += 1
        print(
            f"{'FAIL' if why else 'ok':5} {where:11} {command[:90]}  ({seconds:.0f} s)", flush=True
        )
        if why:
            failed.append(f"README:{line}: {why}")
            print(f"      {why}", flush=True)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"check_readme: {counts['run']} ran, {counts['skipped']} skipped, {counts['failed']} failed"
        + (f"; working folder {tmp}" if args.keep else "")
    )
    for line in failed:
        print(f"  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
