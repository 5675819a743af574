# Two entry points: `make demo` (the main job end to end) and `make test`; `make docs` serves the
# documentation site on http://127.0.0.1:8000 (the test suite builds it with --strict).
# Both create .venv with the pinned requirements when it is missing or out of date.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test docs venv system-deps clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# tcmalloc doubles CPU training speed (see README); installed when we are root with apt.
system-deps:
	@if ! ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq libtcmalloc-minimal4 >/dev/null) \
	      || echo "note: could not install libtcmalloc-minimal4; CPU training will be slower"; \
	  else echo "note: install libtcmalloc-minimal4 (or gperftools) for ~2x faster CPU training"; fi; \
	fi

# DATA=path/to/dataset overrides the default (../shared/data/cxr when present).
demo: $(STAMP) system-deps
	$(VENV)/bin/cxr demo $(if $(DATA),--data "$(DATA)") $(if $(OUT),--out "$(OUT)")

test: $(STAMP) system-deps
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --strict -a 127.0.0.1:8000

clean:
	rm -rf $(VENV) runs site .pytest_cache
