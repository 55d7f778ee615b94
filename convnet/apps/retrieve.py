"""`convnet-retrieve FEATURES`: the k nearest images in feature space (the paper's Figure 4, right).

FEATURES is a feature folder written by `convnet-train --write-features` (see features.py),
usually over the training images; the queries are rows of a second folder (`--queries`, e.g.
the test images) or of FEATURES itself (then a query never retrieves itself).

The search is exact: squared Euclidean distances ||q||^2 - 2 q.b + ||b||^2 as a matrix product,
one chunk of the database at a time, keeping a running top-k per query. Memory is bounded by
the chunk (and the queries), not by the database, which stays memory-mapped on disk. It runs on
the GPU with CuPy when the cuda backend is available, with NumPy otherwise.
"""
import sys
import time

import numpy as np

from .. import cuda_available
from ..backend import resolve_backend_name
from ..data import DataError
from .features import FeatureSet
from .figures import DPI, new_figure, show_image
from .options import CommandParser

EXIT_BAD_INPUT = 2
TILE = 90          # pixels per image in the picture
LABEL_BAND = 18    # pixels under each image for its class name


# ----------------------------------------------------------------------------- the search

def stable_argsort(xp, a):
    if xp is np:
        return np.argsort(a, axis=1, kind="stable")
    return xp.argsort(a, axis=1)  # CuPy's sort is stable (radix sort)


def merge_top_k(dist, index, k, xp=np):
    """The k smallest `dist` of each row, sorted; among equal distances the earlier column wins.

    dist, index: (Q, W). Returns (dist, index) of shape (Q, min(k, W)). The callers keep the
    columns in database-index order among equal distances, so ties go to the lower index.
    """
    width = dist.shape[1]
    if width > k:
        kth = xp.partition(dist, k - 1, axis=1)[:, k - 1:k]
        below = dist < kth
        tied = dist == kth
        room = k - below.sum(axis=1, keepdims=True)
        chosen = below | (tied & (xp.cumsum(tied, axis=1) <= room))
        cols = xp.nonzero(chosen)[1].reshape(-1, k)  # row-major: ascending columns per row
        dist = xp.take_along_axis(dist, cols, axis=1)
        index = xp.take_along_axis(index, cols, axis=1)
    order = stable_argsort(xp, dist)
    return xp.take_along_axis(dist, order, axis=1), xp.take_along_axis(index, order, axis=1)


def nearest_neighbours(queries, database, k, chunk=4096, query_block=1024, exclude=None,
                       xp=np):
    """Exact k nearest database rows of each query by Euclidean distance.

    queries (Q, D), database (N, D): arrays or memory maps (the database is read `chunk` rows
    at a time). exclude: (Q,) database indices a query may not return (itself), -1 for none.
    Returns NumPy (indices int64 (Q, k), distances (Q, k)), nearest first; equal distances are
    ordered by database index. Computes in the inputs' float type (at least float32).
    """
    queries_shape, n = tuple(queries.shape), int(database.shape[0])
    if len(queries_shape) != 2 or database.ndim != 2 or queries_shape[1] != database.shape[1]:
        raise ValueError(f"nearest_neighbours: queries {queries_shape} and database "
                         f"{tuple(database.shape)} must be (Q, D) and (N, D) with the same D")
    available = n - (1 if exclude is not None else 0)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= available:
        raise ValueError(f"nearest_neighbours: k must be in 1..{available} (the database has "
                         f"{n} rows), got {k!r}")
    for name, value in (("chunk", chunk), ("query_block", query_block)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"nearest_neighbours: {name} must be a positive integer, "
                             f"got {value!r}")
    dtype = np.result_type(queries.dtype, database.dtype, np.float32)
    q = xp.asarray(np.asarray(queries), dtype=dtype)
    if not bool(xp.isfinite(q).all()):
        raise ValueError("nearest_neighbours: the queries hold NaN or Inf")
    q_norms = (q * q).sum(axis=1)
    count = len(q)
    if exclude is not None:
        exclude = xp.asarray(np.asarray(exclude, dtype=np.int64).reshape(count))
    best_d = xp.empty((count, 0), dtype=dtype)
    best_i = xp.empty((count, 0), dtype=np.int64)
    for start in range(0, n, chunk):
        b = xp.asarray(np.asarray(database[start:start + chunk]), dtype=dtype)
        if not bool(xp.isfinite(b).all()):
            raise ValueError(f"nearest_neighbours: database rows {start}..{start + len(b) - 1} "
                             "hold NaN or Inf")
        b_norms = (b * b).sum(axis=1)
        ids = xp.arange(start, start + len(b), dtype=np.int64)
        width = min(k, best_d.shape[1] + len(b))
        new_d = xp.empty((count, width), dtype=dtype)
        new_i = xp.empty((count, width), dtype=np.int64)
        for lo in range(0, count, query_block):
            hi = min(lo + query_block, count)
            d = q_norms[lo:hi, None] - 2 * (q[lo:hi] @ b.T) + b_norms[None, :]
            xp.maximum(d, 0, out=d)  # rounding can take a tiny distance below zero
            if exclude is not None:
                d[exclude[lo:hi, None] == ids[None, :]] = xp.inf
            merged = merge_top_k(xp.concatenate([best_d[lo:hi], d], axis=1),
                                 xp.concatenate([best_i[lo:hi],
                                                 xp.broadcast_to(ids, d.shape)], axis=1), k, xp)
            new_d[lo:hi], new_i[lo:hi] = merged
        best_d, best_i = new_d, new_i
    to_numpy = (lambda a: a) if xp is np else xp.asnumpy
    return to_numpy(best_i), np.sqrt(to_numpy(best_d))


