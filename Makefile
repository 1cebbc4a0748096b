# clipcam — the two commands of the README's quick start are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export GRADIO_ANALYTICS_ENABLED ?= False
export HF_HUB_DISABLE_TELEMETRY ?= 1

.PHONY: setup run cli test browser-deps bench bench-quality screenshot clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The web app on http://127.0.0.1:7860 (HOST/PORT or --host/--port change it).
run: setup
	$(PY) app.py

# The command line on an example image (the hub models need network; see README).
cli: setup
	$(PY) -m clipcam assets/chelsea.png --prompt "a photo of a cat." --prompt "a photo of a dog." --out out/

# Debian's Chromium for the real-browser test (never Playwright's own download).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

test: setup browser-deps
	HF_HUB_OFFLINE=1 CLIPCAM_REQUIRE_BROWSER=1 $(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/speed.py

screenshot: setup browser-deps
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests/test_browser.py --screenshot assets/screenshot.png

clean:
	rm -rf $(VENV) out .pytest_cache
