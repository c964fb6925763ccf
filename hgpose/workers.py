"""The process pool of `prepare` and `synth`: image decoding and drawing in parallel.

Spawned, not forked: a forked child inherits torch's and OpenCV's thread pools in whatever
state the parent left them (a known source of deadlocks), and spawn behaves the same on
every platform. Each worker runs OpenCV single-threaded, since the parallelism comes from
the processes.

How many: never more processes than there are pieces of work or CPU cores to run them
(`pool_size`). A process costs a second or two to start and some 100 MB of memory, so
`--workers 40` for one shard of images would only wait for 39 idle interpreters.
"""

from __future__ import annotations

import multiprocessing
import os
from contextlib import contextmanager
from typing import Iterator


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity, where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def pool_size(asked: int | None, jobs: int) -> int:
    """The processes worth starting for `jobs` independent pieces of work: `asked` (default:
    every usable core), capped by the jobs and the usable cores, at least 1."""
    wanted = usable_cpus() if asked is None else asked
    return max(1, min(wanted, jobs, usable_cpus()))


def _single_threaded() -> None:
    import cv2

    cv2.setNumThreads(1)


@contextmanager
def process_pool(workers: int) -> Iterator[multiprocessing.pool.Pool | None]:
    """A pool of `workers` processes, or None for one worker (the caller then works inline);
    stopped on exit, also when the caller fails or is interrupted."""
    if workers <= 1:
        yield None
        return
    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_single_threaded)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()
