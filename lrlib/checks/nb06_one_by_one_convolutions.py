"""Checkers of notebook ``06_one_by_one_convolutions``: Exercises 6.1 to 6.3."""

from __future__ import annotations

import torch
from torch import nn

from .core import Case, Failure, as_number, call, run_cases

__all__ = ["exercise_6_1", "exercise_6_2", "exercise_6_3"]


def exercise_6_1(conv1x1_as_matmul) -> None:
    """Check ``conv1x1_as_matmul(x, weight, bias)``: a 1×1 convolution computed as a matrix
    product at every pixel, for ``x`` of shape ``(B, C_in, H, W)``, ``weight`` of shape
    ``(C_out, C_in)`` and ``bias`` of shape ``(C_out,)``; the result, of shape
    ``(B, C_out, H, W)``, must equal ``F.conv2d(x, weight[:, :, None, None], bias)``."""
    sizes = [(2, 3, 5, 4, 6), (1, 8, 8, 7, 7), (3, 16, 4, 5, 2), (1, 1, 2, 1, 1)]

    def cases():
        for seed, (batch, c_in, c_out, h, w) in enumerate(sizes):
            generator = torch.Generator().manual_seed(60 + seed)
            x = torch.randn(batch, c_in, h, w, generator=generator, dtype=torch.float64)
            weight = torch.randn(c_out, c_in, generator=generator, dtype=torch.float64)
            bias = torch.randn(c_out, generator=generator, dtype=torch.float64)
            yield Case(f"x of shape {tuple(x.shape)}, weight of shape {tuple(weight.shape)}, "
                       "with bias", (x.clone(), weight.clone(), bias.clone()),
                       nn.functional.conv2d(x, weight[:, :, None, None], bias),
                       given=(x, weight, bias))

    def mistake(got, expected, x, weight, bias):
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.allclose(
                got.double(), expected, atol=1e-6):
            return None
        if not isinstance(got, torch.Tensor):
            return Failure(f"a tensor of shape {tuple(expected.shape)}", type(got).__name__,
                           "return the output tensor")
        no_bias = expected - bias[:, None, None]
        per_pixel = expected.permute(0, 2, 3, 1)
        if got.shape == per_pixel.shape and torch.allclose(got.double(), per_pixel, atol=1e-6):
            hint = ("the values are right but the channels are last: move them back to "
                    "dimension 1 (movedim(-1, 1) or permute(0, 3, 1, 2))")
        elif got.shape != expected.shape:
            hint = (f"the output has shape (B, C_out, H, W) = {tuple(expected.shape)}; move the "
                    "channels last (x.movedim(1, -1)), multiply by weight.T, move them back")
        elif torch.allclose(got.double(), no_bias, atol=1e-6):
            hint = "add the bias: one number per output channel, the same at every pixel"
        elif weight.shape[0] == weight.shape[1] and torch.allclose(
                got.double(), nn.functional.conv2d(x, weight.T[:, :, None, None], bias), atol=1e-6):
            hint = ("output channel o is Σ_i weight[o, i]·x[:, i]: with the channels last, "
                    "multiply by weight.T, not by weight")
        else:
            hint = ("x.reshape(B, H·W, C_in) mixes pixels and channels, because the channels "
                    "are not the last axis: use movedim or permute first, or einsum")
        return Failure("a tensor equal to the 1×1 convolution",
                       "a tensor of the same shape with other values"
                       if got.shape == expected.shape else tuple(got.shape), hint)

    run_cases("6.1", conv1x1_as_matmul, cases(), mistake,
              f"equal to nn.functional.conv2d with a 1×1 kernel on {len(sizes)} cases")


def exercise_6_2(fire_params) -> None:
    """Check ``fire_params(in_channels, squeeze, expand1x1, expand3x3)``: the parameters of
    a Fire module (Iandola et al. 2016), biases included, as ``lrlib.profile.count_params``
    counts them on ``lrlib.blocks.Fire``."""
    from ..blocks import Fire
    from ..profile import count_params

    modules = [(96, 16, 64, 64), (512, 64, 256, 256), (16, 4, 8, 24), (10, 3, 5, 2)]
    cases = (Case(f"in_channels={c}, squeeze={s}, expand1x1={e1}, expand3x3={e3}", (c, s, e1, e3),
                  count_params(Fire(c, s, e1, e3)), given=(c, s, e1, e3))
             for c, s, e1, e3 in modules)

    def mistake(got, expected, c, s, e1, e3):
        if as_number(got) == expected and not isinstance(got, float):
            return None
        biases = s + e1 + e3
        if as_number(got) == expected and isinstance(got, float):
            return "return an int (a count), e.g. with int(...) or integer arithmetic"
        if got == expected - biases:
            return "each of the three convolutions has a bias: add s + e1 + e3"
        if got in (s * (c + e1 + e3) + biases, s * (c + e1 + e3)):
            return "the expand3x3 filters are 3×3: each of the e3 filters has 9·s weights"
        if got in (c * s + c * e1 + 9 * c * e3 + biases, c * s + s * e1 + 9 * c * e3 + biases,
                   c * s + c * e1 + 9 * c * e3, c * s + s * e1 + 9 * c * e3):
            return "both expand layers read the squeeze layer's s channels, not the input's"
        return ("count each convolution as (in · out · k² weights) + out biases: squeeze "
                "C_in → s (1×1), expand1x1 s → e1 (1×1), expand3x3 s → e3 (3×3)")

    run_cases("6.2", fire_params, cases, mistake,
              f"parameter counts match lrlib.blocks.Fire on {len(modules)} Fire modules, "
              "SqueezeNet's fire2 and fire9 included")


