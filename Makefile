# Two commands do all the set-up on a fresh clone:
#   make train   - virtual environment, FashionMNIST, then `vaezoo train conv-fashion --beta 1`
#   make test    - virtual environment, FashionMNIST (for the real-data tests), then the test suite
# and a few more the docs need:
#   make docs        - the docs site into site/ (strict: a broken link fails); docs-serve serves it
#   make browser     - Debian's Chromium and chromedriver, for the explore page's browser test
#   make tutorial    - re-execute docs/tutorial.ipynb in place (the outputs the site shows)
#   make screenshot  - docs/images/explore.png from two short FashionMNIST runs
VENV ?= .venv
PY := $(VENV)/bin/python
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: install data train test bench docs docs-serve browser tutorial screenshot

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(VENV)/.installed-docs: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[docs]'
	touch $@

# Without internet, FashionMNIST comes from Debian's package; elsewhere torchvision downloads it.
# In CI (CI=true) the real-data tests must run, so a failed install stops here instead.
data:
	@if [ ! -f $(FASHION) ] && command -v apt-get >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  if ! ($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist); then \
	    if [ "$$CI" = true ]; then \
	      echo "error: dataset-fashion-mnist could not be installed; CI needs it for the real-data tests" >&2; exit 1; \
	    fi; \
	    echo "note: dataset-fashion-mnist not installed; vaezoo will try to download FashionMNIST"; \
	  fi; \
	fi
	@if [ "$$CI" = true ] && [ ! -f $(FASHION) ]; then \
	  echo "error: $(FASHION) is missing; CI needs FashionMNIST for the real-data tests" >&2; exit 1; \
	fi

# The browser test skips without Chromium (and fails in CI, where .ci/run calls this first).
browser:
	@if ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

train: install data
	$(VENV)/bin/vaezoo train conv-fashion --beta 1

test: install data
	$(PY) -m pytest -q

bench: install data
	$(PY) benchmarks/train_speed.py

docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

docs-serve: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve --strict

# nbclient's own command line (jupyter execute), run with the venv's Python.
tutorial: install
	$(PY) -c 'from nbclient.cli import main; main()' --inplace --timeout 600 docs/tutorial.ipynb

# Two 3-epoch runs (about two minutes each on two cores), kept in runs/ for the next screenshot.
screenshot: install data browser
	@for beta in 1 4; do test -f runs/explore-beta$$beta/model.safetensors || \
	  $(VENV)/bin/vaezoo train conv-fashion --beta $$beta --epochs 3 --out runs/explore-beta$$beta --overwrite; done
	$(PY) -m tests.browser runs/explore-beta1 runs/explore-beta4 --out docs/images/explore.png
