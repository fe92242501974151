"""Execute every chapter of the book, so that a chapter that raises fails the test suite.

The chapters are MyST Markdown notebooks (jupytext text files). Each one listed in ``_toc.yml``
and containing code is converted with jupytext and run with nbclient, from its own folder, the
way the book build runs it. The exercises' solutions are ordinary (hidden) cells with ``assert``s,
so they run here too.

Time. Each chapter's wall-clock time, and the CPU time its kernel used, are printed in a table at
the end of the session ("chapter execution times") and recorded as the test's ``seconds`` and
``cpu_seconds`` properties (junit XML). A chapter is meant to run within :data:`BUDGET_S` seconds
on the 2-core test machine. Wall time on a shared machine also measures everything else that ran
there, so by default a slower chapter only gives a warning; set ``MIHO_CHAPTER_MAX_S`` (seconds)
to make a chapter that takes longer fail, e.g. ``MIHO_CHAPTER_MAX_S=180`` on a dedicated machine.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
TOC = ROOT / "_toc.yml"
SUFFIXES = (".md", ".ipynb")
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in kernel tracebacks
BUDGET_S = 180.0  # a chapter's time budget on the 2-core test machine
MAX_ENV = "MIHO_CHAPTER_MAX_S"

# Appended to each chapter when it is tested: the CPU time of the kernel and of the processes it
# waited for (pybullet workers), printed as JSON in the cell's last output line.
CPU_PROBE = """\
import json as _json, resource as _resource
_u = [_resource.getrusage(w) for w in (_resource.RUSAGE_SELF, _resource.RUSAGE_CHILDREN)]
print(_json.dumps({"miho_cpu_seconds": sum(u.ru_utime + u.ru_stime for u in _u)}))"""


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


def _max_seconds() -> float | None:
    """The hard limit from ``MIHO_CHAPTER_MAX_S``, or None (only the warning budget applies)."""
    value = os.environ.get(MAX_ENV, "").strip()
    if not value:
        return None
    try:
        limit = float(value)
    except ValueError:
        raise pytest.UsageError(f"{MAX_ENV} must be a number of seconds, got {value!r}") from None
    return limit if limit > 0 else None


def _cpu_seconds(cell) -> float | None:
    """The kernel's CPU time printed by :data:`CPU_PROBE` (None when it did not run)."""
    for out in reversed(cell.get("outputs", [])):
        for line in reversed(out.get("text", "").splitlines()):
            if "miho_cpu_seconds" in line:
                return float(json.loads(line)["miho_cpu_seconds"])
    return None


class _Timings:
    """Collects (chapter, wall seconds, CPU seconds, outcome) and prints them as a table at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float | None, str]] = []

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.rows:
            return
        tr = terminalreporter
        tr.section("chapter execution times")
        width = max(len(r[0]) for r in self.rows)
        tr.write_line(f"{'chapter':<{width}}  {'seconds':>8}  {'CPU s':>8}  outcome")
        for name, wall, cpu, outcome in self.rows:
            cpu_text = "-" if cpu is None else f"{cpu:.1f}"
            tr.write_line(f"{name:<{width}}  {wall:>8.1f}  {cpu_text:>8}  {outcome}")
        total = sum(r[1] for r in self.rows)
        tr.write_line(f"{'total':<{width}}  {total:>8.1f}")
        limit = _max_seconds()
        rule = f"fail above {limit:.0f} s ({MAX_ENV})" if limit else f"warn above {BUDGET_S:.0f} s"
        tr.write_line(f"(wall-clock seconds; CPU s: the kernel's CPU time, its threads together; {rule})")


@pytest.fixture(scope="session")
def chapter_timings(request: pytest.FixtureRequest) -> _Timings:
    timings = _Timings()
    request.config.pluginmanager.register(timings, "miho-chapter-timings")
    return timings


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[str(p.relative_to(ROOT)) for p in CHAPTERS])
def test_chapter_executes(
    chapter: Path,
    monkeypatch: pytest.MonkeyPatch,
    chapter_timings: _Timings,
    record_property,
) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")  # inherited by the kernel
    name = str(chapter.relative_to(ROOT))
    nb = jupytext.read(chapter)
    nb.cells.append(nbformat.v4.new_code_cell(CPU_PROBE))
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=600,
        allow_errors=False,
        resources={"metadata": {"path": str(chapter.parent)}},
    )
    error, outcome, limit = None, "error", _max_seconds()
    start = time.perf_counter()
    try:
        client.execute()
        outcome = "ok"
    except CellExecutionError as err:
        error, outcome = ANSI.sub("", str(err)), "a cell raised"
    finally:  # a timeout or a dead kernel is timed too, then propagates
        wall = time.perf_counter() - start
        cpu = _cpu_seconds(nb.cells[-1])
        if outcome == "ok" and limit and wall > limit:
            outcome = "too slow"
        chapter_timings.rows.append((name, wall, cpu, outcome))
        record_property("seconds", round(wall, 1))
        if cpu is not None:
            record_property("cpu_seconds", round(cpu, 1))
    if error is not None:
        pytest.fail(f"{name}: a cell raised (after {wall:.0f} s)\n{error}", pytrace=False)
    if limit and wall > limit:
        pytest.fail(f"{name}: took {wall:.0f} s, more than {MAX_ENV}={limit:.0f} s", pytrace=False)
    if wall > BUDGET_S:
        warnings.warn(
            f"{name} took {wall:.0f} s, more than its {BUDGET_S:.0f} s budget "
            f"(kernel CPU time {cpu if cpu is not None else float('nan'):.0f} s)",
            stacklevel=1,
        )
