"""Checkpoints (npz + json commit mark, sha256, pruning, fallback) and the metrics log."""

import json
import os
import warnings

import numpy as np
import pytest

from convnet.training.checkpoint import (
    CheckpointError, MetricsLog, checkpoint_paths, load_checkpoint, load_latest_checkpoint,
    read_metrics, save_checkpoint,
)


def _arrays(rng):
    return {
        "conv1.weights": rng.standard_normal((5, 3, 3, 3)).astype(np.float32),
        "fc.bias": rng.standard_normal(7),                                      # float64
        "steps": rng.integers(-2**62, 2**62, size=(4,), dtype=np.int64),
        "counts": rng.integers(0, 2**32, size=(3, 2), dtype=np.uint64).astype(np.uint32),
        "scalar": np.array(rng.standard_normal(), dtype=np.float64),
        "empty": np.zeros((0, 3), np.float32),
    }


def _save_three(run_dir, rng):
    saved = {}
    for step in (10, 20, 30):
        arrays = _arrays(rng)
        save_checkpoint(run_dir, step, arrays, {"epoch": step // 10, "lr": 0.01 * step})
        saved[step] = arrays
    return saved


def _assert_same_arrays(loaded, expected):
    assert set(loaded) == set(expected)
    for name, value in expected.items():
        assert loaded[name].dtype == value.dtype, name
        assert loaded[name].shape == value.shape, name
        assert loaded[name].tobytes() == value.tobytes(), name


def test_checkpoint_round_trip_is_bit_identical(tmp_path, rng):
    arrays = _arrays(rng)
    arrays["fc.bias"][0] = np.nan
    state = {"epoch": 3, "batch": 17, "lr": 0.001, "history": [1.5, 2.5], "name": "fashion",
             "np_scalar": np.float32(0.25), "nested": {"momentum": 0.9}}
    path = save_checkpoint(tmp_path, 1234, arrays, state)
    assert os.path.basename(path) == "ckpt-000001234.npz"
    assert os.path.exists(tmp_path / "ckpt-000001234.json")

    step, loaded, loaded_state = load_checkpoint(path)
    assert step == 1234
    _assert_same_arrays(loaded, arrays)
    assert loaded_state == {**state, "np_scalar": 0.25}

    latest = load_latest_checkpoint(tmp_path)
    assert latest[0] == 1234
    _assert_same_arrays(latest[1], arrays)
    assert sorted(os.listdir(tmp_path)) == ["ckpt-000001234.json", "ckpt-000001234.npz"]


def test_checkpoint_json_records_sha256_of_npz(tmp_path, rng):
    import hashlib
    npz_path = save_checkpoint(tmp_path, 5, _arrays(rng), {"epoch": 0})
    record = json.loads((tmp_path / "ckpt-000000005.json").read_text())
    assert record["format"] == 1
    assert record["sha256"] == hashlib.sha256(open(npz_path, "rb").read()).hexdigest()


def test_checkpoint_keeps_newest_three(tmp_path, rng):
    for step in range(1, 7):
        save_checkpoint(tmp_path, step * 100, _arrays(rng), {"step": step})
    names = sorted(os.listdir(tmp_path))
    assert names == [f"ckpt-{s:09d}.{ext}" for s in (400, 500, 600) for ext in ("json", "npz")]
    save_checkpoint(tmp_path, 700, _arrays(rng), {}, keep=1)
    assert sorted(os.listdir(tmp_path)) == ["ckpt-000000700.json", "ckpt-000000700.npz"]


def test_checkpoint_save_removes_stale_temp_and_orphan_files(tmp_path, rng):
    save_checkpoint(tmp_path, 1, _arrays(rng), {})
    (tmp_path / "ckpt-000000002.npz.tmp-999").write_bytes(b"half written")
    (tmp_path / "ckpt-000000002.npz").write_bytes(b"never committed")
    save_checkpoint(tmp_path, 3, _arrays(rng), {})
    assert sorted(os.listdir(tmp_path)) == [
        "ckpt-000000001.json", "ckpt-000000001.npz", "ckpt-000000003.json", "ckpt-000000003.npz"]


def test_checkpoint_load_latest_empty_or_missing_dir_is_none(tmp_path):
    assert load_latest_checkpoint(tmp_path) is None
    assert load_latest_checkpoint(tmp_path / "does-not-exist") is None


def _corrupt_truncate(npz, json_path):
    data = open(npz, "rb").read()
    open(npz, "wb").write(data[: len(data) // 2])


def _corrupt_flip_byte(npz, json_path):
    data = bytearray(open(npz, "rb").read())
    data[len(data) // 3] ^= 0x40
    open(npz, "wb").write(bytes(data))


def _corrupt_missing_json(npz, json_path):
    os.remove(json_path)


def _corrupt_garbage_json(npz, json_path):
    open(json_path, "wb").write(b'{"state": {"epoch": 3}, "sha2')


def _corrupt_missing_npz(npz, json_path):
    os.remove(npz)


@pytest.mark.parametrize("corrupt", [_corrupt_truncate, _corrupt_flip_byte, _corrupt_missing_json,
                                     _corrupt_garbage_json, _corrupt_missing_npz])
def test_checkpoint_bad_newest_falls_back_to_previous(tmp_path, rng, corrupt):
    saved = _save_three(tmp_path, rng)
    npz, json_path = checkpoint_paths(tmp_path, 30)
    corrupt(npz, json_path)
    with pytest.warns(UserWarning, match="ckpt-000000030"):
        step, arrays, state = load_latest_checkpoint(tmp_path)
    assert step == 20
    assert state == {"epoch": 2, "lr": 0.2}
    _assert_same_arrays(arrays, saved[20])
    with pytest.raises(CheckpointError, match="ckpt-000000030"):
        load_checkpoint(npz)


def test_checkpoint_two_bad_newest_fall_back_two(tmp_path, rng):
    saved = _save_three(tmp_path, rng)
    _corrupt_flip_byte(*checkpoint_paths(tmp_path, 30))
    _corrupt_garbage_json(*checkpoint_paths(tmp_path, 20))
    with pytest.warns(UserWarning) as caught:
        step, arrays, _ = load_latest_checkpoint(tmp_path)
    assert step == 10
    _assert_same_arrays(arrays, saved[10])
    assert len(caught) == 2


def test_checkpoint_all_bad_gives_none_with_warning(tmp_path, rng):
    save_checkpoint(tmp_path, 1, _arrays(rng), {})
    _corrupt_truncate(*checkpoint_paths(tmp_path, 1))
    with pytest.warns(UserWarning, match="sha256 mismatch"):
        assert load_latest_checkpoint(tmp_path) is None


def test_checkpoint_error_message_is_one_line_naming_file(tmp_path, rng):
    save_checkpoint(tmp_path, 7, _arrays(rng), {})
    npz, _ = checkpoint_paths(tmp_path, 7)
    _corrupt_truncate(npz, None)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(npz)
    assert npz in str(info.value) and "\n" not in str(info.value)


def test_checkpoint_refuses_object_array_npz(tmp_path):
    """An npz holding a pickled object array, even with a matching sha256, never unpickles."""
    import hashlib
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    npz, json_path = checkpoint_paths(tmp_path, 1)
    payload = np.empty(1, dtype=object)
    payload[0] = Evil()
    with open(npz, "wb") as f:
        np.savez(f, weights=np.ones(3, np.float32), evil=payload)
    digest = hashlib.sha256(open(npz, "rb").read()).hexdigest()
    with open(json_path, "w") as f:
        json.dump({"format": 1, "sha256": digest, "state": {}}, f)

    with pytest.raises(CheckpointError, match="ckpt-000000001.npz"):
        load_checkpoint(npz)
    with pytest.warns(UserWarning):
        assert load_latest_checkpoint(tmp_path) is None
    assert not marker.exists()


def test_checkpoint_save_rejects_object_arrays_and_bad_state(tmp_path):
    with pytest.raises(ValueError, match="dtype object"):
        save_checkpoint(tmp_path, 1, {"w": np.array([{}], dtype=object)}, {})
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path, 1, {"w": np.ones(2)}, {"bad": object()})
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(tmp_path, -1, {"w": np.ones(2)}, {})
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 1, {"w": np.ones(2)}, {}, keep=0)
    assert os.listdir(tmp_path) == []


def test_checkpoint_load_rejects_bad_name(tmp_path):
    with pytest.raises(CheckpointError, match="weights.npz"):
        load_checkpoint(tmp_path / "weights.npz")


def test_checkpoint_resave_same_step_overwrites(tmp_path, rng):
    save_checkpoint(tmp_path, 4, {"w": np.zeros(3)}, {"v": 1})
    save_checkpoint(tmp_path, 4, {"w": np.ones(3)}, {"v": 2})
    step, arrays, state = load_latest_checkpoint(tmp_path)
    assert step == 4 and state == {"v": 2} and arrays["w"].tolist() == [1.0, 1.0, 1.0]


def test_metrics_log_appends_and_reads(tmp_path):
    log = MetricsLog(tmp_path / "run")
    records = [{"step": i, "cost": 2.0 / (i + 1), "error": np.float32(0.5)} for i in range(5)]
    for r in records:
        log.append(r)
    back = read_metrics(tmp_path / "run")
    assert [r["step"] for r in back] == list(range(5))
    assert back[2]["cost"] == pytest.approx(2.0 / 3) and back[0]["error"] == 0.5
    assert read_metrics(tmp_path / "nothing-here") == []


def test_metrics_torn_last_line_skipped_and_cut_on_reopen(tmp_path):
    log = MetricsLog(tmp_path)
    log.append({"step": 1, "cost": 1.0})
    log.append({"step": 2, "cost": 0.5})
    with open(tmp_path / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 3, "co')
    with pytest.warns(UserWarning, match="torn"):
        back = read_metrics(tmp_path)
    assert [r["step"] for r in back] == [1, 2]

    with pytest.warns(UserWarning, match="torn"):
        log = MetricsLog(tmp_path)
    log.append({"step": 3, "cost": 0.25})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]


def test_metrics_bad_middle_line_is_an_error(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        read_metrics(tmp_path)
