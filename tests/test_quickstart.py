"""The README's quick-start runs verbatim.

The code is the one ```python block between ``<!-- quickstart -->`` and
``<!-- /quickstart -->`` in README.md (docs/quickstart.md while the README has no markers).
It runs in a fresh interpreter, in an empty directory, as a reader would paste it.
"""

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- quickstart -->\s*```python\n(.*?)```\s*<!-- /quickstart -->", re.S)


def quickstart_code() -> tuple[str, pathlib.Path]:
    """``(code, file)``: the marked block of README.md, else of docs/quickstart.md."""
    for path in (ROOT / "README.md", ROOT / "docs" / "quickstart.md"):
        if path.is_file():
            found = BLOCK.findall(path.read_text())
            if found:
                assert len(found) == 1, f"{path} has {len(found)} quick-start blocks; keep one"
                return found[0], path
    raise AssertionError("no <!-- quickstart --> ```python ... ``` <!-- /quickstart --> block in README.md "
                         "or docs/quickstart.md")


def test_quickstart_runs_verbatim(tmp_path):
    code, path = quickstart_code()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # not the tests' 4 fake devices
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, f"the quick-start of {path.name} failed:\n{out.stderr[-3000:]}"
    printed = dict(re.findall(r"^\s*(full|lp|ncc): forget-class accuracy ([0-9.]+), retain [0-9.]+",
                              out.stdout, re.M))
    assert set(printed) == {"full", "lp", "ncc"}, out.stdout
    for head, forget in printed.items():
        assert 0.0 <= float(forget) <= 1.0, (head, forget)
    assert re.search(r"original model: test accuracy 0\.\d{3}", out.stdout), out.stdout


def test_docs_copy_is_the_readme_block():
    """docs/quickstart.md repeats the README's block; the two must not drift apart."""
    readme = BLOCK.findall((ROOT / "README.md").read_text())
    doc = BLOCK.findall((ROOT / "docs" / "quickstart.md").read_text())
    assert len(readme) == 1, "README.md must hold the quick-start block (between the markers)"
    assert doc == readme, "docs/quickstart.md's quick-start differs from README.md's: copy one to the other"
