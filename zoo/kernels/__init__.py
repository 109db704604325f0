"""The zoo's native TensorFlow ops, compiled from their C++ source on first use.

`lstm_op()` returns the loaded `lstm_op.cc` (`tf.load_op_library`), or None where it cannot be had:
not TensorFlow, no C++ compiler, a failed build. `lstm_op_status()` says which in one line. The
build (g++ against the installed TensorFlow's headers, `tf.sysconfig` flags, about 25 s of CPU)
goes to `kernels/` in the zoo's per-user cache folder (`RNN_ZOO_CACHE`, ...), named by a hash of
the source, the TensorFlow version, the compiler, its flags and the CPU's features, written to a
temporary name and renamed into place, one process at a time (a lock file), so every later use
is a plain load. `RNN_ZOO_NATIVE=0` turns the native ops off; `CXX` names the compiler;
`RNN_ZOO_NATIVE_ARCH` replaces the target flags (default `-march=native`), e.g.
`-march=x86-64-v3` for an AVX2 build on an AVX-512 machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

from zoo import files

__all__ = ["lstm_op", "lstm_op_status"]

SOURCE = Path(__file__).with_name("lstm_op.cc")
# AVX-512 FP16 intrinsics in TensorFlow's Eigen headers do not build with g++ 12.
ARCH_FLAGS = ["-march=native", "-mno-avx512fp16"] if platform.machine() == "x86_64" else []
BUILD_SECONDS = 600

_status = {"lstm_op": "not loaded yet"}


def lstm_op_status() -> str:
    """One line: `loaded from PATH`, or why the native LSTM op is not used."""
    lstm_op()
    return _status["lstm_op"]


@functools.cache
def lstm_op():
    """The native LSTM op library (ops `zoo_lstm_forward`, `zoo_lstm_backward`), or None."""
    try:
        library, path = _load(SOURCE)
    except _Unavailable as why:
        _status["lstm_op"] = str(why)
        return None
    _status["lstm_op"] = f"loaded from {path}"
    _register_lstm_gradient(library)
    return library


def _register_lstm_gradient(library) -> None:
    """ZooLstmForward's gradient: backpropagation through time in C++ (d gates, d h0, d c0, d bias),
    then the input, kernel and recurrent kernel gradients as big matmuls over all steps. `gates`
    is saved for the backward pass and is not differentiated."""
    import tensorflow as tf

    @tf.RegisterGradient("ZooLstmForward")
    def _grad(op, dh, dc, _):
        x, h0, c0, kernel, r, _ = op.inputs
        h, c, gates = op.outputs
        dh = tf.zeros_like(h) if dh is None else dh
        dc = tf.zeros_like(c) if dc is None else dc
        dgx, dh0, dc0, db = library.zoo_lstm_backward(r, c0, c, gates, dh, dc)
        dgx = tf.reshape(dgx, [-1, tf.shape(r)[1]])  # time-major: one row a step and sequence
        h_prev = tf.reshape(tf.concat([h0[None], h[:-1]], 0), [-1, tf.shape(r)[0]])
        dr = tf.matmul(h_prev, dgx, transpose_a=True)
        dkernel = tf.matmul(tf.reshape(x, [-1, tf.shape(x)[2]]), dgx, transpose_a=True)
        dx = tf.reshape(tf.matmul(dgx, kernel, transpose_b=True), tf.shape(x))
        return dx, dh0, dc0, dkernel, dr, db


class _Unavailable(Exception):
    """Why a native op cannot be used (one line)."""


def _load(source: Path):
    if os.environ.get("RNN_ZOO_NATIVE", "1") == "0":
        raise _Unavailable("turned off by RNN_ZOO_NATIVE=0")
    import keras

    if keras.backend.backend() != "tensorflow":
        raise _Unavailable(f"a TensorFlow op; the Keras backend is {keras.backend.backend()}")
    import tensorflow as tf

    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        raise _Unavailable(f"no C++ compiler: {os.environ.get('CXX', 'g++')} not found")
    arch = os.environ.get("RNN_ZOO_NATIVE_ARCH")
    command = [
        compiler,
        "-shared",
        "-fPIC",
        "-O3",
        *(ARCH_FLAGS if arch is None else arch.split()),
        "-w",
        *tf.sysconfig.get_compile_flags(),
        str(source),
        "-o",
        "OUTPUT",
        *tf.sysconfig.get_link_flags(),
    ]
    target = _cache_dir() / f"{source.stem}-{_key(source, command, tf.__version__)}.so"
    if not target.exists():
        _build(command, target)
    try:
        return tf.load_op_library(str(target)), target
    except Exception as err:  # a stale or foreign build: say so, never crash the caller
        raise _Unavailable(f"{target} did not load: {str(err).splitlines()[0]}") from err


def _cache_dir() -> Path:
    return files.cache_dir() / "kernels"  # the zoo's one per-user cache folder


def _key(source: Path, command: list[str], tf_version: str) -> str:
    """A hash of what the build depends on: source, TensorFlow, compiler, flags, CPU."""
    digest = hashlib.sha256(source.read_bytes())
    version = subprocess.run([command[0], "--version"], capture_output=True, text=True).stdout
    cpu = ""
    with contextlib.suppress(OSError):
        flags = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if "flags" in line]
        cpu = flags[0] if flags else ""
    for part in (tf_version, version, " ".join(command), cpu):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def _build(command: list[str], target: Path) -> None:
    """Compile to a temporary name beside `target` and rename it into place, one process at a
    time; a failure raises `_Unavailable` with the compiler's first error line."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = open(target.with_suffix(".lock"), "w")  # held while building
    except OSError as err:
        raise _Unavailable(f"cannot write the build cache {target.parent}: {err}") from err
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():  # another process built it while this one waited
            return
        try:
            with files.atomic_path(target) as tmp:  # renamed into place once built
                command = [str(tmp) if part == "OUTPUT" else part for part in command]
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=BUILD_SECONDS
                )
                if done.returncode != 0:
                    errors = [line for line in done.stderr.splitlines() if "error" in line]
                    first = (errors or done.stderr.splitlines() or ["no output"])[0]
                    raise _Unavailable(f"the C++ build failed: {first.strip()}")
        except subprocess.TimeoutExpired as err:
            raise _Unavailable(f"the C++ build took over {BUILD_SECONDS} s") from err
