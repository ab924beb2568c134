"""lrlib.layers SVDConv2d, Tucker2Conv2d and CPConv2d: each chain at exact rank equals the
dense convolution across geometries; FLOP and parameter formulas agree with lrlib.profile;
round trips; bad input."""

import io
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from lrlib import layers, profile, tensor
from lrlib.layers import (CPConv2d, SVDConv2d, Tucker2Conv2d, conv_flops, conv_output_size,
                          max_cp_rank)

# random (untrained) kernels often have no good low CP rank, and ALS says so; these tests
# check the chains, not the decomposition's quality
pytestmark = pytest.mark.filterwarnings("ignore::lrlib.tensor.DegenerateCPWarning")


def _conv(c_in, c_out, kernel_size, *, seed=0, dtype=torch.float32, **geometry):
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, kernel_size, **geometry).to(dtype)


def _cp_factors(shape, rank, seed=0):
    """Generic CP factors of a kernel of exactly CP rank ``rank``, scaled so that its
    entries are O(0.1): ``(weights, [A_out, A_in, A_h, A_w])``."""
    g = torch.Generator().manual_seed(seed)
    factors = [torch.randn(n, rank, generator=g, dtype=torch.float64) for n in shape]
    weights = torch.full((rank,), 0.3 / tensor.cp_to_tensor(None, factors).abs().max().item(),
                         dtype=torch.float64)
    return weights, factors


geometries = st.fixed_dictionaries({
    "kernel_size": st.tuples(st.integers(1, 4), st.integers(1, 4)),
    "stride": st.sampled_from([1, 2, (2, 1), (1, 3)]),
    "padding": st.sampled_from([0, 1, (2, 0), "valid", "same"]),
    "dilation": st.sampled_from([1, 2, (1, 2)]),
    "bias": st.booleans(),
})


def _legal(geometry, input_hw):
    if geometry["padding"] == "same" and geometry["stride"] != 1:
        return False
    h, w = conv_output_size(input_hw, geometry["kernel_size"], geometry["stride"],
                            geometry["padding"], geometry["dilation"])
    return h >= 1 and w >= 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(geometry=geometries, c_in=st.integers(1, 6), c_out=st.integers(1, 6),
       input_hw=st.tuples(st.integers(5, 12), st.integers(5, 12)), data=st.data())
def test_every_chain_at_exact_rank_equals_the_dense_conv(geometry, c_in, c_out, input_hw, data):
    if not _legal(geometry, input_hw):
        return
    dense = _conv(c_in, c_out, **geometry)
    k_h, k_w = dense.kernel_size
    x = torch.randn(2, c_in, *input_hw, generator=torch.Generator().manual_seed(1))
    expected = dense(x)

    # channel SVD at full rank and Tucker-2 at full ranks: exact for any kernel
    full = min(c_out, c_in * k_h * k_w)
    chains = [SVDConv2d.from_conv(dense, full), Tucker2Conv2d.from_conv(dense, (c_out, c_in))]
    # CP: a kernel of exactly CP rank R, and the chains built from its factors
    rank = data.draw(st.integers(1, min(4, max_cp_rank((c_out, c_in, k_h, k_w)))))
    weights, factors = _cp_factors((c_out, c_in, k_h, k_w), rank, seed=rank)
    with torch.no_grad():
        dense.weight.copy_(tensor.cp_to_tensor(weights, factors))
    expected_cp = dense(x)
    geometry_only = {k: getattr(dense, k) for k in ("stride", "padding", "dilation")}
    cps = [CPConv2d.from_cp(weights, factors, dense.bias, implementation=i, dtype=torch.float32,
                            **geometry_only) for i in ("separable", "fused")]
    for chain in chains:
        assert chain(x).shape == expected.shape
        assert torch.allclose(chain(x), expected, atol=1e-4), type(chain).__name__
    for chain in cps:
        assert chain(x).shape == expected_cp.shape
        assert torch.allclose(chain(x), expected_cp, atol=1e-4), chain.implementation


@pytest.mark.parametrize("shape, rank", [((8, 6, 3, 3), 4), ((16, 12, 3, 3), 8), ((6, 5, 1, 1), 3),
                                         ((10, 7, 3, 5), 5)])
def test_cp_from_conv_recovers_a_kernel_of_exact_cp_rank(shape, rank):
    weights, factors = _cp_factors(shape, rank, seed=1)
    dense = _conv(shape[1], shape[0], shape[2:], padding="same")
    with torch.no_grad():
        dense.weight.copy_(tensor.cp_to_tensor(weights, factors))
    x = torch.randn(2, shape[1], 9, 8)
    for implementation in ("separable", "fused"):
        chain = CPConv2d.from_conv(dense, rank, implementation=implementation, n_iter_max=1000, tol=1e-14)
        assert torch.allclose(chain(x), dense(x), atol=1e-4)


