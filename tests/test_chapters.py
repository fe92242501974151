"""Execute every chapter of the book, so that a chapter that raises fails the test suite.

The chapters are MyST Markdown notebooks (jupytext text files). Each one listed in ``_toc.yml``
and containing code is converted with jupytext and run with nbclient, from its own folder, the
way the book build runs it.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
TOC = ROOT / "_toc.yml"
SUFFIXES = (".md", ".ipynb")
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in kernel tracebacks


def _toc_files(entry: dict) -> list[str]:
    """All ``file`` entries of a _toc.yml node, depth first (root, parts, chapters, sections)."""
    files = [entry["file"]] if "file" in entry else []
    if "root" in entry:
        files.append(entry["root"])
    for key in ("parts", "chapters", "sections"):
        for child in entry.get(key, []):
            files.extend(_toc_files(child))
    return files


def _resolve(name: str) -> Path:
    path = ROOT / name
    if path.suffix in SUFFIXES:
        return path
    for suffix in SUFFIXES:
        if path.with_suffix(suffix).exists():
            return path.with_suffix(suffix)
    raise FileNotFoundError(f"{name} (listed in _toc.yml) not found as {' or '.join(SUFFIXES)}")


def _chapters() -> list[Path]:
    toc = yaml.safe_load(TOC.read_text())
    chapters = []
    for name in _toc_files(toc):
        path = _resolve(name)
        nb = jupytext.read(path)
        if any(cell.cell_type == "code" for cell in nb.cells):
            chapters.append(path)
    return chapters


CHAPTERS = _chapters()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[str(p.relative_to(ROOT)) for p in CHAPTERS])
def test_chapter_executes(chapter: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")  # inherited by the kernel
    nb = jupytext.read(chapter)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=600,
        allow_errors=False,
        resources={"metadata": {"path": str(chapter.parent)}},
    )
    error = None
    try:
        client.execute()
    except CellExecutionError as err:
        error = ANSI.sub("", str(err))
    if error is not None:
        pytest.fail(f"{chapter.relative_to(ROOT)}: a cell raised\n{error}", pytrace=False)
