# fgvc — the two commands of the quickstart are `make benchmark` and `make test`.
# Variables (make VAR=value):
#   CUB=PATH      CUB_200_2011.tgz or an extracted CUB_200_2011/ folder (unset: download the official archive)
#   DATASET=NAME  cub (default), aircraft, cars, flowers, pets or nabirds (docs/datasets.md)
#   SOURCE=PATH   another dataset's local copy: its official archive(s) or extracted folder (unset: download
#                 where the owners allow it; Stanford Cars and NABirds must be fetched by hand)
#   LEVEL=NAME    label level: FGVC-Aircraft's variant (default), family or manufacturer
#   DATA=DIR      prepared dataset folder (default data/cub_sparrows; other datasets data/<DATASET>[_<LEVEL>])
#   CLASSES=SPEC  classes carved into DATA: sparrows (default), all (full CUB-200), ids 113-133, *_Warbler;
#                 any dataset: its class ids, name patterns, all (the default for the other datasets)
#   BENCH=YAML    benchmark grid (default benchmarks/sparrows.yaml: ResNet50, CE vs center loss, 5 seeds)
#   WEIGHTS=PATH  local pretrained weights file instead of timm's download
#   OUT=DIR       results folder (default results/<benchmark file name>)
#   TORCH_INDEX=URL  install torch/torchvision from this index first, e.g. the CPU-only wheels:
#                    make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
#   JOBS=N        runs trained at the same time by `make benchmark` (default 1)
#   MODEL=NAME    timm model timed by `make speed` (default resnet50.tv_in1k)
#   A=, B=        the two CSVs for `make compare`
#   DEVICE=D      `make gpu-check` / `make gpu-grid`: cuda (default) or cpu (the tiny configuration CI runs)
#   GRID=YAML     `make gpu-grid`: the grid trained in one call of a lent GPU machine (default: BENCH),
#                 docs/gpu.md; its OUT is the results folder (default results/<grid name>-gpu)
#   PACK=DIR      where `make gpu-grid` writes its parts + pack.json (on the device machine PACK="$OUT",
#                 the default when OUT comes from the environment) and `make gpu-unpack` reads them
#                 (gpu-unpack's OUT: default results/<the results folder name the pack records>)
#   MINUTES=M     `make gpu-grid` stops training after M minutes and packs what finished (default 5:
#                 room for gpu-check first in one 10-minute call; alone: 8)
#   COMPILE=1     `make gpu-grid`: torch.compile each run;  RESUME=DIR: an earlier call's pack, carried,
#                 unpacked into OUT first so its finished runs are skipped;  GRID_ARGS=...: more
#                 tools/gpu_grid.py run arguments (--set seeds=[0], --keep-seeds none); JOBS defaults to 8 there
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FGVC := $(VENV)/bin/fgvc
CUB ?=
DATASET ?= cub
SOURCE ?=
LEVEL ?=
ifeq ($(DATASET),cub)
DATA ?= data/cub_sparrows
CLASSES ?= sparrows
else
DATA ?= data/$(DATASET)$(if $(LEVEL),_$(LEVEL))
CLASSES ?= all
endif
BENCH ?= benchmarks/sparrows.yaml
WEIGHTS ?=
OUT ?= results/$(basename $(notdir $(BENCH)))
JOBS ?= 1
MODEL ?= resnet50.tv_in1k
TORCH_INDEX ?=
PYTEST_ARGS ?=

.PHONY: help setup data benchmark report visualize compare speed test test-fast gpu-carry gpu-check gpu-grid \
	gpu-unpack gpu-budget gpu-hide-results gpu-show-results clean-venv

help:
	@sed -n '/^#/p;/^SHELL/q' Makefile
	@echo "targets: setup data benchmark report visualize compare speed test test-fast gpu-carry gpu-check gpu-grid gpu-unpack gpu-budget gpu-hide-results gpu-show-results"

setup: $(VENV)/.installed

# Re-installs only when pyproject.toml changes; `make setup` is fast when nothing did.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ -n "$(TORCH_INDEX)" ]; then $(PY) -m pip install --index-url "$(TORCH_INDEX)" torch torchvision; fi
	$(PY) -m pip install -e ".[dev,tensorboard,mlflow,wandb]"
	@touch $@

# CUB's command is unchanged; another dataset adds --dataset (and --level), its source is SOURCE= (or CUB=).
DATA_SOURCE = $(or $(SOURCE),$(CUB))
DATASET_ARGS = $(if $(filter-out cub,$(DATASET)), --dataset "$(DATASET)"$(if $(LEVEL), --level "$(LEVEL)"))
PREPARE = $(PY) -m data_prep.prepare --out "$(DATA)" --source "$(DATA_SOURCE)" --classes "$(CLASSES)"$(DATASET_ARGS)

data: setup
	$(PREPARE)

# First every missing input (data source, weights) named in one message, before anything is done.
benchmark: setup
	$(PY) -m data_prep.preflight --data "$(DATA)" --source "$(DATA_SOURCE)" --classes "$(CLASSES)" --bench "$(BENCH)" \
	    --weights "$(WEIGHTS)" --typed "$(MAKEOVERRIDES)"$(DATASET_ARGS)
	$(PREPARE)
	$(FGVC) benchmark "$(BENCH)" --data "$(DATA)" --out "$(OUT)" --jobs $(JOBS) $(if $(WEIGHTS),--pretrained-file "$(WEIGHTS)")
	$(MAKE) --no-print-directory report OUT="$(OUT)"

