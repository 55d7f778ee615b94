"""Feature extraction (convnet-train --write-features) and exact nearest-neighbour retrieval
(convnet-retrieve): the chunked search against brute force (ties, awkward chunks, k > chunk,
memory bounded by the chunk), the feature folder format, and the command end to end."""
import os

import numpy as np
import pytest

from convnet.apps.cli import main as train_main
from convnet.apps.features import FeatureSet
from convnet.apps.retrieve import (TILE, LABEL_BAND, main, merge_top_k, nearest_neighbours,
                                   parse_indices, precision_at_k)
from convnet.training.saved_run import load_run
from test_show import fashion_run, png  # noqa: F401  (a module-scoped fixture: a tiny run)


def brute_force(queries, database, k, exclude=None):
    """Every distance in float64 by its definition; the k smallest by (distance, index)."""
    d = ((np.asarray(queries, np.float64)[:, None, :]
          - np.asarray(database, np.float64)[None, :, :]) ** 2).sum(axis=2)
    if exclude is not None:
        d[np.arange(len(d)), exclude] = np.inf
    index = np.array([np.lexsort((np.arange(len(row)), row))[:k] for row in d])
    return index, np.sqrt(np.take_along_axis(d, index, axis=1))


# ----------------------------------------------------------------------------- the search

