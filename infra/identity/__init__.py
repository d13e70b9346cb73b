"""IAM: the roles grants attach to (`roles`) and policy documents as plain data (`policy`).

Nothing is imported here, so `infra.identity.policy` stays free of cdktf.
"""
