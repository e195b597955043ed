"""Whether this CPU runs bfloat16 matmuls at all, and faster than float32, read from its feature flags.

oneDNN's bfloat16 matmuls need AVX-512 (BW, VL and DQ) or AVX-NE-CONVERT; on other CPUs (an AMD
EPYC with AVX2 only) PyTorch refuses them with a RuntimeError. There the embedder and `Elmo` run
float32 instead, with one warning, and the kernels compute any bfloat16 matmul in float32.

On an AMD EPYC with AVX-512 BF16, bfloat16 matmuls ran about twice as fast as float32; on an
Intel Xeon with AVX-512 BF16 but no AMX, at half float32's speed (`benchmarks/RESULTS-kernels.md`).
So bfloat16 pays where the CPU has AMX tiles for it (Intel Sapphire Rapids and later) or AVX-512
BF16 on AMD; elsewhere it saves memory but not time. The rule reads flags only, so it is the
same on every run of a machine; where no flags can be read (not Linux), it answers True.
The flags are read on first use, not at import.
"""

from __future__ import annotations

import warnings
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


ONEDNN_BFLOAT16_FLAGS = (frozenset({"avx512bw", "avx512vl", "avx512dq"}), frozenset({"avx_ne_convert"}))
"""oneDNN runs bfloat16 matmuls on a CPU with all flags of one of these sets (PyTorch's own check)."""


def bfloat16_runs_for(flags: frozenset[str]) -> bool:
    """True where oneDNN's bfloat16 matmuls run: AVX-512 BW+VL+DQ, or AVX-NE-CONVERT."""
    return any(needed <= flags for needed in ONEDNN_BFLOAT16_FLAGS)


def bfloat16_is_fast_for(vendor: str, flags: frozenset[str]) -> bool:
    """True where bfloat16 matmuls are known to beat float32: AMX-BF16, or AVX-512 BF16 on AMD."""
    return "amx_bf16" in flags or (vendor == "AuthenticAMD" and "avx512_bf16" in flags)


def describe_cpuinfo(text: str) -> str:
    """The first processor's model name, family and vector-instruction flags (AVX*, AMX, VNNI, BF16), as
    benchmark records quote them: `AMD EPYC (family 26; avx2 avx512f ... avx512_bf16)`."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = [f for f in fields.get("flags", "").split() if f.startswith(("avx", "amx")) or "vnni" in f or "bf16" in f]
    return f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}; {' '.join(flags)})"


def describe_this_cpu() -> str:
    """`describe_cpuinfo` of this machine, or "unknown CPU" where `/proc/cpuinfo` cannot be read."""
    try:
        return describe_cpuinfo(CPUINFO.read_text())
    except OSError:
        return "unknown CPU"


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


def bfloat16_runs() -> bool:
    """`bfloat16_runs_for` this machine; where no flags can be read, PyTorch's own answer."""
    cpu = this_cpu()
    if cpu is not None and cpu[1]:
        return bfloat16_runs_for(cpu[1])
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


SLOW_BFLOAT16_WARNING = (
    "precision='bfloat16': this CPU has neither AMX nor AMD's AVX-512 BF16, and its bfloat16 matmuls "
    "are likely no faster than float32 (on a Xeon without AMX they ran at half float32's speed); "
    "bfloat16 still halves the model's memory, but float32 is exact and probably as fast here")


UNSUPPORTED_BFLOAT16_WARNING = (
    "precision='bfloat16': this CPU lacks the instructions bfloat16 matmuls need (AVX-512 BW/VL/DQ or "
    "AVX-NE-CONVERT); running in float32 instead (exact, and faster here than emulated bfloat16)")


def choose_precision(precision: str, device_type: str = "cpu") -> str:
    """The precision to run for the one asked: "float32" instead of "bfloat16" on a CPU without
    bfloat16 instructions, with a RuntimeWarning; a RuntimeWarning too where bfloat16 runs but
    is likely no faster than float32. At most one warning, raised at the caller's caller."""
    if precision != "bfloat16" or device_type != "cpu":
        return precision
    if not bfloat16_runs():
        warnings.warn(UNSUPPORTED_BFLOAT16_WARNING, RuntimeWarning, stacklevel=3)
        return "float32"
    if not bfloat16_is_fast():
        warnings.warn(SLOW_BFLOAT16_WARNING, RuntimeWarning, stacklevel=3)
    return precision


def is_intel() -> bool:
    """Whether this CPU is Intel's (False where `/proc/cpuinfo` cannot be read)."""
    cpu = this_cpu()
    return cpu is not None and cpu[0] == "GenuineIntel"
