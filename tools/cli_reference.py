"""Write docs/command-line.md from the command lines' own argparse parsers, so it cannot drift from them.

    python tools/cli_reference.py           # print the reference
    python tools/cli_reference.py --write   # rewrite docs/command-line.md

tests/test_docs.py fails when the file differs from what this prints. A parser is found through its
command's module name alone, so a module may
build its parser however it likes and move inside the package as long as ``python -m`` still finds it: the
module is run as ``python -m`` runs it (:func:`runpy.run_module` as ``__main__``) and stopped at its first
parse.
"""

from __future__ import annotations

import argparse
import runpy
import sys
import warnings
from pathlib import Path
from unittest import mock

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "command-line.md"

# (module, subcommand): the command lines with an argparse parser, in the order the reference lists them.
COMMANDS = [
    ("scratchnet.train", ()),
    ("scratchnet.evaluate", ()),
    ("scratchnet.predict", ()),
    ("scratchnet.gradcheck", ()),
    ("scratchnet.bench", ()),
    ("scratchnet.bench", ("time-to-accuracy",)),
    ("scratchnet.bench", ("parallel",)),
    ("scratchnet.bench", ("models",)),
    ("scratchnet.bench", ("loader",)),
    ("scratchnet.bench", ("sim",)),
    ("scratchnet.kernel_bench", ()),
    ("scratchnet.gpucheck", ()),
]
SUBCOMMANDS = {module: {sub[0] for m, sub in COMMANDS if m == module and sub} for module, _ in COMMANDS}

INTRO = """\
# Command-line reference

Every option of every command, generated from the commands' own parsers by `tools/cli_reference.py`
(`python tools/cli_reference.py --write` rewrites this file; `tests/test_docs.py` fails when it is stale).
Each command also answers `--help`. `python -m scratchnet.bench kernels` is
`python -m scratchnet.kernel_bench`. `python -m scratchnet.pretrained WEIGHTS.pth OUT.npz` (convert
torchvision weights to `.npz` once, with PyTorch installed) takes no options.

Exit status of every command: 0 success; 1 a failure it reports (a diverged training run, a failed check,
a target not reached); 2 bad input (a flag value, a file, a dataset, a run folder, no usable GPU), with one
`error: ...` line; 130 interrupted by Ctrl-C, saying what was saved and how to continue.
"""


class _Parsed(BaseException):
    """Raised instead of parsing, to hand the parser back (a BaseException, so no `except Exception` in a
    command's main catches it)."""

    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__(parser.prog)
        self.parser = parser


def parser_of(module: str, subcommand: tuple[str, ...] = ()) -> argparse.ArgumentParser | None:
    """The parser that ``python -m module *subcommand`` parses its options with; None for a command that
    has no argparse parser."""

    def hand_back(parser, args=None, namespace=None):
        raise _Parsed(parser)

    argv = [module, *subcommand]
    with (
        mock.patch.object(argparse.ArgumentParser, "parse_known_args", hand_back),
        mock.patch.object(sys, "argv", argv),
        warnings.catch_warnings(),
    ):
        # runpy warns when the module was imported before (by the package, or an earlier call); running
        # it again as __main__ is what is wanted here.
        warnings.filterwarnings("ignore", "'scratchnet", RuntimeWarning)
        # An old module name aliases itself to its new module once imported: found in sys.modules, runpy
        # would run the new module under the old name; without the entry, it finds the old file, as
        # `python -m` does.
        imported = sys.modules.pop(module, None)
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except _Parsed as parsed:
            return parsed.parser
        except SystemExit:
            pass
        finally:
            if imported is not None:
                sys.modules[module] = imported
    return None


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(action: argparse.Action) -> str:
    """What an option without a help text defaults to, if anything."""
    if action.default in (None, False, argparse.SUPPRESS) or action.option_strings == []:
        return ""
    return f"default {action.default}"


def render_command(module: str, subcommand: tuple[str, ...]) -> str:
    parser = parser_of(module, subcommand)
    if parser is None:
        raise LookupError(f"python -m {module} {' '.join(subcommand)} has no argparse parser")
    formatter = parser._get_formatter()
    lines = [f"## `python -m {' '.join((module, *subcommand))}`", ""]
    if parser.description:
        lines += [_cell(parser.description), ""]
    lines += ["| option | what it does |", "|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        invocation = formatter._format_action_invocation(action)
        what = formatter._expand_help(action) if action.help else _default(action)
        lines.append(f"| `{_cell(invocation)}` | {_cell(what)} |")
    if parser.epilog:
        lines += ["", _cell(parser.epilog)]
    return "\n".join(lines) + "\n"


def render() -> str:
    return INTRO + "".join("\n" + render_command(module, sub) for module, sub in COMMANDS)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--write", action="store_true", help=f"rewrite {REFERENCE.name} instead of printing")
    args = p.parse_args(argv)
    text = render()
    if args.write:
        REFERENCE.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
