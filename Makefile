# ltbench: `make demo` runs the main job on Fashion-MNIST-LT; `make test` runs the test suite
# (`make test-fast` all but the tests marked slow).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: install fashion-mnist demo test test-fast lint perf perf-gpu reference reference-report clean

install: $(VENV)/.installed fashion-mnist

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

fashion-mnist:
	@if [ -d $(FASHION_MNIST) ]; then \
		true; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist'" \
		     "or put its IDX files in data/fashion-mnist/"; \
	fi

demo: install
	$(BIN)/bench run --methods reat,robal --dataset fashion-mnist --ur 100 --preset quick --report-dir reports/demo

# the committed Fashion-MNIST-LT reference results (hours on 2 CPU cores; resumable) and their report
reference: install
	$(BIN)/bench grid fmnist-reference --workers 2 --out results/reference
	$(BIN)/bench grid fmnist-ur-sweep --workers 2 --out results/reference
	$(BIN)/bench grid rbl-logit --workers 2 --out results/reference
	$(BIN)/bench grid robustlt-parts --workers 2 --out results/reference
	$(BIN)/bench analyze results/reference --n 1000 --attack pgd20
	$(MAKE) reference-report

reference-report: install
	$(BIN)/bench report results/reference -o reports/fmnist-lt

test: install
	$(BIN)/ruff check bench methods tests
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/ruff check bench methods tests
	$(BIN)/pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check bench methods tests

perf: install
	$(BIN)/bench perf

# the GPU measurements of docs/performance.md in one script (OUT: its folder; SECONDS: its time budget)
OUT ?= perf-gpu
SECONDS ?= 540
perf-gpu:
	bash bench/perf/gpu_throughput.sh $(OUT) $(SECONDS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
