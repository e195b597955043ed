"""The bfloat16 rules read CPU flags: bfloat16 runs with AVX-512 BW/VL/DQ or AVX-NE-CONVERT, pays with AMX
or AMD's AVX-512 BF16; elsewhere a bfloat16 embedder warns, and falls back to float32 where it cannot run.
CPUs are simulated by replacing `cpu_features.this_cpu`, so these pass on AVX2, AVX-512 and AMX machines."""

import os
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import ALLENNLP
from elmo_lm import Elmo, Embedder, batch_to_ids, cpu_features
from elmo_lm.bundled import bundled_model_path
from elmo_lm.cli import main
from elmo_lm.cpu_features import bfloat16_is_fast_for, bfloat16_runs_for, describe_cpuinfo, parse_cpuinfo
from elmo_lm.inference import matmul, use_precision
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


def test_cpu_description_names_the_model_family_and_vector_flags_only():
    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel name\t: AMD EPYC\n" \
           "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\nprocessor\t: 1\nmodel name\t: other\n"
    assert describe_cpuinfo(text) == "AMD EPYC (family 26; avx2 avx512f avx512_bf16 avx512_vnni)"
    assert describe_cpuinfo("") == "? (family ?; )"


@pytest.mark.parametrize("vendor, flags, fast", [
    ("GenuineIntel", {"avx512f", "avx512_bf16"}, False),  # measured: half float32's speed
    ("GenuineIntel", {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}, True),
    ("AuthenticAMD", {"avx512f", "avx512_bf16"}, True),  # Zen 4: measured twice float32's speed
    ("AuthenticAMD", {"avx2"}, False),
    ("GenuineIntel", {"avx2"}, False),
])
def test_bfloat16_is_fast_only_with_amx_or_amd_avx512_bf16(vendor, flags, fast):
    assert bfloat16_is_fast_for(vendor, frozenset(flags)) is fast


