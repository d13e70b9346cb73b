"""`llmstacks`: the command line of llm-serving-stacks.

One module per command group registers its subcommands (`COMMAND_GROUPS`);
`main` runs one and maps what it raises to an exit status (`EXIT_STATUS`, named in `stacks.cli.status_codes`),
printing a single line: no traceback for anything a user or a dependency did (AWS's own errors are put in
our terms first). cdktf, boto3 and the AWS provider are imported only once they are needed.
"""

from __future__ import annotations

import argparse
import sys

from stacks.cli import artifacts, capacity, init, local, preview, service, synth, weights
from stacks.cli.status_codes import TOOL_ERROR, USER_ERROR
from stacks.errors import ToolError, UserError

COMMAND_GROUPS = (init, synth, local, service, weights, artifacts, capacity, preview)

# SUCCESS or CHECK_FAILED, as the command returns; then by what it raised:
EXIT_STATUS: dict[type[Exception], int] = {
    UserError: USER_ERROR,  # bad input: an environment file, a flag, a model directory, credentials
    ToolError: TOOL_ERROR,  # a program we run is missing or failed: checkov, git; AWS failing
}


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported like every other: one line, exit status 2."""

    def error(self, message: str):
        self.exit(USER_ERROR, f"error: {self.prog}: {' '.join(message.splitlines())} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """--version, read from the installed metadata only when asked (it costs ~40 ms on every start)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the kit's version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from stacks import __version__  # noqa: PLC0415

        print(f"llmstacks {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="llmstacks", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:
        reported = _in_our_terms(exc)
        if not isinstance(reported, tuple(EXIT_STATUS)):
            raise
        # One line, whatever a dependency put in its message.
        print("error: " + " ".join(str(reported).splitlines()), file=sys.stderr)
        return next(status for kind, status in EXIT_STATUS.items() if isinstance(reported, kind))


def _in_our_terms(exc: Exception) -> Exception:
    """boto3's and botocore's errors as ours (stacks.publishing.aws); only imported when it is one of theirs,
    since a command that raised one has loaded them already."""
    if any(kind.__module__.partition(".")[0] in ("boto3", "botocore") for kind in type(exc).__mro__):
        from stacks.publishing.aws import translated  # noqa: PLC0415

        return translated(exc) or exc
    return exc


if __name__ == "__main__":
    sys.exit(main())
