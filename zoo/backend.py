"""The Keras backend: imported on first use, with TensorFlow's start-up noise held back.

`import zoo` stays light (no TensorFlow), so `--help` and `--list` answer at once; the first
`from zoo import create_model` (or any module that needs Keras) calls `load()`.
KERAS_BACKEND picks TensorFlow (default), JAX or PyTorch; any other is refused in one line.
"""

import importlib.util
import os
import sys
import tempfile

# Every registered model builds, trains, saves and reloads on these (tests/test_backends.py).
SUPPORTED = ("tensorflow", "jax", "torch")
# Keras' other backends, and why the zoo refuses them.
REFUSED = {
    "numpy": "Keras' numpy backend runs inference only and cannot train",
    "openvino": "Keras' openvino backend runs inference only and cannot train",
}


class BackendError(ValueError):
    """The Keras backend asked for is not one the zoo runs on."""


def name() -> str:
    """The backend Keras will use: $KERAS_BACKEND, else TensorFlow (Keras' own default)."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def check() -> None:
    """Raise a one-line `BackendError` unless the zoo runs on the backend asked for."""
    chosen = name()
    if chosen not in SUPPORTED:
        why = REFUSED.get(chosen, "not a Keras backend")
        raise BackendError(
            f"KERAS_BACKEND={chosen!r} is not supported by rnn-zoo ({why}); "
            f"use one of: {', '.join(SUPPORTED)}"
        )
    if importlib.util.find_spec(chosen) is None:  # each backend's package is its name
        extra = "" if chosen == "tensorflow" else f" (pip install 'rnn-zoo[{chosen}]')"
        raise BackendError(f"KERAS_BACKEND={chosen!r} needs the {chosen} package{extra}")


def load() -> None:
    """Check the backend, then import Keras (and TensorFlow) quietly. Cheap after the first call."""
    check()
    if "keras" in sys.modules:
        return
    if name() == "tensorflow":
        _import_tensorflow_quietly()
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras  # noqa: F401


def set_random_seed(seed: int) -> None:
    """`keras.utils.set_random_seed` with TensorFlow's start-up lines held back: Keras seeds
    TensorFlow wherever it is installed, so on JAX or PyTorch it would import it, loudly."""
    tensorflow_available()  # imports it quietly first, where it is installed
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    keras.utils.set_random_seed(seed)


def tensorflow_available() -> bool:
    """True where TensorFlow imports (held quiet, as `load` does). Keras' TensorBoard callback
    and the TensorFlow export formats need it on every backend; JAX and PyTorch do not."""
    if "tensorflow" in sys.modules:
        return True
    try:
        _import_tensorflow_quietly()
    except ImportError:
        return False
    return True


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up lines (CUDA probing, absl, oneDNN) held back.

    They are written straight to file descriptor 2, so only a redirect of that descriptor hides
    them; they are replayed if the import fails. RNN_ZOO_TF_LOGS=1 shows them.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("RNN_ZOO_TF_LOGS"):
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+") as held:
        os.dup2(held.fileno(), 2)
        try:
            # lazy: keeps Keras out of `import zoo` until the backend is chosen
            import tensorflow

            tensorflow.config.list_physical_devices()  # probes CUDA now, while held back
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
