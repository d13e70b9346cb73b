"""The policy gate: checkov (its own venv, offline) with the built-in checks and ours, plus the
spec policies. Each custom policy meets a deliberately broken stack it must catch."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import resources
from policies.gate import BASELINE_FILE, custom_check_ids, findings_from, run_checkov, run_gate
from policies.specs import POLICIES, load_specs
from stacks.cli import main
from stacks.errors import ToolError

ENVS = ["dev", "staging", "prod"]


@pytest.fixture(scope="session")
def gate(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gate") / "cdktf.out"
    shutil.copytree(synth_dir, out)
    return run_gate(out, ENVS)


def test_shipped_environments_pass_the_whole_gate(gate):
    assert gate.ok, gate.summary()
    assert {f.environment for f in gate.findings} == {*ENVS, *(f"{e}-platform" for e in ENVS)}
    assert {f.check for f in gate.findings if f.baselined} == {"CKV_AWS_144", "CKV_AWS_145"}
    # The SSE-S3 exception covers the access-log bucket only; every data bucket passes CKV_AWS_18 (logging).
    assert all(
        f.resource.startswith("aws_s3_bucket.access-logs_bucket_")
        for f in gate.findings
        if f.check == "CKV_AWS_145" and f.baselined
    )
    assert all(f.passed for f in gate.findings if f.check == "CKV_AWS_18")
    assert not gate.missing_checks and not gate.stale_baseline
    assert sum(f.passed for f in gate.findings) > 400  # the built-in checks ran, not only ours
    for env in ENVS:
        assert not gate.spec_problems[env] and gate.spec_passed[env] == len(POLICIES)
    sarif = json.loads(gate.sarif.read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["tool"]["driver"]["name"] == "Checkov"
    assert json.loads(gate.json.read_text())["passed"] is True


def test_the_baseline_is_short_and_every_entry_says_why():
    entries = yaml.safe_load(BASELINE_FILE.read_text())
    assert len(entries) <= 3
    assert all(len(e["reason"]) >= 100 for e in entries)


def test_there_are_at_least_eight_custom_policies_and_each_runs_on_every_stack(gate):
    ids = custom_check_ids()
    assert len(ids) >= 8
    for check in ids:
        assert {f.environment for f in gate.findings if f.check == check} >= set(ENVS), check


# ------------------------------------------------------------------ broken stacks


def _of(doc: dict, kind: str) -> dict:
    return resources(doc, kind)


def _role_policies(doc: dict, identity: str) -> list[dict]:
    roles = {
        name
        for name, role in _of(doc, "aws_iam_role").items()
        if role.get("tags", {}).get("llm-serving-stacks:identity") == identity
    }
    return [p for p in _of(doc, "aws_iam_role_policy").values() if p["role"].split(".")[1] in roles]


def _edit_policy(policy: dict, change) -> None:
    document = json.loads(policy["policy"])
    change(document["Statement"])
    policy["policy"] = json.dumps(document)


def _first(doc: dict, kind: str, where=lambda r: True) -> dict:
    return next(r for r in _of(doc, kind).values() if where(r))


def _gpu_group(doc: dict) -> dict:
    return _first(doc, "aws_eks_node_group", lambda g: "NVIDIA" in g.get("ami_type", ""))


def _template_of(doc: dict, group: dict) -> dict:
    return _of(doc, "aws_launch_template")[group["launch_template"]["id"].split(".")[1]]


def _serving_weights_policy(doc: dict) -> dict:
    return next(p for p in _role_policies(doc, "serving") if "weights" in p["name"])


def serving_may_write(doc):
    _edit_policy(_serving_weights_policy(doc), lambda s: s[0]["Action"].append("s3:PutObject"))


def serving_may_delete_by_wildcard(doc):
    _edit_policy(_serving_weights_policy(doc), lambda s: s[0].update(Action=["s3:Get*", "s3:Delete*"]))


def serving_writes_storage_unscoped_key(doc):
    """The storage exception holds only for KMS use bound to the storage bucket."""
    policy = next(p for p in _role_policies(doc, "serving") if "write-anyscale-storage" in p["name"])
    _edit_policy(policy, lambda s: [x.pop("Condition", None) for x in s if x["Action"][0].startswith("kms:")])


def writer_has_service_wildcard(doc):
    _edit_policy(_role_policies(doc, "artifact-writer")[0], lambda s: s[0].update(Action=["s3:*"]))


def writer_on_any_resource(doc):
    _edit_policy(_role_policies(doc, "artifact-writer")[0], lambda s: s[0].update(Resource="*"))


def policy_from_a_data_source(doc):
    _role_policies(doc, "artifact-writer")[0]["policy"] = "${data.aws_iam_policy_document.any.json}"


def _weights_encryption(doc: dict) -> dict:
    return _first(doc, "aws_s3_bucket_server_side_encryption_configuration", lambda c: "weights" in c["bucket"])


def sse_s3_only(doc):
    _weights_encryption(doc)["rule"][0]["apply_server_side_encryption_by_default"] = {"sse_algorithm": "AES256"}


def sse_s3_on_a_data_bucket_tagged_as_logs(doc):
    sse_s3_only(doc)
    bucket = _first(doc, "aws_s3_bucket", lambda b: "weights" in b["bucket"])
    bucket["tags"] = {**bucket.get("tags", {}), "llm-serving-stacks:purpose": "access-logs"}


def no_bucket_key(doc):
    _weights_encryption(doc)["rule"][0]["bucket_key_enabled"] = False


def unversioned(doc):
    name = next(iter(_of(doc, "aws_s3_bucket_versioning")))
    del doc["resource"]["aws_s3_bucket_versioning"][name]


def versioning_suspended(doc):
    next(iter(_of(doc, "aws_s3_bucket_versioning").values()))["versioning_configuration"]["status"] = "Suspended"


def public_policies_allowed(doc):
    next(iter(_of(doc, "aws_s3_bucket_public_access_block").values()))["restrict_public_buckets"] = False


def plain_http_allowed(doc):
    policy = next(iter(_of(doc, "aws_s3_bucket_policy").values()))
    _edit_policy(
        policy, lambda s: s.__delitem__(next(i for i, x in enumerate(s) if x["Sid"] == "DenyInsecureTransport"))
    )


def acls_enabled(doc):
    next(iter(_of(doc, "aws_s3_bucket_ownership_controls").values()))["rule"]["object_ownership"] = "ObjectWriter"


def uploads_never_aborted(doc):
    lifecycle = next(iter(_of(doc, "aws_s3_bucket_lifecycle_configuration").values()))
    lifecycle["rule"] = [r for r in lifecycle["rule"] if "abort_incomplete_multipart_upload" not in r]


def prod_buckets_destroyable(doc):
    for bucket in _of(doc, "aws_s3_bucket").values():
        bucket.pop("lifecycle", None)


def gpu_group_on_a_standard_ami(doc):
    _gpu_group(doc)["ami_type"] = "AL2023_x86_64_STANDARD"


def gpu_group_untainted(doc):
    group = _gpu_group(doc)
    group["taint"] = [t for t in group["taint"] if t["key"] != "nvidia.com/gpu"]


def imds_v1_allowed(doc):
    _template_of(doc, _gpu_group(doc))["metadata_options"]["http_tokens"] = "optional"


def unencrypted_volume(doc):
    _template_of(doc, _gpu_group(doc))["block_device_mappings"][-1]["ebs"]["encrypted"] = "false"


def no_launch_template(doc):
    del _gpu_group(doc)["launch_template"]


def any_account(doc):
    del doc["provider"]["aws"][0]["allowed_account_ids"]


def plaintext_state(doc):
    doc["terraform"]["backend"]["s3"]["encrypt"] = False


def unlocked_state(doc):
    del doc["terraform"]["backend"]["s3"]["use_lockfile"]


# fixture name: (the check that must catch it, the shipped environment it starts from, the break)
BROKEN = {
    "serving-may-write": ("CKV_LLM_1", "dev", serving_may_write),
    "serving-storage-key-unbound": ("CKV_LLM_1", "dev", serving_writes_storage_unscoped_key),
    "serving-may-delete": ("CKV_LLM_1", "dev", serving_may_delete_by_wildcard),
    "writer-service-wildcard": ("CKV_LLM_2", "dev", writer_has_service_wildcard),
    "writer-any-resource": ("CKV_LLM_2", "dev", writer_on_any_resource),
    "policy-not-literal": ("CKV_LLM_2", "dev", policy_from_a_data_source),
    "sse-s3": ("CKV_LLM_3", "dev", sse_s3_only),
    "no-bucket-key": ("CKV_LLM_3", "dev", no_bucket_key),
    "data-bucket-tagged-as-logs": ("CKV_LLM_3", "dev", sse_s3_on_a_data_bucket_tagged_as_logs),
    "unversioned": ("CKV_LLM_4", "dev", unversioned),
    "versioning-suspended": ("CKV_LLM_4", "dev", versioning_suspended),
    "public-policy": ("CKV_LLM_5", "dev", public_policies_allowed),
    "plain-http": ("CKV_LLM_6", "dev", plain_http_allowed),
    "acls": ("CKV_LLM_7", "dev", acls_enabled),
    "uploads-kept": ("CKV_LLM_8", "dev", uploads_never_aborted),
    "gpu-standard-ami": ("CKV_LLM_9", "dev", gpu_group_on_a_standard_ami),
    "gpu-untainted": ("CKV_LLM_9", "prod", gpu_group_untainted),
    "imds-v1": ("CKV_LLM_10", "dev", imds_v1_allowed),
    "unencrypted-volume": ("CKV_LLM_10", "prod", unencrypted_volume),
    "no-launch-template": ("CKV_LLM_10", "staging", no_launch_template),
    "prod-destroyable": ("CKV_LLM_11", "prod", prod_buckets_destroyable),
    "any-account": ("CKV_LLM_12", "dev", any_account),
    "plaintext-state": ("CKV_LLM_13", "dev", plaintext_state),
    "unlocked-state": ("CKV_LLM_13", "staging", unlocked_state),
}


@pytest.fixture(scope="session")
def broken_findings(synthesized, tmp_path_factory):
    """One checkov run over every broken stack (each in a directory named for its break)."""
    root = tmp_path_factory.mktemp("broken")
    for name, (_, env, breaks) in BROKEN.items():
        document = copy.deepcopy(synthesized[env])
        breaks(document)
        (root / "stacks" / name).mkdir(parents=True)
        (root / "stacks" / name / "cdk.tf.json").write_text(json.dumps(document))
    return findings_from(run_checkov(root / "stacks", root / "report"), {}, root / "stacks")


def test_every_custom_policy_has_a_broken_stack():
    assert {check for check, _, _ in BROKEN.values()} == set(custom_check_ids())


@pytest.mark.parametrize("name", BROKEN)
def test_each_custom_policy_catches_its_broken_stack_and_passes_the_shipped_ones(broken_findings, gate, name):
    check, env, _ = BROKEN[name]
    failed = {f.check for f in broken_findings if f.environment == name and not f.passed}
    assert all(not f.resource.startswith("resource.") for f in broken_findings if f.environment == name)
    assert check in failed, f"{check} did not catch {name}"
    shipped = [f for f in gate.findings if f.check == check and f.environment == env]
    assert shipped and all(f.passed for f in shipped)


def test_a_gpu_pool_check_ignores_cpu_pools(broken_findings):
    # The system (CPU) pool of the broken "gpu-standard-ami" stack still passes CKV_LLM_9.
    results = [f for f in broken_findings if f.environment == "gpu-standard-ami" and f.check == "CKV_LLM_9"]
    assert sorted(f.passed for f in results) == [False, True]


# ------------------------------------------------------------------ spec policies


@pytest.fixture
def dev_specs(synth_dir):
    return load_specs(synth_dir / "specs" / "dev")


def _policy(policy_id: str):
    return next(p for p in POLICIES if p.id == policy_id).check


@pytest.mark.parametrize(
    ("policy", "change", "needle"),
    [
        (
            "LLM_SPEC_1",
            lambda d: d["anyscale-service.yaml"]["env_vars"].update(HF_TOKEN="anything"),
            "env_vars.HF_TOKEN: HF_TOKEN holds a credential",
        ),
        (
            "LLM_SPEC_1",
            lambda d: d["serve-config.yaml"]["applications"][0]["args"].update(note="hf_" + "a" * 34),
            "holds a Hugging Face token",
        ),
        (
            "LLM_SPEC_1",
            lambda d: (
                d["rayservice.yaml"]["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
                .setdefault("env", [])
                .append({"name": "AWS_SECRET_ACCESS_KEY", "value": "x" * 40})
            ),
            "AWS_SECRET_ACCESS_KEY holds a credential",
        ),
        (
            "LLM_SPEC_1",
            lambda d: d["anyscale-service.yaml"]["env_vars"].update(KEY_ID="AKIA" + "A" * 16),
            "holds an AWS access key id",
        ),
        (
            "LLM_SPEC_2",
            lambda d: d["anyscale-service.yaml"].update(query_auth_token_enabled=False),
            "query_auth_token_enabled must be true",
        ),
        (
            "LLM_SPEC_2",
            lambda d: d["anyscale-service.yaml"].pop("query_auth_token_enabled"),
            "query_auth_token_enabled must be true",
        ),
        (
            "LLM_SPEC_2",
            lambda d: d["rayservice.yaml"]["spec"].update(serveService={"spec": {"type": "LoadBalancer"}}),
            "LoadBalancer exposes",
        ),
        (
            "LLM_SPEC_3",
            lambda d: d["serve-config.yaml"]["applications"][0]["args"]["models"][0].update(accelerator_type=None),
            "has no accelerator_type",
        ),
        (
            "LLM_SPEC_3",
            lambda d: d["anyscale-service.yaml"]["compute_config"].update(worker_nodes=[]),
            "anyscale-service.yaml: no worker group with L4",
        ),
        (
            "LLM_SPEC_3",
            lambda d: d["rayservice.yaml"]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"][
                "containers"
            ][0]["resources"]["limits"].pop("nvidia.com/gpu"),
            "rayservice.yaml: no worker group requesting L4",
        ),
    ],
)
def test_spec_policies_catch_what_they_are_for(dev_specs, policy, change, needle):
    check = _policy(policy)
    assert check(dev_specs) == []
    change(dev_specs)
    problems = check(dev_specs)
    assert any(needle in p for p in problems), problems


def test_secret_names_are_fine_where_values_are_not(dev_specs):
    dev_specs["anyscale-service.yaml"]["env_vars"]["LLMSTACKS_HF_TOKEN_SECRET"] = "llm-dev/hf-token"
    assert _policy("LLM_SPEC_1")(dev_specs) == []


# ------------------------------------------------------------------ the command


def test_check_command_reports_per_environment_and_writes_sarif(tmp_path, capsys):
    out = tmp_path / "cdktf.out"
    assert main(["check", "--env", "dev", "--outdir", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    dev = next(line for line in lines if line.startswith("dev: "))
    assert " 0 failed, 5 baselined (CKV_AWS_144, CKV_AWS_145); specs: 3 passed, 0 failed" in dev
    assert any(line.startswith("dev-platform: ") and " 0 failed" in line for line in lines)
    assert lines[-1] == "policy gate: passed"
    assert (out / "policy" / "results_sarif.sarif").is_file() and (out / "policy" / "report.json").is_file()


def test_a_failure_outside_the_baseline_fails_the_gate_with_exit_1(tmp_path, capsys):
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(
        yaml.safe_dump(
            [
                {"check": "CKV_AWS_144", "reason": "replication doubles storage of big weights"},
                {"check": "CKV_AWS_999", "reason": "an entry that matches nothing at all"},
            ]
        )
    )
    assert main(["check", "--env", "dev", "--outdir", str(tmp_path / "out"), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "dev: " in out and " 1 failed, 4 baselined (CKV_AWS_144)" in out
    assert "  FAILED CKV_AWS_145 aws_s3_bucket.access-logs_bucket_" in out
    assert "note: baseline entry CKV_AWS_999 matches no failure any more" in out
    assert out.strip().endswith("policy gate: FAILED")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ([{"check": "CKV_AWS_18"}], "[0].reason: Field required"),
        ([{"check": "CKV_AWS_18", "reason": "because"}], "[0].reason: give the reason this check is skipped"),
        ([{"check": "CKV_AWS_18", "reason": "a long enough reason here", "until": "never"}], "[0].until: unknown key"),
        (
            [{"check": "skip-everything", "reason": "a long enough reason here"}],
            "[0].check: String should match pattern",
        ),
        ([{"check": "CKV_AWS_18", "reason": "a long enough reason here"}] * 2, "[1].check: CKV_AWS_18 is listed twice"),
        ("{not: [yaml", "not valid YAML"),
    ],
)
def test_a_bad_baseline_is_one_line_exit_2_before_anything_runs(tmp_path, capsys, content, needle):
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    out = tmp_path / "out"
    assert main(["check", "--env", "dev", "--outdir", str(out), "--baseline", str(baseline)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {baseline}: ") and needle in err[0], err
    assert not out.exists()


def test_a_missing_checkov_is_one_line_exit_3(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLMSTACKS_CHECKOV", str(tmp_path / "no-checkov"))
    assert main(["check", "--env", "dev", "--outdir", str(tmp_path / "out")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: LLMSTACKS_CHECKOV: {tmp_path / 'no-checkov'} is not an executable checkov"]


def test_checkov_is_pinned_in_one_place():
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    from policies.gate import CHECKOV_VERSION

    assert f"CHECKOV_VERSION := {CHECKOV_VERSION}" in makefile


def test_a_custom_check_checkov_cannot_load_fails_the_gate(synth_dir, tmp_path, monkeypatch):
    # checkov only logs a check module it fails to import; the gate must not pass without it.
    import policies.gate as gate_module

    checks = tmp_path / "checks"
    shutil.copytree(gate_module.CHECKS_DIR, checks, ignore=shutil.ignore_patterns("__pycache__"))
    (checks / "llm_broken.py").write_text('ID = dict(id="CKV_LLM_99")\nraise ImportError("a typo in a check")\n')
    monkeypatch.setattr(gate_module, "CHECKS_DIR", checks)
    out = tmp_path / "cdktf.out"
    shutil.copytree(synth_dir, out)
    report = run_gate(out, ["dev"])
    assert report.missing_checks == ["CKV_LLM_99"] and not report.ok
    assert "error: custom check CKV_LLM_99 did not run" in report.summary()


def test_no_checkov_anywhere_is_one_line_exit_3(tmp_path, capsys, monkeypatch):
    import policies.gate as gate_module

    monkeypatch.delenv("LLMSTACKS_CHECKOV", raising=False)
    monkeypatch.setattr(gate_module, "LOCAL_CHECKOV", tmp_path / "none" / "checkov")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["check", "--env", "dev", "--outdir", str(tmp_path / "out")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "checkov: not installed: `make check` installs checkov==3.3.30 into .venv-checkov" in err[0]
    )


def test_a_checkov_that_crashes_is_reported_not_taken_for_a_pass(synth_dir, tmp_path):
    fake = tmp_path / "checkov"
    fake.write_text("#!/bin/sh\necho 'boom: no such framework' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(ToolError, match=r"checkov failed \(exit 3\): boom: no such framework"):
        run_gate(synth_dir, ["dev"], tmp_path / "report", checkov=str(fake))


def test_a_crashing_checkov_is_one_line_exit_3_through_the_command(tmp_path, capsys, monkeypatch):
    fake = tmp_path / "checkov"
    fake.write_text("#!/bin/sh\necho 'Traceback (most recent call last):' >&2\necho 'KeyError: boom' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("LLMSTACKS_CHECKOV", str(fake))
    assert main(["check", "--env", "dev", "--outdir", str(tmp_path / "out")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: checkov failed (exit 1): KeyError: boom"]


def test_a_baseline_entry_can_be_limited_to_some_resources(tmp_path, capsys):
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(
        yaml.safe_dump(
            [
                {
                    "check": "CKV_AWS_144",
                    "reason": "replication doubles storage of big weights",
                    "resources": ["aws_s3_bucket.weights_*"],
                },
                {
                    "check": "CKV_AWS_145",
                    "reason": "log delivery needs SSE-S3 on the log bucket",
                    "resources": ["aws_s3_bucket.access-logs_*"],
                },
            ]
        )
    )
    assert main(["check", "--env", "dev", "--outdir", str(tmp_path / "out"), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "  FAILED CKV_AWS_144 aws_s3_bucket.lora_bucket_" in out
    assert "  FAILED CKV_AWS_144 aws_s3_bucket.anyscale-storage_bucket_" in out
    assert "  FAILED CKV_AWS_144 aws_s3_bucket.weights_bucket_" not in out
    assert " 3 failed, 2 baselined (CKV_AWS_144, CKV_AWS_145)" in out


def test_the_kits_and_the_teams_baselines_combine(tmp_path):
    """A check both name is skipped where either skips it; a stale entry names its own file."""
    from policies.gate import load_baselines

    team = tmp_path / "baseline.yaml"
    team.write_text(
        yaml.safe_dump(
            [
                {
                    "check": "CKV_AWS_145",
                    "reason": "our own log bucket also takes S3 server access logs",
                    "resources": ["aws_s3_bucket.team_logs"],
                },
                {"check": "CKV_AWS_144", "reason": "no replication anywhere in this organization", "resources": []},
                {"check": "CKV_ACME_1", "reason": "dev runs on spot capacity to save cost"},
            ]
        )
    )
    merged, sources = load_baselines([BASELINE_FILE, team, team])  # a file named twice is read once
    assert merged["CKV_AWS_145"].covers("aws_s3_bucket.access-logs_bucket_1") and merged["CKV_AWS_145"].covers(
        "aws_s3_bucket.team_logs"
    )
    assert not merged["CKV_AWS_145"].covers("aws_s3_bucket.weights_bucket_1")
    assert merged["CKV_AWS_144"].covers("aws_s3_bucket.anything")  # no resources: every resource
    assert sources == {"CKV_AWS_144": BASELINE_FILE, "CKV_AWS_145": BASELINE_FILE, "CKV_ACME_1": team.resolve()}


def test_a_projects_own_checkov_is_found_in_its_folder(tmp_path, monkeypatch):
    from policies.gate import find_checkov

    monkeypatch.delenv("LLMSTACKS_CHECKOV", raising=False)
    own = tmp_path / ".venv-checkov" / "bin" / "checkov"
    own.parent.mkdir(parents=True)
    own.write_text("#!/bin/sh\n")
    own.chmod(0o755)
    assert find_checkov(tmp_path) == str(own)
    assert find_checkov(None) != str(own)  # outside a project: the kit repository's, or PATH's
