# Two commands on a fresh machine: `make demo` and `make test`. Everything else is a step they use.
VENV     ?= .venv
PY       := $(VENV)/bin/python
EXPOSURE := $(VENV)/bin/exposure
# The CPU wheel that lies on this disk; a looser pin would pull a multi-GB CUDA build.
TORCH    ?= torch==2.13.0
# Optional extras installed with the package: test (reference packages), ray (--executor ray),
# tensorboard (exposure run --tensorboard).
EXTRAS   ?= test,ray,tensorboard
# Use the shared copy of the upstream files when it is there, so nothing is downloaded.
EXPOSURE_DATA_MIRROR ?= $(wildcard ../shared/data/raw)
export EXPOSURE_DATA_MIRROR

# Where `make reproduce-cpu` puts its runs (results/ gets the committed tables and plots), and how
# many runs it trains at a time.
REPRO    ?= runs/reproduce-cpu
JOBS     ?= 2
# `make reproduce`: the article's own profiles (pretrained BERT from $$EXPOSURE_BERT) on this device.
PAPER    ?= runs/paper
# Where `make leaderboard` puts its runs (their small outputs are kept in results/leaderboard-runs/).
BOARD    ?= runs/leaderboard
DEVICE   ?= auto

.PHONY: install demo test data smoke csl lcsts reproduce-cpu cpu-tables leaderboard study-cpu study-tables screen-cpu reproduce torture gpu-check clean

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
	$(EXPOSURE) compare runs/smoke results/smoke.json --tol 0.01 --delta-tol 0.01

csl: install data
	$(EXPOSURE) run experiments/csl.yaml --out runs/csl

lcsts: install data
	$(EXPOSURE) run experiments/lcsts.yaml --out runs/lcsts

# Both CPU tables of the study (3 methods × 3 seeds × beams 1-3 on CSL and on LCSTS), beside the
# article's, with plots; the committed results/ are this target's output. Each run's small outputs
# (metrics, spec, training log, predictions) are kept in results/<task>-cpu/, and the tables are
# built from there, so that they rebuild from the committed files alone.
reproduce-cpu: install data
	$(EXPOSURE) run csl.yaml --out $(REPRO)/csl --jobs $(JOBS)
	$(EXPOSURE) run lcsts.yaml --out $(REPRO)/lcsts --jobs $(JOBS)
	for t in csl lcsts; do $(EXPOSURE) keep $(REPRO)/$$t results/$$t-cpu || exit 1; done
	$(MAKE) cpu-tables

# results/{csl,lcsts}-cpu.{json,md} and their plots, from the kept runs in results/<task>-cpu/
# (no checkpoint needed; 1-3 minutes).
cpu-tables: install
	for t in csl lcsts; do \
	  $(EXPOSURE) table results/$$t-cpu --runs --format json --output results/$$t-cpu.json && \
	  $(EXPOSURE) table results/$$t-cpu --runs --output results/$$t-cpu.md && \
	  $(EXPOSURE) table results/$$t-cpu --paper $$t >> results/$$t-cpu.md && \
	  $(EXPOSURE) plot results/$$t-cpu --paper $$t --out results/plots/$$t-cpu && \
	  $(EXPOSURE) table results/$$t-cpu --paper $$t || exit 1; \
	done

# Issue 23's leaderboard: every registered method (experiments/leaderboard.yaml) × 3 seeds × beams
# 1-3, MRT and SCST fine-tuning each seed's baseline. `exposure run --keep` diagnoses every run while
# its checkpoint exists and keeps its small outputs in results/leaderboard-runs/ as it finishes (a
# rerun, also elsewhere, goes on from there), and `exposure leaderboard` writes
# results/leaderboard.{md,json,png} from them, with the grid's wall time over all its sessions
# (results/leaderboard-runs/wall.json, which `exposure run` keeps as it goes). Baseline, random
# replacement and the gradient penalty are the testbed campaign's runs of the same seeds (the same
# spec but for its name and method list): `--reuse` copies them from the campaign's output directory
# (with the checkpoints MRT and SCST start from) or, without it, from results/study-cpu. Hours of
# work: each kept run is committed as it finishes (BOARD_COMMIT= not to).
BOARD_COMMIT ?= --commit
leaderboard: install data
	$(EXPOSURE) run leaderboard.yaml --out $(BOARD) --jobs $(JOBS) --keep results/leaderboard-runs \
	  $(addprefix --reuse ,$(wildcard $(STUDY)) results/study-cpu) $(BOARD_COMMIT)
	$(EXPOSURE) leaderboard results/leaderboard-runs --output-dir results --name leaderboard

