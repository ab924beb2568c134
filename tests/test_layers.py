"""lrlib.layers.LowRankLinear: equals the dense layer at full rank, round-trips, exports."""

import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lrlib import profile, svd
from lrlib.layers import LowRankLinear


def _linear(n_in, n_out, dtype=torch.float32, seed=0, bias=True):
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out, bias=bias).to(dtype)


@pytest.mark.parametrize("algorithm", ["svd", "randomized"])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_full_rank_equals_the_dense_layer(algorithm, dtype, tol):
    dense = _linear(40, 24, dtype)
    low = LowRankLinear.from_linear(dense, 24, algorithm=algorithm)
    x = torch.randn(8, 40, dtype=dtype)
    with torch.no_grad():
        assert torch.allclose(low(x), dense(x), atol=tol, rtol=tol)
    assert low.first.weight.dtype == dtype


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 24), st.integers(1, 24), st.data())
def test_truncation_error_is_eckart_young(n_in, n_out, data):
    rank = data.draw(st.integers(1, min(n_in, n_out)))
    dense = _linear(n_in, n_out, torch.float64, seed=n_in * 31 + n_out)
    low = LowRankLinear.from_linear(dense, rank)
    error = torch.linalg.matrix_norm(low.to_dense().weight - dense.weight).item()
    expected = svd.eckart_young_error(torch.linalg.svdvals(dense.weight.detach()), rank)
    assert error == pytest.approx(expected, rel=1e-6, abs=1e-10)
    assert low.params == rank * (n_in + n_out) + n_out
    assert low.flops() == profile.count_flops(low, torch.zeros(1, n_in, dtype=torch.float64))
    tokens = torch.zeros(1, 7, n_in, dtype=torch.float64)      # a Linear applied at 7 positions
    assert low.flops((7,)) == profile.count_flops(low, tokens) == 7 * low.flops()


def test_the_singular_values_are_split_evenly_between_the_factors():
    dense = _linear(10, 6, torch.float64)
    S = torch.linalg.svdvals(dense.weight.detach())[:3]
    balanced = LowRankLinear.from_linear(dense, 3)
    assert torch.allclose(balanced.first.weight.norm(dim=1), S.sqrt())
    assert torch.allclose(balanced.last.weight.norm(dim=0), S.sqrt())


def test_like_is_an_untrained_copy_with_the_dense_geometry():
    dense = _linear(12, 9, torch.float64, bias=False)
    empty = LowRankLinear.like(dense, 4, device="meta")
    assert (empty.in_features, empty.out_features, empty.rank) == (12, 9, 4)
    assert empty.last.bias is None and empty.first.weight.is_meta
    assert empty.params == LowRankLinear.from_linear(dense, 4).params == 4 * (12 + 9)
    assert LowRankLinear.like(_linear(5, 3), 2).first.weight.dtype == torch.float32
    assert LowRankLinear.rank_candidates(dense) == list(range(1, 10))


def test_randomized_method_is_close_to_exact():
    dense = _linear(300, 200, torch.float64)
    exact = LowRankLinear.from_linear(dense, 50)
    randomized = LowRankLinear.from_linear(dense, 50, algorithm="randomized", seed=0)
    e_exact = torch.linalg.matrix_norm(exact.to_dense().weight - dense.weight)
    e_rand = torch.linalg.matrix_norm(randomized.to_dense().weight - dense.weight)
    assert e_exact <= e_rand <= 1.1 * e_exact


def test_to_dense_and_source_untouched_and_no_bias():
    dense = _linear(16, 12, bias=False)
    before = dense.weight.clone()
    low = LowRankLinear.from_linear(dense, 12)
    assert torch.equal(dense.weight, before)
    back = low.to_dense()
    assert isinstance(back, nn.Linear) and back.bias is None
    assert torch.allclose(back.weight, dense.weight, atol=1e-5)
    assert low.params == 12 * 28


def test_state_dict_round_trip():
    low = LowRankLinear.from_linear(_linear(20, 10), 4)
    buffer = io.BytesIO()
    torch.save(low.state_dict(), buffer)
    buffer.seek(0)
    fresh = LowRankLinear(20, 10, 4)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(3, 20)
    assert torch.equal(fresh(x), low(x))


def test_extra_repr_shows_the_rank():
    low = LowRankLinear(784, 1024, 64)
    assert "in_features=784, out_features=1024, rank=64, bias=True" in repr(low)


def test_exportable_with_torch_export():
    """The course exports with torch.export (TorchScript is deprecated in torch 2.13)."""
    low = LowRankLinear.from_linear(_linear(20, 10), 4).eval()
    x = torch.randn(2, 20)
    exported = torch.export.export(low, (x,))
    assert torch.allclose(exported.module()(x), low(x))
    model = nn.Sequential(LowRankLinear.from_linear(_linear(20, 10), 4), nn.ReLU()).eval()
    assert torch.allclose(torch.export.export(model, (x,)).module()(x), model(x))


def test_batched_and_sequence_inputs():
    low = LowRankLinear.from_linear(_linear(8, 6), 3)
    x = torch.randn(2, 5, 8)
    assert low(x).shape == (2, 5, 6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda():
    dense = _linear(64, 32).cuda()
    low = LowRankLinear.from_linear(dense, 32)
    x = torch.randn(4, 64, device="cuda")
    assert low.first.weight.is_cuda and torch.allclose(low(x), dense(x), atol=1e-4)


def test_bad_arguments():
    dense = _linear(8, 6)
    with pytest.raises(TypeError, match="linear must be an nn.Linear, got Conv2d"):
        LowRankLinear.from_linear(nn.Conv2d(1, 1, 1), 1)
    with pytest.raises(ValueError, match=r"rank must be between 1 and min\(6, 8\) = 6, got 7"):
        LowRankLinear.from_linear(dense, 7)
    with pytest.raises(ValueError, match="got 0"):
        LowRankLinear.from_linear(dense, 0)
    with pytest.raises(TypeError, match="rank must be an int"):
        LowRankLinear.from_linear(dense, True)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        LowRankLinear.from_linear(dense, 2, algorithm="qr")
    with pytest.raises(TypeError, match="in_features must be a positive int"):
        LowRankLinear("8", 6, 2)
    with torch.no_grad():
        dense.weight[0, 0] = math.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        LowRankLinear.from_linear(dense, 2)


def test_from_svd_reuses_one_decomposition_for_many_ranks():
    dense = _linear(30, 20, torch.float64)
    U, S, Vh = torch.linalg.svd(dense.weight.detach(), full_matrices=False)
    for rank in (1, 5, 20):
        from_svd = LowRankLinear.from_svd(U, S, Vh, dense.bias, rank=rank)
        from_linear = LowRankLinear.from_linear(dense, rank)
        x = torch.randn(3, 30, dtype=torch.float64)
        assert torch.allclose(from_svd(x), from_linear(x), atol=1e-10)
    with pytest.raises(ValueError, match="shapes"):
        LowRankLinear.from_svd(U, S[:3], Vh, rank=2)
    with pytest.raises(ValueError, match="shapes"):
        LowRankLinear.from_svd(U, S, Vh[:3], rank=2)
