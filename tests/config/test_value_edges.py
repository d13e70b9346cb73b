"""Values at the edges of the patterns the environment file and the app contract share: the file
accepts exactly what the app's args accept, so nothing the file passes fails the app at synth."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import waits
import yaml
from pydantic import ValidationError

from app.spec import REGION_PATTERN, AppArgs, ModelSpec
from infra import rules
from stacks.config.loader import ENVIRONMENTS_DIR
from stacks.config.models import Model
from stacks.config.schema import Environment

LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")
DEV = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
SNAPSHOT = "0123456789abcdef"
BUCKET = "llm-dev-weights-111111111111"


def _accepts(model, data) -> bool:
    try:
        model.model_validate(data)
    except ValidationError:
        return False
    return True


def _model(**fields):
    """The file's side: a model of an environment file."""
    return {"id": "m", "node_pool": "gpu", "max_model_len": 4096, **fields}


def _spec(**fields):
    """The app's side: a model of the app's args."""
    return {"id": "m", "max_model_len": 4096, "snapshot": SNAPSHOT, **fields}


def _hf(**weights):
    return {"source": "huggingface", "hf_id": "org/model", **weights}


# (the field, the file's model with the value, the app's model with it, edge values, which of them are valid)
SHARED = [
    (
        "model id",
        lambda v: _model(id=v),
        lambda v: _spec(id=v),
        {
            "a": True,
            "a" * 63: True,
            "a" * 64: False,
            "": False,
            "m\n": False,
            "\nm": False,
            "-m": False,
            "m-": True,
            "_m": False,
            "m_": True,
            ".m": False,
            "9m": True,
            "m:a": False,
            "m/a": False,
            "m a": False,
            "mé": False,
        },
    ),
    (
        "hf id",
        lambda v: _model(weights=_hf(hf_id=v)),
        lambda v: _spec(weights="huggingface", snapshot=None, hf_id=v),
        {
            "org/model": True,
            "o/m": True,
            "org/model\n": False,
            "org/": False,
            "/model": False,
            "org/model/x": False,
            "-org/model": False,
            "org/-model": False,
            "org/model-": True,
            "org": False,
        },
    ),
    (
        "hf token secret",
        lambda v: _model(weights=_hf(hf_token_secret=v)),
        lambda v: _spec(weights="huggingface", snapshot=None, hf_id="org/model", hf_token_secret=v),
        {
            "s": True,
            "x" * 512: True,
            "x" * 513: False,
            "": False,
            "s\n": False,
            "a b": False,
            "/_+=.@-": True,
            "s!": False,
        },
    ),
    (
        "snapshot",
        lambda v: _model(weights={"snapshot": v}),
        lambda v: _spec(snapshot=v),
        {
            SNAPSHOT: True,
            SNAPSHOT + "\n": False,
            SNAPSHOT[:-1]: False,
            SNAPSHOT + "0": False,
            SNAPSHOT.upper(): False,
            "../other-model00": False,
        },
    ),
    (
        "server class",
        lambda v: _model(server_cls=v),
        lambda v: _spec(server_cls=v),
        {
            "m:C": True,
            "pkg.mod:Server": True,
            "_m:_C": True,
            "m:C\n": False,
            "m:": False,
            ":C": False,
            "9m:C": False,
            "m:9C": False,
            "m.C": False,
            "m:C.D": False,
        },
    ),
]


@pytest.mark.parametrize(
    ("to_file", "to_app", "value", "valid"),
    [(f, a, v, ok) for _, f, a, values in SHARED for v, ok in values.items()],
    ids=[f"{name}-{v[:20]!r}" for name, _, _, values in SHARED for v in values],
)
def test_the_file_and_the_app_agree_on_each_shared_pattern_at_its_edges(to_file, to_app, value, valid):
    assert _accepts(Model, to_file(value)) is valid
    assert _accepts(ModelSpec, to_app(value)) is valid


@pytest.mark.parametrize(("value", "valid"), list(SHARED[0][3].items()), ids=[repr(v[:20]) for v in SHARED[0][3]])
def test_the_monitoring_reads_the_model_id_pattern_as_the_app_does(value, valid):
    from infra.platform.observability import ModelObjective

    if valid:
        assert ModelObjective(value).id == value
    else:
        with pytest.raises(ValueError, match="must match"):
            ModelObjective(value)


@pytest.mark.parametrize(("value", "valid"), list(SHARED[3][3].items()), ids=[repr(v[:20]) for v in SHARED[3][3]])
def test_a_snapshot_in_a_key_or_an_argument_is_read_as_the_app_does(tmp_path: Path, value, valid):
    from stacks.cli.weights import Target, _snapshot_arg
    from stacks.errors import ConfigError
    from stacks.publishing.manifests import snapshot_of

    assert (snapshot_of("m", f"models/m/{value}/config.json") == value) is valid
    target = Target(env=None, source=tmp_path / "dev.yaml", bucket=BUCKET, model=None, index=None)
    if valid:
        assert _snapshot_arg(target, value) == value
    else:
        with pytest.raises(ConfigError, match="is not a snapshot id"):
            _snapshot_arg(target, value)


