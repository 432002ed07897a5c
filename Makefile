# Cloud BMS: make help lists the targets. Every target sets up what it needs, and does nothing twice.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
NODE   ?= node
# Debian packages the integration tests start as real servers.
SYS_PKGS := mosquitto influxdb victoria-metrics
SYS_BINS := mosquitto influxd victoria-metrics

.PHONY: help setup sysdeps mpy dashboards demo bench drills test test-heap test-gate test-py test-vm clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# --- set-up (idempotent: stamps are newer than their inputs, so a second run installs nothing) ---
$(VENV)/.stamp: pyproject.toml
	@echo "== Python virtual environment ($(VENV))"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

node_modules/.stamp: package.json package-lock.json
	@echo "== MicroPython VM (npm ci)"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

sysdeps: ## install the Debian packages for the real servers (mosquitto, influxdb, victoria-metrics) when missing
	@missing=""; for b in $(SYS_BINS); do command -v $$b >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "== apt-get install $(SYS_PKGS)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYS_PKGS) >/dev/null; \
	  else echo "missing servers; run: sudo apt-get install -y $(SYS_PKGS)"; exit 1; fi; \
	fi

setup: $(VENV)/.stamp node_modules/.stamp sysdeps ## set up .venv, the MicroPython VM and the servers

# --- build ---
mpy: $(VENV)/.stamp ## compile the firmware for the ESP32 (xtensawin) into build/, print the size
	@$(PY) tools/build_mpy.py --out build

dashboards: $(VENV)/.stamp ## regenerate the Grafana dashboards and alert rules from cloud_bridge/grafana/*.py
	@$(PY) -m cloud_bridge.grafana.generate

# --- boards: flash, REPL, dev mount, virtual board (tools/flash.py, tools/virtualboard; docs/flashing.md) ---
MPREMOTE := $(VENV)/bin/mpremote
VBOARD_DIR := build/virtualboard
PORT   ?= $(VBOARD_DIR)/tty
BOARD  ?= sim16_lfp
DEVICE ?=
FOLLOW ?= 5
NO_MIP ?=
NO_SECRETS ?=
FROZEN ?=
SECRETS ?=
FLASH_BUILD ?= build

.PHONY: flash repl dev virtual-board

flash: $(VENV)/.stamp ## compile + copy the firmware: PORT=/dev/ttyUSB0 BOARD=<board> DEVICE=<id> [FROZEN=1] [NO_MIP=1] [NO_SECRETS=1] [SECRETS=file] [FOLLOW=s]
	@test -n "$(DEVICE)" || { echo "make flash: set DEVICE=<device id> (its secrets: secrets/<id>.json, from tools/provision.py create)"; exit 2; }
	@$(PY) tools/flash.py --port $(PORT) --board $(BOARD) --device $(DEVICE) --follow $(FOLLOW) --build $(FLASH_BUILD) \
	  $(if $(NO_MIP),--no-mip) $(if $(NO_SECRETS),--no-secrets) $(if $(FROZEN),--frozen) $(if $(SECRETS),--secrets $(SECRETS))

repl: $(VENV)/.stamp ## the board's REPL on PORT (Ctrl-C stops the program, Ctrl-X leaves)
	@$(MPREMOTE) connect $(PORT) repl

dev: $(VENV)/.stamp ## mount the working tree on the board; Ctrl-J runs the firmware from your sources
	@$(MPREMOTE) connect $(PORT) mount . repl --inject-code \
	  "import sys;_=[sys.modules.pop(m) for m in list(sys.modules) if m.split('.')[0]=='firmware'];exec(open('boards/main.py').read())\n"

virtual-board: $(VENV)/.stamp node_modules/.stamp ## a virtual ESP32 (MicroPython VM + emulated AFE) on build/virtualboard/tty; Ctrl-C stops it
	@$(PY) -m tools.virtualboard --dir $(VBOARD_DIR) $(if $(filter command line,$(origin BOARD)),--board $(BOARD))

# --- demo ---
DURATION ?= 0
SPEED    ?= 10
BOARDS   ?= 6

demo: setup ## the fleet demo: mosquitto, InfluxDB, bridge, simulated boards (DURATION= SPEED= BOARDS=)
	@$(PY) tools/demo.py --duration $(DURATION) --speed $(SPEED) --boards $(BOARDS)

# --- measurements (not part of make test) ---
bench: setup ## regenerate docs/benchmarks.md: firmware in the MicroPython VM, wire sizes, bridge with real servers (~2.5 min)
	@$(PY) -m tools.bench

drills: setup ## reliability drills against real servers (~4 min): regenerates docs/reliability.md; fails if a drill misses its target
	@$(PY) -m tools.drills --out docs/reliability.md

# --- tests ---
test-gate: $(VENV)/.stamp ## gate: every firmware file compiles with mpy-cross -march=xtensawin
	@$(PY) tools/build_mpy.py --out build --quiet

test-py: setup ## CPython tests (host port, emulator, driver, pack, comms, bridge with real servers)
	@$(PYTEST) -q

test-vm: test-gate node_modules/.stamp ## the same .mpy files make flash copies, imported and tested in the MicroPython VM
	@$(NODE) tools/mpvm/run.mjs --build build --tests tests/mpy

test-heap: test-gate node_modules/.stamp ## live heap budgets of the firmware at steady state with comms, in the VM (docs/memory.md)
	@$(NODE) tools/heap_live.mjs

test: setup test-gate test-vm test-heap test-py ## everything: set-up, mpy-cross gate, MicroPython VM tests, pytest

clean: ## remove build output (keeps .venv and node_modules)
	rm -rf build .pytest_cache
