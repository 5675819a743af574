# Two entry points: `make demo` (the main job end to end) and `make test`.
# Both create .venv with the pinned requirements when it is missing or out of date.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# DATA=path/to/dataset overrides the default (../shared/data/cxr when present).
demo: $(STAMP)
	$(VENV)/bin/cxr demo $(if $(DATA),--data "$(DATA)") $(if $(OUT),--out "$(OUT)")

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
