"""lrlib.blocks: output shapes, the parameter and FLOP formulas (checked against
lrlib.profile), the 1×1-convolution-is-a-matmul identity, the separable factorization, and
clear errors for bad arguments."""

import itertools
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lrlib import blocks, profile


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------- 1×1 = matmul
@pytest.mark.parametrize("c_in, c_out, h, w", [(3, 5, 4, 6), (16, 8, 7, 7), (1, 1, 1, 1)])
def test_a_1x1_convolution_is_a_matmul_at_every_pixel(c_in, c_out, h, w):
    torch.manual_seed(0)
    conv = nn.Conv2d(c_in, c_out, 1).double()
    x = _randn(2, c_in, h, w, dtype=torch.float64)
    expected = conv(x)
    W, b = conv.weight[:, :, 0, 0], conv.bias
    # lrlib's function, with the 2-d and the 4-d weight
    torch.testing.assert_close(blocks.conv1x1_as_matmul(x, W, b), expected)
    torch.testing.assert_close(blocks.conv1x1_as_matmul(x, conv.weight, b), expected)
    # the same identity written with einsum and with nn.Linear on the pixels
    torch.testing.assert_close(torch.einsum("oi,bihw->bohw", W, x) + b[:, None, None], expected)
    linear = nn.Linear(c_in, c_out).double()
    with torch.no_grad():
        linear.weight.copy_(W)
        linear.bias.copy_(b)
    torch.testing.assert_close(linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), expected)


def test_conv1x1_as_matmul_without_bias_and_bad_shapes():
    x, W = _randn(2, 4, 3, 3), _randn(6, 4, seed=1)
    torch.testing.assert_close(blocks.conv1x1_as_matmul(x, W), F.conv2d(x, W[:, :, None, None]))
    with pytest.raises(ValueError, match=r"weight must have shape \(C_out, 4\).*got \(6, 5\)"):
        blocks.conv1x1_as_matmul(x, _randn(6, 5))
    with pytest.raises(ValueError, match=r"weight must have shape.*got \(6, 4, 3, 3\)"):
        blocks.conv1x1_as_matmul(x, _randn(6, 4, 3, 3))
    with pytest.raises(ValueError, match=r"x must be a 4-d tensor .*got shape \(4, 3\)"):
        blocks.conv1x1_as_matmul(_randn(4, 3), W)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        blocks.conv1x1_as_matmul([[1.0] * 4], W)
    with pytest.raises(TypeError, match="weight must be a torch.Tensor, got list"):
        blocks.conv1x1_as_matmul(x, [[1.0] * 4] * 6)
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\).*got \(4,\)"):
        blocks.conv1x1_as_matmul(x, W, _randn(4))


# --------------------------------------------------------------------------- Fire
FIRE_CASES = [(96, 16, 64, 64), (16, 4, 16, 16), (64, 16, 64, 64), (5, 2, 3, 7)]


@pytest.mark.parametrize("c, s, e1, e3", FIRE_CASES)
def test_fire_shapes_params_and_flops_match_its_formulas(c, s, e1, e3):
    fire = blocks.Fire(c, s, e1, e3)
    assert (fire.in_channels, fire.out_channels) == (c, e1 + e3)
    for batch, h, w in [(1, 8, 8), (3, 5, 9), (2, 1, 1)]:
        x = _randn(batch, c, h, w)
        y = fire(x)
        assert y.shape == (batch, e1 + e3, h, w)
        assert profile.count_flops(fire, x) == blocks.fire_flops(c, s, e1, e3, h, w, batch=batch)
        assert blocks.fire_flops(c, s, e1, e3, h, w, batch=batch) == \
            2 * batch * h * w * s * (c + e1 + 9 * e3)
    assert profile.count_params(fire) == blocks.fire_params(c, s, e1, e3)
    assert blocks.fire_params(c, s, e1, e3) == s * (c + e1 + 9 * e3) + s + e1 + e3


def test_fire_is_squeeze_then_two_expands_concatenated():
    torch.manual_seed(0)
    fire = blocks.Fire(8, 3, 4, 5)
    assert fire.squeeze.kernel_size == (1, 1) and fire.expand1x1.kernel_size == (1, 1)
    assert fire.expand3x3.kernel_size == (3, 3) and fire.expand3x3.padding == (1, 1)
    assert all(conv.bias is not None for conv in (fire.squeeze, fire.expand1x1, fire.expand3x3))
    x = _randn(2, 8, 6, 6)
    z = torch.relu(fire.squeeze(x))
    y = fire(x)
    torch.testing.assert_close(y[:, :4], torch.relu(fire.expand1x1(z)))
    torch.testing.assert_close(y[:, 4:], torch.relu(fire.expand3x3(z)))
    assert (y >= 0).all()


