"""Arguments several commands share: which environments, where output goes, number types."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from stacks.config.loader import find_environment, select_environments
from stacks.config.project import DEFAULT_OUTPUT, find_project
from stacks.errors import ConfigError

ENV_DIR_HELP = "where --env names are looked up (default: the project's environments folder)"


def add_selection(parser: argparse.ArgumentParser) -> None:
    """--env/--config (repeatable; default: every environment), --env-dir and --outdir."""
    parser.add_argument("--env", action="append", metavar="NAME", help="environment name (repeatable; default: all)")
    parser.add_argument("--config", action="append", metavar="PATH", help="environment file (repeatable)")
    parser.add_argument("--env-dir", metavar="DIR", help=ENV_DIR_HELP)
    add_outdir(parser)


def add_outdir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--outdir",
        metavar="DIR",
        help="output directory (default: $CDKTF_OUTDIR when cdktf runs us, "
        "else the project's cdktf.json output, cdktf.out)",
    )


def output_dir(args: argparse.Namespace) -> Path:
    """--outdir; else where cdktf asks for it; else the project's output folder (or ./cdktf.out outside one)."""
    if args.outdir:
        return Path(args.outdir)
    if os.environ.get("CDKTF_OUTDIR"):
        return Path(os.environ["CDKTF_OUTDIR"])
    try:
        return find_project().output
    except ConfigError:
        return Path(DEFAULT_OUTPUT)


def environments_dir(args: argparse.Namespace) -> Path:
    """--env-dir, else the project's environments folder (a project is needed: the kit's own
    examples are never used implicitly)."""
    return Path(args.env_dir) if args.env_dir else find_project().environments


def selected_files(args: argparse.Namespace) -> tuple[list[Path], bool]:
    """The environment files `add_selection` arguments name, and whether that is all of them."""
    if args.config and not args.env:  # files named outright: no project needed
        return [Path(p) for p in args.config], False
    return select_environments(args.env or [], args.config or [], environments_dir(args))


def add_environment(parser: argparse.ArgumentParser) -> None:
    """Exactly one environment: --env NAME or --config PATH."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--env", metavar="NAME", help="environment name")
    which.add_argument("--config", metavar="PATH", help="environment file")
    parser.add_argument("--env-dir", metavar="DIR", help=ENV_DIR_HELP)


def environment_file(args: argparse.Namespace) -> Path:
    """The one environment file `add_environment` arguments name."""
    return Path(args.config) if args.config else find_environment(args.env, environments_dir(args))


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not a fraction of GPU memory (0-1]")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def percent(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value} is not a percentage (0-100)")
    return value
