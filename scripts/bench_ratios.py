"""The benchmark scripts' bookkeeping of `serval bench` runs (see
lib-bench.sh): `row LABEL FILE` reads one run's JSON on stdin, appends it
labelled to FILE and prints it as a table row; a summary script imports
`Runs` to compare runs next to each other, round by round."""

import json
import math
import random
import statistics
import sys


class Runs:
    """The runs kept in one file, picked by label, callers and rows a call."""

    def __init__(self, path):
        self.runs = [json.loads(line) for line in open(path)]

    def pick(self, label, concurrency, rows=1):
        return [r for r in self.runs if r["label"] == label
                and r["concurrency"] == concurrency and r["rows_per_request"] == rows]


def geometric_mean(ratios):
    return math.exp(statistics.fmean(math.log(r) for r in ratios))


def interval(ratios, draws=10000, seed=1):
    """A 95 % bootstrap interval of the ratios' geometric mean: the rounds
    resampled with replacement `draws` times (seeded, so a summary reads
    the same twice)."""
    pick = random.Random(seed).choices
    means = sorted(geometric_mean(pick(ratios, k=len(ratios))) for _ in range(draws))
    return means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def rounds(name, numerators, denominators, key="rps", target=None):
    """Prints each round's ratio of two runs made next to each other, their
    median, and whether the median meets `target`; from ten rounds on, also
    their geometric mean with its 95 % bootstrap interval, and a target is
    met only when the whole interval is."""
    ratios = [n[key] / d[key] for n, d in zip(numerators, denominators)]
    median = statistics.median(ratios)
    summary = f"median {median:.2f}x"
    verdict = "" if target is None else (" met" if median >= target else f" below {target}x")
    if len(ratios) >= 10:
        low, high = interval(ratios)
        summary += f"; geometric mean {geometric_mean(ratios):.3f}x, 95 % interval {low:.3f}x to {high:.3f}x"
        if target is not None:
            verdict = (" met" if low >= target else
                       f" below {target}x" if high < target else f" not settled at {target}x")
    print(f"{name}: " + ", ".join(f"{r:.2f}x" for r in ratios) + f" ({summary}{verdict})")


def row(label, path):
    run = json.load(sys.stdin)
    run["label"] = label
    with open(path, "a") as runs:
        runs.write(json.dumps(run) + "\n")
    errors = ", ".join(f"{k} {v}" for k, v in run["errors"].items()) or "none"
    if run.get("error_p50_ms") is not None:
        errors += f" (answered in p50 {run['error_p50_ms']:.1f} ms)"
    print(f"| {label} | {run['concurrency']} | {run['rows_per_request']} | {run['rps']:.0f} "
          f"| {run['rows_per_s']:.0f} | {run['p50_ms']:.3f} | {run['p99_ms']:.3f} | {errors} |")


if __name__ == "__main__" and sys.argv[1:2] == ["row"]:
    row(sys.argv[2], sys.argv[3])
