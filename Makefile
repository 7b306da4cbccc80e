# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv and install the project with the locked versions (constraints.txt)
# on first use; later calls only reinstall when pyproject.toml or the lock changed.
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-fast test-cluster test-airflow postgres lint format docs lock dist cluster-up cluster-down bench bench-cluster clean install

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[all,test,docs]' -c constraints.txt
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

lint: $(STAMP)
	$(VENV)/bin/ruff format --check geosid tests bench tools
	$(VENV)/bin/ruff check geosid tests bench tools

format: $(STAMP)
	$(VENV)/bin/ruff format geosid tests bench tools
	$(VENV)/bin/ruff check --fix geosid tests bench tools

# The generated pages (tables and CLI references, results, the README's headlines), then the site.
docs: $(STAMP)
	$(VENV)/bin/python tools/gen_docs.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The lock: the exact versions of the environment the suite passed in (torch's local
# build label dropped, so a CUDA build of the same version satisfies it too).
lock: $(STAMP)
	$(VENV)/bin/pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/' > constraints.txt

# The wheel and the sdist, under dist/.
dist: $(STAMP)
	rm -rf dist build && $(VENV)/bin/python -m pip wheel --no-deps --no-build-isolation -w dist . >/dev/null
	$(VENV)/bin/python -c "import setuptools.build_meta as b; b.build_sdist('dist')" >/dev/null
	ls dist

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
	rm -rf lake .airflow site dist build
