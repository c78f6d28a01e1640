"""Load time of the `ct_assets` code location: what every Dagster run and code server pays first.

    uv run python bench/load_time.py              # 7 runs of each measure, medians
    uv run python bench/load_time.py --runs 15 --top 15

Each run is a fresh Python process (no warm module cache beyond the OS's file cache):
- `python -c "import ct_assets.definitions"`, wall time of the whole process;
- the same process importing the module, then building the Definitions (`defs()`, which loads
  every module under ct_assets/defs/ and builds each pipeline's assets, checks, jobs and sensors),
  then resolving the repository (`get_repository_def()`, as the code server does), each timed inside
  the process;
- for reference, `python -c "pass"` (the interpreter alone) and `python -c "import dagster"` (the
  floor a Dagster code location cannot go under).
Then one `python -X importtime` run of import + build, whose self times are summed per top-level
package: where the load time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BUILD_SCRIPT = """
import json, time
t0 = time.perf_counter()
import ct_assets.definitions as location
t1 = time.perf_counter()
definitions = location.defs()
t2 = time.perf_counter()
repository = definitions.get_repository_def()
t3 = time.perf_counter()
print(json.dumps({
    "import": t1 - t0, "build": t2 - t1, "resolve": t3 - t2,
    "jobs": len(repository.get_all_jobs()),
    "assets": len(repository.asset_graph.get_all_asset_keys()),
}))
"""

IMPORTTIME_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s+(.*)$")


def _env() -> dict[str, str]:
    # A throwaway home: loading the location must not depend on (or touch) the user's state.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "DAGSTER_"))}
    env["CT_HOME"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "ct_bench_load_time")
    return env


def wall_seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), check=True, capture_output=True)
    return time.perf_counter() - start


def build_once() -> dict[str, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", BUILD_SCRIPT], cwd=REPO, env=_env(), check=True, capture_output=True, text=True
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["process"] = time.perf_counter() - start
    return figures


def import_profile() -> tuple[dict[str, float], float]:
    """Self time per top-level package (seconds) from one `-X importtime` run, and their total."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", BUILD_SCRIPT],
        cwd=REPO,
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    per_package: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        match = IMPORTTIME_LINE.match(line)
        if match:
            package = match.group(3).strip().split(".")[0]
            per_package[package] += int(match.group(1)) / 1e6
    return per_package, sum(per_package.values())


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per measure (median shown)")
    parser.add_argument("--top", type=int, default=10, help="packages shown from -X importtime")
    args = parser.parse_args()

    print(f"ct_assets code location load time, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, load average {_load_average()}")
    wall_seconds("import ct_assets.definitions")  # warm the OS file cache; not counted

    interpreter = [wall_seconds("pass") for _ in range(args.runs)]
    dagster = [wall_seconds("import dagster") for _ in range(args.runs)]
    location = [wall_seconds("import ct_assets.definitions") for _ in range(args.runs)]
    builds = [build_once() for _ in range(args.runs)]
    rows = [
        ('process: python -c "pass"', interpreter),
        ('process: python -c "import dagster"', dagster),
        ('process: python -c "import ct_assets.definitions"', location),
        ("in process: import ct_assets.definitions", [b["import"] for b in builds]),
        ("in process: build the Definitions (defs())", [b["build"] for b in builds]),
        ("in process: resolve the repository", [b["resolve"] for b in builds]),
        ("process: import + build + resolve", [b["process"] for b in builds]),
    ]
    print(f"\n{args.runs} runs each; {builds[0]['jobs']:.0f} jobs, {builds[0]['assets']:.0f} asset keys\n")
    print(f"| {'measure':<50} | median s | min s | max s |")
    print(f"| {'-' * 50} | -------- | ----- | ----- |")
    for name, values in rows:
        print(f"| {name:<50} | {statistics.median(values):8.2f} | {min(values):5.2f} | {max(values):5.2f} |")

    per_package, total = import_profile()
    print(f"\n-X importtime, import + build: {total:.2f} s of imports; top {args.top} packages (self time)\n")
    print(f"| {'package':<24} | self s | share |")
    print(f"| {'-' * 24} | ------ | ----- |")
    for package, seconds in sorted(per_package.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"| {package:<24} | {seconds:6.2f} | {seconds / total:5.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
