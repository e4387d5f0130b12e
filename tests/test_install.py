"""The install pins: constraints.txt is what this environment runs, the accelerator extras
name its jax version, and scripts/setup.sh installs with the constraints."""

import importlib.metadata as md
import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pins() -> dict:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
            assert m, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def test_constraints_pin_the_core_packages_at_the_installed_versions():
    pins = _pins()
    for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scikit-learn", "pytest"):
        assert name in pins, f"constraints.txt does not pin {name}"
        assert pins[name] == md.version(name), (
            f"{name} {md.version(name)} is installed but constraints.txt pins {pins[name]}: "
            "bash scripts/setup.sh (re-pin) or bash scripts/setup.sh --freeze (after the tests pass)")
    assert "jaxunlearn" not in pins  # the editable package itself is not pinned


def test_accelerator_extras_name_the_tested_jax():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    jax = _pins()["jax"]
    assert extras["gpu"] == [f"jax[cuda12]=={jax}"]
    assert extras["tpu"] == [f"jax[tpu]=={jax}"]
    tpu_req = (ROOT / "requirements-tpu.txt").read_text()
    assert "-c constraints.txt" in tpu_req and "-e .[tpu" in tpu_req


def test_setup_installs_with_the_constraints():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert '-c "$CONSTRAINTS"' in setup and 'CONSTRAINTS="$ROOT/constraints.txt"' in setup
    assert "--freeze" in setup and "--upgrade" in setup
