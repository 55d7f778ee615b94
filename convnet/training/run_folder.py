"""A run folder as the user's data: one writer at a time, never two runs mixed in it, checked
before a run starts so that a bad --save-path or --load-file is one line, not a traceback.

* The writer holds an ``fcntl.flock`` on ``<run>/convnet.lock`` (its host and pid written in
  it) while it runs, and removes the file at the end. A second writer is refused naming the
  holder. The kernel drops the lock of a process that dies, so a killed run's folder (its
  lock file left behind) is taken over by the next run.
* A new run (no --load-file) in a folder holding checkpoints is refused: they are another
  run's. --load-file of a missing folder, or of one without a checkpoint, is refused too,
  except the resume-or-start form a batch scheduler resubmits (--load-file DIR --save-path
  DIR): it starts a new run there and says so.
* Readers (--test-only, --write-features, convnet-show) take no lock and write nothing.
* A run given neither --save-path nor --load-file saves in runs/<net>-<YYYYmmdd-HHMMSS> under
  the current folder (new_run_folder), and says where.
"""
import errno
import fcntl
import os
import socket
import time
import warnings

from .checkpoint import METRICS_FILE, has_committed_checkpoints, newest_committed_step

LOCK_FILE = "convnet.lock"


class RunFolderError(Exception):
    """A run folder cannot be used as asked; one line. `status`: 2 for a bad option or folder,
    1 when the folder is busy (the run cannot go on now)."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


def check_folder_to_write(path, option):
    """`path` is a folder this user can write, or one that can be made (its nearest existing
    parent is writable); a file there is refused."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise RunFolderError(f"{option} {path}: is a file, not a folder")
    existing = os.path.abspath(path)
    while not os.path.exists(existing) and existing != os.path.dirname(existing):
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunFolderError(f"{option} {path}: {existing} is not writable")


def check_writable_folder(path, option="--save-path"):
    """Make `path` (a run folder to write) if needed, and check it can hold a run: a folder,
    writable, its metrics.jsonl (if any) a plain file and not a link to somewhere else."""
    check_folder_to_write(path, option)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"{option} {path}: cannot make the folder "
                             f"({exc.strerror or exc})") from None
    metrics = os.path.join(path, METRICS_FILE)
    if os.path.islink(metrics):
        raise RunFolderError(f"{metrics}: is a symbolic link (to {os.readlink(metrics)}); a run "
                             f"writes its own metrics.jsonl, never through a link")
    if os.path.lexists(metrics) and not os.path.isfile(metrics):
        raise RunFolderError(f"{metrics}: is not a file (a folder?); move it away")


class RunLock:
    """The exclusive lock of one run folder's writer (`with RunLock(path):`). The lock file is
    removed when the run ends, and the folder too if this run made it and left nothing in it
    (a run refused before it wrote anything leaves no trace)."""

    def __init__(self, run_dir):
        self.run_dir = os.fspath(run_dir)
        self.path = os.path.join(self.run_dir, LOCK_FILE)
        self.fd, self.made = None, False

    def __enter__(self):
        self.made = not os.path.isdir(self.run_dir)
        check_writable_folder(self.run_dir)
        while self.fd is None:
            fd = self._open()
            self._lock(fd)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file between our open and our lock
                self.fd = fd
            else:
                os.close(fd)
        stale = os.pread(self.fd, 200, 0).decode("utf-8", "replace").split()
        if len(stale) >= 2:  # emptied by every run that ends: its writer died
            warnings.warn(f"{self.run_dir}: taking over the lock of a run that ended without "
                          f"releasing it (host {stale[0]}, pid {stale[1]})", stacklevel=2)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{socket.gethostname()} {os.getpid()}\n".encode(), 0)
        return self

    def _open(self):
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise RunFolderError(f"{self.path}: cannot open the run's lock file "
                                 f"({exc.strerror or exc})") from None

    def _lock(self, fd):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunFolderError(f"{self.path}: cannot lock ({exc.strerror or exc})") \
                    from None
            who = (f"host {holder[0]}, pid {holder[1]}" if len(holder) >= 2
                   else "a process that has not written its name yet")
            raise RunFolderError(f"{self.run_dir}: another run is writing this folder ({who}); "
                                 f"wait for it to end or give another --save-path",
                                 status=1) from None

    def __exit__(self, *exc):
        if self.fd is None:
            return
        try:
            os.remove(self.path)  # before unlocking: a waiting run then opens a new file
            if self.made and not os.listdir(self.run_dir):
                os.rmdir(self.run_dir)
        except OSError:
            pass  # the folder went read-only or away: the lock still ends with the process
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def new_run_folder(layers_file, parent="runs", now=None):
    """The folder a run without --save-path saves in: `parent`/<net>-<YYYYmmdd-HHMMSS>, <net>
    the layers file's name (without .cfg and cuda-convnet's layers- prefix); -2, -3 ... added
    when a run of the same second has it already. Nothing is made here (RunLock makes it)."""
    net = os.path.basename(os.fspath(layers_file))
    net = net[:-4] if net.endswith(".cfg") else net
    net = net[len("layers-"):] if net.startswith("layers-") and len(net) > 7 else net
    stem = os.path.join(parent, f"{net}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}")
    path, n = stem, 1
    while os.path.lexists(path):
        n += 1
        path = f"{stem}-{n}"
    return path


def check_start(load_file, save_path):
    """Whether this run resumes (True) or starts (False), refusing what would mix two runs or
    train from scratch by mistake. Prints nothing; see start_line for the resume-or-start form."""
    same = save_path is not None and load_file is not None and \
        os.path.abspath(save_path) == os.path.abspath(load_file)
    if load_file is None:
        if save_path is not None and has_committed_checkpoints(save_path):
            raise RunFolderError(
                f"--save-path {save_path}: holds another run's checkpoints (newest step "
                f"{newest_committed_step(save_path)}); resume it with --load-file {save_path}, "
                f"or give a new folder")
        return False
    if save_path is not None and not same and has_committed_checkpoints(save_path):
        raise RunFolderError(
            f"--save-path {save_path}: holds another run's checkpoints (newest step "
            f"{newest_committed_step(save_path)}); a run resumed from {load_file} saves into "
            f"its own folder or a new one")
    if os.path.lexists(load_file) and not os.path.isdir(load_file):
        raise RunFolderError(f"--load-file {load_file}: is a file, not a run folder")
    if has_committed_checkpoints(load_file):
        return True
    if same:
        return False  # resume-or-start: nothing to resume yet
    what = "does not exist" if not os.path.exists(load_file) else "holds no checkpoint"
    raise RunFolderError(f"--load-file {load_file}: {what} (to start a run there, or resume it "
                         f"when it has one, give --load-file {load_file} --save-path "
                         f"{load_file})")


def start_line(load_file, save_path, step):
    """The one line the resume-or-start form prints (None for the other forms)."""
    if load_file is None or save_path is None or \
            os.path.abspath(save_path) != os.path.abspath(load_file):
        return None
    if step is None:
        return f"convnet-train: {load_file} holds no checkpoint yet: starting a new run there"
    return f"convnet-train: resuming the run in {load_file} from its checkpoint of step {step}"


def os_error_line(exc):
    """An OSError as one line naming its file: 'FILE: No space left on device'."""
    where = exc.filename if exc.filename is not None else None
    what = exc.strerror or " ".join(str(exc).split())
    return f"{where}: {what}" if where else what
