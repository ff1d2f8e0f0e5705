"""The documentation site builds with warnings as errors, and the build fails where it must.

``mkdocs build --strict`` turns every broken link or anchor into an error; the hook in
``docs/mkdocs_hooks.py`` fails the build for a public name without a docstring or without a numpydoc
``Examples`` section (``docs/docstring_exemptions.txt`` lists the names still waiting for theirs).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None
    or importlib.util.find_spec("mkdocstrings_handlers") is None
    or importlib.util.find_spec("material") is None,
    reason="the docs toolchain (mkdocs-material, mkdocstrings[python]) is not installed: pip install -e '.[test]'",
)


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(ROOT / "src"), MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _hooks():
    spec = importlib.util.spec_from_file_location("jacspec_mkdocs_hooks", ROOT / "docs" / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_site_builds_strict(tmp_path):
    result = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    site = tmp_path / "site"
    # every nav page was rendered, and the API reference holds the public names' own headings
    for page in ("index.html", "getting_started/index.html", "gallery/index.html", "benchmarks/index.html"):
        assert (site / page).is_file(), page
    probes = (site / "api" / "probes" / "index.html").read_text()
    for name in ("PointJacobian", "TangentKernel", "FourierSpectrum", "MutualInformation", "WeightInformation"):
        assert f'.{name}"' in probes, name
    assert (site / "demo.png").is_file()


def test_broken_link_fails_the_build(tmp_path):
    """A copy of the docs with one link to a page that does not exist must not build."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "src").symlink_to(ROOT / "src")
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text() + "\nSee [the missing page](no_such_page.md).\n")
    result = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no_such_page.md" in result.stdout + result.stderr


def test_hook_rejects_missing_docstring_and_examples(monkeypatch, tmp_path):
    hooks = _hooks()

    def documented(x):
        """Twice x.

        Examples
        --------
        >>> documented(2)
        4
        """
        return 2 * x

    def no_examples(x):
        """Twice x, but no example."""
        return 2 * x

    def bare(x):
        return 2 * x

    class Thing:
        """A class with an undocumented public method.

        Examples
        --------
        >>> Thing().run()
        """

        def run(self):
            pass

    objects = {"documented": documented, "no_examples": no_examples, "bare": bare, "Thing": Thing}
    for obj in objects.values():
        obj.__module__ = "jacspec.fake"
    for name, obj in objects.items():
        obj.__qualname__ = name
    monkeypatch.setattr(hooks, "public_names", lambda: (("jacspec.fake", n, o) for n, o in objects.items()))
    exemptions = tmp_path / "exempt.txt"
    exemptions.write_text("# comment\njacspec.fake.no_examples\n")
    monkeypatch.setattr(hooks, "EXEMPTIONS", exemptions)
    problems = hooks.check_docstrings()
    text = "\n".join(problems)
    assert "bare: no docstring" in text
    assert "run: no docstring" in text
    assert "no_examples" not in text  # exempt
    assert "documented" not in text
    # an exemption no longer needed, and one for a name that does not exist, both fail
    exemptions.write_text("jacspec.fake.documented\njacspec.fake.gone\n")
    text = "\n".join(hooks.check_docstrings())
    assert "documented: has an 'Examples' section now" in text
    assert "gone: listed in" in text
    assert "no_examples: the docstring has no 'Examples' section" in text
    # the build itself raises on problems
    monkeypatch.setattr(hooks, "check_docstrings", lambda: ["jacspec.fake.bare: no docstring"])
    with pytest.raises(Exception, match="bare: no docstring"):
        hooks.on_config({"nav": [{"API reference": []}]})


def test_exemption_list_matches_the_public_api():
    """The real API passes the hook's check (the same check the build runs)."""
    assert _hooks().check_docstrings() == []


def test_api_pages_cover_every_public_name():
    hooks = _hooks()
    pages = "\n".join(hooks.api_pages().values())
    for module_name, name, obj in hooks.public_names():
        path = hooks._defining_path(module_name, name, obj)
        if path.startswith("jacspec._version"):
            continue
        assert f"::: {path}" in pages or f"[{path}]" in pages, path
