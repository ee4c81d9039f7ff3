"""Run a benchmark against an earlier commit and against this checkout, alternately, in one run.

The earlier commit is checked out in a temporary git worktree and given this checkout's bench/
scripts and virtualenv, so both run the same benchmark code against their own app code. Runs
alternate (baseline, current, baseline, current...) so that the machine's drift hits both alike.

Usage:  .venv/bin/python bench/side_by_side.py --baseline REV [--runs 3] SCRIPT [ARGS...]
e.g.    .venv/bin/python bench/side_by_side.py --baseline 336fdab throughput.py --seconds 10
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the commit to compare with")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("script", help="a script in bench/, e.g. fanout.py")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    git = shutil.which("git")
    baseline = Path(tempfile.mkdtemp(prefix="datapusher-baseline-")) / "checkout"
    subprocess.run([git, "worktree", "add", "--detach", str(baseline), args.baseline], cwd=ROOT, check=True)
    try:
        shutil.rmtree(baseline / "bench")
        shutil.copytree(ROOT / "bench", baseline / "bench")
        (baseline / ".venv").symlink_to(ROOT / ".venv")
        # The shared virtualenv is installed: make must not see the checkout's requirements as newer.
        installed = (ROOT / ".venv" / ".installed").stat().st_mtime
        for requirements in baseline.glob("requirements*.txt"):
            os.utime(requirements, (installed - 1, installed - 1))
        for run in range(1, args.runs + 1):
            for label, checkout in (("baseline " + args.baseline, baseline), ("current", ROOT)):
                print(f"\n=== run {run}, {label}", flush=True)
                script = str(checkout / "bench" / args.script)
                subprocess.run([sys.executable, script, *args.args], cwd=checkout, check=True)
    finally:
        subprocess.run([git, "worktree", "remove", "--force", str(baseline)], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
