# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv and install the pinned project on first use; later calls
# only reinstall when pyproject.toml changed (the stamp file is older).
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-fast test-cluster test-airflow postgres cluster-up cluster-down bench bench-cluster clean install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	@# the report's browser check drives Debian's chromium (root installs it; else that check is skipped)
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "no chromium: the report's browser check will be skipped"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/geosid demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

test-cluster: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m cluster

# A live Airflow (scheduler, dag-processor, api-server, triggerer, LocalExecutor) on a
# throwaway PostgreSQL cluster from Debian's postgresql package (installed when root).
test-airflow: $(STAMP) postgres
	$(VENV)/bin/python -m pytest -q -m airflow

postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) ; } || \
	  { echo "PostgreSQL is not installed (Debian: apt-get install postgresql)"; exit 1; }

cluster-up: $(STAMP)
	deploy/cluster.sh up

cluster-down:
	deploy/cluster.sh down

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow and not conformance"

bench: $(STAMP)
	$(VENV)/bin/python bench/ingest_throughput.py
	$(VENV)/bin/python bench/embed_throughput.py
	$(VENV)/bin/python bench/sequences_throughput.py
	$(VENV)/bin/python bench/corpus_vs_pandas.py --repeat 3
	$(VENV)/bin/python bench/train_throughput.py --lake lake --size tiny
	$(VENV)/bin/python bench/scale_end_to_end.py
	$(VENV)/bin/python bench/year_of_operations.py
	$(VENV)/bin/python bench/year_of_operations.py --cost 1m 10m

bench-cluster: $(STAMP)
	$(VENV)/bin/python bench/cluster_nyc.py

clean:
	rm -rf lake .airflow
