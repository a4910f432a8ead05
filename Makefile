# Two commands do all the set-up on a fresh machine:
#   make repro   create .venv if missing, install the pinned lock, run `dvc repro`
#   make test    same set-up, then the test suite (make test-fast: without the end-to-end tests)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Stage commands call `python -m ...`: run them with the project's interpreter.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro plan compare test test-fast test-learning bench gpu-check lock clean-venv profile study study-part study-status study-verdicts study2-repeat

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

repro: setup
	dvc repro

# What `dvc repro` would run, and why, without running it (DVC's `--dry` stops on a fresh clone):
#   make plan            make plan S="precision=4-16"   (as `dvc exp run -S precision=4-16` would)
plan: setup
	$(PY) -m common.plan $(foreach s,$(S),-S $(s))

# The experiments side by side, narrow enough for a terminal: the precision set and the headline
# cells of the profile's mapping (reports/headline.json: short names such as cq2.CQ-C, cq9.4-16).
compare:
	dvc exp show --drop '.*' --keep 'Experiment|^precision$$|^(cq|burn)[0-9]+\.'

test: setup
	$(PY) -m pytest -q

# Everything but the end-to-end tests (fresh clone + dvc repro / dvc exp run): minutes, not tens.
test-fast: setup
	$(PY) -m pytest -q -m "not e2e"

# The learning tests on other seeds: make test-learning TEST_SEED_OFFSET=7
test-learning: setup
	$(PY) -m pytest -q -s -m learning

# bench/ holds benchmarks and the modules they share (no TARGET lines of their own); the GPU check
# is `make gpu-check`
BENCH_HELPERS = bench/feed.py bench/jpegs.py bench/timing.py bench/gpu_cost.py bench/gpu_report.py
bench: setup
	for b in $(filter-out bench/gpu.py $(BENCH_HELPERS),$(wildcard bench/*.py)); do echo "== $$b"; $(PY) $$b || exit 1; done

# The paper-scale GPU check (README "The GPU check"): reports/gpu/<device>.md; tiny CPU mode without CUDA
gpu-check: setup
	$(PY) bench/gpu.py

# Re-pin the lock from what is installed in .venv (maintainers only).
lock: setup
	$(PY) -m pip freeze --exclude-editable | grep -v '^lowprec-ssl' > requirements.lock

clean-venv:
	rm -rf $(VENV)

# Switch the active profile (smoke | mini | paper | paper_small_data): renders profiles/base.yaml with
# profiles/$(PROFILE).yaml laid over it into params.yaml (common/profiles.py).
profile: setup
	@test -n "$(PROFILE)" || { echo "usage: make profile PROFILE=<name of a file in profiles/ other than base>"; exit 2; }
	$(PY) -m common.profiles $(PROFILE) --out params.yaml

# The claims study (reports/study/README.md): `make study` runs every missing part, then the verdicts
# (the whole study from a fresh clone); `make study-part HALF=cq SEED=1` runs one part (resumes a
# killed one); status lists what is missing; verdicts renders them.
study: setup
	$(PY) -m study.v1 all

study-part: setup
	@test -n "$(HALF)" && test -n "$(SEED)" || { echo "usage: make study-part HALF=cq|burn SEED=<seed>"; exit 2; }
	$(PY) -m study.v1 run $(HALF) --seed $(SEED)

study-status: setup
	$(PY) -m study.v1 status

study-verdicts: setup
	$(PY) -m study.v1 verdicts

# The second edition again from a fresh clone (reports/study/v2/README.md): every registered part at
# the commit the committed parts ran, then the verdicts; `git diff reports/study/v2` compares.
study2-repeat: setup
	PY=$(PY) bash study/repeat_v2.sh