def test_squeezenets_fire2_has_the_published_parameter_count():
    # SqueezeNet's fire2: 96 → squeeze 16 → expand 64 (1×1) + 64 (3×3): 11,920 parameters
    assert blocks.fire_params(96, 16, 64, 64) == 11_920
    dense = 9 * 96 * 128 + 128
    assert dense / blocks.fire_params(96, 16, 64, 64) > 9


@pytest.mark.parametrize("args, error, message", [
    ((0, 4, 8, 8), ValueError, r"in_channels must be a positive int, got 0"),
    ((16, -1, 8, 8), ValueError, r"squeeze must be a positive int, got -1"),
    ((16, 4, 0, 8), ValueError, r"expand1x1 must be a positive int, got 0"),
    ((16, 4, 8, 0), ValueError, r"expand3x3 must be a positive int, got 0"),
    ((16, 16, 8, 8), ValueError, r"squeeze must be smaller than in_channels=16.*got squeeze=16"),
    ((16, 20, 8, 8), ValueError, r"squeeze must be smaller than in_channels=16.*got squeeze=20"),
    ((16.0, 4, 8, 8), TypeError, r"in_channels must be a positive int, got 16.0 \(float\)"),
    ((16, 4, True, 8), TypeError, r"expand1x1 must be a positive int, got True \(bool\)"),
])
def test_fire_bad_arguments(args, error, message):
    with pytest.raises(error, match=message):
        blocks.Fire(*args)
    with pytest.raises(error, match=message):
        blocks.fire_params(*args)
    with pytest.raises(error, match=message):
        blocks.fire_flops(*args, 8, 8)


def test_fire_flops_bad_sizes():
    with pytest.raises(ValueError, match="height must be a positive int, got 0"):
        blocks.fire_flops(16, 4, 8, 8, 0, 8)
    with pytest.raises(ValueError, match="batch must be a positive int, got -2"):
        blocks.fire_flops(16, 4, 8, 8, 8, 8, batch=-2)


# --------------------------------------------------------------------------- separable
SEPARABLE_CASES = list(itertools.product([1, 3, 5], [1, 2, 3], [0, 1, 2]))


@pytest.mark.parametrize("k, stride, padding", SEPARABLE_CASES)
def test_separable_shapes_match_nn_conv2d_over_strides_and_paddings(k, stride, padding):
    block = blocks.DepthwiseSeparableConv2d(6, 10, k, stride=stride, padding=padding)
    dense = nn.Conv2d(6, 10, k, stride=stride, padding=padding)
    for h, w in [(9, 9), (8, 13), (k, k)]:
        x = _randn(2, 6, h, w)
        y = block(x)
        assert y.shape == dense(x).shape
        assert profile.count_flops(block, x) == blocks.separable_flops(
            6, 10, k, h, w, stride=stride, padding=padding, batch=2)
    assert profile.count_params(block) == blocks.separable_params(6, 10, k)


@pytest.mark.parametrize("c, n, k, bias", [(32, 64, 3, True), (64, 128, 3, False),
                                           (3, 7, 5, True), (1, 1, 1, False)])
