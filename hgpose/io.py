"""Atomic file writes (temporary file beside the target, then rename), output folders that
are checked before anything is computed, and a lock so two processes never write one folder.

A reader never sees a half-written file, and a run killed mid-write leaves the previous
version (or nothing) in place.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import tempfile
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hgpose.errors import HgposeError


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path in the target's folder; rename it onto `path` on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise HgposeError(f"{path}: cannot be written, a file is in the way of its folder "
                          f"{path.parent}; choose another path") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    except OSError as e:
        raise _named(e, path) from None
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates the file 0600, and a writer may recreate it (safetensors does):
        # give the finished file the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _named(e, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# A write that failed for lack of room: the error names the file being written, which the
# OS error of a write through a file object does not.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _named(error: OSError, path: Path) -> OSError:
    """`error` with the path it was writing, where it did not name one (a full disk)."""
    if error.filename is None and error.errno in _NO_ROOM:
        return OSError(error.errno, error.strerror or os.strerror(error.errno), str(path))
    return error


def _umask() -> int:
    with _UMASK_LOCK:  # reading the umask means setting it for a moment
        umask = os.umask(0)
        os.umask(umask)
    return umask


_UMASK_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read in blocks (annotation files and weights run to GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    # np.save on an open file object: it would append ".npy" to a bare temp name.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array))


# --- output folders ------------------------------------------------------------------------

@contextmanager
def npy_rows(path: str | os.PathLike, n: int, empty_shape: tuple[int, ...] = (0,)):
    """Write an array of `n` rows to a .npy piece by piece, atomically: yields
    `write(rows, values)`, which puts float32 `values` [k, ...] at `rows` of a memory-mapped
    file created at the first call (its row shape from those values), so an array larger
    than the RAM never sits in it. The file appears under `path` only when the block ends
    without an error; with no write at all it holds float32 [0, *empty_shape[1:]] rows."""
    with atomic_path(path, suffix=".npy") as tmp:
        out = None

        def write(rows, values) -> None:
            nonlocal out
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, *values.shape[1:]))
            out[np.asarray(rows)] = values

        yield write
        if out is None:
            with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a path
                np.save(f, np.zeros((0, *empty_shape[1:]), np.float32))
        else:
            out.flush()
            del out  # close the map before the rename


def ensure_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create `path` (and its parents) or raise one line saying why it cannot be used:
    a file in the way, or no permission to write there."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HgposeError(f"{path}: is a file, not a folder; give a folder as the {what}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise HgposeError(f"{path}: a file is in the way (one of its parents is not a folder); "
                          f"give another {what}") from None
    except OSError as e:
        raise HgposeError(f"{path}: cannot create the {what} ({e.strerror}); choose another one") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise HgposeError(f"{path}: the {what} is not writable; fix its permissions or choose another one")
    return path


# --- run lock ------------------------------------------------------------------------------

LOCK_NAME = ".hgpose.lock"


@contextmanager
def run_lock(folder: str | os.PathLike, command: str, what: str = "output folder"):
    """Hold an exclusive lock on `folder` (created if needed) while the block runs, so a
    second process writing the same folder stops at once with one line instead of
    interleaving its files with ours.

    The lock is an flock on FOLDER/.hgpose.lock, which names its holder; it is removed when
    the block ends. The kernel releases an flock when its process dies (even by kill -9), so
    a lock file a killed run left behind is taken over, with a note naming that run. A folder
    this call created and that still holds nothing afterwards (the command failed before
    writing) is removed.
    """
    folder = Path(folder)
    created = not folder.exists()
    ensure_dir(folder, what)
    lock_path = folder / LOCK_NAME
    fd = _acquire(lock_path, folder)
    try:
        left = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if left:
            print(f"hgpose: note: {folder}: taking over the lock {left} left when it stopped "
                  "without cleaning up", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"`{command}` (pid {os.getpid()})".encode(), 0)
        yield folder
    finally:
        lock_path.unlink(missing_ok=True)   # while still held: the next holder makes a new file
        os.close(fd)                        # releases the lock
        if created and not any(folder.iterdir()):
            try:
                folder.rmdir()
            except OSError:
                pass


def _acquire(lock_path: Path, folder: Path) -> int:
    """An open, flocked descriptor of lock_path, or one line naming the holder. The file may
    be unlinked by its holder between our open and our flock: then we hold a lock on a file
    nobody else sees, so open again until the flocked file is the one at lock_path."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise HgposeError(f"{folder}: in use by {holder}; wait for it to finish (or stop it), "
                              "or choose another folder") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


_held = threading.local()


@contextmanager
def lock_scope():
    """Locks taken with `lock_dir` inside this block are released when it ends. For code
    that only knows late (after validating its inputs) which folder it will write."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        previous = getattr(_held, "stack", None)
        _held.stack = stack
        try:
            yield
        finally:
            _held.stack = previous


def lock_dir(folder: str | os.PathLike, command: str, what: str = "output folder") -> None:
    """Take `run_lock(folder)` until the enclosing `lock_scope` ends."""
    stack = getattr(_held, "stack", None)
    if stack is None:
        raise RuntimeError("lock_dir() needs an enclosing lock_scope()")
    stack.enter_context(run_lock(folder, command, what))