def precision_at_k(query_labels, neighbour_labels):
    """Mean over queries of the fraction of neighbours sharing the query's label."""
    same = np.asarray(neighbour_labels) == np.asarray(query_labels)[:, None]
    return float(same.mean())


def array_module(backend):
    """CuPy when `backend` resolves to cuda (auto: when a GPU is usable), else NumPy."""
    if resolve_backend_name(backend) == "cuda":
        if not cuda_available():
            raise RuntimeError("backend 'cuda' is not available (no CuPy, GPU or CUDA build)")
        import cupy

        return cupy
    return np


# ----------------------------------------------------------------------------- the picture

def plot_retrievals(query_images, query_labels, neighbour_images, neighbour_labels,
                    distances, label_names, path, title):
    """One row per query: the query, then its neighbours nearest first; a neighbour of another
    class is framed red. (1 + k) * TILE wide, rows * (TILE + LABEL_BAND) + 60 high (pixels)."""
    rows, k = neighbour_labels.shape
    top_band, gap = 60, 10
    fig_w = (k + 1) * TILE + gap + 20
    fig_h = rows * (TILE + LABEL_BAND) + top_band
    fig = new_figure(fig_w, fig_h)
    for r in range(rows):
        y = fig_h - top_band - (r + 1) * (TILE + LABEL_BAND) + LABEL_BAND
        for c in range(k + 1):
            x = 10 + c * TILE + (gap if c else 0)
            ax = fig.add_axes([(x + 3) / fig_w, y / fig_h, (TILE - 6) / fig_w,
                               (TILE - 6) / fig_h])
            if c == 0:
                show_image(ax, query_images[r])
                label, colour, text = query_labels[r], "tab:blue", label_names[query_labels[r]]
            else:
                show_image(ax, neighbour_images[r, c - 1])
                label = neighbour_labels[r, c - 1]
                colour = "tab:green" if label == query_labels[r] else "tab:red"
                dist = distances[r, c - 1]
                text = f"{label_names[label]} {dist:.0f}" if dist >= 100 else \
                    f"{label_names[label]} {dist:.3g}"
            for side in ax.spines.values():
                side.set_color(colour)
                side.set_linewidth(3 if c == 0 or colour == "tab:red" else 1.5)
            ax.set_xlabel(text, fontsize=6, labelpad=1)
    fig.text(0.5, 1 - 18 / fig_h, title, ha="center", va="center", fontsize=10)
    fig.text(0.5, 1 - 40 / fig_h, "query (blue), then nearest first with distance: "
             "green same class, red another", ha="center", va="center", fontsize=8)
    fig.savefig(path, dpi=DPI)
    return path, (fig_w, fig_h)


# ----------------------------------------------------------------------------- the command

