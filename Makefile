# The two commands a new machine needs: `make demo` and `make test`.
# Both bootstrap .venv from requirements.txt + constraints.txt first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LINK := .collections/ansible_collections/fleetops/rollback
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: all venv demo test unit integration bench bench-packages clean

all: test

$(STAMP): requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "$$(grep '^pip==' constraints.txt)"
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	touch $@

$(LINK):
	mkdir -p $(dir $(LINK))
	ln -sfn ../../.. $(LINK)

venv: $(STAMP) $(LINK)

demo: venv
	$(PY) tools/demo.py

test: venv
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest tests/unit

integration: venv
	$(PY) -m pytest tests/integration

bench: venv
	$(PY) benchmarks/rollback_immediate_bench.py

bench-packages: venv
	$(PY) benchmarks/packages_bench.py --ansible
	$(PY) benchmarks/packages_bench.py --profile tiny

clean:
	-$(PY) tools/local_fleet.py destroy --dir .fleet 2>/dev/null
	rm -rf $(VENV) .collections .fleet .pytest_cache .hypothesis
