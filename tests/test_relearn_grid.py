"""The relearning attack runs exactly the steps asked and is evaluated on one step grid."""

import numpy as np
import pytest

from jaxunlearn import data as data_lib
from jaxunlearn.evaluators import as_forget_set
from jaxunlearn.evaluators.relearning import relearn_curve


@pytest.mark.parametrize("steps, every, grid", [(30, 10, [0, 10, 20, 30]), (25, 10, [0, 10, 20, 25]),
                                                (7, 3, [0, 3, 6, 7])])
def test_curve_is_evaluated_at_multiples_of_eval_every(digits, trained_digits, steps, every, grid):
    net, state = trained_digits
    fs = as_forget_set(data_lib.parse_forget([3], digits.num_classes), digits.train_labels, digits.test_labels, digits)
    # 10 forget + 10 of each retain class = 100 samples, batch 32: 3 steps per epoch, so the
    # evaluation points cut across epoch ends
    curve = relearn_curve(net, state, digits, fs, samples=10, steps=steps, eval_every=every)
    assert curve["steps"] == grid
    assert len(curve["full"]) == len(curve["ncc"]) == len(curve["retain"]) == len(grid)
    assert all(0.0 <= v <= 1.0 for v in curve["full"] + curve["ncc"] + curve["retain"])


def test_curve_is_a_prefix_of_a_longer_one(digits, trained_digits):
    """Same seed: the first points of a 20-step curve equal a 10-step curve's (steps are steps)."""
    net, state = trained_digits
    fs = as_forget_set(data_lib.parse_forget([3], digits.num_classes), digits.train_labels, digits.test_labels, digits)
    short = relearn_curve(net, state, digits, fs, samples=10, steps=10, eval_every=5)
    long = relearn_curve(net, state, digits, fs, samples=10, steps=20, eval_every=5)
    np.testing.assert_allclose(long["full"][:3], short["full"], atol=1e-6)
    np.testing.assert_allclose(long["ncc"][:3], short["ncc"], atol=1e-6)
