"""Test set-up: 4 virtual CPU devices (for sharding tests), quiet logs, shared fixtures."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxunlearn import data as data_lib  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    return data_lib.load_dataset("digits")


@pytest.fixture(scope="session")
def trained_digits(digits, tmp_path_factory):
    """An MLP trained on digits (about 10 s), shared by method and evaluation tests."""
    from jaxunlearn import runs
    recipe = runs.recipe_for("digits", "mlp", epochs=20)
    net, state, _ = runs.train_model(digits, "mlp", recipe, seed=0, progress=False)
    return net, state
