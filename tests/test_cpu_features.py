"""The bfloat16 speed rule reads CPU flags; a bfloat16 embedder warns where it would not pay."""

import warnings

import pytest

from elmo_lm import Embedder, cpu_features
from elmo_lm.bundled import bundled_model_path
from elmo_lm.cli import main
from elmo_lm.cpu_features import bfloat16_is_fast_for, parse_cpuinfo
from elmo_lm.io import load_model

XEON_NO_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_fp16
processor\t: 1
vendor_id\t: GenuineIntel
flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_fp16
"""


def test_cpuinfo_gives_the_first_processors_vendor_and_flags():
    vendor, flags = parse_cpuinfo(XEON_NO_AMX)
    assert vendor == "GenuineIntel" and {"avx512_bf16", "avx512f"} <= flags and "amx_bf16" not in flags


@pytest.mark.parametrize("vendor, flags, fast", [
    ("GenuineIntel", {"avx512f", "avx512_bf16"}, False),  # measured: half float32's speed
    ("GenuineIntel", {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}, True),
    ("AuthenticAMD", {"avx512f", "avx512_bf16"}, True),  # Zen 4: measured twice float32's speed
    ("AuthenticAMD", {"avx2"}, False),
    ("GenuineIntel", {"avx2"}, False),
])
def test_bfloat16_is_fast_only_with_amx_or_amd_avx512_bf16(vendor, flags, fast):
    assert bfloat16_is_fast_for(vendor, frozenset(flags)) is fast


@pytest.fixture(scope="module")
def fixture_model():
    return load_model(bundled_model_path())


def _with_cpu(monkeypatch, fast: bool) -> None:
    monkeypatch.setattr(cpu_features, "bfloat16_is_fast", lambda: fast)
    monkeypatch.setattr("elmo_lm.embed.bfloat16_is_fast", lambda: fast)
    monkeypatch.setattr("elmo_lm.info.bfloat16_is_fast", lambda: fast)


def test_bfloat16_embedder_warns_on_a_cpu_where_it_does_not_pay(monkeypatch, fixture_model):
    _with_cpu(monkeypatch, fast=False)
    with pytest.warns(RuntimeWarning, match="no faster than float32"):
        Embedder(fixture_model, precision="bfloat16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Embedder(fixture_model)  # float32: nothing to say


def test_bfloat16_embedder_is_quiet_where_it_pays(monkeypatch, fixture_model):
    _with_cpu(monkeypatch, fast=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Embedder(fixture_model, precision="bfloat16")


@pytest.mark.parametrize("fast, expected", [(True, "faster than float32"), (False, "use float32")])
def test_elmo_info_tells_whether_bfloat16_pays_here(monkeypatch, capsys, fast, expected):
    _with_cpu(monkeypatch, fast=fast)
    assert main(["info"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("bfloat16 here")]
    assert len(row) == 1 and expected in row[0]
