"""`zoo.kernels` builds its op like a packaged extension: the cache first (no compiler needed),
a target from the CPU's features, flags checked against the compiler, one line while it builds,
a damaged library rebuilt once, and a clean fallback wherever the op cannot be had."""

from __future__ import annotations

import os
import stat
import textwrap

import keras
import pytest

from zoo import kernels

needs_tf = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a TensorFlow op")


@pytest.mark.parametrize(
    ("machine", "flags", "target"),
    [
        (
            "x86_64",
            {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx2", "fma"},
            "avx512",
        ),
        ("x86_64", {"avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "abm", "movbe"}, "avx2"),
        ("x86_64", {"avx512f", "avx2"}, "sse2"),  # AVX-512 without AVX2's companions
        ("x86_64", {"sse2", "avx"}, "sse2"),
        ("x86_64", None, "avx2"),  # features unknown
        ("aarch64", {"neon"}, "generic"),
        ("arm64", None, "generic"),
    ],
)
def test_the_target_follows_the_cpus_features(machine, flags, target, monkeypatch):
    monkeypatch.setattr(kernels, "cpu_flags", lambda: flags)
    assert kernels.cpu_target(machine) == target


def test_unsupported_systems_fall_back_in_one_line(monkeypatch):
    monkeypatch.setattr(kernels.platform, "system", lambda: "Windows")
    with pytest.raises(kernels._Unavailable, match="builds on Linux and macOS, not Windows"):
        kernels._load(kernels.SOURCE)


def _fake_compiler(folder, library=None, fail: str | None = None):
    """A `CXX` that accepts every flag, and builds by copying `library` to its `-o` path (or
    fails with `fail` on stderr): a build without 25 s of g++."""
    script = folder / "fake-g++"
    build = f'echo "{fail}" >&2; exit 1' if fail else f'cp "{library}" "$out"'
    script.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            out=""
            for arg in "$@"; do
              [ "$arg" = "-fsyntax-only" ] && exit 0
              [ "$prev" = "-o" ] && out="$arg"
              prev="$arg"
            done
            echo "$@" > "{folder}/command"
            {build}
            """
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@needs_tf
def test_the_cache_comes_first_and_a_failed_build_is_one_line(tmp_path, monkeypatch):
    """The op built once in the tests' cache is loaded with no compiler at all; a build that
    fails (no TensorFlow headers) says so in one line and leaves nothing behind."""
    if kernels.lstm_op() is None:
        pytest.skip(kernels.lstm_op_status())
    monkeypatch.setenv("CXX", "no-such-compiler")
    library, path = kernels._load(kernels.SOURCE)  # the same file: no compiler asked for
    assert path.is_file() and library is not None

    monkeypatch.setenv("RNN_ZOO_CACHE", str(tmp_path / "cache"))
    fail = "fatal error: tensorflow/core/framework/op.h: No such file or directory"
    monkeypatch.setenv("CXX", str(_fake_compiler(tmp_path, fail=fail)))
    with pytest.raises(kernels._Unavailable, match=r"the C\+\+ build failed: fatal error: tensorf"):
        kernels._load(kernels.SOURCE)
    assert [p.suffix for p in (tmp_path / "cache" / "kernels").iterdir()] == [".lock"]


@pytest.mark.slow
@needs_tf
def test_a_damaged_library_is_rebuilt_once_with_one_line(tmp_path):
    """A library that does not load is rebuilt (here by a fake compiler that copies a good
    build, in a process of its own: a second copy of the op cannot load beside the first) with
    the target's own flags, saying so in one line; the layer then runs the op."""
    import subprocess
    import sys

    if kernels.lstm_op() is None:
        pytest.skip(kernels.lstm_op_status())
    good = next(kernels._cache_dir().glob("lstm_op-*.so"))
    target = kernels._targets()[0]
    damaged = kernels._library_path(kernels.SOURCE, _tf_version(), *target)
    damaged = tmp_path / "cache" / "kernels" / damaged.name
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a library")
    code = (
        "import numpy as np\n"
        "from zoo.fused import NativeLSTM\n"
        "from zoo.kernels import lstm_op_status\n"
        "print(lstm_op_status())\n"
        "print(NativeLSTM(3)(np.ones((2, 4, 5), 'float32')).shape)\n"
    )
    env = {**os.environ, "RNN_ZOO_CACHE": str(tmp_path / "cache"), "KERAS_BACKEND": "tensorflow"}
    env["CXX"] = str(_fake_compiler(tmp_path, good))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == [f"loaded from {damaged}", "(2, 3)"]
    assert done.stderr.count("building the native LSTM op") == 1
    assert damaged.read_bytes() == good.read_bytes()
    assert " ".join(target[1]) in (tmp_path / "command").read_text()


def test_no_compiler_and_an_empty_cache_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("RNN_ZOO_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("a TensorFlow op")
    with pytest.raises(kernels._Unavailable, match="^no C\\+\\+ compiler: no-such-compiler"):
        kernels._load(kernels.SOURCE)
    assert not list(tmp_path.rglob("*.so"))


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


def test_no_file_locking_is_a_fallback(monkeypatch, tmp_path):
    """Where `fcntl` is missing (Windows), building is refused in one line, not a crash."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("a TensorFlow op")
    monkeypatch.setitem(__import__("sys").modules, "fcntl", None)
    monkeypatch.setenv("RNN_ZOO_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(_fake_compiler(tmp_path, fail="unused")))
    with pytest.raises(kernels._Unavailable, match="no file locking"):
        kernels._load(kernels.SOURCE)
    assert os.listdir(tmp_path) == ["fake-g++"]