# The testbed campaign (issue 22; docs/cpu-profile.md, docs/results.md): CSL in the study's training
# regime (experiments/study-cpu.yaml), baseline, random replacement (both pools) and the gradient
# penalty (both scopes), in blocks of 5 seeds until every Rouge-L difference to baseline is known to
# ±0.5 at beams 1-3, its floor says it cannot be, or 40 CPU hours are spent. Many hours: it commits
# each finished run's small outputs and diagnostics to results/study-cpu/ as it goes (STUDY_COMMIT=
# to not commit), and rerunning it (here or on another machine with results/ checked out) goes on
# from there.
STUDY        ?= runs/study-cpu
STUDY_COMMIT ?= --commit
study-cpu: install data
	$(EXPOSURE) campaign study-cpu.yaml --out $(STUDY) --keep results/study-cpu --jobs $(JOBS) \
	  --half-width 0.5 --block 5 --budget-hours 40 $(STUDY_COMMIT)
	$(MAKE) study-tables

# The ablation screen on the testbed profile (issue 22): one difference from the study toggled at a
# time — label smoothing back on, the copy pointer's continuation/coverage terms off, the short
# schedule that stops while still improving (csl.yaml's 3 epochs), and every one of the 8 epochs
# trained with the best selected (no early stopping, as the study) — for baseline, random replacement
# and the gradient penalty as the article describes them (no-early-stopping: all five of the
# campaign's methods, since early stopping was checked on the baseline alone), 3 seeds each; every
# run kept (with its diagnostics) in results/screen-cpu/<toggle>/ as it finishes. The untoggled arm
# is the campaign's. Each kept run is committed as it finishes (SCREEN_COMMIT= not to). A campaign
# run that patience never stopped (it trained all 8 epochs) is the no-early-stopping run: copied.
SCREEN_COMMIT ?= --commit
SCREEN_METHODS := --set 'methods=[baseline, random_replace, gradient_penalty]' --set 'train.seeds=[0, 1, 2]'
screen-cpu: install data
	$(EXPOSURE) run study-cpu.yaml $(SCREEN_METHODS) --set train.label_smoothing=0.1 \
	  --out runs/screen-cpu/label-smoothing --keep results/screen-cpu/label-smoothing --jobs $(JOBS) $(SCREEN_COMMIT)
	$(EXPOSURE) run study-cpu.yaml $(SCREEN_METHODS) --set model.copy_continuation=0 --set model.copy_coverage=false \
	  --out runs/screen-cpu/no-copy-terms --keep results/screen-cpu/no-copy-terms --jobs $(JOBS) $(SCREEN_COMMIT)
	$(EXPOSURE) run study-cpu.yaml $(SCREEN_METHODS) --set train.epochs=3 --set train.patience=null \
	  --out runs/screen-cpu/short-schedule --keep results/screen-cpu/short-schedule --jobs $(JOBS) $(SCREEN_COMMIT)
	$(EXPOSURE) run study-cpu.yaml --set 'train.seeds=[0, 1, 2]' --set train.patience=null \
	  --out runs/screen-cpu/no-early-stopping --keep results/screen-cpu/no-early-stopping --jobs $(JOBS) $(SCREEN_COMMIT) \
	  --reuse results/study-cpu
	$(EXPOSURE) screen results/study-cpu \
	  $(foreach t,label-smoothing no-copy-terms short-schedule no-early-stopping,$(t)=results/screen-cpu/$(t)) \
	  --output results/screen-cpu.md

# results/study-cpu.{json,md}, its plots and its diagnostics' aggregate, from the kept runs alone.
study-tables: install
	$(EXPOSURE) table results/study-cpu --runs --format json --output results/study-cpu.json
	$(EXPOSURE) table results/study-cpu --runs --output results/study-cpu.md
	$(EXPOSURE) table results/study-cpu --paper csl >> results/study-cpu.md
	$(EXPOSURE) plot results/study-cpu --paper csl --out results/plots/study-cpu
	$(EXPOSURE) diagnose results/study-cpu --recorded > /dev/null
	$(EXPOSURE) power results/study-cpu --effect 0.5 --json results/study-cpu-power.json > /dev/null

# The study's own experiments (experiments/paper/: pretrained Chinese BERT-base, 20 epochs, the five
# method rows, 2 seeds): needs EXPOSURE_BERT and a CUDA GPU (the spec stops at once without them).
reproduce: install data
	$(EXPOSURE) run paper/csl.yaml --out $(PAPER)/csl --device $(DEVICE)
	$(EXPOSURE) run paper/lcsts.yaml --out $(PAPER)/lcsts --device $(DEVICE)
	$(EXPOSURE) table $(PAPER)/csl --paper csl
	$(EXPOSURE) table $(PAPER)/lcsts --paper lcsts

# What a user with a GPU runs first: every method, resume, decoding, diagnose and export at BERT-base
# size, one line per check (docs/paper-profile.md); DEVICE=cpu runs it tiny.
gpu-check: install
	$(EXPOSURE) gpu-check --device $(DEVICE)

# Kill a small grid with SIGKILL 10 times at random moments, then check that it finishes exactly as
# an uninterrupted run (tests/test_torture.py, which CI runs with 4 kills).
torture: install
	EXPOSURE_TORTURE_KILLS=10 $(PY) -m pytest -q tests/test_torture.py -k random_sigkills

test: install
	$(PY) -m pytest -q

clean:
	rm -rf runs
