"""`llmstacks preview`: what this change does to every environment, against a git revision."""

from __future__ import annotations

import argparse
from pathlib import Path

from stacks.cli.arguments import ENV_DIR_HELP
from stacks.cli.status_codes import CHECK_FAILED, SUCCESS


def register(commands) -> None:
    preview = commands.add_parser(
        "preview", help="what this change does to every environment, offline (for pull requests)"
    )
    preview.add_argument(
        "--base", required=True, metavar="REF", help="the git revision to compare with (e.g. origin/main)"
    )
    preview.add_argument("--format", choices=("markdown", "json"), default="markdown")
    preview.add_argument("--output", metavar="FILE", help="write the preview here instead of standard output")
    preview.add_argument("--env-dir", metavar="DIR", help=ENV_DIR_HELP)
    preview.add_argument("--no-policy", action="store_true", help="skip the policy gate (faster; no checkov needed)")
    preview.add_argument(
        "--snapshot-details",
        action="store_true",
        help="read each pinned weights snapshot's size and date from the weights bucket "
        "(needs read access, e.g. the plan role; the rest stays offline)",
    )
    preview.set_defaults(func=cmd_preview)


def cmd_preview(args: argparse.Namespace) -> int:
    import stacks.preview as previews

    describe = None
    if args.snapshot_details:
        from stacks.preview.snapshots import describer
        from stacks.publishing.aws import s3_client

        describe = describer(s3_client)
    result = previews.preview(
        args.base, env_dir=Path(args.env_dir) if args.env_dir else None, policy=not args.no_policy, describe=describe
    )
    text = previews.to_json(result) if args.format == "json" else previews.to_markdown(result)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return SUCCESS if result.policy_ok else CHECK_FAILED
