"""Every test module is collected: a folder pytest skips by default (its ``norecursedirs`` holds ``build``) once hid
tests/build/ from every run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import ROOT


@pytest.mark.slow  # a pytest subprocess importing every test module
def test_every_test_module_is_collected():
    listed = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    collected = {line.split("::")[0] for line in listed.stdout.splitlines() if "::" in line}
    modules = {str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("test_*.py")}
    assert modules - collected == set()
