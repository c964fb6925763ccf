"""A command's outputs as a set: complete or absent.

`predict`, `evaluate` and `explain` write each file of a call into a staging folder inside
their output folder (`.hgpose-staging-XXXXXXXX`, through `hgpose.io`, so each file is atomic
too) and move them all into place by renames when the call succeeds, the file that marks a
complete set (predictions.json, metrics.json, explain.json + report.html) last. A call that
fails (a full disk, an unreadable input, Ctrl-C) removes its staging folder: the output
folder keeps exactly what it held before, and the same command can simply be run again.

A rename within one folder needs no free space, so once every file is written, the move
itself does not fail on a full disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from hgpose.errors import HgposeError
from hgpose.io import ensure_dir

STAGING_PREFIX = ".hgpose-staging-"


class Staging:
    """Where a call writes its outputs: `stage / name` is the file that becomes `folder / name`."""

    def __init__(self, folder: Path, path: Path):
        self.folder, self.path = folder, path
        self.forgotten: set[str] = set()   # files of the folder to delete once the set is in place

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def forget(self, name: str) -> None:
        """Delete `folder / name` (a file this command wrote earlier) when the new set is in
        place, unless the new set holds a file of that name."""
        self.forgotten.add(name)

    def final(self, path: str | os.PathLike) -> Path:
        """The place in the output folder of a path in the staging folder (for messages)."""
        path = Path(path)
        try:
            return self.folder / path.relative_to(self.path)
        except ValueError:
            return path

    def commit(self, last: tuple[str, ...] = ()) -> list[str]:
        """Move every staged file into the folder, the `last` ones last (each first removed
        from the folder, so an interrupted move never pairs an old marker with new files);
        then delete the forgotten files. Returns the names moved."""
        staged = sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file())
        markers = [name for name in last if name in staged]
        for name in markers:
            (self.folder / name).unlink(missing_ok=True)
        for name in [n for n in staged if n not in markers] + markers:
            target = self.folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path / name, target)
        for name in self.forgotten - set(staged):
            (self.folder / name).unlink(missing_ok=True)
        return staged


@contextmanager
def staged(folder: str | os.PathLike, *, last: tuple[str, ...] = (), what: str = "output folder"):
    """Yield a `Staging` in `folder` (created if needed; an HgposeError naming it if it
    cannot be written, found before any work is done). When the block ends without an
    error, the staged files are moved into `folder` (`Staging.commit`, `last` last);
    otherwise they are dropped, and a folder this call created is removed again if it is
    empty. An OSError about a staged file names its place in `folder`."""
    folder = Path(folder)
    created = not folder.exists()
    ensure_dir(folder, what)
    _remove_stale(folder)
    try:
        # the pid in the name tells a later call whether the call that made it is still running
        stage = Staging(folder, Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=folder)))
    except OSError as e:
        _remove_if_empty(folder, created)
        raise HgposeError(f"{folder}: the {what} cannot be written ({e.strerror or e}); "
                          "fix its permissions or choose another one") from None
    try:
        yield stage
        stage.commit(last)
    except OSError as e:
        if e.filename is None:
            raise
        raise OSError(e.errno, e.strerror, str(stage.final(e.filename))) from None
    finally:
        shutil.rmtree(stage.path, ignore_errors=True)
        _remove_if_empty(folder, created)


def _remove_if_empty(folder: Path, created: bool) -> None:
    if created:
        try:
            folder.rmdir()      # only succeeds when empty
        except OSError:
            pass


def _remove_stale(folder: Path) -> None:
    """Remove the staging folders of calls that were killed before they could (their process
    is gone); a running call's is left alone."""
    for stage in folder.glob(STAGING_PREFIX + "*"):
        pid = stage.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stage, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # someone else's process: alive
        return True
    return True


def leftover_staging(name: str) -> bool:
    """Whether a folder entry is a staging folder (of a call killed before it could remove it)."""
    return name.startswith(STAGING_PREFIX)
