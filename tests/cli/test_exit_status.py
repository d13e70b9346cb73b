"""The named exit statuses (the README's table is the same list, the commands return them by name), and
`main`'s one error ladder: AWS's errors in our terms, Ctrl-C and a closed pipe ending quietly, a traceback
for a bug or with --debug and never otherwise."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import waits

from conftest import ROOT
from stacks.cli import capacity, main, status_codes
from stacks.cli.status_codes import (
    BROKEN_PIPE,
    CHECK_FAILED,
    INTERNAL_ERROR,
    INTERRUPTED,
    SUCCESS,
    TOOL_ERROR,
    USER_ERROR,
)
from stacks.config.loader import ENVIRONMENTS_DIR
from stacks.errors import ConfigError

LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")
LIST_MODELS = ["list-models", "--env-dir", str(ENVIRONMENTS_DIR), "--env", "dev"]


def statuses() -> dict[str, int]:
    return {name: value for name, value in vars(status_codes).items() if name.isupper() and isinstance(value, int)}


# ---------------------------------------------------------------- the statuses themselves


def test_the_readme_table_lists_every_status_by_name():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## The command line") :]
    section = section[: section.index("\n## ")]
    rows = re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", section, re.MULTILINE)
    assert {name: int(value) for value, name in rows} == statuses()
    assert len(rows) == len(statuses())


def test_the_statuses_are_distinct_and_the_signal_ones_follow_the_shell():
    assert len(set(statuses().values())) == len(statuses())
    assert (SUCCESS, CHECK_FAILED, USER_ERROR, TOOL_ERROR, INTERNAL_ERROR) == (0, 1, 2, 3, 4)
    assert INTERRUPTED == 128 + signal.SIGINT and BROKEN_PIPE == 128 + signal.SIGPIPE


def test_the_commands_return_named_statuses_only():
    bare = re.compile(r"\breturn (\d+|.* else \d+)\b|\bexit\(\d|SystemExit\(\d")
    for path in sorted((ROOT / "stacks" / "cli").glob("*.py")):
        if path.name == "status_codes.py":
            continue
        found = [line.strip() for line in path.read_text().splitlines() if bare.search(line)]
        assert not found, (path.name, found)


# ---------------------------------------------------------------- in process: what a command raised


def raising(monkeypatch, exc: BaseException) -> None:
    """plan-capacity raises `exc` (main registers the commands afresh on each call)."""

    def command(args):
        raise exc

    monkeypatch.setattr(capacity, "cmd_plan_capacity", command)


@pytest.mark.parametrize(
    ("exc", "what"),
    [
        (RuntimeError("the unexpected"), "RuntimeError: the unexpected"),
        (ConnectionResetError(104, "reset by peer"), "ConnectionResetError: [Errno 104] reset by peer"),
        (AssertionError(), "AssertionError"),
    ],
    ids=["bug", "os-error-without-a-path", "no-message"],
)
def test_anything_else_is_its_traceback_and_one_line_exit_4(monkeypatch, capsys, exc, what):
    raising(monkeypatch, exc)
    assert main(["plan-capacity"]) == INTERNAL_ERROR
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and f"\n{what}\n" in err
    assert err.splitlines()[-1] == f"error: unexpected {what} (a bug report needs the traceback above)"


def test_the_machine_refusing_is_one_line_naming_the_path_exit_2(monkeypatch, capsys):
    raising(monkeypatch, PermissionError(13, "Permission denied", "/srv/out"))
    assert main(["plan-capacity"]) == USER_ERROR
    assert capsys.readouterr().err == "error: /srv/out: Permission denied\n"
    raising(monkeypatch, OSError(28, "No space left on device", "/tmp/a", None, "/tmp/b"))
    assert main(["plan-capacity"]) == USER_ERROR
    assert capsys.readouterr().err == "error: /tmp/a -> /tmp/b: No space left on device\n"


@pytest.mark.parametrize("where", ["before", "after", "variable"])
def test_debug_adds_the_traceback_and_keeps_the_line_and_status(monkeypatch, capsys, where):
    raising(monkeypatch, ConfigError("dev.yaml", "models[0].id", "wrong"))
    if where == "variable":
        monkeypatch.setenv("LLMSTACKS_DEBUG", "1")
    args = {"before": ["--debug", "plan-capacity"], "after": ["plan-capacity", "--debug"]}.get(where, ["plan-capacity"])
    assert main(args) == USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "stacks.errors.ConfigError: dev.yaml: models[0].id: wrong" in err
    assert err.splitlines()[-1] == "error: dev.yaml: models[0].id: wrong"


def test_without_debug_there_is_no_traceback(monkeypatch, capsys):
    monkeypatch.setenv("LLMSTACKS_DEBUG", "0")
    raising(monkeypatch, ConfigError("dev.yaml", "models[0].id", "wrong"))
    assert main(["plan-capacity"]) == USER_ERROR
    assert capsys.readouterr().err == "error: dev.yaml: models[0].id: wrong\n"


def test_an_interrupt_in_process_is_one_line_exit_130(monkeypatch, capsys):
    raising(monkeypatch, KeyboardInterrupt())
    assert main(["plan-capacity"]) == INTERRUPTED
    assert capsys.readouterr().err == "interrupted\n"


def test_botocore_is_not_loaded_to_report_an_error_of_ours():
    code = (
        "import sys; from stacks.cli import main; status = main(['plan-capacity', '--model', 'nope']); "
        "print(status, sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=waits.COMMAND)
    assert result.stdout.strip() == f"{USER_ERROR} []", result.stderr


# ---------------------------------------------------------------- the real command against an S3 that misbehaves


def aws_env(endpoint: str, tmp_path: Path, **more: str) -> dict[str, str]:
    """Test credentials, nothing of this machine's AWS setup, S3 at `endpoint`, no retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LLMSTACKS_"))}
    return env | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
        **more,
    }


