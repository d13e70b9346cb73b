"""The named exit statuses (the README's table is the same list, the commands return them by name), and
`main`'s one error ladder: AWS's errors in our terms."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import ROOT
from stacks.cli import status_codes
from stacks.cli.status_codes import CHECK_FAILED, SUCCESS, TOOL_ERROR, USER_ERROR
from stacks.config.loader import ENVIRONMENTS_DIR

LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")
LIST_MODELS = ["list-models", "--env-dir", str(ENVIRONMENTS_DIR), "--env", "dev"]


def statuses() -> dict[str, int]:
    return {name: value for name, value in vars(status_codes).items() if name.isupper() and isinstance(value, int)}


# ---------------------------------------------------------------- the statuses themselves

def test_the_readme_table_lists_every_status_by_name():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## The command line"):]
    section = section[:section.index("\n## ")]
    rows = re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", section, re.MULTILINE)
    assert {name: int(value) for value, name in rows} == statuses()
    assert len(rows) == len(statuses())


def test_the_statuses_are_distinct_and_keep_their_numbers():
    assert len(set(statuses().values())) == len(statuses())
    assert (SUCCESS, CHECK_FAILED, USER_ERROR, TOOL_ERROR) == (0, 1, 2, 3)


def test_the_commands_return_named_statuses_only():
    bare = re.compile(r"\breturn (\d+|.* else \d+)\b|\bexit\(\d|SystemExit\(\d")
    for path in sorted((ROOT / "stacks" / "cli").glob("*.py")):
        if path.name == "status_codes.py":
            continue
        found = [line.strip() for line in path.read_text().splitlines() if bare.search(line)]
        assert not found, (path.name, found)


def test_botocore_is_not_loaded_to_report_an_error_of_ours():
    code = ("import sys; from stacks.cli import main; status = main(['plan-capacity', '--model', 'nope']); "
            "print(status, sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"{USER_ERROR} []", result.stderr


# ---------------------------------------------------------------- the real command against an S3 that misbehaves

def aws_env(endpoint: str, tmp_path: Path, **more: str) -> dict[str, str]:
    """Test credentials, nothing of this machine's AWS setup, S3 at `endpoint`, no retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LLMSTACKS_"))}
    return env | {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL_S3": endpoint,
                  "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                  "AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1", **more}


@pytest.fixture
def s3_answering() -> Iterator:
    """An S3 endpoint that answers every request with the status and error code it is given."""
    answer: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{answer['code']}</Code>"
                    f"<Message>{answer['message']}</Message></Error>").encode()
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


@pytest.mark.parametrize(("code", "message"), [("AccessDenied", "Access Denied"),
                                               ("NoSuchBucket", "The specified bucket does not exist")])
def test_s3_refusing_is_one_line_exit_2(s3_answering, tmp_path, code, message):
    env = aws_env(s3_answering(403 if code == "AccessDenied" else 404, code, message), tmp_path)
    result = subprocess.run([LLMSTACKS, *LIST_MODELS], env=env, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (USER_ERROR, f"error: S3 refused the request: {code}: {message}\n")


def test_an_unknown_s3_error_is_said_as_aws_said_it_exit_3(s3_answering, tmp_path):
    env = aws_env(s3_answering(403, "AccountProblem", "There is a problem with your AWS account"), tmp_path)
    result = subprocess.run([LLMSTACKS, *LIST_MODELS], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == TOOL_ERROR
    # botocore notes the retries it gave up after (none here: AWS_MAX_ATTEMPTS=1)
    said = (r"error: AWS: An error occurred \(AccountProblem\) when calling the ListObjectsV2 operation"
            r"( \(reached max retries: 0\))?: There is a problem with your AWS account\n")
    assert re.fullmatch(said, result.stderr), result.stderr


def test_an_unreachable_s3_is_one_line_exit_3(tmp_path):
    with socket.socket() as closed:  # a port nothing listens on once it is closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = aws_env(f"http://127.0.0.1:{port}", tmp_path)
    result = subprocess.run([LLMSTACKS, *LIST_MODELS], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == TOOL_ERROR
    assert result.stderr.startswith(f"error: AWS: Could not connect to the endpoint URL: \"http://127.0.0.1:{port}/")
    assert len(result.stderr.splitlines()) == 1
