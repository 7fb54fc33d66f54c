#!/usr/bin/env python3
"""Answers Mann-Whitney U tests with SciPy, for rollout's cross-check.

Reads a JSON list of cases from stdin, each {"x": [...], "y": [...]}, and writes a JSON object:
{"scipy": VERSION, "results": [{"greater": [U, p], "less": [U, p], "two-sided": [U, p]}, ...]},
with `scipy.stats.mannwhitneyu(x, y, alternative=..., method="auto")` (use_continuity=True).
NaN p-values are written as null.
"""

import json
import math
import sys

try:
    import scipy
    from scipy.stats import mannwhitneyu
except ImportError:
    sys.stderr.write(
        "SciPy is not installed: python3 -m pip install scipy "
        "(./scripts/test.sh installs it)\n"
    )
    sys.exit(3)


def answer(x, y, alternative):
    res = mannwhitneyu(x, y, alternative=alternative, method="auto")
    p = float(res.pvalue)
    return [float(res.statistic), None if math.isnan(p) else p]


def main():
    cases = json.load(sys.stdin)
    results = [
        {alt: answer(c["x"], c["y"], alt) for alt in ("greater", "less", "two-sided")}
        for c in cases
    ]
    json.dump({"scipy": scipy.__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
