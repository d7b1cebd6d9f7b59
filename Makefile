# Two commands: `make book` builds the book, `make test` runs every test. Both set up .venv on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COLAB_VENV := .venv-colab
COLAB_STAMP := $(COLAB_VENV)/.installed
COLAB_WORK := _build/colab
REPO_URL := $(shell sed -n 's/^  url: *//p' _config.yml)

export TF_CPP_MIN_LOG_LEVEL ?= 3
export UNET_BOOK_MODE ?= quick

.PHONY: book test lint unit test-colab env clean timings setup-check

env: $(STAMP)

# uv installs the pinned packages (the same versions pip would: the lock files fix every one, tested) in parallel,
# compiling their bytecode as pip does; it is itself installed with pip, at a pinned version.
UV_PIN := uv==0.13.9
$(STAMP): requirements.txt requirements-test.txt requirements-dev.txt requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(UV_PIN)
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements-dev.txt -c requirements-lock.txt
	touch $@

# The book, built as strictly as `make test` builds it (the same command: a failing cell or any warning fails it),
# then its pages checked; the publishing workflow (.github/workflows/book.yml) runs this.
book: $(STAMP)
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	$(BIN)/python tests/check_book.py
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# The linters: ruff (configured in pyproject.toml) over the code and the notebooks, actionlint over the
# GitHub workflows (with shellcheck from .venv for their `run:` scripts), and check_release.py over the licences,
# CITATION.cff (against its schema) and CHANGELOG.md.
lint: $(STAMP)
	$(BIN)/ruff check utils tests benchmarks notebooks book/_ext
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/python tests/check_release.py

# The unit tests alone (about a minute).
unit: $(STAMP)
	$(BIN)/python -m pytest tests

# The linters, then the unit tests and the book built from scratch side by side (the unit tests at a lower CPU
# priority, so that a chapter runs almost as fast as alone; their output is printed when both are done). Every
# notebook executes exactly once, and a failing cell or any warning fails the build (allow_errors: false,
# --warningiserror); check_book.py then checks the pages. Either failing fails `make test`.
UNIT_NICENESS := 5
# Lower priority that also holds against the notebook kernels: Jupyter starts each kernel in a session of its own,
# and where Linux groups the CPU by session (autogroup) a plain `nice` only ranks processes within one session. So
# the command gets a session of its own, whose group is niced too (where the kernel has no autogroup, `nice` does
# it alone).
LOW_PRIORITY := setsid -w sh -c 'echo $(UNIT_NICENESS) > /proc/self/autogroup 2>/dev/null; exec nice -n $(UNIT_NICENESS) "$$@"' \
	low-priority
test: lint
	rm -rf _build && mkdir -p _build
	$(LOW_PRIORITY) $(BIN)/python -m pytest --durations=15 tests > _build/unit-tests.log 2>&1 & unit=$$!; \
	$(BIN)/jupyter-book build . --warningiserror --keep-going 2>&1 | tee _build/book.log; book=$${PIPESTATUS[0]}; \
	wait $$unit; tests=$$?; cat _build/unit-tests.log; \
	if [ $$book -ne 0 ]; then find _build/html/reports -name '*.err.log' -exec tail -n 60 {} + 2>/dev/null; \
	  grep -E ': (WARNING|ERROR|CRITICAL):|Execution Failed' _build/book.log | tail -n 20; echo "The book build failed."; fi; \
	if [ $$tests -ne 0 ]; then echo "The unit tests failed (output above)."; fi; \
	[ $$book -eq 0 ] && [ $$tests -eq 0 ]
	$(BIN)/python tests/check_book.py
	@echo "All tests passed; the book is at $(CURDIR)/_build/html/index.html"