def test_separable_params_and_flops_formulas(c, n, k, bias):
    block = blocks.DepthwiseSeparableConv2d(c, n, k, padding=k // 2, bias=bias)
    assert block.depthwise.groups == c and block.depthwise.bias is None
    assert block.pointwise.kernel_size == (1, 1) and (block.pointwise.bias is not None) == bias
    assert profile.count_params(block) == c * k * k + c * n + (n if bias else 0)
    assert blocks.separable_params(c, n, k, bias=bias) == profile.count_params(block)
    x = _randn(3, c, 10, 10)
    assert profile.count_flops(block, x) == 2 * 3 * 10 * 10 * c * (k * k + n)


@pytest.mark.parametrize("c, n, k", [(32, 64, 3), (128, 256, 3), (16, 16, 5), (8, 100, 7)])
def test_the_cost_ratio_is_1_over_n_plus_1_over_k_squared(c, n, k):
    separable = blocks.DepthwiseSeparableConv2d(c, n, k, padding=k // 2, bias=False)
    dense = nn.Conv2d(c, n, k, padding=k // 2, bias=False)
    x = _randn(1, c, 12, 12)
    measured = profile.count_flops(separable, x) / profile.count_flops(dense, x)
    assert measured == pytest.approx(blocks.separable_cost_ratio(n, k))
    assert profile.count_params(separable) / profile.count_params(dense) == pytest.approx(
        1 / n + 1 / k ** 2)
    assert blocks.separable_cost_ratio(n, k) == pytest.approx(1 / n + 1 / k ** 2)


@pytest.mark.parametrize("stride, padding, bias", [(1, 1, True), (2, 0, False), (3, 2, True)])
def test_to_dense_computes_the_same_function(stride, padding, bias):
    torch.manual_seed(0)
    block = blocks.DepthwiseSeparableConv2d(5, 7, 3, stride=stride, padding=padding,
                                            bias=bias).double()
    dense = block.to_dense()
    assert isinstance(dense, nn.Conv2d) and dense.groups == 1
    assert dense.weight.shape == (7, 5, 3, 3) and (dense.bias is not None) == bias
    x = _randn(2, 5, 11, 9, dtype=torch.float64)
    torch.testing.assert_close(dense(x), block(x))
    # every input channel's slice K[:, i] (C_out × k²) has rank one
    slices = dense.weight.detach().permute(1, 0, 2, 3).reshape(5, 7, 9)
    assert (torch.linalg.matrix_rank(slices) == 1).all()


def test_from_conv_recovers_a_separable_kernel_exactly():
    torch.manual_seed(1)
    original = blocks.DepthwiseSeparableConv2d(6, 9, 3, stride=2, padding=1).double()
    dense = original.to_dense()
    rebuilt = blocks.DepthwiseSeparableConv2d.from_conv(dense)
    assert (rebuilt.stride, rebuilt.padding, rebuilt.kernel_size) == (2, 1, 3)
    x = _randn(2, 6, 10, 10, dtype=torch.float64)
    torch.testing.assert_close(rebuilt(x), original(x))


def test_from_conv_is_the_best_separable_approximation():
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 6, 3, padding=1).double()
    K = conv.weight.detach()
    block = blocks.DepthwiseSeparableConv2d.from_conv(conv)
    error = torch.linalg.vector_norm(block.to_dense().weight - K) ** 2
    # Eckart–Young for each slice: what is left is every singular value but the first
    S = torch.linalg.svdvals(K.permute(1, 0, 2, 3).reshape(4, 6, 9))
    assert error.item() == pytest.approx((S[:, 1:] ** 2).sum().item())
    # every separable kernel near it is farther from K: nudge the depthwise and pointwise
    # factors (a wrong from_conv, e.g. another singular pair, loses to these)
    g = torch.Generator().manual_seed(3)
    for eps in (1e-2, 1e-4):
        for part in ("depthwise", "pointwise", "both"):
            other = blocks.DepthwiseSeparableConv2d.from_conv(conv)
            with torch.no_grad():
                for name in (("depthwise", "pointwise") if part == "both" else (part,)):
                    weight = getattr(other, name).weight
                    weight.add_(eps * torch.randn(weight.shape, generator=g, dtype=weight.dtype))
            assert torch.linalg.vector_norm(other.to_dense().weight - K) ** 2 > error
    torch.testing.assert_close(block.pointwise.bias, conv.bias)
    assert conv.weight.detach().equal(K)  # the caller's layer is unchanged


def test_from_conv_refuses_what_it_cannot_factorize():
    with pytest.raises(TypeError, match="conv must be an nn.Conv2d, got Linear"):
        blocks.DepthwiseSeparableConv2d.from_conv(nn.Linear(3, 3))
    with pytest.raises(ValueError, match=r"groups=2 \(must be 1\)"):
        blocks.DepthwiseSeparableConv2d.from_conv(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match=r"kernel_size=\(3, 1\) \(must be square\)"):
        blocks.DepthwiseSeparableConv2d.from_conv(nn.Conv2d(4, 4, (3, 1)))
    with pytest.raises(ValueError, match="padding='same'"):
        blocks.DepthwiseSeparableConv2d.from_conv(nn.Conv2d(4, 4, 3, padding="same"))
    conv = nn.Conv2d(4, 4, 3)
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        blocks.DepthwiseSeparableConv2d.from_conv(conv)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(in_channels=0, out_channels=4, kernel_size=3), ValueError, "in_channels must be a positive int, got 0"),
    (dict(in_channels=4, out_channels=-4, kernel_size=3), ValueError, "out_channels must be a positive int, got -4"),
    (dict(in_channels=4, out_channels=4, kernel_size=0), ValueError, "kernel_size must be a positive int, got 0"),
    (dict(in_channels=4, out_channels=4, kernel_size=3, stride=0), ValueError, "stride must be a positive int, got 0"),
    (dict(in_channels=4, out_channels=4, kernel_size=3, padding=-1), ValueError, "padding must be a non-negative int, got -1"),
    (dict(in_channels=4, out_channels=4, kernel_size=(3, 3)), TypeError, r"kernel_size must be a positive int, got \(3, 3\)"),
    (dict(in_channels=4, out_channels=4, kernel_size=3, bias=1), TypeError, "bias must be True or False, got 1"),
])
def test_separable_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        blocks.DepthwiseSeparableConv2d(**kwargs)


