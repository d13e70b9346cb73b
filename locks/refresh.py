"""Write the lock files the Makefile installs from, and say what changed.

    python locks/refresh.py [--check]

Each lock is pip's own resolution of what a fresh install would take today
(`pip install --dry-run --ignore-installed --report`), written as a constraints
file: `venv.txt` for `.venv` (the kit with its `serving`, `dev` and `local`
extras) and `checkov.txt` for checkov's venv. The kit's own ranges in
pyproject.toml stay ranges for the people who install it; only this
repository's installs are pinned. `--check` writes nothing and exits 1 when a
lock is out of date with what pip would resolve now.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROJECT = "llm-serving-stacks"
# What each lock resolves: the requirement pip is given, and the Makefile target that installs it.
LOCKS = {
    "venv.txt": ([f"{ROOT}[serving,dev,local]"], "make install / make test (.venv)"),
    "checkov.txt": (
        ["checkov==" + re.search(r"^CHECKOV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)],
        "the policy gate's own venv (.venv-checkov)",
    ),
}
# Packages held below a broken release: name -> (first broken version, a probe that exits 0 once a
# release behaves). Each refresh tries the newest release in a scratch venv and says whether to lift it.
HOLDS = {
    "moto": ("5.2.6", ROOT / "tests" / "moto_probe.py", ["moto[server]", "boto3"]),
}


def resolve(requirements: list[str]) -> dict[str, str]:
    """Package name -> version, as a fresh `pip install` of `requirements` would take them now."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip(sys.executable, "--dry-run", "--ignore-installed", "--report", str(report), *requirements)
        taken = json.loads(report.read_text())["install"]
    pins = {}
    for item in taken:
        name = canonical(item["metadata"]["name"])
        if name != PROJECT:
            # A local build label (torch's "+cpu") is where the wheel came from, not which release it is.
            pins[name] = item["metadata"]["version"].split("+")[0]
    return dict(sorted(pins.items()))


def pip(python, *args) -> None:
    """`pip install` quietly; this machine's pip config names local indexes that may be absent: drop that noise."""
    run = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if run.returncode:
        noise = "is ignored: it is neither a file nor a directory"
        sys.exit("pip failed: " + "\n".join(line for line in run.stderr.splitlines() if noise not in line))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonical(name)] = version
    return pins


def render(name: str, pins: dict[str, str]) -> str:
    requirements, used_by = LOCKS[name]
    given = " ".join(r.replace(str(ROOT), ".") for r in requirements)
    header = (
        f"# Locked by `make lock` (locks/refresh.py): what `pip install {given}` resolved,\n"
        f"# for {used_by}. Python 3.11 on Linux x86_64. Do not edit by hand.\n"
    )
    return header + "".join(f"{package}=={version}\n" for package, version in pins.items())


def changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    lines = []
    for package in sorted(old.keys() | new.keys()):
        if package not in old:
            lines.append(f"  + {package} {new[package]}")
        elif package not in new:
            lines.append(f"  - {package} {old[package]}")
        elif old[package] != new[package]:
            lines.append(f"  ~ {package} {old[package]} -> {new[package]}")
    return lines


def probe_holds() -> list[str]:
    """For each hold, what the newest release says: still broken, or fixed (lift the hold)."""
    lines = []
    for package, (broken, probe, requirements) in HOLDS.items():
        newest = resolve(requirements)[package]
        if _version(newest) < _version(broken):
            lines.append(f"{package} held below {broken}: the newest release is {newest}, nothing to try")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            venv = Path(tmp) / "venv"
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            pip(venv / "bin" / "python", *requirements)
            run = subprocess.run([venv / "bin" / "python", str(probe)], capture_output=True, text=True, timeout=300)
        verdict = (
            f"{package} {newest} passes {probe.relative_to(ROOT)}: lift the hold (<{broken}) in pyproject.toml"
            if run.returncode == 0
            else f"{package} {newest} still fails {probe.relative_to(ROOT)}: keep the "
            f"hold (<{broken}): {run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-300:]}"
        )
        lines.append(verdict)
    return lines


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    stale = False
    for name, (requirements, _) in LOCKS.items():
        path = HERE / name
        old, new = read(path), resolve(requirements)
        changed = changes(old, new)
        print(f"locks/{name}: " + (f"{len(changed)} changed" if changed else "unchanged"))
        print("\n".join(changed)) if changed else None
        stale |= bool(changed)
        if changed and not check:
            path.write_text(render(name, new))
    if not check:
        print("\n".join(probe_holds()))
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
