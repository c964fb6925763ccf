"""What this CPU offers the network: native bf16 or not, read at run time.

bf16 autocast only pays on a CPU that computes in bf16 natively (Intel AMX or AVX-512-BF16,
which oneDNN uses); elsewhere it is emulated and slower than fp32. Machines change, so
nothing here is assumed: the flags are read from /proc/cpuinfo (Linux) each run, and
HGPOSE_CPU_BF16=0 (or 1) overrides the answer, e.g. to test the fp32 fallback.
"""

from __future__ import annotations

import functools
import os

BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo is unavailable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (platform's guess elsewhere)."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_features() -> list[str]:
    """The native-bf16 features present, e.g. ["avx512_bf16"] ([] on a CPU without them)."""
    return [flag for flag in BF16_FLAGS if flag in cpu_flags()]


def native_bf16() -> bool:
    """Whether bf16 autocast on this CPU runs natively (honours HGPOSE_CPU_BF16=0/1)."""
    forced = os.environ.get("HGPOSE_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    return bool(bf16_features())


# --- the C allocator ---------------------------------------------------------------------

# glibc's malloc serves a request above its mmap threshold (at most 32 MiB) with a fresh
# mmap and gives the pages back on free. A hourglass's activations are larger than that
# (the newell network's 256 x 64 x 64 features of 16 crops: 64 MiB), so every layer of every
# step mapped new memory and the kernel zeroed it page by page: measured on a 2-core AVX2 CPU,
# a 2-stack newell training step at batch 16 spent 37 % of its CPU time in the kernel
# (10.8 M minor page faults in 3 steps) and ran 2.5x slower than with the memory kept.
# Keeping freed memory in the heap (mmap off for malloc, no trimming) removes that cost; the
# price is that the process keeps its peak memory until it exits, which a training or
# evaluation process reaches anyway. jemalloc/tcmalloc via LD_PRELOAD do the same from
# outside; this needs nothing installed.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4   # mallopt's parameter numbers (glibc malloc.h)


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Tells glibc's malloc to keep freed memory for reuse (see above), once per process.
    Returns whether it is in effect: False on a C library other than glibc, and where
    HGPOSE_KEEP_MEMORY=0 turns it off. Results do not change: only where memory comes from."""
    import ctypes
    import platform

    if os.environ.get("HGPOSE_KEEP_MEMORY") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        # mallopt returns 1 on success; the largest trim threshold it takes is a C int's.
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False
