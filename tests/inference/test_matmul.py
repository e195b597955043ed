"""`elmo_lm.inference.matmul.linear` computes `F.linear`, whatever the row count, layout or packing."""

import pytest
import torch
import torch.nn.functional as F

from elmo_lm.inference import matmul
from elmo_lm.inference.matmul import linear, pack, pack_mkl, pack_onednn


@pytest.mark.parametrize("rows", [1, 5, 8, 31, 32, 33, 64, 65, 200])
@pytest.mark.parametrize("layout", ["contiguous", "transposed view", "packed", "oneDNN-packed", "MKL-packed"])
def test_linear_equals_f_linear_in_float32(rows, layout):
    torch.manual_seed(rows)
    x, weight, bias = torch.randn(rows, 48), torch.randn(96, 48), torch.randn(96)
    expected = F.linear(x, weight, bias)  # (rows, 96)
    if layout == "transposed view":
        weight = weight.t().contiguous().t()  # (96, 48) with the strides of a transpose
    elif layout == "packed":
        weight = pack(weight)
    elif layout == "oneDNN-packed":
        weight = pack_onednn(weight)
    elif layout == "MKL-packed":
        if not matmul.MKL_PACKED:
            pytest.skip("this PyTorch build has no MKL packed matmul")
        weight = pack_mkl(weight)  # packed for MKL_PACK_ROWS rows, used at every row count
    result = linear(x, weight, bias)
    assert result.shape == (rows, 96) and result.dtype == torch.float32
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)


def test_linear_in_bfloat16_is_close_and_keeps_the_dtype():
    torch.manual_seed(0)
    x, weight, bias = torch.randn(70, 64), torch.randn(128, 64), torch.randn(128)
    expected = F.linear(x, weight, bias)
    for w in (weight.bfloat16(), pack(weight.bfloat16())):
        result = linear(x.bfloat16(), w, bias)  # a float32 bias with bfloat16 inputs
        assert result.dtype == torch.bfloat16 and result.shape == (70, 128)
        torch.testing.assert_close(result.float(), expected, rtol=0.05, atol=0.3)


def test_without_onednn_or_mkl_everything_falls_back_to_f_linear(monkeypatch):
    monkeypatch.setattr(matmul, "ONEDNN", False)
    monkeypatch.setattr(matmul, "MKL_PACKED", False)
    x, weight = torch.randn(3, 4), torch.randn(5, 4)
    assert pack(weight) is weight  # nothing packed
    torch.testing.assert_close(linear(x, weight), F.linear(x, weight))


@pytest.mark.skipif(not (matmul.ONEDNN and matmul.MKL_PACKED), reason="this PyTorch build lacks oneDNN or MKL")
@pytest.mark.parametrize("intel", [True, False])
def test_pack_takes_mkl_for_float32_on_intel_only(monkeypatch, intel):
    monkeypatch.setattr(matmul, "is_intel", lambda: intel)
    weight = torch.randn(64, 32)
    assert isinstance(pack(weight), matmul.MklPacked) == intel
    assert not isinstance(pack(weight.bfloat16()), matmul.MklPacked)  # MKL packs float32 only


@pytest.mark.skipif(not matmul.ONEDNN, reason="this PyTorch build has no oneDNN")
def test_row_counts_are_rounded_so_that_few_kernel_shapes_exist():
    seen = set()
    real = torch.ops.mkldnn._linear_pointwise

    class Spy:
        def __call__(self, x, *args):
            seen.add(x.shape[0])
            return real(x, *args)

    weight = torch.randn(16, 8)
    ops = torch.ops.mkldnn
    original = ops._linear_pointwise
    try:
        ops._linear_pointwise = Spy()
        for rows in range(1, 300):
            linear(torch.randn(rows, 8), weight)
    finally:
        ops._linear_pointwise = original
    assert seen == set(range(1, 9)) | set(range(16, 65, 8)) | set(range(128, 321, 64))


@pytest.mark.parametrize("into_buffers", [True, False])
def test_a_result_written_into_the_buffer_is_right_and_reuses_it(monkeypatch, into_buffers):
    monkeypatch.setattr(matmul, "MKL_INTO_BUFFERS", into_buffers)
    torch.manual_seed(0)
    weight, bias = torch.randn(96, 48), torch.randn(96)
    results = []
    for rows in (70, 30):
        x = torch.randn(rows, 48)
        result = linear(x, weight, bias, into_buffer=True)
        torch.testing.assert_close(result, F.linear(x, weight, bias), rtol=1e-5, atol=1e-5)
        results.append(result)
    shares = results[0].untyped_storage().data_ptr() == results[1].untyped_storage().data_ptr()
    assert shares == into_buffers  # the second call overwrote the first's buffer, or each result is its own