$(COLAB_STAMP): requirements-colab.txt requirements-colab-extras.txt requirements-test.txt requirements-colab-lock.txt
	test -x $(COLAB_VENV)/bin/python || $(PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install -q $(UV_PIN)
	$(COLAB_VENV)/bin/uv pip install -q --compile-bytecode --python $(COLAB_VENV)/bin/python -r requirements-colab.txt -r requirements-test.txt \
	  -c requirements-colab-lock.txt
	touch $@

# The book on the oldest platform stack (requirements-colab.txt, in .venv-colab): the unit tests (less the long
# ones marked main_stack_only, whose path the chapters run here too), side by side with every notebook under nbval
# (as in `make test`). The set-up cell's platform branches are taken offline, the
# clone redirected to this checkout's committed `main` and the guarded install finding everything present: the
# chapters under Colab (a stand-in google.colab module imported at kernel start, as Colab does), except
# KAGGLE_CHAPTER, which runs as on Kaggle (KAGGLE_KERNEL_RUN_TYPE set) with the sample attached in the seesee
# mirror's layout under a stand-in /kaggle/input, found with no setting (tests/kaggle_standin.py records what the
# chapter read). The first chapter clones the book; when `make test` has left the synthetic sample of the same
# version here, the clone gets a hard-linked copy of it rather than generating it again (ensure_sample checks the
# version; its generation is tested in `make test` and by the unit tests on this stack).
KAGGLE_CHAPTER := notebooks/06_getting_the_data.ipynb
FIRST_CHAPTER := notebooks/01_activations_relu.ipynb
SAMPLE := data/siim-sample
PLATFORM_RUN = UNET_BOOK_DIR=$(CURDIR)/$(COLAB_WORK)/pneumothorax-unet \
	GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=url.file://$(CURDIR).insteadOf GIT_CONFIG_VALUE_0=$(REPO_URL) \
	$(COLAB_VENV)/bin/python -m pytest --nbval-lax --nbval-cell-timeout=900 -p no:cacheprovider

test-colab: $(COLAB_STAMP)
	rm -rf $(COLAB_WORK) && mkdir -p $(COLAB_WORK)/ipython/profile_default/startup \
	  $(COLAB_WORK)/ipython-kaggle/profile_default/startup
	cp tests/colab_standin.py $(COLAB_WORK)/ipython/profile_default/startup/
	cp tests/kaggle_standin.py $(COLAB_WORK)/ipython-kaggle/profile_default/startup/
	mkdir -p $(COLAB_WORK)/kaggle-input
	ln -s $(CURDIR)/$(COLAB_WORK)/pneumothorax-unet/data/siim-sample $(COLAB_WORK)/kaggle-input/siim-train-test
	$(LOW_PRIORITY) $(COLAB_VENV)/bin/python -m pytest --durations=15 tests -m "not main_stack_only" \
	  > $(COLAB_WORK)/unit-tests.log 2>&1 & unit=$$!; \
	IPYTHONDIR=$(CURDIR)/$(COLAB_WORK)/ipython $(PLATFORM_RUN) $(FIRST_CHAPTER); first=$$?; \
	if [ -f $(SAMPLE)/siim/.sample-version ] && [ ! -e $(COLAB_WORK)/pneumothorax-unet/$(SAMPLE) ]; then \
	  mkdir -p $(COLAB_WORK)/pneumothorax-unet/data && cp -al $(SAMPLE) $(COLAB_WORK)/pneumothorax-unet/$(SAMPLE); fi; \
	IPYTHONDIR=$(CURDIR)/$(COLAB_WORK)/ipython $(PLATFORM_RUN) \
	  $(filter-out $(KAGGLE_CHAPTER) $(FIRST_CHAPTER),$(wildcard notebooks/*.ipynb)); \
	colab=$$?; [ $$first -eq 0 ] || colab=1; \
	IPYTHONDIR=$(CURDIR)/$(COLAB_WORK)/ipython-kaggle KAGGLE_KERNEL_RUN_TYPE=Interactive \
	UNET_BOOK_KAGGLE_INPUT=$(CURDIR)/$(COLAB_WORK)/kaggle-input UNET_BOOK_DATA_REPORT=$(CURDIR)/$(COLAB_WORK)/kaggle-data.txt \
	$(PLATFORM_RUN) $(KAGGLE_CHAPTER); kaggle=$$?; \
	if ! grep -s "attached to this Kaggle notebook" $(COLAB_WORK)/kaggle-data.txt; then kaggle=1; \
	  echo "On Kaggle, $(KAGGLE_CHAPTER) did not read the data attached under $(COLAB_WORK)/kaggle-input."; fi; \
	wait $$unit; tests=$$?; cat $(COLAB_WORK)/unit-tests.log; \
	if [ $$tests -ne 0 ]; then echo "The unit tests failed on the oldest platform stack (output above)."; fi; \
	[ $$colab -eq 0 ] && [ $$kaggle -eq 0 ] && [ $$tests -eq 0 ]

# After a build (make book or make test): per-chapter run times from the execution cache, reading times, the
# workshop schedules, and the README's marked blocks, all written from result files in benchmarks/results.
timings: $(STAMP)
	$(BIN)/python benchmarks/chapter_timings.py

# The learners' set-up check: a pass/fail table of versions, memory, disk, GPU, data and Kaggle credentials.
setup-check: $(STAMP)
	$(BIN)/python -m utils.setup_check

clean:
	rm -rf _build .pytest_cache
