# Every target creates .venv on first use; nothing is installed outside it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SEEDS ?= 300
FIRST_SEED ?= 1
STAMP := $(VENV)/.installed

.PHONY: venv demo test sim lint proto bench clean helm-test chaos

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	$(PY) scripts/gen_proto.py --check
	$(PY) scripts/gen_sync_client.py --check
	$(PY) -m pytest -q -p no:cacheprovider
	$(PY) scripts/raft_sim.py --seeds $(SEEDS) --first-seed $(FIRST_SEED)

# The Helm chart rendered offline with the real Helm library and checked against the
# Kubernetes schemas (no cluster needed); starts three local masters for the probes.
helm-test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/helm

# The nemesis run, bigger than the one in `make test` (5,000 tasks, 5 leader kills).
CHAOS_TASKS ?= 20000
CHAOS_KILLS ?= 12
chaos: $(STAMP)
	AGENTFLOW_CHAOS_TASKS=$(CHAOS_TASKS) AGENTFLOW_CHAOS_KILLS=$(CHAOS_KILLS) \
		$(PY) -m pytest -q -p no:cacheprovider -s tests/chaos

sim: $(STAMP)
	$(PY) scripts/raft_sim.py --seeds $(SEEDS) --first-seed $(FIRST_SEED)

lint: $(STAMP)
	$(VENV)/bin/ruff check agentflow tests scripts bench
	$(VENV)/bin/ruff format --check agentflow tests scripts bench
	$(VENV)/bin/mypy

proto: $(STAMP)
	$(PY) scripts/gen_proto.py

bench: $(STAMP)
	$(PY) bench/raft_bench.py
	$(PY) bench/submit_bench.py

# AgentFlow against Celery 5, Dask and Ray on this machine (see bench/README.md). Builds
# their venvs under bench/compare/.venvs on first use; needs redis-server (apt-get
# installs it when missing and run as root). Options: make bench-compare COMPARE_ARGS="--only dask,agentflow"
.PHONY: bench-compare
bench-compare: $(STAMP)
	$(PY) bench/compare/run.py $(COMPARE_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
