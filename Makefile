# trackflow: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test test-unit lint bench chaos clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "trackflow needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

# Brings up Kafka + Redis locally, runs the simulator and a worker, produces sample tracks,
# prints what happened, and shuts everything down.
demo: $(STAMP)
	$(PY) deploy/local/demo.py

# Unit tests, then integration tests on a real Kafka + Redis (the local stack is started
# automatically unless KAFKA_BOOTSTRAP_SERVERS and REDIS_URL point at running ones).
test: $(STAMP) lint
	$(PY) deploy/local/prerequisites.py
	$(PY) -m pytest

# The whole chaos suite: three brokers, three workers, 20,000 tracks, kills and a broker stop
# (a compact version of it runs in `make test`).
chaos: $(STAMP)
	$(PY) deploy/local/prerequisites.py
	TRACKFLOW_CHAOS_SCALE=full $(PY) -m pytest tests/chaos -m chaos -s

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

# ruff, mypy, then the deployment files offline: hadolint, docker compose config, helm lint and
# helm template against the Kubernetes schemas (deploy/lint.py). helm is built into .tools/bin
# the first time (deploy/local/prerequisites.py), the other tools come with the dev extra.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	@# mypy reads the trackflow package through a tree of links: the editable install maps
	@# trackflow.streams to streams/ with an import hook, which mypy does not run.
	@mkdir -p .lint/trackflow
	@for d in streams agents providers schemas; do ln -sfn ../../$$d .lint/trackflow/$$d; done
	MYPYPATH=.lint $(VENV)/bin/mypy --strict -p trackflow
	MYPYPATH=.lint $(VENV)/bin/mypy --strict deploy/*.py deploy/local/*.py deploy/prometheus/*.py deploy/grafana/*.py
	$(PY) -m trackflow.schemas.evolution
	$(PY) deploy/local/prerequisites.py --lint
	$(PY) deploy/lint.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .lint .tools
