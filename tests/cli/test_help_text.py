"""Every ``--help`` reads as written: argparse expands ``%`` in argument help but not in
descriptions or epilogs, so a ``%%`` there is printed as is (it was: "95%%" in evaluate and protocols)."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from cxrkit.cli.main import build_parser, main


def _commands() -> list[list[str]]:
    def walk(parser: argparse.ArgumentParser, prefix: list[str]):
        yield prefix
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, [*prefix, name])

    return list(walk(build_parser(), []))


@pytest.mark.parametrize("argv", _commands(), ids=lambda a: " ".join(a) or "cxr")
def test_help_has_no_doubled_percent_sign(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "%%" not in out.getvalue(), f"`cxr {' '.join(argv)} --help` prints '%%'"


def test_percent_signs_still_print_once():
    text = {" ".join(argv): _help(argv) for argv in (["evaluate"], ["protocols"], ["predict"])}
    assert "bootstrap 95% CI" in text["evaluate"] and "95% CIs" in text["protocols"]
    assert "+-4%" in text["predict"]  # argument help, where argparse turns %% into %


def _help(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
    return " ".join(out.getvalue().split())
