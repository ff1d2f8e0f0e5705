"""Every ``>>>`` example in the docstrings of jacspec runs and prints what it shows (doctest).

The Examples sections are the API reference's first contact with a user (docs/mkdocs_hooks.py requires them);
running them here keeps them true. Examples that need files or long runs are marked ``# doctest: +SKIP``.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import matplotlib
import pytest

import jacspec

matplotlib.use("Agg")

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(jacspec.__path__, prefix="jacspec.")
    if ".integrations." not in info.name  # their examples need the frameworks (docs/integrations.md runs them)
    and info.name != "jacspec.__main__"  # runs the CLI on import
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)  # examples that write files write here
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        if test.examples and test.name.split(".")[-1] != "__test__":
            runner.run(test, out=lambda text: print(text, end=""))
    plt.close("all")
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} docstring examples of {name} failed (output above)"
