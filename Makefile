# The two commands: `make demo` (main job on bundled data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo_out

.PHONY: demo train-demo test lint clean

$(BIN)/genaug: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

demo: $(BIN)/genaug
	rm -rf $(OUT)
	$(BIN)/genaug sample --generator mnist-cdcgan --per-class 10 --out $(OUT)/samples.png
	$(BIN)/genaug export --generator mnist-cdcgan --per-class 1000 --out $(OUT)/synthetic.h5 --no-progress
	$(BIN)/genaug evaluate --generator mnist-cdcgan --data sample --per-class 100 --json $(OUT)/evaluate.json
	@echo "demo: grid in $(OUT)/samples.png, 10,000 labelled images in $(OUT)/synthetic.h5, report in $(OUT)/evaluate.json"

# Train a conditional VAE on the bundled sample instead (1-3 min on 2 CPU cores).
train-demo: $(BIN)/genaug
	rm -rf $(OUT)/cvae
	$(BIN)/genaug train cvae --data sample --epochs 60 --batch-size 50 --out $(OUT)/cvae
	$(BIN)/genaug sample --generator $(OUT)/cvae --per-class 10 --out $(OUT)/cvae-samples.png

test: $(BIN)/genaug
	$(BIN)/python -m pytest -q

lint: $(BIN)/genaug
	$(BIN)/ruff check genaug tests examples benchmarks

clean:
	rm -rf $(OUT) runs .pytest_cache
