#!/usr/bin/env bash
# Build the Jupyter Book into _build/html, executing every chapter; exit non-zero if a cell raises.
#
# Sphinx only re-reads chapters whose source changed. The chapters import the miho package, so
# when the package (or the book configuration) changed since the last successful build, build
# with --all so that every chapter is executed again against the new code.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${VENV:-.venv}
STAMP=_build/.miho-book-stamp
export MPLBACKEND=Agg
export LC_ALL=C  # find | sort and comm below must agree on the order

# Fingerprint of everything that can change a chapter's output without touching the chapter:
# every file under miho/ (name, size, mtime; caches excluded) plus the book configuration and its
# local Sphinx extension (book/_ext). The stamp holds this listing as of the last successful build.
fingerprint() {
    {
        find miho book/_ext -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -printf '%p %s %T@\n'
        find _config.yml _toc.yml -printf '%p %s %T@\n'
    } | sort
}

# Each chapter's execution time, as myst-nb recorded it (book/_ext/miho_book.py writes
# _build/chapter_times.json when a build finishes); "earlier build" marks chapters that this
# (incremental) build did not execute again.
print_times() {
    "$VENV/bin/python" - "$TIMES" <<'PY'
import json, sys

rows = json.load(open(sys.argv[1]))
width = max([len("executed in this build")] + [len(r["chapter"]) for r in rows])
print(f"{'chapter':<{width}}  {'seconds':>8}")
for r in rows:
    note = "" if r["this_build"] else "  (earlier build)"
    print(f"{r['chapter']:<{width}}  {r['seconds']:>8.1f}{note}")
total = sum(r["seconds"] for r in rows if r["this_build"])
print(f"{'executed in this build':<{width}}  {total:>8.1f}")
PY
}

current=$(fingerprint)
args=()
if [[ ! -f _build/html/index.html ]]; then
    echo ">>> no previous build: full build"
    args=(--all)
elif [[ ! -f $STAMP ]]; then
    echo ">>> no record of the last successful build: rebuilding all chapters (--all)"
    args=(--all)
elif [[ "$(cat "$STAMP")" != "$current" ]]; then
    echo ">>> miho/ or the book configuration changed since the last successful build: rebuilding all chapters (--all)"
    changed=$(comm -3 "$STAMP" - <<<"$current" | awk '{print $1}' | sort -u)
    echo ">>>   changed, added or removed: $(head -n 5 <<<"$changed" | tr '\n' ' ')"
    args=(--all)
else
    echo ">>> miho/ unchanged since the last successful build: incremental build (changed chapters only)"
fi

TIMES=_build/chapter_times.json
rm -f "$TIMES"
echo ">>> $VENV/bin/jupyter-book build . ${args[*]}"
start=$SECONDS
"$VENV/bin/jupyter-book" build . "${args[@]}"
elapsed=$((SECONDS - start))

mkdir -p _build
printf '%s\n' "$current" > "$STAMP"
echo ">>> book built in ${elapsed} s: _build/html/index.html"
if [[ -f $TIMES ]]; then
    echo ">>> chapter execution times (wall-clock seconds, myst-nb):"
    print_times
else
    echo ">>> no chapter execution times recorded ($TIMES is missing)"
fi
