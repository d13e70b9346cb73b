"""Data at rest: the model buckets, the access log bucket and the KMS key."""
