"""The command line shared by the project's data recipes: ``build`` and ``verify``.

``python -m alhelpers.data.snapshot`` (Track A) and ``python -m alhelpers.atomistic.data.offline``
(Track B) each build a committed data set from a recipe and check it against its recorded sha256;
:func:`build_verify_parser` gives both the same two subcommands.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["build_verify_parser"]


def build_verify_parser(
    prog: str, description: str | None, *, build: str, out: str, verify: str, root: str | None = None
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """A parser with ``build [--out DIR]`` and ``verify [--root DIR]`` (``args.cmd`` says which).

    Args:
        prog, description: Of the parser (``description``: the module docstring, shown as written).
        build, out, verify: Help texts of ``build``, of its ``--out`` and of ``verify``.
        root: Help text of ``verify --root`` (default: the folder checked, the one ``build --out``
            writes, with ``out``'s words).

    Returns:
        The parser and the ``build`` subparser, to which the caller adds the recipe's options.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    build_parser = sub.add_parser("build", help=build)
    build_parser.add_argument("--out", type=Path, default=None, help=out)
    sub.add_parser("verify", help=verify).add_argument(
        "--root", type=Path, default=None,
        help=root or f"the folder to check, the one build --out writes: {out}")
    return parser, build_parser
