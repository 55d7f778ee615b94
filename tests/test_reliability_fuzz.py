"""Issue 9: the cfg parser and the checkpoint loader under fuzzing (hypothesis, derandomized so
CI runs the same few thousand cases every time).

cfg files: the shipped nets mutated (bytes flipped, lines deleted, duplicated or swapped, keys
and values replaced or added, truncation, binary junk) through `convnet-train --describe`: never
a traceback; exit 0 with sane shapes, or one line `FILE:LINE: message` (`FILE: message` only for
a file that is not text or defines no layers) and exit 2.

checkpoints: the newest checkpoint of a real run mutated (npz and json bytes, JSON edits, and
"consistent" forgeries whose sha256 was recomputed: arrays dropped, reshaped, renamed, retyped,
NaN, pickled objects) through load_latest_checkpoint and through `convnet-train --load-file`:
never a traceback, never code executed; the previous good checkpoint loads with a warning, or
the newest loads only if it is the original, or one line `FILE: message` and exit 2.
"""
import contextlib
import glob
import io
import json
import os
import re
import shutil
import sys
import warnings
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convnet.apps.cli import main
from convnet.engine.net import Net
from convnet.training.checkpoint import CheckpointError, load_checkpoint, load_latest_checkpoint
from convnet.training.saved_run import check_resumable, restore_arrays
from test_reliability import TINY_LAYERS, TINY_PARAMS, one_error_line, write_cifar, write_net

LAYERS_DIR = os.path.join(os.path.dirname(__file__), "..", "layers")
CFG_EXAMPLES = 2500
CHECKPOINT_EXAMPLES = 1500
CLI_CHECKPOINT_EXAMPLES = 300


def fuzz_settings(examples):
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def show_warning(message, category, filename, lineno, file=None, line=None):
    """What Python does with a warning outside pytest: its formatted text to stderr."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_cli(argv):
    """main(argv) -> (status, stdout, stderr), warnings printed to stderr as in a shell."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show_warning
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------ mutations

KEYS = ["type", "inputs", "filters", "filterSize", "padding", "stride", "groups", "channels",
        "imgSize", "imgSizeY", "outputs", "sizeX", "start", "outputsX", "size", "neuron",
        "dataIdx", "epsW", "epsB", "momW", "momB", "wc", "wball", "coeff", "coeffs", "keep",
        "scale", "pow", "minDiv", "weightSource", "sharedBiases", "initW", "initB", "gpu", "pool",
        "partialSum"]
VALUES = st.one_of(
    st.sampled_from(["", "-1", "0", "1", "2", "3", "1e309", "nan", "inf", "-inf", "99999999",
                     "abc", "[", "]", "relu[", "tanh[1,2]", "brelu[6]", "1,2,3", "-0.5", "0x10",
                     "dexp[base=1;tgtFactor=0;numSteps=0]", "exp[base=0.1;tgtFactor=10]",
                     "data", "labels", "conv1,conv1", "probs", "fc10.0", "max", "avg",
                     "cost.logreg", "softmax", "concat", "eltsum", "local", "conv", "fc"]),
    st.integers(-3, 40).map(str), st.integers(-10**13, 10**13).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12).filter(lambda t: "\n" not in t and "\r" not in t))


@st.composite
def mutated(draw, data):
    """`data` (bytes) with 1 to 4 random edits, each on a line, a value or raw bytes."""
    for _ in range(draw(st.integers(1, 4))):
        lines = data.split(b"\n")
        spot = draw(st.integers(0, max(len(lines) - 1, 0)))
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "delete", "duplicate", "swap", "value", "key",
                                   "truncate", "junk", "binary", "header"]))
        if op == "flip" and data:
            raw = bytearray(data)
            raw[min(at, len(raw) - 1)] ^= draw(st.integers(1, 255))
            data = bytes(raw)
        elif op == "delete":
            del lines[spot]
            data = b"\n".join(lines)
        elif op == "duplicate":
            lines.insert(spot, lines[spot])
            data = b"\n".join(lines)
        elif op == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[spot], lines[other] = lines[other], lines[spot]
            data = b"\n".join(lines)
        elif op == "value" and b"=" in lines[spot]:
            lines[spot] = lines[spot].split(b"=")[0] + b"=" + draw(VALUES).encode()
            data = b"\n".join(lines)
        elif op == "key":
            lines.insert(spot, (draw(st.sampled_from(KEYS)) + "=" + draw(VALUES)).encode())
            data = b"\n".join(lines)
        elif op == "truncate":
            data = data[:at]
        elif op == "junk":
            data = data[:at] + draw(st.binary(min_size=1, max_size=32)) + data[at:]
        elif op == "binary":
            data = draw(st.binary(max_size=200))
        elif op == "header":
            lines.insert(spot, b"[" + draw(st.sampled_from([b"conv1", b"fc10", b"x y", b"",
                                                            b"data", b"new"])) + b"]")
            data = b"\n".join(lines)
    return data


