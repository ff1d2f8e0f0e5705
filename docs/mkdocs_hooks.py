"""MkDocs hooks: the API reference is generated from jacspec's public API, and the build fails when a
public name has no docstring or no numpydoc ``Examples`` section.

The public API is ``jacspec.__all__`` plus the ``__all__`` of every public module below ``jacspec``
(a module whose dotted path has no part starting with ``_``). Each public class or function must have
a docstring with an ``Examples`` section; each public method of a public class must have a docstring.
Names listed in ``docs/docstring_exemptions.txt`` may lack the ``Examples`` section (never the
docstring); an entry that is no longer needed (the name is gone or now has its examples) also fails the
build, so the list only shrinks.

One page per top-level module (``api/<module>.md``) is generated in ``on_files`` with a
mkdocstrings ``::: path`` block per public name, and listed under "API reference" in the nav, so a
name added to any ``__all__`` appears in the reference without editing the docs.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
EXEMPTIONS = Path(__file__).with_name("docstring_exemptions.txt")
EXAMPLES = re.compile(r"^Examples\n-{3,}$", re.MULTILINE)
API_SECTION = "API reference"
_PAGES: dict[str, str] = {}

if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


def public_modules() -> list[str]:
    """``jacspec`` and every module below it with no private part, sorted."""
    import jacspec

    names = ["jacspec"]
    for info in pkgutil.walk_packages(jacspec.__path__, "jacspec."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError as err:  # an optional extra that is not installed: fail loudly, the docs need it
        raise PluginError(f"docs: cannot import public module {name!r} ({err}); install the docs' extras") from err


def public_names() -> Iterator[tuple[str, str, object]]:
    """``(module, name, object)`` for every name in a public module's ``__all__``."""
    for module_name in public_modules():
        module = _module(module_name)
        for name in getattr(module, "__all__", ()):
            if name.startswith("__"):
                continue
            yield module_name, name, getattr(module, name)


def _documentable(obj: object) -> bool:
    return inspect.isclass(obj) or inspect.isfunction(obj)


def _defining_path(module_name: str, name: str, obj: object) -> str:
    """Where griffe finds the object statically: its defining module and qualified name."""
    if _documentable(obj) and getattr(obj, "__module__", "").startswith("jacspec"):
        return f"{obj.__module__}.{obj.__qualname__}"
    return f"{module_name}.{name}"


def _public_methods(cls: type) -> Iterator[tuple[str, object]]:
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        function = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
        if inspect.isfunction(function):
            yield name, function


def check_docstrings() -> list[str]:
    """Problems of the public API's docstrings, one line each (empty when all is well)."""
    exempt = set()
    if EXEMPTIONS.exists():
        for line in EXEMPTIONS.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                exempt.add(line)
    problems: list[str] = []
    seen: set[int] = set()
    checked: set[str] = set()
    for module_name, name, obj in public_names():
        if not _documentable(obj) or id(obj) in seen:
            continue
        seen.add(id(obj))
        path = _defining_path(module_name, name, obj)
        checked.add(path)
        doc = inspect.getdoc(obj) if inspect.isfunction(obj) else obj.__doc__
        if not doc or not doc.strip():
            problems.append(f"{path}: no docstring")
            continue
        has_examples = bool(EXAMPLES.search(inspect.cleandoc(doc)))
        if not has_examples and path not in exempt:
            problems.append(f"{path}: the docstring has no 'Examples' section (numpydoc)")
        if has_examples and path in exempt:
            problems.append(f"{path}: has an 'Examples' section now; remove it from {EXEMPTIONS.name}")
        if inspect.isclass(obj):
            for method_name, function in _public_methods(obj):
                if not (function.__doc__ or "").strip() and not _inherited_doc(obj, method_name):
                    problems.append(f"{path}.{method_name}: no docstring")
    for path in sorted(exempt - checked):
        problems.append(f"{path}: listed in {EXEMPTIONS.name} but not a public class or function; remove it")
    return problems


def _inherited_doc(cls: type, method_name: str) -> bool:
    """A method overriding a documented one of a base class inherits its docstring."""
    for base in cls.__mro__[1:]:
        member = vars(base).get(method_name)
        if member is not None and (getattr(member, "__doc__", None) or "").strip():
            return True
    return False


def _module_docstring(module: str) -> list[str]:
    return [f"::: {module}", "    options:", "      members: false", "      show_root_heading: false", ""]


def api_pages() -> dict[str, str]:
    """``{"api/<module>.md": markdown}``: one page per top-level public module of jacspec."""
    groups: dict[str, list[tuple[str, str, object]]] = {}
    for module_name, name, obj in public_names():
        top = ".".join(module_name.split(".")[:2])
        groups.setdefault(top, []).append((module_name, name, obj))
    for module_name in public_modules():  # modules with nothing in __all__ still get their page
        groups.setdefault(".".join(module_name.split(".")[:2]), [])
    pages: dict[str, str] = {}
    rendered: set[str] = set()
    # the lazily exported top-level names live on their modules' pages; the package page links to them
    top_level = groups.pop("jacspec", [])
    for top in sorted(groups):
        lines = [f"# `{top}`", "", *_module_docstring(top)]
        current = None
        for module_name, name, obj in groups[top]:
            path = _defining_path(module_name, name, obj)
            if path in rendered:
                continue
            rendered.add(path)
            if module_name != top and module_name != current:
                lines += [f"## `{module_name}`", ""]
                current = module_name
            lines += [f"::: {path}", "    options:", f"      heading_level: {3 if module_name != top else 2}", ""]
        pages[f"api/{top.split('.')[1]}.md"] = "\n".join(lines)
    lines = ["# `jacspec`", "", *_module_docstring("jacspec")]
    lines += ["| name | reference |", "| --- | --- |"]
    for module_name, name, obj in top_level:
        path = _defining_path(module_name, name, obj)
        if path.startswith("jacspec._version"):
            continue
        lines.append(f"| `jacspec.{name}` | [`{path}`][{path}] |")
    lines += ["", "Submodules: " + ", ".join(f"[`{top}`]({top.split('.')[1]}.md)" for top in sorted(groups)), ""]
    pages["api/jacspec.md"] = "\n".join(lines)
    return pages


def on_config(config, **kwargs):
    problems = check_docstrings()
    if problems:
        raise PluginError("docs: public API docstrings are incomplete:\n  " + "\n  ".join(problems))
    pages = api_pages()
    entries = [{"jacspec": "api/jacspec.md"}] + [
        {f"jacspec.{Path(uri).stem}": uri} for uri in sorted(pages) if uri != "api/jacspec.md"
    ]
    for item in config["nav"] or []:
        if isinstance(item, dict) and API_SECTION in item:
            item[API_SECTION] = entries
            break
    else:
        raise PluginError(f"docs: mkdocs.yml's nav needs an {API_SECTION!r} entry (the hook fills it)")
    _PAGES.clear()
    _PAGES.update(pages)
    return config


def on_files(files, config, **kwargs):
    for uri, content in _PAGES.items():
        files.append(File.generated(config, uri, content=content))
    return files
