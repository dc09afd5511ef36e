"""Shared fixtures: a seeded random generator and tolerance per dtype."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
