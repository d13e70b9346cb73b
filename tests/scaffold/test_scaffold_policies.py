"""A new project's policies folder: an empty baseline in the kit's format, and a README whose
example checks really run under checkov, passing and failing what they say."""

from __future__ import annotations

import json
import re
import subprocess

import waits

from policies.gate import find_checkov, load_baseline
from stacks.scaffold import project_files

OUT = project_files(project_name="acme-llm", kit_version="0.1.0", checkov_version="3.3.30", environments={"dev": ""})
README = OUT["policies/README.md"]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
EXAMPLES = {kind: text for kind, text in BLOCK.findall(README)}

# Two node groups and two KMS keys: one of each meets the example checks, one does not.
STACK = {
    "resource": {
        "aws_eks_node_group": {
            name: {
                "cluster_name": "c",
                "node_group_name": name,
                "node_role_arn": "arn:aws:iam::111111111111:role/nodes",
                "subnet_ids": ["subnet-1"],
                "instance_types": types,
            }
            for name, types in (("approved", ["g6.2xlarge", "m7i.xlarge"]), ("unapproved", ["g6.2xlarge", "c5.large"]))
        },
        "aws_kms_key": {"patient": {"deletion_window_in_days": 30}, "hasty": {"deletion_window_in_days": 7}},
    }
}


def test_the_baseline_is_empty_and_in_the_kits_format(tmp_path):
    path = tmp_path / "baseline.yaml"
    path.write_text(OUT["policies/baseline.yaml"])
    assert load_baseline(path) == {}
    # The entry its header shows, uncommented, is one the gate accepts.
    example = "\n".join(
        line.removeprefix("# ")
        for line in OUT["policies/baseline.yaml"].splitlines()
        if line.startswith(("# - ", "#   "))
    )
    path.write_text(example + "\n")
    entries = load_baseline(path)
    assert list(entries) == ["CKV_AWS_18"] and entries["CKV_AWS_18"].resources == ("aws_s3_bucket.*",)


def test_the_checks_folder_exists_so_checkov_loads_python_checks():
    assert "policies/checks/__init__.py" in OUT and OUT["policies/checks/__init__.py"].startswith("#")


def test_the_readme_shows_one_python_and_one_yaml_check_with_ids_of_the_teams_own():
    assert set(EXAMPLES) == {"python", "yaml"}
    compile(EXAMPLES["python"], "acme_node_groups.py", "exec")
    ids = re.findall(r'id="(\w+)"', EXAMPLES["python"]) + re.findall(r"^  id: (\w+)$", EXAMPLES["yaml"], re.MULTILINE)
    assert ids == ["CKV_ACME_1", "CKV2_ACME_1"]
    assert all(re.fullmatch(r"CKV2?_[A-Z]+_\d+", i) and "_LLM_" not in i for i in ids)  # baseline-able, not the kit's
    assert re.search(r"^check = ApprovedInstanceFamilies\(\)$", EXAMPLES["python"], re.MULTILINE)  # registers itself


def test_the_readme_example_checks_run_under_checkov(tmp_path):
    checkov = find_checkov()  # make test installs it
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "__init__.py").write_text(OUT["policies/checks/__init__.py"])
    (checks / "acme_node_groups.py").write_text(EXAMPLES["python"])
    (checks / "acme_kms.yaml").write_text(EXAMPLES["yaml"])
    (tmp_path / "stacks" / "dev").mkdir(parents=True)
    (tmp_path / "stacks" / "dev" / "cdk.tf.json").write_text(json.dumps(STACK))
    result = subprocess.run(
        [
            checkov,
            "--directory",
            str(tmp_path / "stacks"),
            "--framework",
            "terraform_json",
            "--external-checks-dir",
            str(checks),
            "--check",
            "CKV_ACME_1,CKV2_ACME_1",
            "--skip-download",
            "--soft-fail",
            "--output",
            "json",
        ],
        check=False,
        capture_output=True,
        text=True,
        env={"BC_SKIP_MAPPING": "TRUE", "PATH": "/usr/bin:/bin"},
        timeout=waits.SLOW_START,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(result.stdout)["results"]
    outcome = {
        (r["check_id"], r["resource"].rsplit(".", 1)[-1]): kind == "passed_checks"
        for kind in ("passed_checks", "failed_checks")
        for r in results[kind]
    }
    assert outcome == {
        ("CKV_ACME_1", "approved"): True,
        ("CKV_ACME_1", "unapproved"): False,
        ("CKV2_ACME_1", "patient"): True,
        ("CKV2_ACME_1", "hasty"): False,
    }
