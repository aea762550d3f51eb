# Two commands do all the set-up on a fresh clone:
#   make train   - virtual environment, FashionMNIST, then `vaezoo train conv-fashion --beta 1`
#   make test    - virtual environment, FashionMNIST (for the real-data tests), then the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: install data train test bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Without internet, FashionMNIST comes from Debian's package; elsewhere torchvision downloads it.
data:
	@if [ ! -f $(FASHION) ] && command -v apt-get >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  ($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist) \
	    || echo "note: dataset-fashion-mnist not installed; vaezoo will try to download FashionMNIST"; \
	fi

train: install data
	$(VENV)/bin/vaezoo train conv-fashion --beta 1

test: install data
	$(PY) -m pytest -q

bench: install data
	$(PY) benchmarks/train_speed.py
