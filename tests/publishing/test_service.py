"""`llmstacks publish|status|rollback`: the real Anyscale SDK code path, against the SDK's own fake client."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from anyscale._private.anyscale_client.fake_anyscale_client import OPENAPI_NO_VALIDATION, FakeAnyscaleClient
from anyscale.client.openapi_client.models import Cloud
from anyscale.service._private.service_sdk import PrivateServiceSDK
from anyscale.service.models import ServiceConfig

import stacks.publishing.service
from stacks.cli import main
from stacks.config.loader import ENVIRONMENTS_DIR
from stacks.specs.app_args import app_args


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("ANYSCALE_CLI_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def fake(monkeypatch):
    """The SDK's fake client in place of the Anyscale API; everything above it is the real SDK."""
    client = FakeAnyscaleClient()
    for cloud in ("llm-dev", "llm-prod"):  # the environments' clouds
        client.add_cloud(Cloud(id=f"cld_{cloud}", name=cloud, local_vars_configuration=OPENAPI_NO_VALIDATION))
    client.register_project_by_name("llm-serving", cloud="llm-prod")  # prod's project, in prod's cloud
    monkeypatch.setattr(stacks.publishing.service, "anyscale_sdk", lambda: PrivateServiceSDK(client=client))
    return client


def test_dry_run_needs_no_credentials_and_prints_a_valid_service_config(no_credentials, capsys):
    assert main(["publish", "--env", "dev", "--dry-run", "--canary-percent", "10"]) == 0
    out = capsys.readouterr().out
    header, _, body = out.partition("\n")
    assert header == "would deploy Anyscale service 'llm-dev' (canary_percent=10):"
    config = ServiceConfig(**yaml.safe_load(body))
    assert config.name == "llm-dev" and config.query_auth_token_enabled


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_dry_run_works_for_every_environment_without_writing(no_credentials, tmp_path, capsys, env):
    assert main(["publish", "--env", env, "--dry-run", "--outdir", str(tmp_path / "out")]) == 0
    header, _, body = capsys.readouterr().out.partition("\n")
    assert header.startswith("would " if env != "staging" else "nothing to publish for the kuberay target")
    assert yaml.safe_load(body)["applications" if env != "staging" else "kind"]
    assert not (tmp_path / "out").exists()


def test_without_a_token_publish_is_one_line_and_exit_2(no_credentials, capsys):
    assert main(["publish", "--env", "prod"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "ANYSCALE_CLI_TOKEN: not set" in err[0]


def test_deploy_sends_the_rendered_service(fake, shipped_plans, capsys):
    assert main(["publish", "--env", "prod"]) == 0
    assert main(["publish", "--env", "prod", "--canary-percent", "10", "--max-surge-percent", "50"]) == 0
    assert "deployed Anyscale service 'llm-prod'" in capsys.readouterr().out
    sent = fake._rolled_out_model
    assert (sent.name, sent.canary_percent, sent.max_surge_percent) == ("llm-prod", 10, 50)
    (application,) = sent.ray_serve_config["applications"]
    assert application["import_path"] == "app.serving:build_app"
    assert application["args"] == app_args(shipped_plans["prod"]).model_dump(mode="json", exclude_none=True)
    compute = fake.get_compute_config(sent.compute_config_id).config.to_dict()
    (deployment,) = compute["deployment_configs"]
    assert deployment["head_node_type"]["instance_type"] == "m7i.2xlarge"
    workers = {w["name"]: w for w in deployment["worker_node_types"]}
    assert set(workers) == {"l40s", "l40s-x4"}
    assert (
        workers["l40s-x4"]["instance_type"],
        workers["l40s-x4"]["min_workers"],
        workers["l40s-x4"]["max_workers"],
    ) == ("g6e.12xlarge", 1, 3)
    selector = workers["l40s"]["advanced_configurations_json"]["spec"]["nodeSelector"]
    assert selector == {"llm-serving-stacks/node-pool": "l40s", "nvidia.com/gpu.product": "NVIDIA-L40S"}


def test_in_place_update(fake, capsys):
    assert main(["publish", "--env", "dev"]) == 0
    assert main(["publish", "--env", "dev", "--in-place"]) == 0
    assert fake._rolled_out_model.rollout_strategy == "IN_PLACE"


def test_status_and_rollback(fake, capsys):
    assert main(["publish", "--env", "dev"]) == 0
    capsys.readouterr()
    assert main(["status", "--env", "dev"]) == 0
    status = capsys.readouterr().out
    assert status.startswith("service llm-dev: ") and "primary version" in status
    assert main(["rollback", "--env", "dev", "--max-surge-percent", "25"]) == 0
    service_id, surge = fake.rolled_back_service
    assert service_id.startswith("service-id-") and surge == 25


def test_kuberay_publish_points_at_the_platform_stack_and_writes_nothing(tmp_path, no_credentials, capsys):
    assert main(["publish", "--env", "staging", "--outdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "nothing to publish for the kuberay target; the staging-platform stack applies the RayService"
    )
    assert "cdktf deploy staging-platform" in out
    assert list(tmp_path.iterdir()) == []


def test_status_and_rollback_are_for_the_anyscale_target(capsys):
    assert main(["rollback", "--env", "staging"]) == 2
    assert "serving.target: 'kuberay': status and rollback are for the anyscale target" in capsys.readouterr().err


def test_percentages_are_checked(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["publish", "--env", "dev", "--canary-percent", "150"])
    assert exit_.value.code == 2
    assert "150 is not a percentage" in capsys.readouterr().err


def test_an_unknown_cloud_is_one_line_naming_the_field(fake, capsys, tmp_path):
    config = tmp_path / "dev.yaml"
    config.write_text(Path(ENVIRONMENTS_DIR / "dev.yaml").read_text().replace("cloud: llm-dev", "cloud: no-such-cloud"))
    assert main(["publish", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {config}: serving.anyscale.cloud: Anyscale says: Cloud with name 'no-such-cloud' not found."
    ]


def test_deploy_uploads_exactly_the_app_package_the_zip_holds(fake, monkeypatch, capsys):
    """The SDK zips the py_modules folder itself: it gets a folder holding exactly the published
    zip's files (no __pycache__ or strays from the installed package), removed afterwards."""
    import io
    import zipfile

    from anyscale.utils.runtime_env import zip_local_dir

    from stacks.specs.app_package import APP_DIR, app_zip

    with zipfile.ZipFile(io.BytesIO(app_zip())) as ours:  # the zip synth published (made once per process)
        expected = {n: ours.read(n) for n in ours.namelist()}
    stray = APP_DIR / "stray-notes.txt"  # appears in the installed package after the zip was made
    stray.write_bytes(b"not ours")
    uploaded = {}
    real_upload = fake.upload_local_dir_to_cloud_storage

    def upload(local_dir, **kwargs):
        with zip_local_dir(local_dir, excludes=kwargs.get("excludes")) as (_, data, _):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                uploaded[local_dir] = {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")}
        return real_upload(local_dir, **kwargs)

    monkeypatch.setattr(fake, "upload_local_dir_to_cloud_storage", upload)
    try:
        assert main(["publish", "--env", "prod"]) == 0
    finally:
        stray.unlink()
    ((local_dir, files),) = uploaded.items()
    assert files == expected and "app/serving.py" in files
    assert Path(local_dir).name == "app" and Path(local_dir).resolve() != APP_DIR and not Path(local_dir).exists()
