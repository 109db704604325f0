#!/usr/bin/env python
"""Try distributed tuning on one machine: a chief and N workers on 127.0.0.1, a free port.

    python scripts/tune_distributed.py --workers 2 -- echo --max-trials 8 --epochs 3 --quiet

Everything after `--` goes to every `python -m tuning.search` process; the launcher adds
`--chief 127.0.0.1:PORT` (and `--worker-id tunerI` for the workers). Each line of output is
shown with the name of the process that wrote it. The exit status is the chief's.

On several machines, run the same command on each instead: one with `--chief HOST:PORT`,
the others with `--chief HOST:PORT --worker-id NAME`, all sharing the --dir folder.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time

GRACE_SECONDS = 15  # workers still running this long after the chief ended are stopped


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def relay(name: str, stream) -> None:
    for line in stream:
        sys.stdout.write(f"[{name}] {line}")
        sys.stdout.flush()


def start(name: str, args: list[str]) -> subprocess.Popen:
    """`python -m tuning.search ARGS` with its output relayed under `name`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuning.search", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    threading.Thread(target=relay, args=(name, proc.stdout), daemon=True).start()
    return proc


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(search_args: list[str], workers: int, port: int) -> int:
    """Start the chief and the workers; wait for the chief; return its exit status."""
    address = f"127.0.0.1:{port or free_port()}"
    print(f"Chief on {address} with {workers} workers", flush=True)
    chief = start("chief", [*search_args, "--chief", address])
    tuners = [
        start(f"tuner{i}", [*search_args, "--chief", address, "--worker-id", f"tuner{i}"])
        for i in range(workers)
    ]
    try:
        while chief.poll() is None:
            time.sleep(1)
            codes = [w.poll() for w in tuners]
            if all(c is not None and c != 0 for c in codes):
                print("Every worker failed; stopping the chief", file=sys.stderr, flush=True)
                stop([chief])
                return 1
        deadline = time.monotonic() + GRACE_SECONDS
        while any(w.poll() is None for w in tuners) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        stop([chief, *tuners])
    return chief.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Start a chief and N workers of python -m tuning.search on 127.0.0.1.",
        epilog="Example: python scripts/tune_distributed.py --workers 2 -- echo --max-trials 8",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--port", type=int, default=0, help="chief's port (default: a free one)")
    parser.add_argument("search_args", nargs=argparse.REMAINDER, help="-- TASK [options]")
    args = parser.parse_args(argv)
    search_args = args.search_args[1:] if args.search_args[:1] == ["--"] else args.search_args
    if not search_args:
        parser.error("give the search's arguments after --, e.g. -- echo --max-trials 8")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        return run(search_args, args.workers, args.port)
    except KeyboardInterrupt:  # the children were stopped on the way out
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
