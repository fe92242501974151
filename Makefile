# MIHO developer entry points.
#   make test   create/refresh .venv, then run the test suite (PYTEST_ARGS="..." passes options)
#   make book   create/refresh .venv, then build the Jupyter Book into _build/html
#   make lab    create/refresh .venv, then open the chapters live in JupyterLab
#   make clean  remove build outputs (keeps .venv; `make distclean` removes it too)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
INSTALL_STAMP := $(VENV)/.miho-installed
PYTEST_ARGS ?=

# Neither target needs a display.
export MPLBACKEND := Agg

.PHONY: venv book test lab clean distclean

# Internal: the environment both public targets run in.
venv: $(INSTALL_STAMP)

$(VPY):
	@echo ">>> creating virtual environment $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency declarations changed since the last successful install.
$(INSTALL_STAMP): pyproject.toml constraints.txt | $(VPY)
	@echo ">>> installing miho[book,test,mano,lab,sim] into $(VENV) (pyproject.toml or constraints.txt changed, or first install)"
	$(VPY) -m pip install -c constraints.txt --upgrade pip
	$(VPY) -m pip install -c constraints.txt -e ".[book,test,mano,lab,sim]"
	@touch $@
	@echo ">>> $(VENV) is up to date"

test: venv
	@echo ">>> running the test suite"
	$(VPY) -m pytest $(PYTEST_ARGS)

book: venv
	@echo ">>> building the book"
	VENV=$(VENV) bash .ci/build_book.sh

lab: venv
	@echo ">>> starting JupyterLab on book/ (open a chapter .md with 'Open With > Notebook')"
	$(VENV)/bin/jupyter lab --notebook-dir=book $(LAB_ARGS)

clean:
	@echo ">>> removing build outputs"
	rm -rf _build .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
	find book -name '*.ipynb' -delete

distclean: clean
	@echo ">>> removing $(VENV)"
	rm -rf $(VENV)
