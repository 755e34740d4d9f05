"""`make figures` from a warm store: wall time of regenerating every notebook's figures when
all runs are stored (target: under 3 minutes), against the time to merely start a Python
interpreter that imports the library, measured in the same run."""

from __future__ import annotations

import subprocess
import sys
import time


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    baseline = timed(
        [sys.executable, "-c", "import layerwise.harness.tuning, layerwise.harness.plots"]
    )
    figures = timed([sys.executable, "-m", "layerwise", "figures"])
    print(
        f"python -m layerwise figures (warm store): {figures:.1f} s "
        f"(target < 180 s); import-only baseline {baseline:.1f} s; ratio {figures / baseline:.1f}"
    )


if __name__ == "__main__":
    main()
