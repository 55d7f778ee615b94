"""Crash-safe checkpoints and a metrics log. No pickle anywhere: loading never executes code.

A checkpoint of step S is two files in the run folder:

    ckpt-<S:09d>.npz    the arrays (np.savez; numeric dtypes only, read with allow_pickle=False)
    ckpt-<S:09d>.json   {"format": 1, "step": S, "sha256": <of the .npz>, "state": {...},
                         "state_sha256": <of the state as canonical JSON>}

Each is written to a temporary file, flushed, fsynced and renamed into place; the .json goes
last and is the commit mark, and the folder is fsynced after it. A checkpoint counts only when
its .json parses, its state matches state_sha256 and the .npz matches the recorded sha256, so
a crash (or a flipped bit) anywhere leaves the previous checkpoint loadable.

metrics.jsonl holds one JSON object per line, each appended with flush + fsync.
"""

import glob
import hashlib
import json
import math
import os
import re
import warnings
import zipfile

import numpy as np

FORMAT = 1
METRICS_FILE = "metrics.jsonl"
TEMP_MARK = ".tmp-"
_NAME = re.compile(r"^ckpt-(\d{9,})\.(npz|json)$")


class CheckpointError(Exception):
    """A checkpoint file is missing, corrupt or unsafe. The message names the file."""