def _find_convs(module: nn.Module) -> list:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


_PLACEMENT_HINT = ("the depthwise convolution takes kernel_size, stride and padding; the "
                   "pointwise one is 1×1 with stride 1 and no padding")


def exercise_6_3(depthwise_separable) -> None:
    """Check ``depthwise_separable(in_channels, out_channels, kernel_size, stride,
    padding)``: an ``nn.Module`` made of a depthwise convolution (``groups=in_channels``,
    no bias, carrying the kernel size, stride and padding) followed by a pointwise 1×1
    convolution with bias, equal to ``lrlib.blocks.DepthwiseSeparableConv2d``."""
    from ..blocks import DepthwiseSeparableConv2d, separable_params
    from ..profile import count_params

    exercise = "6.3"
    sizes = [(8, 16, 3, 1, 1), (6, 10, 3, 2, 1), (4, 12, 5, 1, 2), (16, 8, 3, 2, 0),
             (3, 5, 1, 1, 0)]
    descriptions = [f"in_channels={c}, out_channels={n}, kernel_size={k}, stride={stride}, "
                    f"padding={padding}" for c, n, k, stride, padding in sizes]
    cases = [Case(case, size, given=(case, seed, *size))
             for seed, (case, size) in enumerate(zip(descriptions, sizes))]

    def mistake(block, _, case, seed, c, n, k, stride, padding):
        if not isinstance(block, nn.Module):
            return Failure("an nn.Module", type(block).__name__,
                           "return the module, e.g. nn.Sequential(depthwise, pointwise)")
        x = torch.randn(2, c, 11, 9, generator=torch.Generator().manual_seed(63 + seed))
        reference = DepthwiseSeparableConv2d(c, n, k, stride=stride, padding=padding)
        with torch.no_grad():
            expected_shape = reference(x).shape
        was_training = block.training
        block.eval()
        try:
            with torch.no_grad():
                got = call(exercise, block, f"{case}, calling your block on x of shape "
                           f"{tuple(x.shape)}", x)
        finally:
            block.train(was_training)
        if not isinstance(got, torch.Tensor) or got.shape != expected_shape:
            return Failure(f"an output of shape {tuple(expected_shape)}",
                           tuple(got.shape) if isinstance(got, torch.Tensor) else got,
                           _PLACEMENT_HINT)
        expected_params = separable_params(c, n, k)
        got_params = count_params(block)
        if got_params != expected_params:
            if got_params == c * n * k * k + n:
                hint = ("that is a dense convolution's count: the depthwise convolution needs "
                        "groups=in_channels and out_channels=in_channels")
            elif got_params == expected_params + c:
                hint = "the depthwise convolution has no bias here (bias=False)"
            elif got_params == expected_params - n:
                hint = "the pointwise convolution keeps its bias"
            else:
                hint = ("depthwise: nn.Conv2d(C_in, C_in, k, stride, padding, groups=C_in, "
                        "bias=False); pointwise: nn.Conv2d(C_in, C_out, 1)")
            return Failure(f"{expected_params:,} parameters", f"{got_params:,}", hint)
        convs = _find_convs(block)
        depthwise = [m for m in convs if m.groups == c and m.out_channels == c
                     and m.kernel_size == (k, k)]
        pointwise = [m for m in convs if m.kernel_size == (1, 1) and m.groups == 1
                     and m.out_channels == n]
        if len(convs) != 2 or not depthwise or not pointwise:
            return Failure("two nn.Conv2d: depthwise, then pointwise",
                           [f"Conv2d({m.in_channels}, {m.out_channels}, {m.kernel_size}, "
                            f"groups={m.groups})" for m in convs],
                           "build exactly two convolutions, the depthwise one first")
        placement = (depthwise[0].stride, depthwise[0].padding, pointwise[0].stride,
                     pointwise[0].padding)
        if placement != ((stride, stride), (padding, padding), (1, 1), (0, 0)):
            return Failure(f"depthwise stride {stride} and padding {padding}; pointwise 1 and 0",
                           f"depthwise stride {depthwise[0].stride[0]} and padding "
                           f"{depthwise[0].padding[0]}; pointwise {pointwise[0].stride[0]} and "
                           f"{pointwise[0].padding[0]}", _PLACEMENT_HINT)
        with torch.no_grad():
            reference.depthwise.weight.copy_(depthwise[0].weight)
            reference.pointwise.weight.copy_(pointwise[0].weight)
            reference.pointwise.bias.copy_(pointwise[0].bias)
            expected = reference(x)
        if torch.allclose(got, expected, atol=1e-5):
            return None
        return Failure("pointwise(depthwise(x))", "other values",
                       "apply the depthwise convolution first and the pointwise one to its "
                       "output, with nothing (no ReLU, no BatchNorm) in between")

    run_cases(exercise, depthwise_separable, cases, mistake,
              f"shapes, parameter counts and outputs match lrlib.blocks.DepthwiseSeparableConv2d "
              f"on {len(cases)} cases")
