"""The public API (`scaleworld.__all__`) and the examples in the docstrings, run as doctests."""

import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import scaleworld

PACKAGE = Path(scaleworld.__file__).parent
WITH_EXAMPLES = sorted(
    ".".join(("scaleworld", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py") if ">>> " in path.read_text())


def test_every_public_name_resolves_and_importing_the_package_loads_no_torch():
    for name in scaleworld.__all__:
        assert getattr(scaleworld, name) is not None, name
    assert set(scaleworld.__all__) <= set(dir(scaleworld))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        scaleworld.Nope  # noqa: B018
    with pytest.raises(AttributeError, match="WorldModelLoss is now scaleworld.DynamicsLoss"):
        scaleworld.WorldModelLoss  # noqa: B018
    loaded = subprocess.run([sys.executable, "-c", "import sys, scaleworld; print('torch' in sys.modules)"],
                            capture_output=True, text=True)
    assert loaded.stdout.strip() == "False"  # the CLI's start-up stays light


def test_the_modules_with_examples_are_found():
    assert {"scaleworld", "scaleworld.imagination.env", "scaleworld.atari.envs"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("module", WITH_EXAMPLES)
def test_docstring_examples_run(module):
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(importlib.import_module(module), optionflags=flags)
    assert result.attempted > 0 and result.failed == 0, f"{module}: {result.failed} of {result.attempted} failed"