def _json_default(value):
    """Let numpy scalars and small arrays pass into JSON state/metrics as plain numbers."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms that cannot open a folder (Windows) have nothing to sync
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomically(path, write):
    """Call write(file) on a temp file beside path, fsync it, then rename it to path."""
    temp = f"{path}{TEMP_MARK}{os.getpid()}"
    try:
        with open(temp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        if os.path.exists(temp):
            os.remove(temp)
        if isinstance(exc, OSError) and exc.filename is None:  # a write's error names no file
            raise OSError(exc.errno, exc.strerror or str(exc), temp) from None
        raise


def _one_line(exc):
    """An exception's text on one line (a message must never span lines)."""
    return " ".join(str(exc).split())


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state_digest(state):
    """sha256 of the state as canonical JSON (sorted keys, no spaces): stable across a reload."""
    text = json.dumps(state, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def checkpoint_paths(run_dir, step):
    """(npz path, json path) of the checkpoint of `step` in run_dir."""
    base = os.path.join(os.fspath(run_dir), f"ckpt-{int(step):09d}")
    return base + ".npz", base + ".json"


def _steps(run_dir, extension):
    """Steps that have a ckpt-*.<extension> file in run_dir, newest first."""
    found = []
    for name in os.listdir(run_dir):
        match = _NAME.match(name)
        if match and match.group(2) == extension:
            found.append(int(match.group(1)))
    return sorted(found, reverse=True)


def save_checkpoint(run_dir, step, arrays, state, keep=3):
    """Write the checkpoint of `step` (arrays: name -> ndarray, state: JSON-able dict).

    Keeps the newest `keep` complete checkpoints and removes older ones and stale temp files.
    Returns the path of the .npz.
    """
    run_dir = os.fspath(run_dir)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"save_checkpoint: step must be a non-negative integer, got {step!r}")
    if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1:
        raise ValueError(f"save_checkpoint: keep must be a positive integer, got {keep!r}")
    if not isinstance(state, dict):
        raise ValueError(f"save_checkpoint: state must be a dict, got {type(state).__name__}")
    checked = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        if not isinstance(name, str) or not name:
            raise ValueError(f"save_checkpoint: array names must be non-empty strings, "
                             f"got {name!r}")
        if value.dtype.hasobject or value.dtype.kind not in "biufc":
            raise ValueError(f"save_checkpoint: array {name!r} has dtype {value.dtype}; only "
                             f"numeric arrays can be saved")
        checked[name] = value
    try:
        state_text = json.dumps({"format": FORMAT, "step": int(step), "sha256": None,
                                 "state": state}, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save_checkpoint: state is not JSON-serializable: {exc}") from None

    os.makedirs(run_dir, exist_ok=True)
    npz_path, json_path = checkpoint_paths(run_dir, step)
    _write_atomically(npz_path, lambda f: np.savez(f, **checked))
    record = json.loads(state_text)
    record["sha256"] = _sha256(npz_path)
    record["state_sha256"] = _state_digest(record["state"])
    text = json.dumps(record, default=_json_default, indent=1) + "\n"
    _write_atomically(json_path, lambda f: f.write(text.encode("utf-8")))
    _fsync_dir(run_dir)
    _prune(run_dir, int(step), int(keep))
    return npz_path


def _prune(run_dir, newest, keep):
    """Remove checkpoints older than the newest `keep` committed ones, orphans and temp files."""
    committed = _steps(run_dir, "json")
    kept = set(committed[:keep]) | {newest}
    for step in committed:
        if step not in kept:
            npz_path, json_path = checkpoint_paths(run_dir, step)
            os.remove(json_path)  # uncommit first: a crash here leaves an orphan npz, not a lie
            if os.path.exists(npz_path):
                os.remove(npz_path)
    for step in _steps(run_dir, "npz"):
        if step not in kept:  # an npz whose json never landed (a crash mid-save)
            os.remove(checkpoint_paths(run_dir, step)[0])
    for temp in glob.glob(os.path.join(glob.escape(run_dir), f"ckpt-*{TEMP_MARK}*")):
        os.remove(temp)
    _fsync_dir(run_dir)


def _check_array_sizes(npz_path):
    """Before any array is allocated: each member of the .npz is stored uncompressed (as
    np.savez writes it) and holds exactly the bytes its header declares, so no array can be
    larger than the file itself (a forged header declaring 2.6 GB in a 2 MB file is refused)."""
    with zipfile.ZipFile(npz_path) as archive:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise CheckpointError(f"{npz_path}: {info.filename} is compressed; a checkpoint's "
                                      f"arrays are stored as np.savez writes them")
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(f)
                declared = f.tell() + math.prod(shape) * dtype.itemsize
            if declared != info.file_size:
                raise CheckpointError(f"{npz_path}: {info.filename} declares shape {shape} of "
                                      f"{dtype} ({declared:,} bytes with its header) but holds "
                                      f"{info.file_size:,} bytes")


def load_checkpoint(path):
    """Load one checkpoint (its .npz or .json path) -> (step, arrays, state).

    Raises CheckpointError, naming the file, when either file is missing, unreadable, or the
    .npz does not match the recorded sha256 or holds anything but plain numeric arrays.
    """
    path = os.fspath(path)
    match = _NAME.match(os.path.basename(path))
    if not match:
        raise CheckpointError(f"{path}: not a checkpoint file name (expected ckpt-<step>.npz "
                              f"or ckpt-<step>.json)")
    step = int(match.group(1))
    npz_path, json_path = checkpoint_paths(os.path.dirname(path) or ".", step)
    try:
        with open(json_path, "rb") as f:
            record = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{json_path}: missing (the checkpoint was never committed)") \
            from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{json_path}: unreadable ({type(exc).__name__}: "
                              f"{_one_line(exc)})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT \
            or not isinstance(record.get("sha256"), str) \
            or not isinstance(record.get("state"), dict):
        raise CheckpointError(f"{json_path}: not a format-{FORMAT} checkpoint record")
    if record.get("step", step) != step:
        raise CheckpointError(f"{json_path}: records step {record.get('step')!r}, but the file "
                              f"name says {step}")
    try:
        digest = _sha256(npz_path)
    except OSError as exc:
        raise CheckpointError(f"{npz_path}: unreadable ({exc.strerror or exc})") from None
    if digest != record["sha256"]:
        raise CheckpointError(f"{npz_path}: sha256 mismatch (the file is corrupt or partial)")
    try:
        _check_array_sizes(npz_path)
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except CheckpointError:
        raise
    except Exception as exc:  # zip and npy errors come in many types; all mean a bad file
        raise CheckpointError(f"{npz_path}: cannot load arrays ({type(exc).__name__}: "
                              f"{_one_line(exc)})") \
            from None
    if record.get("state_sha256") != _state_digest(record["state"]):
        raise CheckpointError(f"{json_path}: state sha256 missing or mismatched (the file is "
                              f"corrupt)")
    return step, arrays, record["state"]


def load_latest_checkpoint(run_dir, check=None):
    """The newest good checkpoint in run_dir as (step, arrays, state), or None if there is none.

    A newer checkpoint that is corrupt, partial or uncommitted is skipped with a warning, as is
    one that `check(step, arrays, state)` rejects by raising CheckpointError or ValueError.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        return None
    committed = _steps(run_dir, "json")
    newest_good = None
    for step in committed:
        json_path = checkpoint_paths(run_dir, step)[1]
        try:
            found = load_checkpoint(json_path)
            if check is not None:
                try:
                    check(*found)
                except ValueError as exc:
                    raise CheckpointError(f"{json_path}: {_one_line(exc)}") from None
            newest_good = found
            break
        except CheckpointError as exc:
            warnings.warn(f"skipping checkpoint: {exc}", stacklevel=2)
    good_step = -1 if newest_good is None else newest_good[0]
    for step in _steps(run_dir, "npz"):
        if step > good_step and step not in committed:
            warnings.warn(f"skipping checkpoint: {checkpoint_paths(run_dir, step)[1]}: missing "
                          f"(the checkpoint was never committed)", stacklevel=2)
    return newest_good


def newest_committed_step(run_dir):
    """The step of run_dir's newest ckpt-<step>.json (good or not), or None."""
    steps = _steps(os.fspath(run_dir), "json") if os.path.isdir(run_dir) else []
    return steps[0] if steps else None


def has_committed_checkpoints(run_dir):
    """True when run_dir holds a ckpt-<step>.json (a committed checkpoint), good or not. An
    .npz without its .json is a save that a crash cut short, not a checkpoint."""
    run_dir = os.fspath(run_dir)
    return os.path.isdir(run_dir) and bool(_steps(run_dir, "json"))


class MetricsLog:
    """Appends one JSON object per line to <run_dir>/metrics.jsonl, each line fsynced.

    Opening a log whose last line was torn by a crash cuts that partial line off (with a
    warning), so the next record starts on a line of its own. `count` is the number of records;
    a checkpoint stores it, and a resume calls keep_first(count) to move the records of work
    done after that checkpoint aside (the resumed run writes them again). The log is never
    written through a symbolic link (O_NOFOLLOW).
    """

    def __init__(self, run_dir):
        self.run_dir = os.fspath(run_dir)
        os.makedirs(self.run_dir, exist_ok=True)
        self.path = os.path.join(self.run_dir, METRICS_FILE)
        self._cut_torn_tail()
        for temp in glob.glob(glob.escape(self.path) + TEMP_MARK + "*"):  # a crash in keep_first
            os.remove(temp)
        self.count = self._lines()[1]

    def _lines(self):
        """(the log's bytes, its number of non-empty lines)."""
        if not os.path.exists(self.path):
            return b"", 0
        with open(self.path, "rb") as f:
            data = f.read()
        return data, sum(1 for line in data.split(b"\n") if line.strip())

    def keep_first(self, count, step=None):
        """Cut the log back to its first `count` records (atomically); no-op if it has fewer.

        The records cut are moved aside, never deleted: they are written first to
        metrics.after-step-<step>.jsonl (-2, -3, ... if that exists). Returns that file's
        path, or None when nothing was cut."""
        data, have = self._lines()
        if have <= count:
            return None
        kept, seen = [], 0
        lines = data.split(b"\n")
        for line in lines:
            if line.strip():
                if seen == count:
                    break
                seen += 1
            kept.append(line)
        aside = self._aside_path(step)
        moved = b"\n".join(line for line in lines[len(kept):] if line.strip()) + b"\n"
        _write_atomically(aside, lambda f: f.write(moved))
        text = b"\n".join(kept).rstrip(b"\n")
        text = text + b"\n" if text else b""
        _write_atomically(self.path, lambda f: f.write(text))
        _fsync_dir(self.run_dir)
        self.count = count
        return aside

    def _aside_path(self, step):
        stem = os.path.join(self.run_dir, f"metrics.after-step-{step if step is not None else 0}")
        path, n = stem + ".jsonl", 1
        while os.path.lexists(path):
            n += 1
            path = f"{stem}-{n}.jsonl"
        return path

    def _cut_torn_tail(self):
        if not os.path.exists(self.path):
            return
        with os.fdopen(os.open(self.path, os.O_RDWR | os.O_NOFOLLOW), "rb+") as f:
            data = f.read()
            if not data or data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            warnings.warn(f"{self.path}: dropping a torn last line ({len(data) - keep} bytes)",
                          stacklevel=3)
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())

    def append(self, record):
        if not isinstance(record, dict):
            raise ValueError(f"MetricsLog.append: record must be a dict, got "
                             f"{type(record).__name__}")
        line = json.dumps(record, default=_json_default) + "\n"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        with os.fdopen(os.open(self.path, flags, 0o644), "ab") as f:
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        self.count += 1


def read_metrics(run_dir):
    """The records of <run_dir>/metrics.jsonl as a list of dicts ([] when there is no log).

    A torn last line (a crash mid-write) is skipped with a warning; a bad line elsewhere is a
    ValueError naming the file and line.
    """
    path = os.path.join(os.fspath(run_dir), METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    records = []
    last = max(i for i, line in enumerate(lines) if line.strip()) if any(
        line.strip() for line in lines) else -1
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except (UnicodeDecodeError, ValueError) as exc:
            if number == last:
                warnings.warn(f"{path}:{number + 1}: skipping a torn last line", stacklevel=2)
                break
            raise ValueError(f"{path}:{number + 1}: bad metrics line ({exc})") from None
        records.append(record)
    return records
