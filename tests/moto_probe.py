"""Does the installed moto authorize S3 requests as real S3 does, for the requests our tests make
under enforced IAM (tests/app/test_streaming.py)?

    python tests/moto_probe.py      # exit 0: it does; 1: it does not, and why (one line per problem)

Real S3 authorizes ListObjects and ListObjectsV2 with the IAM action `s3:ListBucket` on the bucket
(there is no `s3:ListObjectsV2` action). moto 5.2.6 checks `s3:ListObjectsV2` instead, so a role
granted s3:ListBucket, as every reader's is, is refused every listing. The dev extra holds moto
below 5.2.6 for that; `make lock` runs this probe against the newest moto to say when a release
fixes it. Only the standard library, boto3 and moto are needed, so it runs in a bare venv.
"""

from __future__ import annotations

import json
import sys
import urllib.request
import uuid

BUCKET = "probe-bucket"
ACCOUNT = "123456789012"
LIST_OPERATIONS = ("list_objects", "list_objects_v2")


def problems() -> list[str]:
    """What the installed moto authorizes differently from real S3, one line each."""
    import boto3
    import moto
    from moto.server import ThreadedMotoServer

    # moto's state is the whole process's (a test session's own servers share it): names of our own.
    run = uuid.uuid4().hex[:12]
    bucket, role = f"{BUCKET}-{run}", f"reader-{run}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        admin = {
            "endpoint_url": url,
            "region_name": "us-east-1",
            "aws_access_key_id": "probe",
            "aws_secret_access_key": "probe",
        }
        s3 = boto3.client("s3", **admin)
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="models/m/0123456789abcdef/config.json", Body=b"{}")
        reader = _role_client(
            admin,
            role,
            [
                {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{bucket}/models/*"]},
                {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"]},
            ],
        )
        # moto's switch is one setting of the whole process: every moto server in it (a test session's
        # too) enforces IAM until it is switched back.
        _enforce_iam(url, "0")
        try:
            found = []
            for operation in LIST_OPERATIONS:
                try:
                    getattr(reader, operation)(Bucket=bucket, Prefix="models/m/0123456789abcdef/")
                except reader.exceptions.ClientError as exc:
                    found.append(
                        f"moto {moto.__version__}: {operation} by a role with s3:ListBucket on the bucket is "
                        f"refused ({exc.response['Error']['Code']}); real S3 authorizes it as s3:ListBucket"
                    )
            return found
        finally:
            _enforce_iam(url, "inf")
    finally:
        server.stop()


def _role_client(admin: dict, role: str, statements: list[dict]):
    import boto3

    iam, sts = boto3.client("iam", **admin), boto3.client("sts", **admin)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(
        RoleName=role,
        PolicyName="read",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    credentials = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}", RoleSessionName="probe")["Credentials"]
    return boto3.client(
        "s3",
        endpoint_url=admin["endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def _enforce_iam(url: str, count: str) -> None:
    """moto's switch for IAM enforcement: "0" enforces from the next request on."""
    request = urllib.request.Request(
        f"{url}/moto-api/reset-auth", data=count.encode(), method="POST", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(request, timeout=30).read()


if __name__ == "__main__":
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    found = problems()
    print("\n".join(found) if found else "moto authorizes S3 listings as real S3 does")
    sys.exit(1 if found else 0)
