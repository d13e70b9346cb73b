"""`make bench`: how fast synth is, measured in one run.

Prints (and writes to bench-results/bench.json):
- the time to import the AWS provider bindings alone (a fresh process);
- the time of `llmstacks synth` for all environments (a fresh process) and
  its ratio to the import (target <= 1.3: synth must add little to the
  unavoidable provider load);
- `llmstacks synth` of one environment with 2 and with 50 models (target:
  50 models <= 1.2x the 2-model time);
- the same synths in one warm process, without the import, to show where
  the time goes;
- `llmstacks preview --base HEAD` (base synth in a worktree plus this tree's
  synth and policy gate) and its ratio to a synth of all environments
  (target <= 2.2), also without the policy gate.

- serving (skip with --no-serving; needs the `serving` extra): how fast a
  replica gets its weights from S3, streamed vs downloaded
  (`benchmarks/weights_load.py`, on the local AWS), and how often prefix-aware
  routing sends a request to the replica holding its prefix, against
  power-of-two (`benchmarks/routing.py`, two CPU replicas).

Each figure is the best of --repeat runs (default 2). No assertions: the
numbers are for people and the closing note, not a pass/fail gate.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LLMSTACKS = str(Path(sys.executable).parent / "llmstacks")
DEV = ROOT / "stacks" / "environments" / "dev.yaml"

IMPORT_ONLY = "import infra.node_runtime\nimport cdktf\nfrom cdktf_cdktf_provider_aws.provider import AwsProvider\n"

WARM = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import infra.node_runtime, cdktf
from cdktf_cdktf_provider_aws.provider import AwsProvider
imported = time.perf_counter() - t0
from stacks.config.loader import ENVIRONMENTS_DIR, environment_files
from stacks.planning.plan import plan_files
from stacks.synth.run import synthesize
out = Path(sys.argv[1])
def timed(paths, target):
    t = time.perf_counter(); synthesize(plan_files(paths), out / target, replace_all=True); return time.perf_counter() - t
result = {"import": imported}
result["all"] = timed(environment_files(ENVIRONMENTS_DIR), "all")
result["models_2"] = timed([Path(sys.argv[2])], "m2")
result["models_50"] = timed([Path(sys.argv[3])], "m50")
print(json.dumps(result))
"""


def with_models(count: int, directory: Path) -> Path:
    """The dev environment with `count` one-GPU models on a pool large enough for them."""
    data = yaml.safe_load(DEV.read_text())
    template = copy.deepcopy(data["models"][0])
    models = []
    for i in range(count):
        model = copy.deepcopy(template)
        model.update(id=f"model-{i:03d}", replicas={"min": 0, "max": 1})
        models.append(model)
    data["models"] = models
    gpu_pool = next(p for p in data["node_pools"] if p.get("accelerator"))
    gpu_pool["max_size"] = 2 * count  # room for every replica plus rollout surge
    path = directory / f"m{count}" / "dev.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def best_of(repeat: int, command: list[str]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if done.returncode:
            sys.exit(f"bench: {' '.join(command)} failed:\n{done.stderr}")
        times.append(time.perf_counter() - start)
    return min(times)


def serving_benchmarks(out: Path) -> dict:
    """Weights load and routing, each in its own process (each starts its own local AWS or Ray)."""
    weights = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "weights_load.py")],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    weights_load = json.loads(weights[weights.index("\n{") + 1 :] if not weights.startswith("{") else weights)
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "routing.py")], check=True, capture_output=True, cwd=ROOT)
    routing = json.loads((out / "routing.json").read_text())
    (out / "weights_load.json").write_text(json.dumps(weights_load, indent=2) + "\n")
    return {"weights_load": weights_load, "routing": routing}


