# Two commands: `make book` builds the book, `make test` runs every test. Both set up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL ?= 3
export UNET_BOOK_MODE ?= quick

.PHONY: book test unit notebooks book-strict env clean

env: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

book: $(STAMP)
	$(BIN)/jupyter-book build . --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

test: $(STAMP)
	$(BIN)/python -m pytest tests
	$(BIN)/python -m pytest --nbval-lax --nbval-cell-timeout=900 notebooks
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	$(BIN)/python tests/check_book.py
	@echo "All tests passed; the book is at $(CURDIR)/_build/html/index.html"

clean:
	rm -rf _build .pytest_cache
