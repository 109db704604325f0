"""The zoo's native TensorFlow ops, built from their C++ source once per machine and cached.

`lstm_op()` returns the loaded `lstm_op.cc` (`tf.load_op_library`), or None where it cannot be had;
`lstm_op_status()` says which in one line. Like a packaged extension:

- the cache first: a library built earlier for this source, TensorFlow version and CPU target is
  loaded as it is, with no compiler needed (`kernels/` in the zoo's per-user cache folder,
  `RNN_ZOO_CACHE`, ...);
- a target picked at load time from the CPU's features (`cpu_target`): `avx512` where the CPU
  has AVX-512 (F, BW, CD, DQ, VL), else the portable `avx2` (x86-64-v3: AVX2, FMA, ...), else
  `sse2` (any x86-64); other processors build for their baseline (`generic`). The flags are
  spelled out (not `-march=native`), so a cache moved to another machine never runs an
  instruction its CPU lacks, and they are checked against the compiler first: a compiler that
  does not know a target's flags builds the next one down;
- a miss builds once (g++ against the installed TensorFlow's headers, about 25 s of CPU), saying
  so in one line, to a temporary name renamed into place, one process at a time (a lock file);
- a library that no longer loads (a TensorFlow rebuilt under the same version, a damaged file)
  is rebuilt once; any failure leaves Keras' own loop in place, never an error.

`RNN_ZOO_NATIVE=0` turns the native ops off; `CXX` names the compiler (default g++);
`RNN_ZOO_NATIVE_ARCH` replaces the target's flags (e.g. `-march=x86-64` for an SSE-only build).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from zoo import files

__all__ = ["cpu_target", "lstm_op", "lstm_op_status"]

SOURCE = Path(__file__).with_name("lstm_op.cc")
BUILD_SECONDS = 600
_V3 = ["-mavx", "-mavx2", "-mfma", "-mf16c", "-mbmi", "-mbmi2", "-mlzcnt", "-mmovbe"]
_V4 = [*_V3, "-mavx512f", "-mavx512bw", "-mavx512cd", "-mavx512dq", "-mavx512vl"]
# target -> (CPU flags it needs, compiler flags), best first; x86-64 targets only
X86_TARGETS = {
    "avx512": ({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx2", "fma"}, _V4),
    "avx2": ({"avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "abm", "movbe"}, _V3),
    "sse2": (set(), []),
}

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
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
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


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (Linux /proc/cpuinfo, macOS sysctl), or None where unknown."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    if platform.system() == "Darwin":
        keys = ["machdep.cpu.features", "machdep.cpu.leaf7_features"]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(["sysctl", "-n", *keys], capture_output=True, text=True)
            if done.returncode == 0:
                flags = {f.lower().replace(".", "_") for f in done.stdout.split()}
                return flags | ({"bmi1"} if "bmi1" in flags or "bmi" in flags else set())
    return None


def cpu_target(machine: str | None = None, flags: set[str] | None = None) -> str:
    """The build target for this CPU: `avx512`, `avx2` or `sse2` on x86-64 (the best whose
    features the CPU has; `avx2` where they cannot be read), `generic` elsewhere."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return "generic"
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return "avx2"
    return next(t for t, (needs, _) in X86_TARGETS.items() if needs <= flags)


def _load(source: Path):
    if os.environ.get("RNN_ZOO_NATIVE", "1") == "0":
        raise _Unavailable("turned off by RNN_ZOO_NATIVE=0")
    if platform.system() not in ("Linux", "Darwin"):
        raise _Unavailable(f"the native op builds on Linux and macOS, not {platform.system()}")
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    if keras.backend.backend() != "tensorflow":
        raise _Unavailable(f"a TensorFlow op; the Keras backend is {keras.backend.backend()}")
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import tensorflow as tf

    arch = os.environ.get("RNN_ZOO_NATIVE_ARCH")
    targets = [("custom", arch.split())] if arch is not None else _targets()
    for attempt in range(2):  # a library that does not load is rebuilt once
        target, path = _cached(source, tf.__version__, targets)
        if path is None:
            target, flags = _supported(targets)
            path = _library_path(source, tf.__version__, target, flags)
            _build(source, flags, path, target)
        try:
            return tf.load_op_library(str(path)), path
        except Exception as err:  # noqa: BLE001 - a stale or damaged build: rebuild it once
            with contextlib.suppress(OSError):
                path.unlink()
            if attempt:
                raise _Unavailable(f"{path} did not load: {str(err).splitlines()[0]}") from err


