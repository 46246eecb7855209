# The two commands: `make demo` (main job on bundled data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo_out

.PHONY: demo test lint clean

$(BIN)/genaug: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

demo: $(BIN)/genaug
	rm -rf $(OUT)
	$(BIN)/genaug train cvae --data sample --epochs 60 --batch-size 50 --out $(OUT)/cvae
	$(BIN)/genaug sample --generator $(OUT)/cvae --per-class 10 --out $(OUT)/samples.png
	$(BIN)/genaug export --generator $(OUT)/cvae --per-class 1000 --out $(OUT)/synthetic.h5
	@echo "demo: generator in $(OUT)/cvae, grid in $(OUT)/samples.png, dataset in $(OUT)/synthetic.h5"

test: $(BIN)/genaug
	$(BIN)/python -m pytest -q

lint: $(BIN)/genaug
	$(BIN)/ruff check genaug tests examples benchmarks

clean:
	rm -rf $(OUT) runs .pytest_cache
