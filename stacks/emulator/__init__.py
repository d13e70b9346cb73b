"""The stacks applied for real, offline: Terraform against a local AWS (moto over TLS).

`server` runs the emulator, `terraform` runs Terraform from a local provider
mirror, `differences` is the one place where the applied copy differs from what
users deploy (each with its reason), `deploy` puts them together.
"""