def _targets() -> list[tuple[str, list[str]]]:
    """(name, compiler flags) of the targets this CPU runs, best first."""
    best = cpu_target()
    if best == "generic":
        return [("generic", [])]
    names = list(X86_TARGETS)
    return [(name, X86_TARGETS[name][1]) for name in names[names.index(best) :]]


def _cache_dir() -> Path:
    return files.cache_dir() / "kernels"  # the zoo's one per-user cache folder


def _library_path(source: Path, tf_version: str, target: str, flags: list[str]) -> Path:
    """Where the build for `target` lives: named by a hash of the source, TensorFlow's version,
    the target's flags and the machine (never by the compiler, so no compiler is needed to find
    it)."""
    digest = hashlib.sha256(source.read_bytes())
    for part in (tf_version, " ".join(flags), platform.machine(), platform.system()):
        digest.update(part.encode())
    return _cache_dir() / f"{source.stem}-{target}-{digest.hexdigest()[:16]}.so"


def _cached(source: Path, tf_version: str, targets) -> tuple[str | None, Path | None]:
    """The best target already built in the cache, and its library, or (None, None)."""
    for target, flags in targets:
        path = _library_path(source, tf_version, target, flags)
        if path.is_file():
            return target, path
    return None, None


def _compiler() -> str:
    name = os.environ.get("CXX", "g++")
    compiler = shutil.which(name)
    if compiler is None:
        raise _Unavailable(f"no C++ compiler: {name} not found")
    return compiler


def _supported(targets) -> tuple[str, list[str]]:
    """The best target whose flags the compiler accepts (an empty program compiled with them)."""
    compiler = _compiler()
    for target, flags in targets:
        done = subprocess.run(
            [compiler, "-x", "c++", "-fsyntax-only", *flags, "-"],
            input="int main() { return 0; }\n",
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            return target, flags
    raise _Unavailable(f"{compiler} accepts none of the targets' flags ({targets[-1][0]})")


def _build(source: Path, flags: list[str], target: Path, name: str) -> None:
    """Compile to a temporary name beside `target` and rename it into place, one process at a
    time; a failure raises `_Unavailable` with the compiler's first error line."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import tensorflow as tf

    try:
        # lazy: Unix only
        import fcntl
    except ImportError as err:  # not POSIX
        raise _Unavailable("no file locking (fcntl) to build the native op with") from err
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = open(target.with_suffix(".lock"), "w")  # held while building
    except OSError as err:
        raise _Unavailable(f"cannot write the build cache {target.parent}: {err}") from err
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():  # another process built it while this one waited
            return
        print(
            f"rnn-zoo: building the native LSTM op for this CPU ({name}) into {target.parent} "
            "(once, about 30 s)",
            file=sys.stderr,
            flush=True,
        )
        try:  # the compiler creates the temporary file, with the umask's mode
            with files.atomic_path(target) as tmp:  # renamed into place once built
                command = [_compiler(), "-shared", "-fPIC", "-O3", *flags, "-w"]
                command += [*tf.sysconfig.get_compile_flags(), str(source), "-o", str(tmp)]
                command += tf.sysconfig.get_link_flags()
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=BUILD_SECONDS
                )
                if done.returncode != 0:
                    errors = [line for line in done.stderr.splitlines() if "error" in line]
                    first = (errors or done.stderr.splitlines() or ["no output"])[0]
                    raise _Unavailable(f"the C++ build failed: {first.strip()}")
        except subprocess.TimeoutExpired as err:
            raise _Unavailable(f"the C++ build took over {BUILD_SECONDS} s") from err
