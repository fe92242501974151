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
# every file under miho/ (name, size, mtime; caches excluded) plus the book configuration.
# The stamp holds this listing as of the last successful build.
fingerprint() {
    {
        find miho -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -printf '%p %s %T@\n'
        find _config.yml _toc.yml -printf '%p %s %T@\n'
    } | sort
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

echo ">>> $VENV/bin/jupyter-book build . ${args[*]}"
"$VENV/bin/jupyter-book" build . "${args[@]}"

mkdir -p _build
printf '%s\n' "$current" > "$STAMP"
echo ">>> book built: _build/html/index.html"
