"""The emulator's IAM enforcement is only as good as moto's: the tests that run under it
(tests/app/test_streaming.py) need it to authorize listings as real S3 does."""

import moto_probe


def test_the_installed_moto_authorizes_listings_as_real_s3():
    # Fails on moto 5.2.6 (ListObjects* checked as s3:ListObjects*): the dev extra holds moto below it.
    assert moto_probe.problems() == []


def test_the_probe_sees_a_moto_that_checks_the_wrong_action(monkeypatch):
    """The probe itself can fail: with moto made to check ListObjectsV2 under its own name, as 5.2.6 does."""
    from moto.iam import access_control

    evaluate = access_control.IAMPolicyStatement.is_action_permitted

    def as_moto_5_2_6(self, action, *args, **kwargs):
        return evaluate(self, "s3:ListObjectsV2" if action == "s3:ListBucket" else action, *args, **kwargs)

    monkeypatch.setattr(access_control.IAMPolicyStatement, "is_action_permitted", as_moto_5_2_6)
    found = moto_probe.problems()
    assert len(found) == 2 and all("real S3 authorizes it as s3:ListBucket" in line for line in found), found


def test_the_probe_leaves_other_moto_servers_in_the_process_open(s3_endpoint):
    import boto3

    moto_probe.problems()
    s3 = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="any", aws_secret_access_key="any"
    )
    s3.create_bucket(Bucket="after-the-probe")  # refused (InvalidAccessKeyId) while IAM is still enforced