def test_separable_formula_functions_check_their_arguments():
    with pytest.raises(ValueError, match="height=2 is too small for kernel_size=5 with padding=1"):
        blocks.separable_flops(4, 4, 5, 2, 8, padding=1)
    with pytest.raises(ValueError, match="out_channels must be a positive int, got 0"):
        blocks.separable_cost_ratio(0, 3)
    with pytest.raises(TypeError, match="kernel_size must be a positive int, got 2.5"):
        blocks.separable_params(4, 4, 2.5)
    with pytest.raises(TypeError, match="bias must be True or False, got 'no'"):
        blocks.separable_params(4, 4, 3, bias="no")


# --------------------------------------------------------------------------- bottleneck
@pytest.mark.parametrize("c, m, n, stride", [(64, 16, 64, 1), (256, 64, 256, 1),
                                             (32, 8, 64, 2), (10, 3, 5, 3)])
def test_bottleneck_shapes_params_and_flops_match_its_formulas(c, m, n, stride):
    block = blocks.Bottleneck(c, m, n, stride=stride).eval()  # BatchNorm: batch 1 of 1×1 pixel
    for batch, h, w in [(1, 8, 8), (2, 7, 11), (1, 1, 1)]:
        x = _randn(batch, c, h, w)
        y = block(x)
        h_out, w_out = (h - 1) // stride + 1, (w - 1) // stride + 1
        assert y.shape == (batch, n, h_out, w_out)
        assert profile.count_flops(block, x) == blocks.bottleneck_flops(
            c, m, n, h, w, stride=stride, batch=batch)
    assert profile.count_params(block) == blocks.bottleneck_params(c, m, n)
    assert blocks.bottleneck_params(c, m, n) == c * m + 9 * m * m + m * n + 2 * (2 * m + n)


def test_he_et_al_bottleneck_weights():
    block = blocks.Bottleneck(256, 64, 256)
    weights = sum(conv.weight.numel() for conv in (block.reduce, block.conv, block.expand))
    assert weights == 69_632
    assert 9 * 256 * 256 / weights > 8


def test_bottleneck_residual_adds_the_input():
    torch.manual_seed(0)
    plain = blocks.Bottleneck(8, 4, 8).eval()
    residual = blocks.Bottleneck(8, 4, 8, residual=True).eval()
    residual.load_state_dict(plain.state_dict())
    x = _randn(2, 8, 5, 5)
    main = plain.bn3(plain.expand(torch.relu(plain.bn2(plain.conv(torch.relu(plain.bn1(plain.reduce(x))))))))
    torch.testing.assert_close(plain(x), torch.relu(main))
    torch.testing.assert_close(residual(x), torch.relu(main + x))
    assert profile.count_params(residual) == profile.count_params(plain)


