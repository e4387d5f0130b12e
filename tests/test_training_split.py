"""Unlearning and evaluation use the whole training split (the authors' protocol, parity row 10)."""

import numpy as np

from jaxunlearn import data as data_lib


def test_whole_training_set_appends_the_validation_rows(digits):
    whole = data_lib.whole_training_set(digits)
    n, v = len(digits.train_labels), len(digits.val_labels)
    assert v > 0 and len(whole.train_labels) == n + v and len(whole.val_labels) == 0
    np.testing.assert_array_equal(whole.train_images[:n], digits.train_images)   # training rows keep their index
    np.testing.assert_array_equal(whole.train_images[n:], digits.val_images)
    np.testing.assert_array_equal(whole.train_labels[n:], digits.val_labels)
    np.testing.assert_array_equal(whole.test_labels, digits.test_labels)
    assert whole.val_images.shape[1:] == digits.val_images.shape[1:]
    assert data_lib.whole_training_set(whole) is whole   # idempotent
    # every class's rows come back: the stratified hold-out is undone
    full = data_lib.load_dataset("digits", val_fraction=0.0)
    np.testing.assert_array_equal(np.bincount(whole.train_labels), np.bincount(full.train_labels))
