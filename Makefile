# dlsite: `make demo` runs the whole platform on this machine, `make test` runs the test suite.
# Both create .venv/ on first use; later runs reinstall only when a requirements file changed.

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test bench clean

demo: $(INSTALLED)
	$(VENV_PYTHON) manage.py demo

# Against DATABASE_URL and REDIS_URL when they are set, else embedded (SQLite, Redis on a socket).
# Tests keep their files in var/test, away from the demo's var/.
# The browser tests drive Debian's Chromium: installed here when missing and apt-get can (else they skip).
test: $(INSTALLED)
	@[ -x /usr/bin/chromium ] || ! command -v apt-get >/dev/null || { echo "Installing Chromium for the browser tests..."; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "Could not install Chromium: the browser tests will be skipped."; }
	DLSITE_DATA_DIR="$${DLSITE_DATA_DIR:-$(CURDIR)/var/test}" $(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

# Benchmarks print figures (quality and speed); they are not part of `make test`.
bench: $(INSTALLED)
	@set -e; for script in bench/*.py; do \
		[ -e "$$script" ] && [ "$$(basename "$$script")" != __init__.py ] || continue; \
		echo "== $$script"; \
		DLSITE_DATA_DIR="$${DLSITE_DATA_DIR:-$(CURDIR)/var/bench}" PYTHONPATH="$(CURDIR)" $(VENV_PYTHON) "$$script"; \
	done

clean:
	rm -rf var/ .pytest_cache/
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

$(VENV_PYTHON):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): requirements.txt requirements-base.txt | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install --quiet --upgrade pip
	$(VENV_PYTHON) -m pip install --quiet -r requirements.txt
	touch $@
