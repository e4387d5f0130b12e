"""Unlearning methods. ``METHODS`` maps each name to its :class:`~jaxunlearn.unlearn.core.Method`.

One module per method; shared mechanics (problem, phases, head modes, runner) live in
:mod:`jaxunlearn.unlearn.core`, the training loop in :mod:`jaxunlearn.train`.
"""

import importlib

from jaxunlearn.unlearn.core import (MODES, Method, Phase, Problem, Settings, UnlearnResult, make_problem,
                                     make_problems, make_unlearn, problem_axes, unlearn)

_MODULES = ["retrain", "finetune", "gradient_ascent", "random_label", "salun", "neggrad_plus", "scrub",
            "unsir", "svd", "l1_sparse", "ssd", "boundary_shrink", "boundary_expand", "classifier_edit", "cmf_finetune"]

METHODS = {}
for _name in _MODULES:
    try:
        METHODS[_name] = importlib.import_module(f"jaxunlearn.unlearn.{_name}").METHOD
    except ModuleNotFoundError as e:  # a method module not written yet
        if e.name != f"jaxunlearn.unlearn.{_name}":
            raise


def get_method(name: str) -> Method:
    """The method called ``name``; raises ValueError naming the choices if unknown."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "MODES", "Method", "Phase", "Problem", "Settings", "UnlearnResult", "get_method",
           "make_problem", "make_problems", "make_unlearn", "problem_axes", "unlearn"]
