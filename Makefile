# Set-up and everyday commands. `make test` is exactly what CI runs (.ci/run).
#
# The install pins PyTorch first (TORCH, default the CPU build 2.13.0) so that no other
# requirement pulls a multi-GB CUDA build; on a GPU machine pass the build you want,
# e.g. `make test TORCH="torch==2.13.0 --index-url <your CUDA wheel index>"`.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COCO ?= ../shared/data/coco-sample
OUT ?= out

.PHONY: install demo test prepare-sample benchmarks clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The whole pipeline on synthetic people, on a CPU, in about 10 minutes.
demo: $(STAMP)
	$(BIN)/hgpose demo --out $(OUT)/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The real COCO sample shipped beside the project, through the real `prepare`.
prepare-sample: $(STAMP)
	$(BIN)/hgpose prepare $(COCO) $(OUT)/coco-sample --test-size 0.1

benchmarks: $(STAMP)
	$(BIN)/python benchmarks/prepare.py $(COCO)

clean:
	rm -rf $(VENV) $(OUT)
