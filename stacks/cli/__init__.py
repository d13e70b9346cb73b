"""`llmstacks`: the command line of llm-serving-stacks.

One module per command group registers its subcommands (`COMMAND_GROUPS`); `main` runs one and
is the one place that turns what it raises into an exit status (`stacks.cli.status_codes`):
a single line for anything a user or a dependency did (AWS's own errors put in our terms first),
a traceback only for a bug or with --debug, a quiet end for Ctrl-C and for a reader that went away.
cdktf, boto3 and the AWS provider are imported only once they are needed.
"""

from __future__ import annotations

import argparse
import os
import sys

from stacks.cli import artifacts, capacity, init, local, preview, service, synth, weights
from stacks.cli.status_codes import BROKEN_PIPE, INTERNAL_ERROR, INTERRUPTED, TOOL_ERROR, USER_ERROR
from stacks.errors import ToolError, UserError

COMMAND_GROUPS = (init, synth, local, service, weights, artifacts, capacity, preview)

# What a command raised, by kind (the first that matches). Besides: an OSError naming a path is the machine
# refusing it (a permission, a full disk), USER_ERROR; anything else is a bug, INTERNAL_ERROR.
EXIT_STATUS: dict[type[Exception], int] = {
    UserError: USER_ERROR,  # bad input: an environment file, a flag, a model directory, credentials
    ToolError: TOOL_ERROR,  # a program we run is missing or failed: checkov, git; AWS failing
}
# Set to 1 for what --debug does, e.g. in CI.
DEBUG_VARIABLE = "LLMSTACKS_DEBUG"
DEBUG_HELP = f"on an error, print its traceback too (or set {DEBUG_VARIABLE}=1)"


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported like every other: one line, exit status 2."""

    def error(self, message: str):
        self.exit(USER_ERROR, f"error: {self.prog}: {' '.join(message.splitlines())} (see {self.prog} --help)\n")

    def exit(self, status: int = 0, message: str | None = None):
        sys.stdout.flush()  # --version into a closed pipe fails here, inside main, not at the interpreter's exit
        super().exit(status, message)


class _Version(argparse.Action):
    """--version, read from the installed metadata only when asked (it costs ~40 ms on every start)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the kit's version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from stacks import __version__

        print(f"llmstacks {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="llmstacks", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_Version)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    for command in commands.choices.values():  # after the command's name too; SUPPRESS keeps a --debug given before it
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        args = build_parser().parse_args(argv)
        debug = debug or args.debug
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe fails here, where it is handled, not at the interpreter's exit
        return status
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001  (the one place any error becomes a status)
        return _report(exc, debug)


def _report(exc: BaseException, debug: bool) -> int:
    """Say on standard error what a command raised, in one line (after its traceback for a bug or with --debug);
    return its exit status."""
    if isinstance(exc, BrokenPipeError):
        # The reader of our output went away (`| head`): nothing to say. Python's advice (signal docs, "Note on
        # SIGPIPE"): point stdout at devnull, so what is still buffered cannot fail again at the interpreter's exit.
        # Other pipes never raise it this far: subprocess and the AWS clients handle or wrap their own.
        _discard_stdout()
        return BROKEN_PIPE
    status, line = (INTERRUPTED, "interrupted") if isinstance(exc, KeyboardInterrupt) else _ladder(exc)
    if debug or status == INTERNAL_ERROR:
        import traceback

        traceback.print_exception(exc)
    # One line, whatever a dependency put in its message.
    print(" ".join(line.splitlines()), file=sys.stderr)
    return status


def _ladder(exc: Exception) -> tuple[int, str]:
    """The exit status and the line for an error a command raised."""
    reported = _in_our_terms(exc)
    if isinstance(reported, OSError) and reported.filename is not None:
        return USER_ERROR, f"error: {_os_error(reported)}"
    for kind, status in EXIT_STATUS.items():
        if isinstance(reported, kind):
            return status, f"error: {reported}"
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return INTERNAL_ERROR, f"error: unexpected {what} (a bug report needs the traceback above)"


def _in_our_terms(exc: Exception) -> Exception:
    """boto3's and botocore's errors as ours (stacks.publishing.aws); only imported when it is one of theirs,
    since a command that raised one has loaded them already."""
    if any(kind.__module__.partition(".")[0] in ("boto3", "botocore") for kind in type(exc).__mro__):
        from stacks.publishing.aws import translated

        return translated(exc) or exc
    return exc


def _os_error(exc: OSError) -> str:
    """`<path>: <what the system said>`, as the other errors name their file first."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    return f"{paths}: {exc.strerror or exc}"


def _discard_stdout() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (replaced, as pytest's capture does): nothing buffered
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