# The report, with every figure it links (UMAP / t-SNE included: fgvc report draws them), on any results folder.
report: setup
	$(FGVC) report "$(OUT)" --data "$(DATA)" $(if $(MARGIN),--margin $(MARGIN))

visualize: setup
	$(FGVC) visualize "$(OUT)"

# fgvc's pipeline against a pytorch/examples-style loop; results/speed/<device>-<model>.csv
speed: data
	$(FGVC) speed --data "$(DATA)" --model "$(MODEL)" --grid "$(BENCH)" $(if $(WEIGHTS),--pretrained-file "$(WEIGHTS)")

# The GPU acceptance check (tools/gpu_check.py): every CUDA path in one command, one PASS/FAIL
# line per step. On a lent GPU machine, which has torch but none of our venv, run it with that
# machine's python: `make gpu-check PY=python3` after `make gpu-carry` here (copies the prepared
# dataset and the Lite0 weights into the git-ignored .carry/, 55 MB, and the commit into
# .carry/git.json for the runs' provenance there, where the tree has no .git) and carrying .carry.
DEVICE ?= cuda
GPU_WEIGHTS ?= ../shared/weights/tf_efficientnet_lite0.in1k.safetensors
gpu-carry: data
	mkdir -p .carry && rm -rf .carry/cub_sparrows && cp -r "$(DATA)" .carry/cub_sparrows && cp "$(GPU_WEIGHTS)" .carry/
	printf '{"git_commit": "%s", "git_dirty": %s}\n' "$$(git rev-parse HEAD)" \
	    "$$(git diff --quiet HEAD && echo false || echo true)" > .carry/git.json
	$(PY) tools/gpu_grid.py budget --carry .carry

# What a call would send, against the 64 MiB it may (tools/gpu_grid.py budget). When results/
# makes it too big, leave results/ out of the call: gpu-hide-results takes it out of git's index
# only (the files stay, ignored through .git/info/exclude); gpu-show-results puts it back as HEAD
# has it. Commit nothing in between.
gpu-budget:
	$(PY) tools/gpu_grid.py budget $(if $(wildcard .carry),--carry .carry)

gpu-hide-results:
	@git diff --quiet HEAD -- results || { echo "gpu-hide-results: results/ has uncommitted changes: commit them first" >&2; exit 2; }
	git rm -r -q --cached results
	@x="$$(git rev-parse --git-path info/exclude)"; mkdir -p "$$(dirname "$$x")"; grep -qx '/results/' "$$x" 2>/dev/null || echo '/results/' >> "$$x"

gpu-show-results:
	git reset -q -- results
	@x="$$(git rev-parse --git-path info/exclude)"; if [ -f "$$x" ]; then sed -i '\#^/results/$$#d' "$$x"; fi

gpu-check:
	$(PY) tools/gpu_check.py --device $(DEVICE)

# A whole grid in one call of a lent GPU machine (tools/gpu_grid.py, docs/gpu.md): trained with
# --jobs N, batched on the GPU in bf16, made lean, packed into PACK (at most 8 files of at most
# 16 MiB); then, here, `make gpu-unpack PACK=<fetched folder> OUT=<results folder>`.
GRID ?= $(BENCH)
PACK ?= $(if $(filter environment,$(origin OUT)),$(OUT))
MINUTES ?= 5
COMPILE ?=
RESUME ?=
GRID_ARGS ?=
GPU_OUT = $(if $(filter command line,$(origin OUT)),$(OUT),results/$(basename $(notdir $(GRID)))-gpu)
GPU_JOBS = $(if $(filter file,$(origin JOBS)),8,$(JOBS))
gpu-grid:
	@test -n "$(PACK)" || { echo 'gpu-grid: give PACK=DIR, the folder for the parts (on the device machine: PACK="$$OUT")' >&2; exit 2; }
	$(PY) tools/gpu_grid.py run "$(GRID)" --out "$(GPU_OUT)" --pack "$(PACK)" --device $(DEVICE) --jobs $(GPU_JOBS) \
	    --minutes $(MINUTES) $(if $(COMPILE),--compile) $(if $(RESUME),--from-pack "$(RESUME)") $(GRID_ARGS)

gpu-unpack:
	@test -n "$(PACK)" || { echo "gpu-unpack: give PACK=DIR, the folder the device's files were fetched into" >&2; exit 2; }
	$(PY) tools/gpu_grid.py unpack "$(PACK)" $(if $(filter command line,$(origin OUT)),"$(OUT)")

compare: setup
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make compare A=results/x/runs.csv B=results/y/runs.csv" >&2; exit 2; }
	$(FGVC) compare "$(A)" "$(B)" $(if $(MARGIN),--margin $(MARGIN))

# pytest exits 5 when it collects no test: that is not a failure of the suite itself.
test: setup
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# The quick subset while editing: leaves out the tests marked slow (training, > ~2 s).
test-fast: setup
	@$(PY) -m pytest -m "not slow" $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

clean-venv:
	rm -rf $(VENV)