@pytest.mark.parametrize("make", [
    lambda conv: SVDConv2d.from_conv(conv, 5),
    lambda conv: Tucker2Conv2d.from_conv(conv, (6, 4)),
    lambda conv: CPConv2d.from_conv(conv, 7, implementation="separable"),
    lambda conv: CPConv2d.from_conv(conv, 7, implementation="fused"),
], ids=["svd", "tucker2", "cp-separable", "cp-fused"])
@pytest.mark.parametrize("geometry, input_hw", [
    ({"kernel_size": 3, "padding": 1}, (14, 14)),
    ({"kernel_size": (3, 5), "stride": (2, 1), "padding": (1, 2), "dilation": (2, 1)}, (15, 11)),
    ({"kernel_size": 1}, (7, 9)),
])
def test_flops_params_and_to_dense_agree_with_the_chain(make, geometry, input_hw):
    dense = _conv(8, 10, **geometry)
    chain = make(dense)
    x = torch.randn(3, 8, *input_hw)
    assert chain.flops(input_hw) == profile.count_flops(chain, x) // 3
    assert layers.dense_flops(dense, input_hw) == conv_flops(dense, input_hw) == profile.count_flops(dense, x) // 3
    assert chain.params == profile.count_params(chain)
    rebuilt = chain.to_dense()
    assert isinstance(rebuilt, nn.Conv2d) and rebuilt.weight.shape == dense.weight.shape
    assert (rebuilt.stride, rebuilt.padding, rebuilt.dilation) == (dense.stride, dense.padding, dense.dilation)
    assert torch.allclose(rebuilt(x), chain(x), atol=1e-5)


def test_parameter_formulas_in_the_docstrings():
    dense = _conv(16, 32, 3, padding=1)
    r, (r_out, r_in) = 6, (7, 5)
    assert SVDConv2d.from_conv(dense, r).params == r * (16 * 9 + 32) + 32
    assert Tucker2Conv2d.from_conv(dense, (r_out, r_in)).params == 16 * r_in + r_in * r_out * 9 + r_out * 32 + 32
    assert CPConv2d.from_conv(dense, r, implementation="separable").params == r * (16 + 3 + 3 + 32) + 32
    assert CPConv2d.from_conv(dense, r, implementation="fused").params == r * (16 + 9 + 32) + 32


def test_truncation_errors_are_the_decompositions_errors():
    """The chains store exactly what the decompositions computed: SVD error = Eckart–Young,
    Tucker-2 error = HOOI's error, CP error = ALS's error."""
    dense = _conv(12, 16, 3, padding=1, seed=3)
    K = dense.weight.detach().double()
    S = torch.linalg.svdvals(K.reshape(16, -1))
    svd_chain = SVDConv2d.from_conv(dense, 5)
    error = torch.linalg.vector_norm(svd_chain.dense_kernel().double() - K)
    assert error.item() == pytest.approx(S[5:].norm().item(), rel=1e-5)

    hooi = tensor.tucker_hooi(K, (6, 4, 3, 3))
    tucker_chain = Tucker2Conv2d.from_conv(dense, (6, 4))
    error = torch.linalg.vector_norm(tucker_chain.dense_kernel().double() - K) / K.norm()
    assert error.item() == pytest.approx(hooi.rec_errors[-1], rel=1e-4)

    cp = tensor.cp_als(K, 8, seed=0)                  # from_conv has cp_als's defaults
    cp_chain = CPConv2d.from_conv(dense, 8)
    error = torch.linalg.vector_norm(cp_chain.dense_kernel().double() - K) / K.norm()
    assert error.item() == pytest.approx(cp.rec_errors[-1], rel=1e-4)


def test_separable_and_fused_cp_compute_the_same_function():
    dense = _conv(8, 12, 3, padding=1, stride=2)
    separable = CPConv2d.from_conv(dense, 6, implementation="separable")
    fused = CPConv2d.from_conv(dense, 6)
    assert fused.implementation == layers.DEFAULT_CP_IMPLEMENTATION == "fused"
    x = torch.randn(2, 8, 13, 9)
    assert torch.allclose(separable(x), fused(x), atol=1e-5)
    assert torch.allclose(separable.dense_kernel(), fused.dense_kernel(), atol=1e-6)


def test_source_untouched_state_dict_round_trip_and_repr():
    dense = _conv(6, 8, 3, padding=1)
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    x = torch.randn(2, 6, 9, 9)
    for chain, fresh in [
        (SVDConv2d.from_conv(dense, 4), SVDConv2d(6, 8, 3, 4, padding=1)),
        (Tucker2Conv2d.from_conv(dense, (5, 3)), Tucker2Conv2d(6, 8, 3, (5, 3), padding=1)),
        (CPConv2d.from_conv(dense, 5, implementation="separable"),
         CPConv2d(6, 8, 3, 5, padding=1, implementation="separable")),
        (CPConv2d.from_conv(dense, 5, implementation="fused"),
         CPConv2d(6, 8, 3, 5, padding=1, implementation="fused")),
    ]:
        buffer = io.BytesIO()
        torch.save(chain.state_dict(), buffer)
        buffer.seek(0)
        fresh.load_state_dict(torch.load(buffer, weights_only=True))
        assert torch.equal(fresh(x), chain(x))
    for key, value in dense.state_dict().items():
        assert torch.equal(value, before[key])
    assert "rank=(5, 3)" in repr(Tucker2Conv2d.from_conv(dense, (5, 3)))
    assert "rank=5" in repr(CPConv2d.from_conv(dense, 5)) and "'fused'" in repr(CPConv2d(6, 8, 3, 5))
    assert "rank=4" in repr(SVDConv2d.from_conv(dense, 4))


