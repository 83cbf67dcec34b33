# Two commands on a fresh machine: `make demo` and `make test`. Everything else is a step they use.
VENV     ?= .venv
PY       := $(VENV)/bin/python
EXPOSURE := $(VENV)/bin/exposure
# The CPU wheel that lies on this disk; a looser pin would pull a multi-GB CUDA build.
TORCH    ?= torch==2.13.0
# Optional extras installed with the package: test (reference packages), ray (--executor ray).
EXTRAS   ?= test,ray
# Use the shared copy of the upstream files when it is there, so nothing is downloaded.
EXPOSURE_DATA_MIRROR ?= $(wildcard ../shared/data/raw)
export EXPOSURE_DATA_MIRROR

.PHONY: install demo test data smoke csl lcsts paper clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed

data/csl/train.tsv data/lcsts/train.tsv: | $(VENV)/.installed
	$(EXPOSURE) data fetch --out data/raw
	$(EXPOSURE) data prepare --raw data/raw --out data

data: data/csl/train.tsv

demo: install data
	$(EXPOSURE) run experiments/demo.yaml --out runs/demo

smoke: install data
	$(EXPOSURE) run experiments/smoke.yaml --out runs/smoke
	$(EXPOSURE) compare runs/smoke results/smoke.json --tol 0.5

csl: install data
	$(EXPOSURE) run experiments/csl.yaml --out runs/csl

lcsts: install data
	$(EXPOSURE) run experiments/lcsts.yaml --out runs/lcsts

test: install
	$(PY) -m pytest -q

clean:
	rm -rf runs
