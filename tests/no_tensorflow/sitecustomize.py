"""Makes TensorFlow (and TensorBoard) look not installed: put this folder on PYTHONPATH.

tests/test_backends.py runs the zoo on JAX with it, so any hidden TensorFlow import fails as it
would where TensorFlow is absent (a GPU machine with JAX and PyTorch only): `import tensorflow`
raises ModuleNotFoundError and `importlib.util.find_spec("tensorflow")` is None.
"""

import sys

BLOCKED = ("tensorflow", "tensorboard", "tf_keras")


class _Hiding:
    """A meta path finder that finds what `finder` finds, except the blocked packages."""

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attribute):
        return getattr(self.finder, attribute)


sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]
