"""The process pool of `prepare` and `synth`: image decoding and drawing in parallel.

Spawned, not forked: a forked child inherits torch's and OpenCV's thread pools in whatever
state the parent left them (a known source of deadlocks), and spawn behaves the same on
every platform. Each worker runs OpenCV single-threaded, since the parallelism comes from
the processes.
"""

from __future__ import annotations

import multiprocessing
from contextlib import contextmanager
from typing import Iterator


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
