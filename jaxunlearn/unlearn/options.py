"""Typed hyper-parameters and options of the unlearning methods: declaration, parsing, checks.

A method declares what it reads in ``Method(options=...)``, a tuple of :class:`Spec`:

* *hyper-parameters* (``hparam=True``): the swept float values of ``method.hparams`` (``lr``,
  loss coefficients); a value may be a scalar or an array (a sweep grid), and every element
  must lie in the range;
* *options*: static values of :class:`~jaxunlearn.unlearn.core.Settings` -- its fields
  (``epochs``, ``batch_size``, ...; see :data:`TRAINING`) and the method-specific entries of
  ``settings.options`` (``msteps``, ``until_wrong``, ...), typed ``bool``, ``int``, ``float``
  or ``choice``.

The default of a hyper-parameter or of a ``Settings`` field is the method's own
(``method.hparams`` / ``method.settings``), so it is written once; a method-specific option
carries its default in the spec.

:func:`parse_value` turns a command-line string into the typed value (``--set NAME=VALUE``),
:func:`validate` checks ``(hparams, settings)`` against a method before a run, and both raise
one-line ``ValueError`` naming the method's valid names or the allowed values.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

KINDS = ("bool", "int", "float", "choice")
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


@dataclasses.dataclass(frozen=True)
class Spec:
    """One hyper-parameter or option of a method.

    Attributes:
      name: the key in ``hparams`` or the ``Settings`` field / option name.
      kind: ``"bool"``, ``"int"``, ``"float"`` or ``"choice"``.
      help: one line: what it does.
      default: the default of a method-specific option; ``None`` for hyper-parameters and
        ``Settings`` fields, whose defaults are the method's ``hparams`` / ``settings``.
      low, high: bounds of an ``int`` / ``float`` (``None``: unbounded on that side).
      low_open, high_open: whether that bound is excluded.
      choices: the allowed values of a ``choice``.
      hparam: a swept hyper-parameter (an entry of ``hparams``), not a static option.
    """

    name: str
    kind: str
    help: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    hparam: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"option {self.name}: a choice needs its choices")
        if self.hparam and self.kind != "float":
            raise ValueError(f"hyper-parameter {self.name} must be a float (options are for the rest)")

    @property
    def range_text(self) -> str:
        """``"> 0"``, ``"in [0, 1]"``, ``"retain | all"``, or ``""`` if unconstrained."""
        if self.kind == "choice":
            return " | ".join(map(str, self.choices))
        if self.kind == "bool":
            return "true | false"
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            return f"in {'(' if self.low_open else '['}{lo:g}, {hi:g}{')' if self.high_open else ']'}"
        if lo is not None:
            return f"{'>' if self.low_open else '>='} {lo:g}"
        if hi is not None:
            return f"{'<' if self.high_open else '<='} {hi:g}"
        return ""

    def in_range(self, x: float) -> bool:
        if self.low is not None and not (x > self.low if self.low_open else x >= self.low):
            return False
        if self.high is not None and not (x < self.high if self.high_open else x <= self.high):
            return False
        return True


def HParam(name, help, low=None, high=None, *, low_open=False, high_open=False) -> Spec:
    """A swept float hyper-parameter (its default is the method's ``hparams[name]``)."""
    return Spec(name, "float", help, None, low, high, low_open, high_open, hparam=True)


def LR(help="learning rate") -> Spec:
    return HParam("lr", help, 0.0, low_open=True)


def Bool(name, default: bool, help) -> Spec:
    return Spec(name, "bool", help, default)


def Int(name, default, help, low=None, high=None) -> Spec:
    return Spec(name, "int", help, default, low, high)


def Float(name, default, help, low=None, high=None, *, low_open=False, high_open=False) -> Spec:
    return Spec(name, "float", help, default, low, high, low_open, high_open)


def Choice(name, default, choices, help) -> Spec:
    return Spec(name, "choice", help, default, choices=tuple(choices))


# The Settings fields (defaults: the method's ``settings``); gradient methods declare TRAINING.
EPOCHS = Int("epochs", None, "passes over the method's primary stream", 1)
BATCH_SIZE = Int("batch_size", None, "samples per batch of each stream", 1)
OPTIMIZER = Choice("optimizer", None, ("sgd", "adam"), "sgd (momentum) or adam")
MOMENTUM = Float("momentum", None, "SGD momentum", 0.0, 1.0, high_open=True)
NESTEROV = Spec("nesterov", "bool", "Nesterov momentum (false: heavy ball)")
WEIGHT_DECAY = Float("weight_decay", None, "coupled weight decay", 0.0)
SCHEDULE = Choice("schedule", None, ("constant", "cosine", "step"), "learning-rate schedule over each phase")
STEP_EPOCHS = Int("step_epochs", None, "schedule step: epochs between two decays of the rate", 1)
STEP_GAMMA = Float("step_gamma", None, "schedule step: factor of each decay", 0.0, low_open=True)
CLIP_NORM = Float("clip_norm", None, "clip the total gradient to this global L2 norm (default: no clip)", 0.0,
                  low_open=True)
AUGMENT_PAD = Int("augment_pad", None, "random-crop padding (pixels) of the images during unlearning", 0)
AUGMENT_FLIP = Spec("augment_flip", "bool", "random horizontal flips of the images during unlearning")
CMF_TEMPERATURE = Float("cmf_temperature", 1.0, "temperature of the CMF head (cmf mode only)", 0.0, low_open=True)


def _settings_fields() -> tuple:
    from jaxunlearn.unlearn.core import Settings  # loaded before any method module imports this one
    return tuple(f.name for f in dataclasses.fields(Settings) if f.name != "options")


SETTINGS_FIELDS = _settings_fields()  # mode is set by the head-mode flags, not declared
_OPTIONAL_FIELDS = ("clip_norm",)  # Settings fields whose None means "off"
_FIELD_SPECS = (EPOCHS, BATCH_SIZE, OPTIMIZER, MOMENTUM, NESTEROV, WEIGHT_DECAY, SCHEDULE, STEP_EPOCHS, STEP_GAMMA,
                CLIP_NORM, AUGMENT_PAD, AUGMENT_FLIP)
TRAINING = tuple(s for s in _FIELD_SPECS if s.name in SETTINGS_FIELDS) + (CMF_TEMPERATURE,)


# ----------------------------------------------------------------------------- the declaration

def specs(method) -> dict:
    """``{name: Spec}`` of everything ``method`` declares, hyper-parameters first."""
    return {s.name: s for s in sorted(method.options, key=lambda s: not s.hparam)}


def default_of(method, spec: Spec, settings=None):
    """The default of ``spec`` for ``method`` (``settings`` defaults to ``method.settings``)."""
    settings = settings or method.settings
    if spec.hparam:
        return method.hparams[spec.name]
    if spec.name in SETTINGS_FIELDS:
        return getattr(settings, spec.name)
    return settings.option(spec.name, spec.default)


def check_declaration(method) -> None:
    """Refuses an inconsistent declaration (called by ``Method.__post_init__``).

    A method that declares nothing (``options=()``, e.g. one written by a user) is accepted;
    its values are then checked only for names (hyper-parameters) and finiteness.
    """
    if not method.options:
        return
    names = [s.name for s in method.options]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{method.name}: options declared twice: {', '.join(dup)}")
    declared_hp = {s.name for s in method.options if s.hparam}
    if declared_hp != set(method.hparams):
        raise ValueError(f"{method.name}: hparams {sorted(method.hparams)} and declared hyper-parameters "
                         f"{sorted(declared_hp)} differ")
    by_name = specs(method)
    for k, v in method.settings.options:
        s = by_name.get(k)
        if s is None or s.hparam or k in SETTINGS_FIELDS:
            raise ValueError(f"{method.name}: default option {k} is not declared")
        if v != s.default:
            raise ValueError(f"{method.name}: option {k} defaults to {v!r} in settings but {s.default!r} in its spec")
    for s in method.options:
        if not s.hparam and s.name not in SETTINGS_FIELDS and s.default is None:
            raise ValueError(f"{method.name}: option {s.name} needs a default")


def refuse_unused_setting(method, name: str, shown: str | None = None) -> None:
    """Refuses an explicit override of ``Settings`` field ``name`` that ``method`` does not
    declare (``epochs`` of the training-free SVD). A method that declares nothing takes every
    field. ``shown``: how the name appears in the message (``--epochs``; default ``'epochs'``).
    """
    if method.options and name in SETTINGS_FIELDS and name not in specs(method):
        raise ValueError(f"{method.name} does not use {shown or repr(name)}; it has {names_text(method)}")


def names_text(method) -> str:
    """``"hyper-parameters lr, forget_weight; options epochs, ..."`` for error messages."""
    hp = [s.name for s in method.options if s.hparam] or list(method.hparams)
    op = [s.name for s in method.options if not s.hparam]
    text = f"hyper-parameters {', '.join(hp) or '(none)'}"
    if method.options:
        text += f"; options {', '.join(op) or '(none)'}"
    return text


# ----------------------------------------------------------------------------- parsing

def parse_value(spec: Spec, text: str):
    """The typed value of ``text`` for ``spec``; ValueError naming the allowed values."""
    t = text.strip()
    where = f"{spec.name}={text}"
    if spec.kind == "bool":
        if t.lower() in TRUE_WORDS:
            return True
        if t.lower() in FALSE_WORDS:
            return False
        raise ValueError(f"{where}: {spec.name} is a boolean; use true/false (or 1/0, yes/no)")
    if spec.kind == "choice":
        for c in spec.choices:
            if t == str(c):
                return c
        raise ValueError(f"{where}: {spec.name} must be one of {', '.join(map(str, spec.choices))}")
    if spec.kind == "int":
        try:
            value = int(t)
        except ValueError:
            raise ValueError(f"{where}: {spec.name} is an integer ({spec.range_text or 'any'})") from None
    else:
        try:
            value = float(t)
        except ValueError:
            raise ValueError(f"{where}: {spec.name} is a number ({spec.range_text or 'finite'})") from None
    check_value(spec, value)
    return value


def parse_sets(method, items) -> tuple[dict, dict]:
    """``(hparams, options)`` from ``["NAME=VALUE", ...]`` parsed against ``method``'s specs.

    An unknown name, a value of the wrong type or out of range raises a one-line ValueError
    that names the method's valid names. A method that declares nothing takes numbers for its
    hyper-parameters and refuses every other name.
    """
    by_name = specs(method)
    hp, opts = {}, {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
        name, text = (p.strip() for p in item.split("=", 1))
        spec = by_name.get(name)
        if spec is None and not method.options and name in method.hparams:
            spec = HParam(name, "")
        if spec is None:
            raise ValueError(f"{method.name} has no hyper-parameter or option {name!r}; it has "
                             f"{names_text(method)} (see `jaxunlearn methods`)")
        try:
            (hp if spec.hparam else opts)[name] = parse_value(spec, text)
        except ValueError as e:
            raise ValueError(f"{method.name}: {e}") from None
    return hp, opts


# ----------------------------------------------------------------------------- checking values

def _is_tracer(v) -> bool:
    import jax
    return isinstance(v, jax.core.Tracer)


def check_value(spec: Spec, value) -> None:
    """ValueError if ``value`` is not of ``spec``'s type or lies outside its range.

    Hyper-parameters may be arrays (every element is checked); traced values (inside
    ``jit`` / ``vmap``) are not checked.
    """
    if _is_tracer(value) or (value is None and spec.name in _OPTIONAL_FIELDS):
        return
    name = spec.name
    if spec.kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return
    if spec.kind == "choice":
        if value not in spec.choices:
            raise ValueError(f"{name} must be one of {', '.join(map(str, spec.choices))}, got {value!r}")
        return
    if spec.kind == "int":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer ({spec.range_text or 'any'}), got {value!r}")
        if not spec.in_range(int(value)):
            raise ValueError(f"{name} must be {spec.range_text}, got {value}")
        return
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, (bool, np.bool_, str)) or arr.dtype == object:
        raise ValueError(f"{name} must be a number, got {value!r}")
    if arr.ndim and not spec.hparam:
        raise ValueError(f"option {name} must be one number, got an array of shape {arr.shape}")
    for x in arr.ravel():
        if not math.isfinite(x) or not spec.in_range(float(x)):
            rng = spec.range_text
            raise ValueError(f"{name} must be finite{' and ' + rng if rng else ''}, got {x:g}")


def validate(method, hparams: Mapping[str, Any] | None = None, settings=None) -> None:
    """Checks a run's ``hparams`` overrides and ``settings`` against ``method``'s declaration.

    Refuses (ValueError, one line): hyper-parameter names the method does not have, option
    names it does not declare, values of the wrong type, out of range or not finite, an
    unknown mode, and a phase plan the method refuses (e.g. UNSIR's ``impair_epochs`` not
    below ``epochs``). ``Settings`` fields a method does not declare (``epochs`` of a
    training-free method) are unused and not checked. Nothing is computed on arrays.

    Args:
      method: a :class:`~jaxunlearn.unlearn.core.Method`.
      hparams: overrides of ``method.hparams`` (scalars, arrays, or tracers inside a sweep).
      settings: a :class:`~jaxunlearn.unlearn.core.Settings` (default ``method.settings``).
    """
    from jaxunlearn.unlearn.core import MODES

    settings = settings or method.settings
    by_name = specs(method)
    for name, value in (hparams or {}).items():
        if name not in method.hparams:
            raise ValueError(f"{method.name} has no hyper-parameter {name!r}; it has {names_text(method)}")
        check_value(by_name.get(name) or HParam(name, ""), value)
    if settings.mode not in MODES:
        raise ValueError(f"unknown mode {settings.mode!r}; choose one of {', '.join(MODES)}")
    if method.options:
        for name in SETTINGS_FIELDS:
            if name in by_name:
                check_value(by_name[name], getattr(settings, name))
        for name, value in settings.options:
            spec = by_name.get(name)
            if spec is None or spec.hparam:
                raise ValueError(f"{method.name} has no option {name!r}; it has {names_text(method)}")
            check_value(spec, value)
    if method.phases is not None:
        method.phases(settings)  # raises the method's own refusal of its phase plan


def describe(method, hparams: Mapping | None = None, settings=None, indent: str = "    ") -> str:
    """Lines listing ``method``'s hyper-parameters and options with types, ranges and defaults.

    ``hparams`` / ``settings``: the defaults to show (e.g. a dataset's preset applied);
    default the method's own.
    """
    settings = settings or method.settings
    hp = {**method.hparams, **(hparams or {})}
    lines = []
    for title, group in (("hyper-parameters", [s for s in method.options if s.hparam]),
                         ("options", [s for s in method.options if not s.hparam])):
        if not group and title == "hyper-parameters" and method.hparams:
            group = [HParam(n, "") for n in method.hparams]
        lines.append(f"{indent}{title}:" + ("" if group else " (none)"))
        for s in group:
            default = hp[s.name] if s.hparam else default_of(method, s, settings)
            if isinstance(default, bool):
                default = str(default).lower()
            rng = f", {s.range_text}" if s.range_text and s.kind not in ("bool",) else ""
            kind = "choice" if s.kind == "choice" else s.kind
            lines.append(f"{indent}  {s.name} = {default:g}" if isinstance(default, float) else
                         f"{indent}  {s.name} = {default}")
            lines[-1] += f"  ({kind}{rng})" + (f"  {s.help}" if s.help else "")
    return "\n".join(lines)
