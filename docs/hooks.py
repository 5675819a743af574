"""mkdocs hook: show docs/tutorial.ipynb as the page tutorial.md, generated at build time.

The notebook is the one source (executed by tests/docs/test_tutorial.py, outputs stripped in
git); rendering it here, instead of committing a markdown copy, means the page cannot drift.
Needs no extra plugin (mkdocs-jupyter would pull nbconvert and its web assets).
"""

from __future__ import annotations

import json
from pathlib import Path

from mkdocs.structure.files import File

NOTEBOOK = "tutorial.ipynb"


def notebook_markdown(notebook: dict) -> str:
    """Markdown cells as they are, code cells as python blocks, in order."""
    parts = []
    for cell in notebook["cells"]:
        text = "".join(cell["source"]).strip("\n")
        parts.append(text if cell["cell_type"] == "markdown" else f"```python\n{text}\n```")
    parts.insert(
        1,
        f"[Download the notebook]({NOTEBOOK}) and run it (`jupyter lab` or VS Code, with cxrkit "
        "installed); the test suite executes it on every run, so the code below works as shown.",
    )
    return "\n\n".join(parts) + "\n"


def on_files(files, config):
    path = Path(config["docs_dir"]) / NOTEBOOK
    page = notebook_markdown(json.loads(path.read_text()))
    files.append(File.generated(config, "tutorial.md", content=page))
    return files
