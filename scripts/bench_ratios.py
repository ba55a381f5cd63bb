"""The benchmark scripts' bookkeeping of `serval bench` runs (see
lib-bench.sh): `row LABEL FILE` reads one run's JSON on stdin, appends it
labelled to FILE and prints it as a table row; a summary script imports
`Runs` to compare runs next to each other, round by round."""

import json
import statistics
import sys


class Runs:
    """The runs kept in one file, picked by label, callers and rows a call."""

    def __init__(self, path):
        self.runs = [json.loads(line) for line in open(path)]

    def pick(self, label, concurrency, rows=1):
        return [r for r in self.runs if r["label"] == label
                and r["concurrency"] == concurrency and r["rows_per_request"] == rows]


def rounds(name, numerators, denominators, key="rps", target=None):
    """Prints each round's ratio of two runs made next to each other, their
    median, and whether the median meets `target`."""
    ratios = [n[key] / d[key] for n, d in zip(numerators, denominators)]
    median = statistics.median(ratios)
    verdict = "" if target is None else (" met" if median >= target else f" below {target}x")
    print(f"{name}: " + ", ".join(f"{r:.2f}x" for r in ratios) + f" (median {median:.2f}x{verdict})")


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
