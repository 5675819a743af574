"""Griffe extension for the API page: Sphinx roles become links, TrainConfig's fields a table.

The docstrings keep Sphinx's roles (``:class:`~cxrkit.run.RunDir```), which read well in
``help()`` and editors, but mkdocstrings prints them as raw text. Here each role becomes an
autorefs cross-reference: a link when the target is rendered on the site, its name in code
otherwise (``optional``: never a broken link, so ``mkdocs build --strict`` stays quiet).
Relative targets (``:meth:`from_run```) are resolved in the docstring's own scope, and aliases
(``cxrkit.inference.Predictor``) to the object's canonical path, which is the one rendered.

TrainConfig's fields carry their help text and defaults at run time (``metadata["help"]``, the
source of ``cxr train --help``); they are listed as the class's Attributes section, so the
page and the CLI cannot disagree.
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import re
import sys
from pathlib import Path

import griffe

ROLE = re.compile(r":(?:py:)?(class|func|meth|mod|attr|data|obj|exc):`(~?)([\w.]+)(?:\(\))?`")
HELP_DATACLASSES = ("cxrkit.training.config.TrainConfig",)
SRC = Path(__file__).resolve().parents[1] / "src"


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """The canonical path of ``target`` seen from ``obj`` (absolute, or relative to its scope)."""
    collection = obj.modules_collection
    candidates = [target]
    head, _, rest = target.partition(".")
    for scope in (obj, *_parents(obj)):
        try:
            resolved = scope.resolve(head)
        except (griffe.NameResolutionError, AttributeError):
            continue
        candidates.append(f"{resolved}.{rest}" if rest else resolved)
        break
    for scope in (obj, *_parents(obj)):  # members of the class or module named bare
        candidates.append(f"{scope.path}.{target}")
    for path in candidates:
        try:
            found = collection.get_member(path)
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        try:
            return found.final_target.path if found.is_alias else found.path
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return path
    return _lazy_export(collection, target)


def _lazy_export(collection, target: str) -> str | None:
    """``cxrkit.inference.Predictor``: a package's lazy ``__getattr__`` export, defined in one of
    its modules (static analysis sees no import to follow)."""
    package, _, name = target.rpartition(".")
    try:
        module = collection.get_member(package)
    except (KeyError, ValueError):
        return None
    if not getattr(module, "is_module", False):
        return None
    found = [m.path for m in module.modules.values() if name in m.members and not m.members[name].is_alias]
    return found[0] if len(found) == 1 else None


def _parents(obj: griffe.Object):
    parent = obj.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def cross_references(text: str, obj: griffe.Object) -> str:
    """Every Sphinx role of ``text`` as an optional autorefs reference."""

    def replace(match: re.Match) -> str:
        tilde, target = match[2], match[3]
        title = target.rsplit(".", 1)[-1] if tilde else target
        path = _resolve(obj, target) or target
        return f'<autoref identifier="{html.escape(path)}" optional><code>{html.escape(title)}</code></autoref>'

    return ROLE.sub(replace, text)


def field_table(dotted: str) -> str:
    """A Google-style Attributes section of a dataclass's fields: type, help, default."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))  # document this checkout's code, whatever is installed
    module, name = dotted.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    lines = ["", "Attributes:"]
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f" Default: `{f.default!r}`."
        elif f.default_factory is not dataclasses.MISSING:
            default = f" Default: `{f.default_factory()!r}`."
        else:
            default = " Required."
        help_text = f.metadata.get("help", "").strip()
        help_text = help_text[0].upper() + help_text[1:] + "." if help_text else ""
        lines.append(f"    {f.name} ({f.type}): {help_text}{default}")
    return "\n".join(lines)


class CxrkitDocs(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.name != "cxrkit":
            return
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = cross_references(obj.docstring.value, obj)
            if obj.path in HELP_DATACLASSES and obj.docstring is not None:
                obj.docstring.value += "\n" + field_table(obj.path)


def _walk(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)
