"""Makes TensorFlow (and TensorBoard) look not installed: put this folder on PYTHONPATH.

tests/test_backends.py runs the zoo on JAX with it, so any hidden TensorFlow import fails as it
would where TensorFlow is absent (a GPU machine with JAX and PyTorch only).
"""

import sys

BLOCKED = ("tensorflow", "tensorboard", "tf_keras")


class _NotInstalled:
    """A meta path finder that answers ModuleNotFoundError for the blocked packages."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
