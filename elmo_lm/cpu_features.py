"""Whether this CPU runs bfloat16 matmuls faster than float32, read from its feature flags.

On an AMD EPYC with AVX-512 BF16, bfloat16 matmuls ran about twice as fast as float32; on an
Intel Xeon with AVX-512 BF16 but no AMX, at half float32's speed (`benchmarks/RESULTS-kernels.md`).
So bfloat16 pays where the CPU has AMX tiles for it (Intel Sapphire Rapids and later) or AVX-512
BF16 on AMD; elsewhere it saves memory but not time. The rule reads flags only, so it is the
same on every run of a machine; where no flags can be read (not Linux), it answers True.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """The vendor id and the feature flags of the first processor listed in `/proc/cpuinfo` text."""
    vendor, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags":
            flags = frozenset(value.split())
            break
    return vendor, flags


def bfloat16_is_fast_for(vendor: str, flags: frozenset[str]) -> bool:
    """True where bfloat16 matmuls are known to beat float32: AMX-BF16, or AVX-512 BF16 on AMD."""
    return "amx_bf16" in flags or (vendor == "AuthenticAMD" and "avx512_bf16" in flags)


@lru_cache(maxsize=1)
def this_cpu() -> tuple[str, frozenset[str]] | None:
    """This machine's vendor id and feature flags, or None where `/proc/cpuinfo` cannot be read."""
    try:
        return parse_cpuinfo(CPUINFO.read_text())
    except OSError:
        return None


def bfloat16_is_fast() -> bool:
    """`bfloat16_is_fast_for` this machine (True where no flags can be read)."""
    cpu = this_cpu()
    return cpu is None or not cpu[1] or bfloat16_is_fast_for(*cpu)


SLOW_BFLOAT16_WARNING = (
    "precision='bfloat16': this CPU has neither AMX nor AMD's AVX-512 BF16, and its bfloat16 matmuls "
    "are likely no faster than float32 (on a Xeon without AMX they ran at half float32's speed); "
    "bfloat16 still halves the model's memory, but float32 is exact and probably as fast here")


def is_intel() -> bool:
    """Whether this CPU is Intel's (False where `/proc/cpuinfo` cannot be read)."""
    cpu = this_cpu()
    return cpu is not None and cpu[0] == "GenuineIntel"