def serving_rows(serving: dict) -> list[tuple[str, str, str]]:
    weights, routing = serving["weights_load"], serving["routing"]
    conversations = routing["conversations"]
    ratios, best = weights.get("ratios", {}), weights.get("best_streamer_concurrency")
    seconds = {
        "streamer": weights["streamer"].get(best, {}).get("seconds"),
        "raw": weights["raw"].get(weights.get("best_raw_concurrency"), {}).get("seconds"),
        "download_then_load": weights["download_then_load"].get("seconds"),
    }
    rows = [
        (
            f"weights load {weights['size_gib']:.1f} GiB, {kind}"
            + (f" (concurrency {best})" if kind == "streamer" else ""),
            f"{value:.2f} s" if value is not None else "failed",
            "",
        )
        for kind, value in seconds.items()
    ]
    rows += [
        (
            "  ratio streamer / raw throughput",
            f"{ratios.get('best_streamer_over_best_raw_throughput', float('nan')):.2f}",
            "target >= 0.80",
        ),
        (
            "  ratio download-then-load / streamer time",
            f"{ratios.get('download_then_load_over_best_streamer_time', float('nan')):.2f}",
            "target > 1.00",
        ),
    ]
    rows += [
        (
            "routing: follow-ups on the replica holding the prefix, prefix-aware",
            f"{conversations['prefix_aware']['hit_share']:.0%}",
            "target >= 90%",
        ),
        ("routing: the same, power-of-two", f"{conversations['power_of_two']['hit_share']:.0%}", "about 50%"),
    ]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-serving", action="store_true", help="skip the weights-load and routing benchmarks")
    args = parser.parse_args()
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        two, fifty = with_models(2, tmp_path), with_models(50, tmp_path)
        synth = [LLMSTACKS, "synth", "--outdir"]
        cold = {
            "import_provider_s": best_of(args.repeat, [sys.executable, "-c", IMPORT_ONLY]),
            "synth_all_s": best_of(args.repeat, [*synth, str(tmp_path / "all")]),
            "synth_2_models_s": best_of(args.repeat, [*synth, str(tmp_path / "o2"), "--config", str(two)]),
            "synth_50_models_s": best_of(args.repeat, [*synth, str(tmp_path / "o50"), "--config", str(fifty)]),
            "preview_s": best_of(
                args.repeat, [LLMSTACKS, "preview", "--base", "HEAD", "--output", str(tmp_path / "p.md")]
            ),
            "preview_no_policy_s": best_of(
                args.repeat, [LLMSTACKS, "preview", "--base", "HEAD", "--no-policy", "--output", str(tmp_path / "p.md")]
            ),
        }
        warm_runs = [
            json.loads(
                subprocess.run(
                    [sys.executable, "-c", WARM, str(tmp_path / f"warm{i}"), str(two), str(fifty)],
                    check=True,
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                ).stdout
            )
            for i in range(args.repeat)
        ]
        warm = {f"warm_{k}_s": min(run[k] for run in warm_runs) for k in warm_runs[0]}

    results = {
        **cold,
        "synth_all_over_import": cold["synth_all_s"] / cold["import_provider_s"],
        "models_50_over_2": cold["synth_50_models_s"] / cold["synth_2_models_s"],
        "preview_over_synth_all": cold["preview_s"] / cold["synth_all_s"],
        **warm,
    }
    rows = [
        ("import AWS provider bindings (fresh process)", f"{results['import_provider_s']:.2f} s", ""),
        ("llmstacks synth, all environments", f"{results['synth_all_s']:.2f} s", ""),
        ("  ratio synth-all / import", f"{results['synth_all_over_import']:.2f}", "target <= 1.30"),
        ("llmstacks synth, 2 models", f"{results['synth_2_models_s']:.2f} s", ""),
        ("llmstacks synth, 50 models", f"{results['synth_50_models_s']:.2f} s", ""),
        ("  ratio 50 / 2 models", f"{results['models_50_over_2']:.2f}", "target <= 1.20"),
        ("llmstacks preview --base HEAD (with policy gate)", f"{results['preview_s']:.2f} s", ""),
        ("  ratio preview / synth-all", f"{results['preview_over_synth_all']:.2f}", "target <= 2.20"),
        ("llmstacks preview --no-policy", f"{results['preview_no_policy_s']:.2f} s", ""),
        ("warm process: synth all environments", f"{results['warm_all_s']:.2f} s", "import excluded"),
        ("warm process: synth 2 models", f"{results['warm_models_2_s']:.2f} s", ""),
        ("warm process: synth 50 models", f"{results['warm_models_50_s']:.2f} s", ""),
    ]
    if not args.no_serving:
        serving = serving_benchmarks(out)
        results["serving"] = serving
        rows += serving_rows(serving)
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:>9}  {note}")
    (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
