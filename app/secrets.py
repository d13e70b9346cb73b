"""Reading a secret from AWS Secrets Manager without ever echoing its value."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def _no_botocore_debug() -> Iterator[None]:
    """botocore logs whole response bodies (the secret included) at DEBUG."""
    logger = logging.getLogger("botocore")
    previous = logger.level
    logger.setLevel(max(logging.INFO, previous))
    try:
        yield
    finally:
        logger.setLevel(previous)


def read_secret_string(secret_name: str, region: str) -> str:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("secretsmanager", region_name=region)
    try:
        with _no_botocore_debug():
            value = client.get_secret_value(SecretId=secret_name).get("SecretString")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise RuntimeError(f"cannot read secret {secret_name!r}: {code}") from None
    except BotoCoreError as exc:
        raise RuntimeError(f"cannot read secret {secret_name!r}: {exc.__class__.__name__}") from None
    if not value or not value.strip():
        raise RuntimeError(f"secret {secret_name!r} has no SecretString")
    return value.strip()
