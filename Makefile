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

.PHONY: all venv demo test sanity lint unit integration molecule bench bench-pg bench-images bench-packages collection ee changelog docs clean

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
	$(MAKE) sanity lint
	$(PY) -m pytest
	$(MAKE) molecule

# ansible-test sanity on every file of the collection with the project's Python (--local --python 3.11),
# nothing ignored; see tools/sanity.py. SANITY_ARGS="--test pylint" runs one test.
sanity: venv
	$(PY) tools/sanity.py $(SANITY_ARGS)

# ansible-lint --profile production (.ansible-lint: offline, nothing skipped) on every role and playbook.
lint: venv
	@start=$$(date +%s); \
	if ansible-lint --nocolor; then echo "ansible-lint: passed in $$(( $$(date +%s) - start )) s"; \
	else echo "ansible-lint: FAILED in $$(( $$(date +%s) - start )) s"; exit 1; fi

unit: venv
	$(PY) -m pytest tests/unit

integration: venv
	$(PY) -m pytest tests/integration

# Molecule drills (molecule/<scenario>/): containers on a local Docker engine, images built here with
# debootstrap (nothing is pulled). Every scenario runs, each timed; the target fails if any failed.
MOLECULE_BASE_IMAGE := fleetops-molecule/bookworm:1
MOLECULE_SCENARIOS ?= $(sort $(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))
molecule: venv
	$(PY) tools/docker_engine.py ensure
	$(PY) tools/docker_engine.py base-image $(MOLECULE_BASE_IMAGE)
	@failed=""; summary=""; for s in $(MOLECULE_SCENARIOS); do \
	  start=$$(date +%s); \
	  if MOLECULE_GLOB='molecule/*/molecule.yml' molecule test -s $$s; then verdict=passed; \
	  else verdict=FAILED; failed="$$failed $$s"; fi; \
	  summary="$$summary$$(printf '\n  %-14s %s in %d s' $$s $$verdict $$(( $$(date +%s) - start )))"; \
	done; \
	echo "molecule scenarios:$$summary"; \
	if [ -n "$$failed" ]; then echo "molecule scenarios failed:$$failed"; exit 1; fi

bench: venv
	$(PY) benchmarks/rollback_immediate_bench.py --sizes 1,20,200

bench-pg: venv
	$(PY) benchmarks/pg_bench.py

bench-images: venv
	$(PY) benchmarks/images_bench.py

bench-packages: venv
	$(PY) benchmarks/packages_bench.py --ansible
	$(PY) benchmarks/packages_bench.py --profile tiny

# The collection tarball, what `ansible-galaxy collection install --offline --no-deps build/<tarball>` installs.
COLLECTION_VERSION := $(shell sed -n 's/^version: *//p' galaxy.yml)
COLLECTION_TARBALL := build/fleetops-rollback-$(COLLECTION_VERSION).tar.gz
collection: venv
	$(VENV)/bin/ansible-galaxy collection build --force --output-path build .

# The execution environment's build context (build/ee-context) for ansible-builder build / podman / docker.
ee: collection
	mkdir -p build/ee
	cp $(COLLECTION_TARBALL) build/ee/fleetops-rollback.tar.gz
	$(VENV)/bin/ansible-builder create -f execution-environment.yml --context build/ee-context --output-filename Containerfile

# Lint every fragment, add the fragments no release lists yet to the release galaxy.yml names, write CHANGELOG.md.
changelog: venv
	$(VENV)/bin/antsibull-changelog lint
	$(VENV)/bin/antsibull-changelog release

# Module and role reference in docs/reference (antsibull-docs), next to the hand-written guides in docs/.
# It fails when a plugin's DOCUMENTATION does not pass antsibull-docs' schema; DOCS_LENIENT=1 writes error pages
# for those instead and goes on.
DOCS_DEST ?= docs/reference
docs: venv
	$(PY) tools/build_docs.py --dest $(DOCS_DEST) $(if $(DOCS_LENIENT),,--strict)

clean:
	-$(PY) tools/local_fleet.py destroy --dir .fleet 2>/dev/null
	-MOLECULE_GLOB='molecule/*/molecule.yml' $(VENV)/bin/molecule destroy --all >/dev/null 2>&1
	rm -rf $(VENV) .collections .fleet .pytest_cache .hypothesis build
