"""A local AWS for one environment: moto as a real HTTPS server on 127.0.0.1.

TLS uses a certificate made for the run (for 127.0.0.1), handed to Terraform
(SSL_CERT_FILE) and boto3 (AWS_CA_BUNDLE) as their only trusted root, so
nothing runs with certificate checks off. The server plays the environment's
account (MOTO_ACCOUNT_ID), so the provider's `allowed_account_ids` holds, and
loads AWS managed policies so node-role attachments resolve.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from stacks.errors import ToolError

TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
START_SECONDS = 30


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (a SAN: Go refuses CN-only certificates)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llmstacks local AWS")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "emulator.crt", directory / "emulator.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """`with Emulator(account_id, region, workdir) as aws:` a running local AWS; `aws.env` reaches it."""

    def __init__(self, account_id: str, region: str, workdir: Path):
        self.account_id, self.region, self.workdir = account_id, region, Path(workdir)
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_bundle(self) -> Path:
        return self.workdir / "emulator.crt"

    @property
    def env(self) -> dict[str, str]:
        """What boto3, the llmstacks commands and Terraform need to talk to this emulator."""
        return {
            **TEST_CREDENTIALS,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_CA_BUNDLE": str(self.ca_bundle),
            "SSL_CERT_FILE": str(self.ca_bundle),
        }

    def client(self, service: str, *, region: str | None = None, **credentials):
        """A boto3 client of this emulator (test credentials unless others are given)."""
        import boto3

        return boto3.client(
            service,
            region_name=region or self.region,
            endpoint_url=self.endpoint,
            verify=str(self.ca_bundle),
            **({k.lower(): v for k, v in TEST_CREDENTIALS.items()} | credentials),
        )

    def __enter__(self) -> Emulator:
        server = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
        if server is None:
            raise ToolError(
                "moto_server is not installed: the local AWS needs moto[server] (`make deploy-local` installs it)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert, key = _certificate(self.workdir)
        self.port = _free_port()
        env = {**os.environ, "MOTO_ACCOUNT_ID": self.account_id, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
        log = (self.workdir / "emulator.log").open("w")
        self.process = subprocess.Popen(
            [server, "-H", "127.0.0.1", "-p", str(self.port), "-c", str(cert), "-k", str(key)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ToolError(f"moto_server exited at start (see {self.workdir / 'emulator.log'})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise ToolError(f"moto_server did not start within {START_SECONDS} s")

    def __exit__(self, *_) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
