"""The `fastface` command (also `python -m fastface`).

Each feature module registers its own sub-commands: COMMAND_MODULES lists modules that
define ``register(subparsers)``; each parser sets ``func(args) -> int``. Errors a user can
fix (ValueError, TypeError, FileNotFoundError, an unavailable backend) end the command with
a one-line reason and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .backends import BackendUnavailableError

COMMAND_MODULES = (
    "fastface.commands.bench",
    "fastface.commands.explain",
    "fastface.commands.faces",
    "fastface.commands.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastface",
        description="Small dense networks for face recognition: train, predict, verify, explain.",
    )
    parser.add_argument("--version", action="version", version=f"fastface {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for path in COMMAND_MODULES:
        importlib.import_module(path).register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, BackendUnavailableError) as exc:
        print(f"fastface {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastface {args.command}: interrupted", file=sys.stderr)
        return 130