# ------------------------------------------------------------------------ cfg files

NETS = sorted(p[:-4] for p in glob.glob(os.path.join(LAYERS_DIR, "*.cfg"))
              if not p.endswith("-params.cfg") and os.path.exists(p[:-4] + "-params.cfg"))


def text_of(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def has_section(raw):
    text = text_of(raw)
    return text is not None and any(line.strip().startswith("[") for line in text.splitlines())


@pytest.fixture(scope="module")
def cfg_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cfg-fuzz")


@st.composite
def cfg_pair(draw):
    base = draw(st.sampled_from(NETS))
    layers = open(base + ".cfg", "rb").read()
    params = open(base + "-params.cfg", "rb").read()
    which = draw(st.sampled_from(["layers", "params", "both"]))
    if which != "params":
        layers = draw(mutated(layers))
    if which != "layers":
        params = draw(mutated(params))
    return layers, params


def test_cfg_fuzz_describe_never_tracebacks(cfg_dir):
    """Thousands of mutated layers.cfg / layer-params.cfg pairs through --describe."""
    assert len(NETS) >= 5
    lp, pp = str(cfg_dir / "layers.cfg"), str(cfg_dir / "params.cfg")
    seen = Counter()
    where = re.compile(rf"^convnet-train: ({re.escape(lp)}|{re.escape(pp)}):(\d+:)? ")

    @fuzz_settings(CFG_EXAMPLES)
    @given(cfg_pair())
    def describe_one(pair):
        layers, params = pair
        with open(lp, "wb") as f:
            f.write(layers)
        with open(pp, "wb") as f:
            f.write(params)
        status, out, err = run_cli([lp, pp, "--describe"])  # an exception fails the test
        if status == 0:
            seen["described"] += 1
            table = "\n".join(out.splitlines()[1:])
            # every shape and count positive: no negative or zero-sized layer slips through
            assert not re.search(r"(^|\s)-\d|\b0x|x0\b", table), out
            return
        seen["rejected"] += 1
        assert status == 2, err
        line = one_error_line(err)
        match = where.match(line)
        assert match, line
        if not match.group(2):  # no line number: only for a file that is not text at all
            raw = layers if match.group(1) == lp else params
            assert text_of(raw) is None or not has_section(raw), line

    describe_one()
    print(f"cfg fuzz: {sum(seen.values())} cases, {dict(seen)}")
    assert sum(seen.values()) >= CFG_EXAMPLES * 0.9
    assert seen["described"] >= 100 and seen["rejected"] >= 1000


# ------------------------------------------------------------------------ checkpoints

class _Marker:
    """An object whose unpickling creates a file: a checkpoint must never unpickle it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """A run of the tiny net, 2 epochs of 5 steps, a checkpoint after every step: the newest
    is step 10, the one before it step 9."""
    root = tmp_path_factory.mktemp("ckpt-fuzz")
    cifar = write_cifar(root / "cifar", per_batch=40)
    layers, params = write_net(root / "net", TINY_LAYERS, TINY_PARAMS)
    run = root / "pristine"
    common = ["--data-provider", "cifar", "--data-path", str(cifar), "--mini", "8",
              "--train-range", "1", "--backend", "numpy"]
    assert run_cli([layers, params, "--save-path", str(run), "--epochs", "2",
                    "--save-interval", "0", *common])[0] == 0
    newest, previous = load_checkpoint(run / "ckpt-000000010.json"), \
        load_checkpoint(run / "ckpt-000000009.json")
    net = Net.from_cfg(layers, params, backend="numpy")
    return dict(root=root, pristine=run, common=common, newest=newest, previous=previous,
                net=net, marker=root / "executed", counts=Counter())


# st.builds(dict): a new {} each draw (st.just({}) gave one dict, which edits nested in itself)
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10),
                        st.lists(st.integers(), max_size=3), st.builds(dict),
                        st.just("[x]\ny=1"))


@st.composite
def json_edits(draw, record, keep_state_hash):
    """1 to 3 edits of a checkpoint record: a value replaced, a key deleted or added, in the
    record or in its state. With keep_state_hash, state_sha256 is recomputed (a forgery)."""
    from convnet.training.checkpoint import _state_digest

    record = json.loads(json.dumps(record))
    for _ in range(draw(st.integers(1, 3))):
        target = record["state"] if draw(st.booleans()) and isinstance(
            record.get("state"), dict) else record
        keys = sorted(target)
        op = draw(st.sampled_from(["set", "delete", "add"]))
        if op == "add" or not keys:
            target[draw(st.sampled_from(["zz", "epoch", "since_test", "format"]))] = \
                draw(JSON_VALUES)
        elif op == "set":
            target[draw(st.sampled_from(keys))] = draw(JSON_VALUES)
        else:
            del target[draw(st.sampled_from(keys))]
    if keep_state_hash and isinstance(record.get("state"), dict):
        try:
            record["state_sha256"] = _state_digest(record["state"])
        except (TypeError, ValueError):
            pass
    return record


@st.composite
def forged_arrays(draw, arrays, marker):
    """The newest checkpoint's arrays, edited the way a buggy writer or a forger might."""
    arrays = dict(arrays)
    name = draw(st.sampled_from(sorted(arrays)))
    op = draw(st.sampled_from(["drop", "shrink", "retype", "rename", "nan", "pickle", "extra",
                               "empty"]))
    if op == "drop":
        del arrays[name]
    elif op == "shrink":
        arrays[name] = arrays[name].reshape(-1)[:-1]
    elif op == "retype":
        arrays[name] = arrays[name].astype(draw(st.sampled_from(
            [np.int8, np.int64, np.complex64, np.float64, np.float16, np.bool_, np.uint8])))
    elif op == "rename":
        arrays[name + draw(st.sampled_from(["x", "/0", ".w1"]))] = arrays.pop(name)
    elif op == "nan":
        value = arrays[name].copy()
        value.flat[draw(st.integers(0, value.size - 1))] = draw(st.sampled_from(
            [np.nan, np.inf, -np.inf]))
        arrays[name] = value
    elif op == "pickle":
        payload = np.empty(2, dtype=object)
        payload[0] = _Marker(marker)
        arrays[name] = payload
    elif op == "extra":
        arrays["param/ghost.w0"] = np.zeros((3, 2), np.float32)
    else:
        arrays[name] = np.zeros((0,), np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class Damage:
    """A damaged newest checkpoint: its kind, and the bytes of its two files (None: deleted)."""

    def __init__(self, kind, npz, raw_json):
        self.kind, self.npz, self.raw_json = kind, npz, raw_json

    def __repr__(self):  # short: hypothesis prints it for a failing case
        import hashlib

        def about(b):
            return "deleted" if b is None else f"{len(b)} bytes sha256 " \
                f"{hashlib.sha256(b).hexdigest()[:12]}"
        head = (self.raw_json or b"")[:300]
        return (f"Damage({self.kind!r}, npz {about(self.npz)}, json {about(self.raw_json)}: "
                f"{head!r})")


@st.composite
def checkpoint_damage(draw, run):
    """A Damage of the newest checkpoint of `run`."""
    npz = open(run["pristine"] / "ckpt-000000010.npz", "rb").read()
    raw_json = open(run["pristine"] / "ckpt-000000010.json", "rb").read()
    record = json.loads(raw_json)
    kind = draw(st.sampled_from(["deleted", "npz bytes", "json bytes", "json edit",
                                 "forged npz", "forged both"]))
    if kind == "npz bytes":
        npz = draw(mutated(npz))
    elif kind == "json bytes":
        raw_json = draw(mutated(raw_json))
    elif kind == "json edit":
        raw_json = json.dumps(draw(json_edits(record, False))).encode()
    elif kind in ("forged npz", "forged both"):
        import hashlib

        npz = draw(forged_arrays(run["newest"][1], run["marker"]))
        if kind == "forged both":
            record = draw(json_edits(record, True))
        if isinstance(record, dict):
            record["sha256"] = hashlib.sha256(npz).hexdigest()
        raw_json = json.dumps(record).encode()
    else:
        which = draw(st.sampled_from(["npz", "json"]))
        npz, raw_json = (None, raw_json) if which == "npz" else (npz, None)
    return Damage(kind, npz, raw_json)


def damaged_copy(run, name, npz, raw_json):
    target = run["root"] / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(run["pristine"], target)
    for suffix, content in ((".npz", npz), (".json", raw_json)):
        path = target / f"ckpt-000000010{suffix}"
        if content is None:
            os.remove(path)
        else:
            path.write_bytes(content)
    return target


def same_checkpoint(found, expected):
    step, arrays, state = found
    return step == expected[0] and state == expected[2] and sorted(arrays) == sorted(
        expected[1]) and all(arrays[k].tobytes() == expected[1][k].tobytes() for k in arrays)


def test_checkpoint_fuzz_loader_loads_only_good_checkpoints(good_run):
    """load_latest_checkpoint (with convnet-train's check) on thousands of damaged newest
    checkpoints: it never raises; it returns the untouched previous checkpoint (warning about
    the newest), or the newest only when its content is the original, or, for a forgery with a
    recomputed sha256, arrays that restore_arrays rejects naming the layers."""
    seen = Counter()

    @fuzz_settings(CHECKPOINT_EXAMPLES)
    @given(checkpoint_damage(good_run))
    def load_one(damage):
        kind = damage.kind
        run = damaged_copy(good_run, "loader", damage.npz, damage.raw_json)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            found = load_latest_checkpoint(run, check=check_resumable)
        assert found is not None
        if found[0] == 9:
            seen[f"{kind}: previous"] += 1
            assert same_checkpoint(found, good_run["previous"])
            assert any("ckpt-000000010" in str(w.message) for w in caught), caught
            assert all("\n" not in str(w.message) for w in caught)
        elif same_checkpoint(found, good_run["newest"]):
            seen[f"{kind}: newest, untouched"] += 1
        else:
            assert kind.startswith("forged"), (kind, found[2])
            try:
                restore_arrays(good_run["net"], found[1])
            except ValueError as exc:
                assert "the checkpoint does not match the net" in str(exc)
                assert "\n" not in str(exc)
                seen[f"{kind}: rejected by the net"] += 1
            else:
                for name, value in good_run["newest"][1].items():
                    assert np.array_equal(found[1][name], value), name  # same numbers
                seen[f"{kind}: newest, same values"] += 1
        try:
            load_checkpoint(run / "ckpt-000000010.json")
        except CheckpointError as exc:
            assert "ckpt-000000010" in str(exc) and "\n" not in str(exc)
        assert not good_run["marker"].exists()

    load_one()
    total = sum(seen.values())
    good_run["counts"]["loader"] = total
    print(f"checkpoint loader fuzz: {total} cases, {dict(sorted(seen.items()))}")
    assert total >= CHECKPOINT_EXAMPLES * 0.9
    assert sum(v for k, v in seen.items() if k.endswith("previous")) >= CHECKPOINT_EXAMPLES / 2


def test_checkpoint_fuzz_convnet_train_load_file(good_run):
    """`convnet-train --load-file RUN --test-only` on damaged newest checkpoints: exit 0 having
    resumed from step 10 or 9 (then with a warning naming the newest), or exit 2 with one line
    naming a file of the run; never a traceback, never code run."""
    seen = Counter()

    @fuzz_settings(CLI_CHECKPOINT_EXAMPLES)
    @given(checkpoint_damage(good_run))
    def resume_one(damage):
        kind = damage.kind
        run = damaged_copy(good_run, "cli", damage.npz, damage.raw_json)
        status, out, err = run_cli(["--load-file", str(run), "--test-only",
                                    *good_run["common"]])
        assert "Traceback" not in err
        if status == 0:
            step = int(re.search(r"resumed at epoch \d+ batch \d+ \(step (\d+)\)", out).group(1))
            assert step in (9, 10) and "top-1 error" in out, out
            if step == 9:
                assert "convnet-train: warning: skipping checkpoint" in err and \
                    "ckpt-000000010" in err, err
            seen[f"resumed at step {step}"] += 1
        else:
            assert status == 2, err
            line = one_error_line(err)
            if kind == "forged both":  # a forged state may name any file (its layers.cfg...)
                assert re.match(r"^convnet-train: [^:]+:(\d+:)? ", line), line
            else:
                assert line.startswith(f"convnet-train: {run}"), line
            seen["one-line error"] += 1
        assert not good_run["marker"].exists()

    resume_one()
    total = sum(seen.values())
    print(f"convnet-train --load-file fuzz: {total} cases, {dict(seen)}")
    assert total >= CLI_CHECKPOINT_EXAMPLES * 0.9 and seen["resumed at step 9"] >= 100