@pytest.fixture
def s3_answering() -> Iterator:
    """An S3 endpoint that answers every request with the status and error code it is given."""
    answer: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{answer['code']}</Code>"
                f"<Message>{answer['message']}</Message></Error>"
            ).encode()
            self.send_response(answer["status"])
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def endpoint(status: int, code: str, message: str) -> str:
        answer.update(status=status, code=code, message=message)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield endpoint
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("code", "message"), [("AccessDenied", "Access Denied"), ("NoSuchBucket", "The specified bucket does not exist")]
)
def test_s3_refusing_is_one_line_exit_2(s3_answering, tmp_path, code, message):
    env = aws_env(s3_answering(403 if code == "AccessDenied" else 404, code, message), tmp_path)
    result = subprocess.run([LLMSTACKS, *LIST_MODELS], env=env, capture_output=True, text=True, timeout=waits.COMMAND)
    assert (result.returncode, result.stderr) == (USER_ERROR, f"error: S3 refused the request: {code}: {message}\n")


def test_an_unknown_s3_error_is_said_as_aws_said_it_exit_3(s3_answering, tmp_path):
    env = aws_env(s3_answering(403, "AccountProblem", "There is a problem with your AWS account"), tmp_path)
    result = subprocess.run([LLMSTACKS, *LIST_MODELS], env=env, capture_output=True, text=True, timeout=waits.COMMAND)
    assert result.returncode == TOOL_ERROR
    # botocore notes the retries it gave up after (none here: AWS_MAX_ATTEMPTS=1)
    said = (
        r"error: AWS: An error occurred \(AccountProblem\) when calling the ListObjectsV2 operation"
        r"( \(reached max retries: 0\))?: There is a problem with your AWS account\n"
    )
    assert re.fullmatch(said, result.stderr), result.stderr
    debug = subprocess.run(
        [LLMSTACKS, *LIST_MODELS, "--debug"], env=env, capture_output=True, text=True, timeout=waits.COMMAND
    )
    assert debug.returncode == TOOL_ERROR
    assert "Traceback" in debug.stderr and "botocore.exceptions.ClientError" in debug.stderr
    assert debug.stderr.splitlines()[-1] == result.stderr.strip()


