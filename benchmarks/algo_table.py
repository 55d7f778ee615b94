"""Fill convnet/backend/algos.json from a GPU report: the fastest validated algorithm per case.

    python benchmarks/algo_table.py REPORT.json [--out convnet/backend/algos.json]

REPORT: bench_kernels.py --ab's JSON (or a gpu_run.sh report holding its rows). For every conv
and local case (its contract op: the row's contract_op, or report.contract_op_of its op and
pass in older reports), the plain row (the algorithm chosen when the report was made, its
`variant` empty) and the `<layer>@<algo>` rows compete; a row counts only with status ok and
rel_err within its tol. The winner goes into the table under the case's exact ConvShape when it
is not algos.DEFAULT (the table then holds only exceptions); a case whose rows all failed keeps
what the table had.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import report  # noqa: E402
import workloads  # noqa: E402
from convnet.backend import algos  # noqa: E402


def winners(rows, table):
    """{(op, shape_key): algo} of the fastest valid row per conv case, `table` naming what the
    plain rows ran."""
    layers = {layer.label: layer for layer in workloads.CONV_LAYERS + workloads.LOCAL_LAYERS}
    best = {}
    for row in rows:
        base, _, algo = row.get("layer", "").partition("@")
        op = report.contract_op_of(row)
        if op not in algos.OPS or base not in layers or row.get("status") != "ok":
            continue
        if row.get("rel_err") is None or row["rel_err"] > row.get("tol", 0):
            continue
        shape = layers[base].conv_shape
        key = algos.shape_key(shape)
        algo = algo or table.get(op, {}).get(key, algos.DEFAULT)
        if (op, key) not in best or row["ms"] < best[(op, key)][1]:
            best[(op, key)] = (algo, row["ms"])
    return {k: algo for k, (algo, _) in best.items()}


def updated(table, found):
    """`table` with the winners in it: an entry per exception to algos.DEFAULT, none else."""
    out = {op: dict(entries) for op, entries in table.items()}
    for (op, key), algo in found.items():
        entries = out.setdefault(op, {})
        if algo == algos.DEFAULT:
            entries.pop(key, None)
        else:
            entries[key] = algo
    return {op: dict(sorted(e.items())) for op, e in sorted(out.items()) if e}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("report")
    p.add_argument("--out", default=algos.TABLE_PATH)
    args = p.parse_args(argv)
    with open(args.report) as f:
        report = json.load(f)
    rows = report.get("rows") or report.get("bench", {}).get("rows", [])
    table = algos.load_table(args.out) if os.path.exists(args.out) else {}
    found = winners(rows, table)
    new = updated(table, found)
    with open(args.out, "w") as f:
        json.dump(new, f, indent=1)
        f.write("\n")
    changed = sum(1 for (op, k), a in found.items() if table.get(op, {}).get(k, algos.DEFAULT) != a)
    print(f"algo_table: {len(found)} cases timed, {changed} changed, "
          f"{sum(map(len, new.values()))} exceptions to {algos.DEFAULT} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
