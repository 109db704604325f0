"""rnn-zoo: recurrent networks for Keras 3, registered by name, with tasks to train them on.

from zoo import create_model, list_models
model = create_model("bilstm", input_shape=(128, 9), num_outputs=6, units=64, depth=2)
"""

import os
import sys
import tempfile


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up lines (CUDA probing, absl, oneDNN) held back.

    They are written straight to file descriptor 2, so only a redirect of that descriptor hides
    them; they are replayed if the import fails. RNN_ZOO_TF_LOGS=1 shows them.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if (
        os.environ.get("RNN_ZOO_TF_LOGS")
        or os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow"
    ):
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+") as held:
        os.dup2(held.fileno(), 2)
        try:
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


_import_tensorflow_quietly()

from zoo.models import MODELS, create_model, list_models, looks_ahead
from zoo.registry import Registry, UnknownNameError
from zoo.tasks import TASKS, DataError, Task, get_task, list_tasks

__all__ = [
    "MODELS", "TASKS", "DataError", "Registry", "Task", "UnknownNameError",
    "create_model", "get_task", "list_models", "list_tasks", "looks_ahead",
]  # fmt: skip
__version__ = "0.1.0"
