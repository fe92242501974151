"""Sphinx local extension of the MIHO book (loaded through ``sphinx: local_extensions`` in _config.yml).

* Footer: ``copyright`` becomes "<year> <authors>", with the authors taken from the installed
  package's metadata (pyproject.toml's ``authors``) and the year from ``SOURCE_DATE_EPOCH`` when
  it is set (reproducible builds), else the current year; ``version`` / ``release`` are
  ``miho.__version__``, which the footer also shows. Nothing here needs a network.
* Execution times: when the build finishes, the run time myst-nb recorded for every executed
  chapter is written to ``<outdir>/../chapter_times.json`` (``_build/chapter_times.json``), with
  whether the chapter ran in this build or kept its time from an earlier one. ``.ci/build_book.sh``
  prints it as a table.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import re
import time
from pathlib import Path

TIMES_FILE = "chapter_times.json"


def package_authors(dist: str = "miho") -> str:
    """The authors of an installed distribution, as one string ("A, B and C").

    Core metadata keeps pyproject's ``authors`` in ``Author`` (names alone) and ``Author-email``
    ("Name <address>, ..."); names are taken from both, addresses dropped.
    """
    md = importlib.metadata.metadata(dist)
    names = [n.strip() for value in md.get_all("Author") or [] for n in value.split(",") if n.strip()]
    for value in md.get_all("Author-email") or []:
        for entry in value.split(","):
            name = re.sub(r"<[^>]*>", "", entry).strip().strip('"')
            if name:
                names.append(name)
    if not names:
        raise RuntimeError(f"the installed {dist} declares no authors (pyproject.toml: [project] authors)")
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def build_year() -> int:
    """``SOURCE_DATE_EPOCH``'s year when set (reproducible builds), else the current year (UTC)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).year
    return datetime.datetime.now(datetime.timezone.utc).year


def _set_metadata(app, config) -> None:
    import miho

    authors = package_authors()
    config.author = authors
    config.copyright = f"{build_year()} {authors}"
    config.version = config.release = miho.__version__
    options = dict(config.html_theme_options or {})
    if not options.get("extra_footer"):
        options["extra_footer"] = f'<p class="miho-version">miho {miho.__version__}</p>'
    config.html_theme_options = options


def _start_clock(app) -> None:
    app.env.miho_build_started = time.time()


def _write_times(app, exception) -> None:
    if exception is not None:
        return
    env = app.env
    started = getattr(env, "miho_build_started", 0.0)
    data = getattr(env, "nb_metadata", {})
    rows = []
    for docname in sorted(env.found_docs):
        exec_data = (data.get(docname) or {}).get("exec_data")
        if not exec_data:
            continue  # no code, nothing executed
        rows.append({
            "chapter": docname,
            "seconds": round(float(exec_data["runtime"]), 2),
            "this_build": float(exec_data["mtime"]) >= started,
            "succeeded": bool(exec_data["succeeded"]),
        })  # fmt: skip
    order = {name: i for i, name in enumerate(env.toctree_includes.get(env.config.root_doc, []))}
    rows.sort(key=lambda r: (order.get(r["chapter"], len(order)), r["chapter"]))
    Path(app.outdir).parent.joinpath(TIMES_FILE).write_text(json.dumps(rows, indent=1) + "\n")


def setup(app):
    app.connect("config-inited", _set_metadata, priority=900)  # after Sphinx's own year correction
    app.connect("builder-inited", _start_clock)
    app.connect("build-finished", _write_times)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
