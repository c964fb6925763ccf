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
