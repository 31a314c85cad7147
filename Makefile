# One Makefile; the README names its targets. Each target installs what it needs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The suite in four processes (pytest-xdist), also on two cores: most of its time is spent
# waiting on servers, subprocesses and sockets, so two processes left the cores half idle
# (about 1,000 s of CPU in all: 970 s of wall time with two processes, 700 s with four on the
# same 2-core machine). Work stealing evens out the long tests (wheel builds, kill loops) at
# the end. PYTEST_ARGS= runs it in one process.
PYTEST_ARGS ?= -n 4 --dist worksteal
# Connector distributions that live in this repository, installed beside the core.
CONNECTORS := $(sort $(wildcard connectors/*))
LINTED := $(wildcard connectors bench)

.PHONY: help install demo test lint format clean browser dovecot libmagic

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml $(wildcard connectors/*/pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgresql]' -e tests/plugins/thirdparty_connector \
		$(foreach c,$(CONNECTORS),-e '$(c)[test]')
	@touch $(STAMP)

install: $(STAMP) libmagic  ## create .venv and install the project with its dev tools and the PostgreSQL driver

demo: $(STAMP) libmagic  ## one onboarding through HR (mail), Facilities (Jira) and IT (ServiceNow); see demo-run/
	$(BIN)/usm-bridge demo --run-dir demo-run

test: $(STAMP) libmagic browser dovecot  ## run the whole test suite (PostgreSQL included), then the linters
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory lint

# The conformance report is checked in a real headless browser (Debian's chromium). As root
# (CI, a fresh machine) it is installed; otherwise those tests say what to install and skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
		>/dev/null) || echo "make: chromium is not installed; the browser tests will skip"; }

# Attachments' media types are sniffed by libmagic (Debian's libmagic1, through python-magic).
# As root it is installed; otherwise the bridge runs and says what is missing when a file comes.
libmagic:
	@ldconfig -p 2>/dev/null | grep -q 'libmagic\.so\.1 ' || { [ "$$(id -u)" = 0 ] \
		&& command -v apt-get >/dev/null && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends libmagic1 >/dev/null) \
		|| echo "make: libmagic1 is not installed; attachments cannot be judged until it is"; }

# The e-mail connector is tested against a real Dovecot (Debian's dovecot-imapd), which the
# tests start themselves on loopback (no service is enabled). As root it is installed;
# otherwise those tests say what to install and skip (with CI=true they fail instead).
dovecot:
	@command -v dovecot >/dev/null 2>&1 || test -x /usr/sbin/dovecot || { [ "$$(id -u)" = 0 ] \
		&& command -v apt-get >/dev/null && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends dovecot-imapd >/dev/null) \
		|| echo "make: dovecot-imapd is not installed; the Dovecot tests will skip"; }

lint: $(STAMP)  ## ruff and mypy --strict on the core and the connectors
	$(BIN)/ruff check usm_bridge tests $(LINTED)
	$(BIN)/ruff format --check usm_bridge tests $(LINTED)
	$(BIN)/mypy usm_bridge $(patsubst %/,%,$(dir $(wildcard connectors/*/usm_bridge_*/__init__.py)))

format: $(STAMP)  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format usm_bridge tests $(LINTED)
	$(BIN)/ruff check --fix usm_bridge tests $(LINTED)

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