def test_an_unreachable_s3_is_one_line_exit_3(tmp_path):
    with socket.socket() as closed:  # a port nothing listens on once it is closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = aws_env(f"http://127.0.0.1:{port}", tmp_path)
    result = subprocess.run([LLMSTACKS, *LIST_MODELS], env=env, capture_output=True, text=True, timeout=waits.COMMAND)
    assert result.returncode == TOOL_ERROR
    assert result.stderr.startswith(f'error: AWS: Could not connect to the endpoint URL: "http://127.0.0.1:{port}/')
    assert len(result.stderr.splitlines()) == 1


# ---------------------------------------------------------------- Ctrl-C on a command that waits


@pytest.mark.parametrize("debug", [False, True], ids=["quiet", "debug"])
def test_ctrl_c_while_waiting_on_s3_is_one_line_exit_130(tmp_path, debug):
    with socket.socket() as silent:  # accepts, never answers: list-models waits on it
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.settimeout(waits.COMMAND)
        more = {"LLMSTACKS_DEBUG": "1"} if debug else {}
        env = aws_env(f"http://127.0.0.1:{silent.getsockname()[1]}", tmp_path, **more)
        command = subprocess.Popen(
            [LLMSTACKS, *LIST_MODELS], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            connection, _ = silent.accept()  # the request is out: the command is blocked reading the answer
            with connection:
                command.send_signal(signal.SIGINT)
                out, err = command.communicate(timeout=waits.COMMAND)
        finally:
            command.kill()
    assert (command.returncode, out) == (INTERRUPTED, "")
    if debug:
        assert "Traceback" in err and "KeyboardInterrupt" in err and err.splitlines()[-1] == "interrupted"
    else:
        assert err == "interrupted\n"


# ---------------------------------------------------------------- a reader that stops reading


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["plan-capacity", "--list"], BROKEN_PIPE),
        (["--version"], BROKEN_PIPE),
        (["plan-capacity", "--help"], None),  # argparse drops help it cannot write, and exits 0 when it wrote it
    ],
    ids=["command", "version", "help"],
)
def test_a_closed_pipe_ends_quietly(args, status):
    command = subprocess.Popen([LLMSTACKS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    command.stdout.close()  # before anything is written: every write fails
    err = command.stderr.read().decode()
    assert command.wait(timeout=waits.COMMAND) in ((status,) if status else (SUCCESS, BROKEN_PIPE))
    assert err == ""  # no traceback, no "Exception ignored ... BrokenPipeError" at the interpreter's exit


def test_head_closing_mid_output_ends_quietly():
    """A command printing far more than a pipe holds, into `head -1`: the write fails mid-run."""
    code = (
        "import sys; from stacks.cli import capacity, main\n"
        "def flood(args):\n    for i in range(200_000):\n        print('line', i)\n    return 0\n"
        "capacity.cmd_plan_capacity = flood\nsys.exit(main(['plan-capacity']))\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-1"], stdin=writer.stdout, capture_output=True, text=True, timeout=waits.COMMAND)
    writer.stdout.close()
    err = writer.stderr.read().decode()
    assert (writer.wait(timeout=waits.COMMAND), err, head.stdout) == (BROKEN_PIPE, "", "line 0\n")


def test_a_shell_pipeline_into_head_says_nothing_on_stderr():
    result = subprocess.run(
        ["sh", "-c", f"'{LLMSTACKS}' plan-capacity --list | head -1"],
        capture_output=True,
        text=True,
        timeout=waits.COMMAND,
    )
    assert result.returncode == 0 and result.stderr == "" and len(result.stdout.splitlines()) == 1
