"""The README's and the docs' Python snippets run as written.

Every fenced ```` ```python ```` block of ``README.md`` and ``docs/*.md`` is executed in a fresh namespace
with the working directory set to a temporary folder. A block preceded by a line
``<!-- skip-snippet -->`` (only for blocks that need a framework that is not installed, or a long run) is
skipped, and the skip is reported with the block's location.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_MARK = "<!-- skip-snippet -->"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def snippets() -> list[tuple[str, str, bool]]:
    """``(id, code, skipped)`` for every ```python block of the README and the docs pages."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1), before == SKIP_MARK))
    return found


SNIPPETS = snippets()


def test_snippets_are_found():
    ids = [snippet_id for snippet_id, _, _ in SNIPPETS]
    assert any(i.startswith("README.md") for i in ids) and any(i.startswith("docs/") for i in ids)
    # skipping is the exception: most blocks run
    assert sum(skipped for _, _, skipped in SNIPPETS) <= len(SNIPPETS) // 2


def test_fence_parser():
    text = "intro\n```python\nx = 1\n```\n<!-- skip-snippet -->\n```python\nraise SystemExit\n```\n```bash\nls\n```\n"
    blocks = [(m.group(1), text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]) for m in FENCE.finditer(text)]
    assert blocks == [("x = 1\n", "intro"), ("raise SystemExit\n", SKIP_MARK)]


@pytest.mark.parametrize("code, skipped", [(c, s) for _, c, s in SNIPPETS], ids=[i for i, _, _ in SNIPPETS])
def test_snippet_runs(code, skipped, tmp_path, monkeypatch):
    if skipped:
        pytest.skip(f"marked {SKIP_MARK} (needs a framework that is not installed here, or a long run)")
    import matplotlib

    matplotlib.use("Agg")
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(code, "<snippet>", "exec"), {"__name__": "__snippet__"})
    finally:
        torch.set_num_threads(threads)
        import matplotlib.pyplot as plt

        plt.close("all")
    assert os.getcwd() == str(tmp_path)
