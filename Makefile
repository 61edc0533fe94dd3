# distilkit — set-up, tests, the MLflow UI.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch is installed first (a CPU wheel here); GPU users: make setup TORCH=torch
TORCH  ?= torch==2.13.0

.PHONY: setup test test-all ui bench compare clean

setup:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"

test:
	$(BIN)/python -m pytest -q -n 2

test-all:
	$(BIN)/python -m pytest -q -n 2 -m ""

ui:
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000

bench:
	$(BIN)/python bench/compress_sst2.py

# runs side by side (Pareto-optimal marked): make compare [SWEEP=study_name] [FORMAT=md|csv] [PLOT=compare.png]
compare:
	PYTHONPATH=src $(BIN)/python -m compare --root . $(if $(SWEEP),--sweep $(SWEEP)) --format $(or $(FORMAT),md) $(if $(PLOT),--plot $(PLOT))

clean:
	rm -rf outputs multirun .cache mlartifacts mlflow.db optuna.db
