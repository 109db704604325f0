"""Shared test set-up: every test starts from the same seeds and a fresh Keras session, and
the zoo's cache folder (parsed data sets, the compiled C++ op) is the tests' own, never the
user's."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import keras
import pytest


def pytest_configure(config):
    """Point the zoo's cache folder (`RNN_ZOO_CACHE`, and `XDG_CACHE_HOME` for the tests that
    unset it) at a folder of the tests' own, shared by the xdist workers and their
    subprocesses: the C++ op is built there once a session (or once a checkout, where pytest's
    cache folder is kept), never in the user's cache."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the controller set it; workers inherit the environment
    if getattr(config, "cache", None) is not None:
        folder = Path(config.cache.mkdir("rnn-zoo-cache"))
    else:  # pytest's cache turned off (-p no:cacheprovider): a temporary folder
        folder = Path(tempfile.mkdtemp(prefix="rnn-zoo-test-cache-"))
    os.environ["RNN_ZOO_CACHE"] = str(folder)
    os.environ["XDG_CACHE_HOME"] = str(folder / "xdg")


@pytest.fixture(autouse=True)
def _seeded():
    """Seed Python, NumPy and the backend, and drop graphs of earlier tests."""
    keras.backend.clear_session(free_memory=False)  # gc.collect would cost 0.3-0.5 s a test
    keras.utils.set_random_seed(0)
    yield


# The files that take longest, first: xdist hands out whole files in collection order, so a long
# file collected last would run alone at the end while the other workers sit idle.
LONGEST_FIRST = [
    "test_tuning_resume.py",
    "test_backends.py",
    "test_distribute.py",
    "test_train.py",
    "test_tuning.py",
    "test_scripts.py",
    "test_models.py",
    "test_export.py",
    "test_window_features.py",
    "test_tuning_isolate.py",
    "test_sequences.py",
    "test_forecasting.py",
]


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order
