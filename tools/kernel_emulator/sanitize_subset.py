"""The sanitizer subset (tests/sanitize_subset.txt): few, fast cuda tests that together run every
kernel instantiation the cuda suite runs, for benchmarks/gpu_run.sh's four compute-sanitizer
runs, chosen from an emulated run's kernel map (kernel_map.py):

    python tools/kernel_emulator/run.py -m pytest -q -m cuda -p kernel_map \
        --kernel-map /tmp/kernel-map.json tests
    python tools/kernel_emulator/sanitize_subset.py write /tmp/kernel-map.json
    python tools/kernel_emulator/sanitize_subset.py check /tmp/kernel-map.json     # CI

`check` fails when a kernel that csrc defines is run by no passing cuda test, or when the
subset names a test that no longer passes or misses a kernel the suite runs (then `write`).
Tests using the emulator_controls fixture run only under the emulator and are never chosen.
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUBSET = ROOT / "tests" / "sanitize_subset.txt"
HEADER = """\
# The cuda tests that benchmarks/gpu_run.sh runs under each compute-sanitizer tool: together
# they run every kernel instantiation the cuda suite runs (at CONVNET_SMALL_SHAPES=1).
# Written by tools/kernel_emulator/sanitize_subset.py from an emulated run; CI checks it.
"""


def base_name(kernel):
    return kernel.split("[", 1)[0]


def candidates(kernel_map):
    """{nodeid: set of kernels} of the tests a sanitizer can run (passed, not emulator-only)."""
    return {nodeid: set(t["kernels"]) for nodeid, t in kernel_map["tests"].items()
            if t["outcome"] == "passed" and not t["emulator_only"] and t["kernels"]}


def choose(kernel_map):
    """A small, fast set of tests covering every kernel the candidates run: greedy on new
    kernels per second, then each test dropped whose kernels the others still run."""
    tests = candidates(kernel_map)
    seconds = {nodeid: kernel_map["tests"][nodeid]["seconds"] + 0.05 for nodeid in tests}
    left = set().union(*tests.values())
    chosen = []
    while left:
        best = max(sorted(tests), key=lambda n: len(tests[n] & left) / seconds[n])
        chosen.append(best)
        left -= tests[best]
    for nodeid in sorted(chosen, key=lambda n: -seconds[n]):
        others = [tests[n] for n in chosen if n != nodeid]
        if tests[nodeid] <= set().union(*others):
            chosen.remove(nodeid)
    return sorted(chosen)


def read_subset(path=SUBSET):
    return [line.strip() for line in Path(path).read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def problems(kernel_map, subset):
    """What is wrong with `subset` (a list of nodeids) and the suite, as sentences."""
    tests = candidates(kernel_map)
    ran = set().union(*tests.values())
    found = []
    untested = sorted(set(kernel_map["kernels"]) - {base_name(k) for k in ran})
    if untested:
        found.append(f"csrc defines kernels that no passing cuda test runs: {', '.join(untested)}")
    stale = [n for n in subset if n not in tests]
    if stale:
        found.append(f"{SUBSET.name} names tests that did not pass or cannot run on a GPU: "
                     f"{', '.join(stale)}")
    covered = set().union(*(tests[n] for n in subset if n in tests))
    missing = sorted(ran - covered)
    if missing:
        found.append(f"{SUBSET.name} runs none of these kernels: {', '.join(missing)}")
    return found


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("write", "check"))
    p.add_argument("kernel_map", help="kernel_map.py's JSON")
    p.add_argument("--subset", default=str(SUBSET))
    args = p.parse_args(argv)
    kernel_map = json.loads(Path(args.kernel_map).read_text())
    if args.command == "write":
        chosen = choose(kernel_map)
        Path(args.subset).write_text(HEADER + "".join(n + "\n" for n in chosen))
        seconds = sum(kernel_map["tests"][n]["seconds"] for n in chosen)
        kernels = len(set().union(*(kernel_map["tests"][n]["kernels"] for n in chosen)))
        print(f"{args.subset}: {len(chosen)} tests, {kernels} kernels, {seconds:.1f} s emulated")
    found = problems(kernel_map, read_subset(args.subset))
    for sentence in found:
        print(f"sanitize_subset: {sentence}", file=sys.stderr)
    if found and args.command == "check":
        print("sanitize_subset: rerun `python tools/kernel_emulator/sanitize_subset.py write MAP` "
              "(see its docstring)", file=sys.stderr)
    elif not found:
        print(f"sanitize_subset: {len(read_subset(args.subset))} tests run every one of the "
              f"{len(set().union(*candidates(kernel_map).values()))} kernel instantiations the "
              f"suite runs ({len(kernel_map['kernels'])} kernels defined)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