@pytest.mark.parametrize("args, kwargs, error, message", [
    ((0, 4, 8), {}, ValueError, "in_channels must be a positive int, got 0"),
    ((8, 0, 8), {}, ValueError, "mid_channels must be a positive int, got 0"),
    ((8, 4, -8), {}, ValueError, "out_channels must be a positive int, got -8"),
    ((8, 12, 16), {}, ValueError, r"mid_channels must be at most min\(in_channels, out_channels\) = 8"),
    ((16, 12, 8), {}, ValueError, r"= 8 .*got mid_channels=12"),
    ((8, 4, 8), {"stride": 0}, ValueError, "stride must be a positive int, got 0"),
    ((8, 4, 16), {"residual": True}, ValueError, "residual=True needs in_channels == out_channels"),
    ((8, 4, 8), {"residual": True, "stride": 2}, ValueError, "stride=2"),
    ((8, 4, 8), {"residual": "yes"}, TypeError, "residual must be True or False"),
    ((8, "4", 8), {}, TypeError, "mid_channels must be a positive int, got '4'"),
])
def test_bottleneck_bad_arguments(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        blocks.Bottleneck(*args, **kwargs)


def test_bottleneck_formula_functions_check_their_arguments():
    with pytest.raises(ValueError, match=r"mid_channels must be at most"):
        blocks.bottleneck_params(8, 9, 16)
    with pytest.raises(ValueError, match="width must be a positive int, got 0"):
        blocks.bottleneck_flops(8, 4, 8, 8, 0)


# --------------------------------------------------------------------------- common
@pytest.mark.parametrize("make", [
    lambda **o: blocks.Fire(8, 2, 4, 4, **o),
    lambda **o: blocks.DepthwiseSeparableConv2d(8, 4, 3, padding=1, **o),
    lambda **o: blocks.Bottleneck(8, 2, 8, **o),
])
def test_blocks_take_dtype_and_round_trip_their_state_dict(make):
    block = make(dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in block.parameters())
    copy = make(dtype=torch.float64)
    copy.load_state_dict(block.state_dict())
    x = _randn(1, 8, 6, 6, dtype=torch.float64)
    block.eval(), copy.eval()
    torch.testing.assert_close(copy(x), block(x))
    assert not math.isnan(block(x).sum().item())


# --------------------------------------------------------------------------- variants
# The four networks of notebook 06 (lrlib.models.VARIANTS) and their shipped weights.
from lrlib import data, models, train  # noqa: E402


@pytest.fixture(scope="module")
def test_set():
    return data.fashion_mnist("test")


@pytest.mark.parametrize("name", list(models.VARIANTS))
def test_shipped_variant_weights_load_and_reach_their_recorded_accuracy(name, test_set):
    model = models.load_variant(name)
    assert not model.training
    info = models.variant_info(name)
    assert info["params"] == profile.count_params(model)
    assert info["flops"] == profile.count_flops(model, torch.zeros(1, 1, 28, 28))
    result = train.evaluate(model, test_set)
    # what tools/train_block_variants.py recorded, within 0.5 percentage points
    assert result.accuracy == pytest.approx(info["test_accuracy"], abs=0.005)
    assert result.accuracy > 0.7
    assert train.evaluate(models.build_variant(name), test_set).accuracy < 0.3


def test_variants_share_one_training_budget_and_fit_in_two_megabytes():
    keys = ["epochs", "lr", "batch_size", "weight_decay", "schedule", "seed"]
    budgets = {name: {k: models.variant_info(name)[k] for k in keys} for name in models.VARIANTS}
    assert len({tuple(b.values()) for b in budgets.values()}) == 1, budgets
    sizes = [models.variant_weights_path(name).stat().st_size for name in models.VARIANTS]
    assert sum(sizes) < 2_000_000


def test_variants_differ_only_in_stages_2_to_4():
    nets = {name: models.build_variant(name) for name in models.VARIANTS}
    for net in nets.values():
        assert net.conv1.kernel_size == (3, 3) and net.conv1.out_channels == 16
        assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert [net.conv2.kernel_size for net in (nets["baseline"], nets["one_by_one"])] == [(3, 3), (1, 1)]
    assert all(nets["one_by_one"].get_submodule(f"conv{i}").kernel_size == (1, 1) for i in (2, 3, 4))
    assert all(isinstance(nets["fire"].get_submodule(f"fire{i}"), blocks.Fire) for i in (2, 3, 4))
    assert all(isinstance(nets["separable"].get_submodule(f"conv{i}"), blocks.DepthwiseSeparableConv2d)
               for i in (2, 3, 4))
    widths = [[m.out_channels for m in net.children() if hasattr(m, "out_channels")]
              for net in nets.values()]
    assert all(w[-3:] == [32, 64, 128] for w in widths)


def test_variant_errors_name_the_allowed_values_and_the_rebuild_command(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"one of \('baseline', 'one_by_one', 'fire', 'separable'\), got 'vgg'"):
        models.load_variant("vgg")
    with pytest.raises(ValueError, match="got 'vgg'"):
        models.variant_info("vgg")
    monkeypatch.setattr(models, "VARIANT_ASSETS", tmp_path)
    with pytest.raises(FileNotFoundError, match="tools/train_block_variants.py --only fire"):
        models.load_variant("fire")
    (tmp_path / "fire.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="tools/train_block_variants.py --only fire"):
        models.load_variant("fire")
