# clipcam — the two commands of the README's quick start are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export GRADIO_ANALYTICS_ENABLED ?= False
export HF_HUB_DISABLE_TELEMETRY ?= 1

.PHONY: setup run cli test test-fast lint browser-deps bench screenshot clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The web app on http://127.0.0.1:7860 (HOST/PORT or --host/--port change it).
run: setup
	$(PY) app.py

# The command line on an example scene with the offline shapes model (base/large need the hub).
cli: setup
	$(PY) -m clipcam clipcam/assets/shapes/scene-1.png --model shapes --prompt "a photo of a red circle." \
		--prompt "a photo of a blue square." --prompt "a photo of a green triangle." --out out/

# Debian's Chromium for the real-browser test (never Playwright's own download).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

lint: setup
	$(VENV)/bin/ruff check .

# Every test (the real browser included), after the linter: at most 4 minutes on 2 cores.
test: setup browser-deps lint
	HF_HUB_OFFLINE=1 CLIPCAM_REQUIRE_BROWSER=1 $(PY) -m pytest -q

# The maths of every module without the tests marked slow (browser, subprocess, Ray, training, served
# app): under a minute on 2 cores, for the edit-test loop. `make test` stays the gate.
test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) benchmarks/speed.py

screenshot: setup browser-deps
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests/test_browser.py --screenshot assets/screenshot.png

clean:
	rm -rf $(VENV) out .pytest_cache
