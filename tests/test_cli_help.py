"""The command line a user expects: --version, `samp methods` from the registries, help text on every option."""
import argparse

import pytest

import samp
from samp.cli import build_parser, main
from samp.methods.counts import FLAVORS


def _parsers(parser, path=("samp",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"samp {samp.__version__}"


def test_every_option_of_every_command_has_help():
    lacking = [f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
               for path, parser in _parsers(build_parser()) for action in parser._actions
               if not isinstance(action, argparse._SubParsersAction)
               and (not action.help or action.help == argparse.SUPPRESS)]
    assert lacking == []


def test_eval_defaults_suit_a_cpu():
    args = build_parser().parse_args(["eval", "--model", "m", "--data", "d", "--work-dir", "w"])
    assert args.batch_size == 16 and args.method == "samp" and args.flavor == "samp"


def test_methods_lists_every_method_and_flavour(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    table = out.split("\n\n")[0].splitlines()[2:]
    rows = {line.split()[0]: line for line in table}
    assert set(rows) == {spec.name for spec in samp.methods.available()}
    for spec in samp.methods.available():
        row = rows[spec.name]
        assert spec.summary in row and row.split()[1] == spec.kind
        assert ("attention" in row.split(spec.summary)[0]) == spec.needs_attention
        assert ("keys" in row.split(spec.summary)[0]) == spec.needs_keys
    assert all(flavor in out for flavor in FLAVORS)
