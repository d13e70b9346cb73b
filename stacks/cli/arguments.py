"""Arguments several commands share: which environments, where output goes, number types."""

from __future__ import annotations

import argparse
from pathlib import Path

from stacks.config.loader import ENVIRONMENTS_DIR, find_environment, select_environments


def add_selection(parser: argparse.ArgumentParser) -> None:
    """--env/--config (repeatable; default: every environment), --env-dir and --outdir."""
    parser.add_argument("--env", action="append", metavar="NAME", help="environment name (repeatable; default: all)")
    parser.add_argument("--config", action="append", metavar="PATH", help="environment file (repeatable)")
    parser.add_argument("--env-dir", default=str(ENVIRONMENTS_DIR), metavar="DIR", help="where --env names are looked up")
    parser.add_argument("--outdir", default="cdktf.out", metavar="DIR", help="output directory (default: cdktf.out)")


def selected_files(args: argparse.Namespace) -> tuple[list[Path], bool]:
    """The environment files `add_selection` arguments name, and whether that is all of them."""
    return select_environments(args.env or [], args.config or [], Path(args.env_dir))


def add_environment(parser: argparse.ArgumentParser) -> None:
    """Exactly one environment: --env NAME or --config PATH."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--env", metavar="NAME", help="environment name")
    which.add_argument("--config", metavar="PATH", help="environment file")
    parser.add_argument("--env-dir", default=str(ENVIRONMENTS_DIR), metavar="DIR", help="where --env names are looked up")


def environment_file(args: argparse.Namespace) -> Path:
    """The one environment file `add_environment` arguments name."""
    return Path(args.config) if args.config else find_environment(args.env, Path(args.env_dir))


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
