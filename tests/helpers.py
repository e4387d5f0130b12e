"""Small helpers shared by test modules (importable: pytest puts tests/ on sys.path)."""


class StopAfter:
    """A stop flag that trips at the ``n``-th poll (``train.fit`` polls after every chunk)."""

    def __init__(self, n):
        self.n = n

    def __call__(self):
        self.n -= 1
        return self.n < 0


def count_cmf_refreshes(monkeypatch) -> list:
    """Records the ``epoch`` argument of every CMF-head refresh the runner makes (monkeypatched
    ``core.make_cmf_refresh``); returns the list it appends to."""
    from jaxunlearn.unlearn import core
    calls = []
    real = core.make_cmf_refresh

    def counting(*a, **k):
        refresh = real(*a, **k)

        def wrapped(st, epoch, aux):
            calls.append(epoch)
            return refresh(st, epoch, aux)

        return wrapped

    monkeypatch.setattr(core, "make_cmf_refresh", counting)
    return calls