@pytest.mark.parametrize("chunk, k", [(1, 1), (7, 3), (64, 10), (50, 64), (1000, 5), (13, 200)])
def test_nearest_neighbours_equals_brute_force(rng, chunk, k):
    q = rng.standard_normal((int(rng.integers(1, 40)), int(rng.integers(1, 30))))
    db = rng.standard_normal((int(rng.integers(max(k, 120), 260)), q.shape[1]))
    index, dist = nearest_neighbours(q, db, k, chunk=chunk, query_block=int(rng.integers(1, 9)))
    expect_index, expect_dist = brute_force(q, db, k)
    assert index.dtype == np.int64 and index.shape == (len(q), k)
    assert np.array_equal(index, expect_index)
    assert np.allclose(dist, expect_dist, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk", [1, 3, 10, 17, 500])
def test_nearest_neighbours_ties_go_to_the_lower_index(rng, chunk):
    """Small integers make every distance exact, so equal distances are exactly equal."""
    db = rng.integers(-1, 2, (97, 3)).astype(np.float32)   # 27 possible rows: many duplicates
    db = np.concatenate([db, db[::-1]])                       # and each one twice more
    q = rng.integers(-1, 2, (25, 3)).astype(np.float32)
    for k in (1, 4, 30, 150):
        index, dist = nearest_neighbours(q, db, k, chunk=chunk, query_block=7)
        expect_index, expect_dist = brute_force(q, db, k)
        assert np.array_equal(index, expect_index), k
        assert np.array_equal(dist, expect_dist.astype(np.float32)), k
        # within a run of equal distances, the indices rise
        same = dist[:, 1:] == dist[:, :-1]
        assert np.all(index[:, 1:][same] > index[:, :-1][same])


def test_nearest_neighbours_excludes_the_query_itself(rng):
    db = rng.standard_normal((90, 6))
    rows = np.array([0, 5, 44, 89])
    index, dist = nearest_neighbours(db[rows], db, 7, chunk=16, exclude=rows)
    expect_index, expect_dist = brute_force(db[rows], db, 7, exclude=rows)
    assert np.array_equal(index, expect_index) and not np.any(index == rows[:, None])
    assert np.allclose(dist, expect_dist)
    # without the exclusion each query finds itself first, at distance 0
    index, dist = nearest_neighbours(db[rows], db, 1)
    assert np.array_equal(index[:, 0], rows) and np.allclose(dist, 0, atol=1e-6)


class ChunkSpy:
    """A read-only (N, D) array that records how many rows each read asks for."""

    def __init__(self, array):
        self.array, self.reads = array, []
        self.shape, self.ndim, self.dtype = array.shape, array.ndim, array.dtype

    def __getitem__(self, key):
        out = self.array[key]
        self.reads.append(len(out))
        return out


def test_nearest_neighbours_reads_the_database_a_chunk_at_a_time(rng):
    db = ChunkSpy(rng.standard_normal((1000, 8)))
    q = rng.standard_normal((5, 8))
    index, _ = nearest_neighbours(q, db, 3, chunk=128)
    assert db.reads == [128] * 7 + [104]
    assert np.array_equal(index, brute_force(q, db.array, 3)[0])


def test_merge_top_k_keeps_the_earlier_column_among_ties():
    dist = np.array([[3., 1, 2, 1, 1, 0],
                     [5., 5, 5, 5, 5, 5]])
    index = np.array([[10, 11, 12, 13, 14, 15],
                      [20, 21, 22, 23, 24, 25]])
    d, i = merge_top_k(dist, index, 3)
    assert np.array_equal(d, [[0, 1, 1], [5, 5, 5]])
    assert np.array_equal(i, [[15, 11, 13], [20, 21, 22]])
    d, i = merge_top_k(dist, index, 10)  # fewer columns than k: all of them, sorted
    assert np.array_equal(i[0], [15, 11, 13, 14, 12, 10])


@pytest.mark.parametrize("kwargs, message", [
    (dict(k=0), "k must be in 1..50"), (dict(k=51), "k must be in 1..50"),
    (dict(k=50, exclude=np.zeros(4, int)), "k must be in 1..49"),
    (dict(k=3, chunk=0), "chunk must be a positive integer"),
])
def test_nearest_neighbours_rejects_bad_arguments(rng, kwargs, message):
    with pytest.raises(ValueError, match=message):
        nearest_neighbours(rng.standard_normal((4, 3)), rng.standard_normal((50, 3)), **kwargs)


def test_nearest_neighbours_rejects_mismatched_shapes_and_nan(rng):
    with pytest.raises(ValueError, match="same D"):
        nearest_neighbours(rng.standard_normal((4, 3)), rng.standard_normal((50, 2)), 3)
    db = rng.standard_normal((50, 3))
    db[33, 1] = np.nan
    with pytest.raises(ValueError, match="rows 32..47 hold NaN"):
        nearest_neighbours(rng.standard_normal((4, 3)), db, 3, chunk=16)


@pytest.mark.cuda
def test_nearest_neighbours_cupy_equals_numpy(rng):
    from convnet import cuda_available

    if not cuda_available():
        pytest.skip("no GPU")
    import cupy

    q, db = rng.standard_normal((33, 40)), rng.standard_normal((5000, 40))
    for chunk in (999, 4096):
        gi, gd = nearest_neighbours(q, db, 12, chunk=chunk, xp=cupy)
        ci, cd = nearest_neighbours(q, db, 12, chunk=chunk)
        assert np.array_equal(gi, ci) and np.allclose(gd, cd)
    tie_db = rng.integers(-1, 2, (3000, 3)).astype(np.float32)
    tie_q = rng.integers(-1, 2, (20, 3)).astype(np.float32)
    gi, _ = nearest_neighbours(tie_q, tie_db, 50, chunk=700, xp=cupy)
    assert np.array_equal(gi, brute_force(tie_q, tie_db, 50)[0])


def test_precision_at_k_counts_same_class_neighbours():
    assert precision_at_k([1, 2], [[1, 1, 0, 1], [2, 0, 0, 0]]) == pytest.approx((3 + 1) / 8)


def test_parse_indices():
    assert list(parse_indices("0,5,7-9", 10)) == [0, 5, 7, 8, 9]
    assert len(parse_indices("all", 10)) == 10
    with pytest.raises(ValueError, match="outside"):
        parse_indices("3,10", 10)
    with pytest.raises(ValueError, match="expected indices"):
        parse_indices("a-b", 10)


# ----------------------------------------------------------------------------- features

def write(fashion_run, layer, path, *extra):
    return train_main(["--load-file", fashion_run["run"], "--data-path", fashion_run["data"],
                       "--write-features", layer, "--feature-path", str(path), "--mini", "32",
                       "--backend", "numpy", *extra])


@pytest.fixture(scope="module")
def feature_sets(fashion_run, tmp_path_factory):
    """fc3 and raw-pixel ("data" layer) features of the tiny run's train and test images."""
    root = tmp_path_factory.mktemp("features")
    paths = {}
    for layer in ("fc3", "data"):
        for part, extra in (("train", ["--test-range", "1-6"]), ("test", [])):
            paths[layer, part] = root / f"{layer}-{part}"
            assert write(fashion_run, layer, paths[layer, part], *extra) == 0
    return paths


def test_write_features_are_the_layer_outputs(fashion_run, feature_sets):
    feats = FeatureSet(feature_sets["fc3", "train"])
    net, provider, step, _ = load_run(fashion_run["run"], data_path=fashion_run["data"],
                                      test_range="1-6")
    assert isinstance(feats.features, np.memmap) and feats.features.dtype == np.float32
    assert feats.features.shape == (120, 16) and len(feats) == provider.num_test == 120
    x = next(provider.test_batches(120))[0]
    expected = net.forward({0: x, 1: provider.test_labels}, train=False)["fc3"]
    assert np.allclose(feats.features, expected, rtol=1e-5, atol=1e-6)
    assert np.array_equal(feats.labels, provider.test_labels)
    meta = feats.meta
    assert meta["layer"] == "fc3" and meta["layer_shape"] == [16] and meta["dim"] == 16
    assert meta["provider"] == "fashion-mnist" and meta["test_range"] == "1-6"
    assert meta["batches"] == [1, 2, 3, 4, 5, 6] and meta["step"] == step
    assert meta["run"] == os.path.abspath(fashion_run["run"])
    assert meta["label_names"][0] == "T-shirt/top"
    assert np.array_equal(feats.source_images(), provider.test_images)


def test_write_features_of_the_data_layer_are_the_centred_pixels(fashion_run, feature_sets):
    feats = FeatureSet(feature_sets["data", "test"])
    images = feats.source_images()
    assert feats.meta["test_range"] is None and feats.meta["batches"] == [7]
    assert feats.features.shape == (40, 144)
    centred = images.reshape(40, -1).astype(np.float32)
    net, provider, _, _ = load_run(fashion_run["run"], data_path=fashion_run["data"])
    assert np.allclose(feats.features, centred - provider.mean.reshape(-1))


@pytest.mark.parametrize("layer, with_path, message", [
    ("nope", True, "unknown layer 'nope'"),
    ("logprob", True, "has no output"),
    ("fc3", False, "needs --feature-path"),
])
def test_write_features_errors_are_one_line(fashion_run, tmp_path, capsys, layer, with_path,
                                            message):
    argv = ["--load-file", fashion_run["run"], "--data-path", fashion_run["data"],
            "--write-features", layer, "--backend", "numpy"]
    if with_path:
        argv += ["--feature-path", str(tmp_path / "f")]
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_feature_set_missing_meta_is_an_error(tmp_path):
    (tmp_path / "f").mkdir()
    with pytest.raises(ValueError, match="meta.json: missing"):
        FeatureSet(tmp_path / "f")


# ----------------------------------------------------------------------------- the command

def test_retrieve_prints_precision_and_draws_the_grid(feature_sets, tmp_path, capsys):
    db, qs = FeatureSet(feature_sets["fc3", "train"]), FeatureSet(feature_sets["fc3", "test"])
    out = tmp_path / "grid.png"
    assert main([str(feature_sets["fc3", "train"]), "--queries", str(feature_sets["fc3", "test"]),
                 "--query", "all", "-k", "5", "--chunk", "17", "--precision", "--draw", "3",
                 "--out", str(out), "--backend", "numpy"]) == 0
    text = capsys.readouterr().out
    index, _ = brute_force(qs.features, db.features, 5)
    expected = precision_at_k(qs.labels, db.labels[index])
    assert f"precision@5: {expected:.4f}" in text and "40 queries" in text
    image = png(out)
    assert image.shape == (3 * (TILE + LABEL_BAND) + 60, 6 * TILE + 30, 3)


def test_retrieve_within_one_set_never_returns_the_query(feature_sets, tmp_path, capsys):
    path = str(feature_sets["data", "train"])
    assert main([path, "--random", "6", "--seed", "2", "-k", "4", "--draw", "0",
                 "--precision", "--backend", "numpy"]) == 0
    text = capsys.readouterr().out
    assert "for 6 queries" in text and "precision@4:" in text


@pytest.mark.parametrize("argv, message", [
    (["--query", "0,500"], "outside the 120 query rows"),
    (["-k", "0"], "k must be in 1..119"),
    (["--random", "0"], "--random must be in 1..120"),
])
def test_retrieve_errors_are_one_line(feature_sets, capsys, argv, message):
    assert main([str(feature_sets["fc3", "train"]), *argv, "--draw", "0",
                 "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("convnet-retrieve: ")


def test_retrieve_rejects_features_of_another_size(feature_sets, capsys):
    assert main([str(feature_sets["fc3", "train"]), "--queries",
                 str(feature_sets["data", "test"]), "--draw", "0", "--backend", "numpy"]) == 2
    assert "144-d features" in capsys.readouterr().err


def test_retrieve_missing_folder(tmp_path, capsys):
    assert main([str(tmp_path / "none"), "--backend", "numpy"]) == 2
    assert "does not exist" in capsys.readouterr().err
