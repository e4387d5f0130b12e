"""Small helpers shared by test modules (importable: pytest puts tests/ on sys.path)."""


class StopAfter:
    """A stop flag that trips at the ``n``-th poll (``train.fit`` polls after every chunk)."""

    def __init__(self, n):
        self.n = n

    def __call__(self):
        self.n -= 1
        return self.n < 0
