"""jaxunlearn: machine unlearning in JAX that looks inside the model."""

__version__ = "0.1.0"
