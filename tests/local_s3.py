"""A bucket in the local S3 (the session's moto server), fresh for each test."""

from __future__ import annotations

import boto3


def fresh_bucket(monkeypatch, endpoint: str, bucket: str, region: str, *, versioned: bool = True):
    """A client of the local S3 with this process's environment pointing the tools at it (test
    credentials, endpoint, region), and `bucket` there, versioned as the stack makes the data buckets
    (unless `versioned` is False) and empty: every version and delete marker of an earlier test removed."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": region,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_DEFAULT_REGION": region,
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", region_name=region)
    try:
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    if versioned:
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    empty(client, bucket)
    return client


def empty(client, bucket: str) -> None:
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            client.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