@pytest.mark.parametrize(
    ("value", "resource"),
    [
        ("${aws_s3_bucket.weights.arn}", ("aws_s3_bucket", "weights")),
        ("${aws_s3_bucket.weights.arn}\n", None),
        (" ${aws_s3_bucket.weights.arn}", None),
        ("${aws_s3_bucket.weights.arn}/*", None),
    ],
)
def test_the_policy_checks_read_a_reference_whole(value, resource):
    from policies.checks.llm_document import reference

    assert reference(value) == resource


def _args(**fields):
    return {"region": "us-west-2", "weights_bucket": BUCKET, "lora_bucket": BUCKET, "models": [_spec()], **fields}


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("us-west-2", True),
        ("us-gov-west-1", True),
        ("cn-northwest-1", True),
        ("us-west-2\n", False),
        ("us-west-", False),
        ("us-west-22", False),
        ("US-west-2", False),
        ("u-west-2", False),
        ("us-west-٢", False),
        ("eu_west-1", False),
    ],
)
def test_the_region_rule_and_the_app_agree_at_the_edges(value, valid):
    assert (rules.region_problem(value) is None) is valid
    assert _accepts(AppArgs, _args(region=value)) is valid


def test_every_region_the_file_accepts_the_app_accepts():
    for region in rules.REGIONS:
        assert rules.known_region_problem(region) is None
        assert _accepts(AppArgs, _args(region=region)), region
    assert REGION_PATTERN.startswith("^") and REGION_PATTERN.endswith("$")


# (name, the bucket rule's verdict, the app's): S3's rule refuses more than the app's pattern, never less.
@pytest.mark.parametrize(
    ("name", "rule_valid", "app_valid"),
    [
        ("abc", True, True),
        ("a" * 63, True, True),
        ("0ab", True, True),
        ("ab9", True, True),
        ("a.b-c", True, True),
        ("a" * 64, False, False),
        ("ab", False, False),
        ("abc\n", False, False),
        ("-abc", False, False),
        ("abc-", False, False),
        (".abc", False, False),
        ("abc.", False, False),
        ("Abc", False, False),
        ("a_b", False, False),
        ("a..b", False, True),
        ("192.168.1.1", False, True),
        ("xn--abc", False, True),
        ("abc-s3alias", False, True),
    ],
)
def test_every_bucket_name_the_file_accepts_the_app_accepts(name, rule_valid, app_valid):
    assert (rules.bucket_name_problem(name) is None) is rule_valid
    assert _accepts(AppArgs, _args(weights_bucket=name, lora_bucket=name)) is app_valid


@pytest.mark.parametrize(
    ("tags", "valid"),
    [
        ({"team": "ml"}, True),
        ({"k" * 128: "v" * 256}, True),
        ({"cost center": "a.b/c=d+e-f@g:h"}, True),
        ({"k" * 129: "v"}, False),
        ({"k": "v" * 257}, False),
        ({"": "v"}, False),
        ({"team\n": "ml"}, False),
        ({"team": "ml\n"}, False),
        ({"team": "m;l"}, False),
        ({"aws:team": "ml"}, False),
        ({"AWS:team": "ml"}, False),
        ({"Aws:team": "ml"}, False),
        ({"team:aws": "ml"}, True),
    ],
)
def test_tags_in_aws_syntax_and_not_in_the_reserved_prefix(tags, valid):
    assert _accepts(Environment, {**copy.deepcopy(DEV), "tags": tags}) is valid


def test_a_reserved_tag_prefix_is_said_in_the_users_terms():
    with pytest.raises(ValidationError) as caught:
        Environment.model_validate({**copy.deepcopy(DEV), "tags": {"aws:team": "ml"}})
    assert "'aws:team' starts with 'aws:', which AWS reserves for its own tags" in str(caught.value)


# Values the app contract refused during synth (a traceback, exit status 1) while the file accepted them.
EDGES = [
    ("model-id-trailing-newline", ("models", 0, "id"), "qwen2.5-7b-instruct\n", "models[0].id", "is not valid"),
    (
        "snapshot-trailing-newline",
        ("models", 0, "weights", "snapshot"),
        "539a425e484aa931\n",
        "models[0].weights.snapshot",
        "is not valid",
    ),
    ("model-id-too-long", ("models", 0, "id"), "q" * 64, "models[0].id", "1-63 characters"),
]


@pytest.mark.parametrize(("where", "value", "field", "needle"), [c[1:] for c in EDGES], ids=[c[0] for c in EDGES])
def test_an_edge_value_is_one_line_exit_2_not_a_traceback(tmp_path: Path, where, value, field, needle):
    data = copy.deepcopy(DEV)
    *parents, last = where
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    config = tmp_path / "dev.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    outdir = tmp_path / "out"

    result = subprocess.run(
        [LLMSTACKS, "synth", "--config", str(config), "--outdir", str(outdir)],
        capture_output=True,
        text=True,
        timeout=waits.COMMAND,
    )

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"error: {config}: {field}: "), lines[0]
    assert needle in lines[0]
    assert result.stdout == "" and not outdir.exists()
