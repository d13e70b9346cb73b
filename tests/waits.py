"""How long a test waits for something before it calls it stuck: one bound per kind of wait, in seconds.

Each is a hang guard, not a speed check: far above what the wait takes on this 2-core machine loaded
about 4x (`make test`'s two workers beside two busy loops), so only a hang reaches it. A test that
measures something prints the figure; the figures themselves belong in benchmarks/.
"""

from __future__ import annotations

# A command or request that takes seconds when the machine is idle: an `llmstacks` command that does
# not synthesize (it reads files, talks to a local S3, uploads a few hundred MiB at most), a fresh
# Python, lint-imports, Terraform on a configuration without providers, a request to a local server.
COMMAND = 300
# A process that loads something big before it does anything: the AWS provider bindings (an
# `llmstacks synth`, ~15-25 s when idle), checkov, vLLM with torch.
SLOW_START = 600
# A command that synthesizes and then runs more, minutes when idle: the policy gate (checkov), a
# preview (the base revision's synth too), deploy-local (Terraform applies an environment to the emulator).
PIPELINE = 1800
# One request to a local Ray Serve app, or one call to a Ray actor (milliseconds when idle).
RAY_REQUEST = 300

# Ray's own liveness checks, for the local Ray clusters tests start (set before `ray.init`, so every
# Ray process inherits them). On a loaded machine the defaults call healthy processes dead: Serve
# gives a new proxy 5 s to say it is ready and a running one 10 s per health check, and restarts it
# after three misses, so the proxy never serves; Ray's own node health check fails after 10 s.
RAY_LIVENESS_ENV = {
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "120",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "120",
    "RAY_health_check_timeout_ms": "120000",
}
