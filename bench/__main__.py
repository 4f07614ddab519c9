"""`python -m bench [name ...]`: run each benchmark module (bench/bench_*.py) in its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    failed = []
    for name in names:
        print(f"== bench {name}", flush=True)
        code = subprocess.call([sys.executable, "-m", f"bench.bench_{name}"])
        if code:
            failed.append(name)
    print(f"figures in {HERE / 'results.json'}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