def test_no_bias_and_exportable():
    dense = _conv(4, 6, 3, padding=1, bias=False)
    chain = Tucker2Conv2d.from_conv(dense, (3, 2)).eval()
    assert chain.last.bias is None and chain.to_dense().bias is None
    x = torch.randn(1, 4, 8, 8)
    assert torch.allclose(torch.export.export(chain, (x,)).module()(x), chain(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda():
    dense = _conv(8, 8, 3, padding=1).cuda()
    x = torch.randn(2, 8, 10, 10, device="cuda")
    for chain in (SVDConv2d.from_conv(dense, 8), Tucker2Conv2d.from_conv(dense, (8, 8))):
        assert chain.first.weight.is_cuda and torch.allclose(chain(x), dense(x), atol=1e-4)


@pytest.mark.parametrize("call, error, match", [
    (lambda: SVDConv2d.from_conv(nn.Conv1d(2, 2, 3), 1), TypeError, "Conv1d, Conv3d"),
    (lambda: Tucker2Conv2d.from_conv(nn.Conv3d(2, 2, 3), (1, 1)), TypeError, "Conv1d, Conv3d"),
    (lambda: CPConv2d.from_conv(nn.ConvTranspose2d(2, 2, 3), 1), TypeError, "transposed"),
    (lambda: CPConv2d.from_conv(nn.Linear(2, 2), 1), TypeError, "got Linear"),
    (lambda: Tucker2Conv2d.from_conv(nn.Conv2d(4, 4, 3, groups=2), (2, 2)), ValueError, "groups=2"),
    (lambda: SVDConv2d.from_conv(nn.Conv2d(4, 4, 3, padding_mode="reflect"), 2), ValueError,
     "padding_mode='reflect'"),
    (lambda: SVDConv2d.from_conv(nn.Conv2d(4, 6, 3), 7), ValueError, r"between 1 and min\(6, 36\) = 6, got 7"),
    (lambda: SVDConv2d.from_conv(nn.Conv2d(4, 6, 3), 0), ValueError, "got 0"),
    (lambda: Tucker2Conv2d.from_conv(nn.Conv2d(4, 6, 3), (2, 5)), ValueError, r"rank\[1\] \(R_in\) must be an int between 1 and 4, got 5"),
    (lambda: Tucker2Conv2d.from_conv(nn.Conv2d(4, 6, 3), (7, 2)), ValueError, r"rank\[0\] \(R_out\) must be an int between 1 and 6"),
    (lambda: Tucker2Conv2d.from_conv(nn.Conv2d(4, 6, 3), (2, 2.0)), TypeError, r"rank\[1\] \(R_in\) must be an int"),
    (lambda: Tucker2Conv2d.from_conv(nn.Conv2d(4, 6, 3), (2, 2, 3)), ValueError, r"pair \(R_out, R_in\)"),
    (lambda: Tucker2Conv2d.from_conv(nn.Conv2d(4, 6, 3), 2), TypeError, r"pair \(R_out, R_in\)"),
    (lambda: CPConv2d.from_conv(nn.Conv2d(2, 2, 3), 13), ValueError, r"rank must be an int between 1 and 12, got 13"),
    (lambda: CPConv2d.from_conv(nn.Conv2d(2, 2, 3), -1), ValueError, "got -1"),
    (lambda: CPConv2d.from_conv(nn.Conv2d(2, 2, 3), 2.5), TypeError, "rank must be an int"),
    (lambda: CPConv2d.from_conv(nn.Conv2d(2, 2, 3), 2, implementation="winograd"), ValueError,
     "implementation must be one of"),
    (lambda: CPConv2d(2, 2, 3, 2, stride=2, padding="same"), ValueError, "needs stride 1"),
    (lambda: SVDConv2d(0, 2, 3, 1), ValueError, "in_channels must be a positive int"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_nan_weights_are_refused():
    dense = _conv(3, 3, 3)
    with torch.no_grad():
        dense.weight[0, 0, 0, 0] = float("nan")
    for make in (lambda c: SVDConv2d.from_conv(c, 2), lambda c: Tucker2Conv2d.from_conv(c, (2, 2)),
                 lambda c: CPConv2d.from_conv(c, 2)):
        with pytest.raises(ValueError, match=r"conv.weight contains NaN or Inf"):
            make(dense)