def parse_indices(text, count):
    """'0,5,17', '0-999', 'all' -> indices into a set of `count` rows (ValueError if outside)."""
    if text.strip().lower() == "all":
        return np.arange(count)
    out = []
    for part in text.replace(" ", "").split(","):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"--query {text!r}: expected indices like 0,5,17 or 0-999 or all")
        lo, hi = int(first), int(last) if dash else int(first)
        if hi < lo:
            raise ValueError(f"--query {text!r}: {part!r} ends before it starts")
        out.extend(range(lo, hi + 1))
    index = np.array(out, dtype=np.int64)
    if index.max() >= count:
        raise ValueError(f"--query {text!r}: index {int(index.max())} is outside the "
                         f"{count} query rows")
    return index


def build_parser():
    p = CommandParser("convnet-retrieve", "Find the k nearest images in feature space "
                      "(exact Euclidean search) and draw them as a grid: one row per query.")
    a = p.add_argument
    a("features", metavar="FEATURES",
      help="feature folder to search (convnet-train --write-features, e.g. the training images)")
    a("--queries", default=None, metavar="QFEATURES",
      help="feature folder the queries come from (default: FEATURES itself, a query never "
           "finding itself)")
    a("--query", default=None,
      help="query rows: '0,5,17', '0-999' or 'all' (default: --random of them)")
    a("--random", type=int, default=8, help="without --query: this many random rows")
    a("--seed", type=int, default=0, help="which random rows")
    a("-k", "--k", type=int, default=10, help="neighbours per query")
    a("--chunk", type=int, default=4096, help="database rows per distance block")
    p.add_flag("--precision",
               help="print precision@k: the mean fraction of neighbours of the query's class")
    a("--draw", type=int, default=8, help="rows in the picture: the first N queries (0: none)")
    a("--out", default="retrieval.png", help="the picture's file")
    p.add_backend()
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except DataError as e:
        print(f"convnet-retrieve: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, RuntimeError, OSError) as e:
        print(f"convnet-retrieve: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


def run(args):
    database = FeatureSet(args.features)
    source = FeatureSet(args.queries) if args.queries else database
    if source.features.shape[1] != database.features.shape[1]:
        raise ValueError(f"{args.queries}: {source.features.shape[1]}-d features, but "
                         f"{args.features} holds {database.features.shape[1]}-d ones")
    if source.layer != database.layer:
        print(f"convnet-retrieve: warning: the queries are layer '{source.layer}', the "
              f"database layer '{database.layer}'", file=sys.stderr)
    if args.query is not None:
        rows = parse_indices(args.query, len(source))
    else:
        if not 1 <= args.random <= len(source):
            raise ValueError(f"--random must be in 1..{len(source)}, got {args.random}")
        rows = np.sort(np.random.default_rng(args.seed).choice(len(source), args.random,
                                                                replace=False))
    exclude = rows if source is database else None
    xp = array_module(args.backend)
    tick = time.perf_counter()
    index, dist = nearest_neighbours(source.features[rows], database.features, args.k,
                                     chunk=args.chunk, exclude=exclude, xp=xp)
    seconds = time.perf_counter() - tick
    query_labels = np.asarray(source.labels[rows])
    neighbour_labels = np.asarray(database.labels)[index]
    where = "GPU (CuPy)" if xp is not np else "CPU (NumPy)"
    print(f"searched {len(database):,} x {database.features.shape[1]:,}-d '{database.layer}' "
          f"features for {len(rows):,} queries, k={args.k}, in {seconds:.1f} s on {where}")
    if args.precision:
        print(f"precision@{args.k}: {precision_at_k(query_labels, neighbour_labels):.4f} "
              f"(fraction of the {args.k} nearest of the query's class, mean over "
              f"{len(rows):,} queries)")
    if args.draw > 0:
        shown = min(args.draw, len(rows))
        db_images = database.source_images()
        q_images = db_images if source is database else source.source_images()
        names = database.label_names
        title = (f"'{database.layer}' features: {args.k} nearest of {len(database):,} "
                 f"({database.meta['provider']} range {database.meta.get('test_range') or 'test'})")
        path, _ = plot_retrievals(q_images[rows[:shown]], query_labels[:shown],
                                  db_images[index[:shown]], neighbour_labels[:shown],
                                  dist[:shown], names, args.out, title)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