CPUS = {  # vendor and flags of the three kinds of machine the project runs on, and one with AMX
    "EPYC AVX2 only": ("AuthenticAMD", frozenset({"fpu", "sse4_2", "avx", "avx2", "fma"})),
    "EPYC Zen 4": ("AuthenticAMD", frozenset({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16"})),
    "Xeon without AMX": ("GenuineIntel", frozenset({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                                                    "avx512_bf16"})),
    "Xeon with AMX": ("GenuineIntel", frozenset({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                                                 "avx512_bf16", "amx_tile", "amx_bf16"})),
}


@pytest.mark.parametrize("flags, runs", [
    ({"avx", "avx2", "fma"}, False),  # the AVX2-only EPYC where PyTorch refused bfloat16
    ({"avx2", "avx512f", "avx512bw", "avx512vl"}, False),  # DQ missing
    ({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq"}, True),
    ({"avx2", "avx_ne_convert"}, True),
    (CPUS["Xeon with AMX"][1], True),
])
def test_bfloat16_runs_with_avx512_bw_vl_dq_or_avx_ne_convert(flags, runs):
    assert bfloat16_runs_for(frozenset(flags)) is runs


def test_cpu_flags_are_read_on_first_use_not_at_import():
    code = ("import sys, elmo_lm, elmo_lm.cli, elmo_lm.inference.packed_lstm, elmo_lm.inference.matmul\n"
            "from elmo_lm import cpu_features\n"
            "assert cpu_features.this_cpu.cache_info().currsize == 0, 'read at import'\n"
            "cpu_features.bfloat16_runs()\n"
            "assert cpu_features.this_cpu.cache_info().currsize == 1\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def fixture_model():
    return load_model(bundled_model_path())


def _with_cpu(monkeypatch, name: str) -> None:
    """Simulate a CPU: every decision reads its flags through `this_cpu`."""
    monkeypatch.setattr(cpu_features, "this_cpu", lambda: CPUS[name])


def test_bfloat16_embedder_warns_on_a_cpu_where_it_does_not_pay(monkeypatch, fixture_model):
    _with_cpu(monkeypatch, "Xeon without AMX")
    with pytest.warns(RuntimeWarning, match="no faster than float32") as caught:
        Embedder(fixture_model, precision="bfloat16")
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Embedder(fixture_model)  # float32: nothing to say


@pytest.mark.parametrize("cpu", ["EPYC Zen 4", "Xeon with AMX"])
def test_bfloat16_embedder_is_quiet_where_it_pays(monkeypatch, fixture_model, cpu):
    _with_cpu(monkeypatch, cpu)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Embedder(fixture_model, precision="bfloat16").precision == "bfloat16"


@pytest.mark.parametrize("cpu, expected", [("EPYC Zen 4", "faster than float32"), ("Xeon with AMX", "faster"),
                                           ("Xeon without AMX", "use float32"), ("EPYC AVX2 only", "not supported")])
def test_elmo_info_tells_whether_bfloat16_pays_here(monkeypatch, capsys, cpu, expected):
    _with_cpu(monkeypatch, cpu)
    assert main(["info"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("bfloat16 here")]
    assert len(row) == 1 and expected in row[0]


# --- a CPU without bfloat16 instructions: float32 instead, one warning, never a crash ----------------------

def _vectors(embedder: Embedder) -> list:
    return embedder.encode([["The", "bank", "of", "the", "river", "."], ["Money", "in", "the", "bank"], []])


def test_bfloat16_embedder_runs_float32_on_an_avx2_cpu(monkeypatch):
    _with_cpu(monkeypatch, "EPYC AVX2 only")
    files = dict(options_file=ALLENNLP / "options.json", weight_file=ALLENNLP / "lm_weights.hdf5")
    with pytest.warns(RuntimeWarning, match="lacks the instructions bfloat16 matmuls need") as caught:
        embedder = Embedder(**files, precision="bfloat16")
    assert len(caught) == 1 and caught[0].filename == __file__  # one warning, at the caller's line
    assert embedder.precision == "float32"
    assert embedder.model.lstm.input_weight[0].dtype == torch.float32
    for got, exact in zip(_vectors(embedder), _vectors(Embedder(**files))):
        np.testing.assert_array_equal(got, exact)


def test_elmo_module_in_bfloat16_runs_float32_on_an_avx2_cpu(monkeypatch):
    _with_cpu(monkeypatch, "EPYC AVX2 only")
    ids = batch_to_ids([["The", "bank", "."], ["a"]])
    with pytest.warns(RuntimeWarning, match="running in float32 instead"):
        elmo = Elmo(ALLENNLP / "options.json", ALLENNLP / "lm_weights.hdf5", 1, dropout=0.0, precision="bfloat16")
    exact = Elmo(ALLENNLP / "options.json", ALLENNLP / "lm_weights.hdf5", 1, dropout=0.0)
    torch.testing.assert_close(elmo(ids)["elmo_representations"][0], exact(ids)["elmo_representations"][0],
                               rtol=0, atol=0)


def test_bfloat16_matmuls_on_an_avx2_cpu_are_computed_in_float32(monkeypatch):
    """The kernels themselves never hand bfloat16 to oneDNN there (PyTorch would raise)."""
    _with_cpu(monkeypatch, "EPYC AVX2 only")
    torch.manual_seed(0)
    x, weight, bias = torch.randn(70, 64).bfloat16(), torch.randn(128, 64).bfloat16(), torch.randn(128)
    assert matmul.pack(weight) is weight  # not reordered for oneDNN
    result = matmul.linear(x, weight, bias)
    assert result.dtype == torch.bfloat16
    torch.testing.assert_close(result, F.linear(x.float(), weight.float(), bias).bfloat16(), rtol=0, atol=0)


def test_model_in_bfloat16_runs_on_an_avx2_cpu(monkeypatch, fixture_model):
    """The model's own bfloat16 inference path (no entry-point fallback) works there, close to float32."""
    _with_cpu(monkeypatch, "EPYC AVX2 only")
    ids = batch_to_ids([["The", "bank", "of", "the", "river", "."]])
    with torch.inference_mode():
        exact = fixture_model(ids).layers
        with use_precision("bfloat16"):
            approximate = fixture_model(ids).layers
    cosine = F.cosine_similarity(exact.flatten(0, -2), approximate.flatten(0, -2), dim=-1)
    assert approximate.dtype == torch.float32 and cosine.mean() > 0.99


SIMULATED_CPU = """import sys
from elmo_lm import cpu_features
cpu_features.this_cpu = lambda: ("AuthenticAMD", frozenset({"avx", "avx2", "fma"}))
from elmo_lm.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_cli_embed_in_bfloat16_on_an_avx2_cpu_warns_once_and_writes_float32(tmp_path):
    """`elmo embed --precision bfloat16` on the AVX2-only EPYC (simulated flags): one warning line, exact vectors."""
    (tmp_path / "in.txt").write_text("The cat sat on the mat .\n\nthe bank of the river .\n")
    model = ["--options", str(ALLENNLP / "options.json"), "--weights", str(ALLENNLP / "lm_weights.hdf5"), "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    simulated = subprocess.run([sys.executable, "-c", SIMULATED_CPU, "embed", str(tmp_path / "in.txt"),
                                str(tmp_path / "b.hdf5"), "--precision", "bfloat16", *model],
                               capture_output=True, text=True, env=env)
    assert simulated.returncode == 0, simulated.stderr
    warning_lines = [line for line in simulated.stderr.splitlines() if "warning" in line]
    assert len(warning_lines) == 1 and "running in float32 instead" in warning_lines[0], simulated.stderr
    assert "Traceback" not in simulated.stderr
    subprocess.run([sys.executable, "-m", "elmo_lm", "embed", str(tmp_path / "in.txt"), str(tmp_path / "f.hdf5"),
                    *model], check=True, env=env)
    with h5py.File(tmp_path / "b.hdf5", "r") as got, h5py.File(tmp_path / "f.hdf5", "r") as exact:
        for key in ("0", "1", "2"):
            np.testing.assert_array_equal(got[key][...], exact[key][...])
