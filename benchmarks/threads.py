"""OpenMP threads of a gradient-boosting fit (the churn model's learner), one process.

Usage: python benchmarks/threads.py [--rows 20000] [--iterations 100]

Fits the same HistGradientBoostingClassifier on the same synthetic rows with one OpenMP
thread and with every core, alternately, and prints each fit's seconds. On a machine
running other work the multi-threaded fit is the slower one (OpenMP's threads spin-wait
for each other); `training.openmp_threads` (default 1) is what `memberwise run` uses.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--iterations", type=int, default=100)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(a.rows, 25))
    y = (X[:, 0] + rng.normal(size=a.rows) > 0).astype(int)
    out: dict[str, list[float]] = {"1": [], "all": []}
    for limit in ("1", "all", "1", "all"):
        with threadpool_limits(limits=1 if limit == "1" else None, user_api="openmp"):
            t0 = time.perf_counter()
            HistGradientBoostingClassifier(max_iter=a.iterations, max_leaf_nodes=7,
                                           early_stopping=False).fit(X, y)  # fmt: skip
            out[limit].append(time.perf_counter() - t0)
    print(json.dumps({"cpus": os.cpu_count(), "load_average": os.getloadavg(),
                      "rows": a.rows, "seconds_by_threads": out}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
