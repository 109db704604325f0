"""Shared test set-up: every test starts from the same seeds and a fresh Keras session."""

from __future__ import annotations

import keras
import pytest


@pytest.fixture(autouse=True)
def _seeded():
    """Seed Python, NumPy and the backend, and drop graphs of earlier tests."""
    keras.backend.clear_session(free_memory=False)  # gc.collect would cost 0.3-0.5 s a test
    keras.utils.set_random_seed(0)
    yield
