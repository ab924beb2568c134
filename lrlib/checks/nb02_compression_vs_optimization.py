"""Checkers of notebook ``02_compression_vs_optimization``: Exercises 2.1 to 2.4."""

from __future__ import annotations

import torch
from torch import nn

from .core import Case, Failure, as_number, close, run_cases

__all__ = ["exercise_2_1", "exercise_2_2", "exercise_2_3", "exercise_2_4"]


def exercise_2_1(linear_flops) -> None:
    """Check ``linear_flops(batch, in_features, out_features)``: ``2·b·n·m``, what
    ``lrlib.profile.count_flops`` (PyTorch's FlopCounterMode) counts for nn.Linear."""
    from ..profile import count_flops

    shapes = [(1, 784, 1024), (32, 1024, 512), (256, 512, 10), (3, 5, 7)]
    cases = (Case(f"batch={batch}, in_features={n_in}, out_features={n_out}", (batch, n_in, n_out),
                  count_flops(nn.Linear(n_in, n_out), torch.zeros(batch, n_in)),
                  given=(n_in, n_out))
             for batch, n_in, n_out in shapes)

    def mistake(got, expected, n_in, n_out):
        if as_number(got) == expected:
            return None
        if got == expected // 2:
            return "that counts multiply-adds; a multiply-add is 2 FLOPs"
        if got == 2 * n_in * n_out:
            return "every example in the batch costs the same: multiply by batch"
        return "each of the b·m outputs is a dot product of length n: n multiplies and n adds"

    run_cases("2.1", linear_flops, cases, mistake,
              f"FLOPs match PyTorch's FLOP counter on {len(shapes)} Linear layers")


def exercise_2_2(conv2d_flops) -> None:
    """Check ``conv2d_flops(batch, in_channels, out_channels, kernel_size, height, width,
    stride=1, padding=0, groups=1)`` against ``lrlib.profile.count_flops`` on real
    nn.Conv2d layers."""
    from ..profile import count_flops

    convolutions = [
        dict(batch=1, in_channels=3, out_channels=8, kernel_size=3, height=8, width=8),
        dict(batch=2, in_channels=64, out_channels=128, kernel_size=3, height=14, width=14,
             padding=1),
        dict(batch=1, in_channels=16, out_channels=32, kernel_size=3, height=15, width=10,
             stride=2, padding=1),  # (10 + 2 − 3) / 2 = 4.5: the floor division matters
        dict(batch=4, in_channels=32, out_channels=32, kernel_size=1, height=7, width=7),
        dict(batch=1, in_channels=32, out_channels=64, kernel_size=3, height=10, width=10,
             padding=1, groups=4),
        dict(batch=1, in_channels=32, out_channels=32, kernel_size=5, height=12, width=12,
             stride=1, padding=2, groups=32),
    ]

    def cases():
        for kwargs in convolutions:
            conv = nn.Conv2d(kwargs["in_channels"], kwargs["out_channels"], kwargs["kernel_size"],
                             stride=kwargs.get("stride", 1), padding=kwargs.get("padding", 0),
                             groups=kwargs.get("groups", 1))
            x = torch.zeros(kwargs["batch"], kwargs["in_channels"], kwargs["height"],
                            kwargs["width"])
            yield Case(", ".join(f"{k}={v}" for k, v in kwargs.items()), (), count_flops(conv, x),
                       kwargs=kwargs, given=(kwargs,))

    def true_division(kwargs):
        # the FLOPs with / instead of // in the output size
        stride, padding, k = kwargs.get("stride", 1), kwargs.get("padding", 0), kwargs["kernel_size"]
        h_out = (kwargs["height"] + 2 * padding - k) / stride + 1
        w_out = (kwargs["width"] + 2 * padding - k) / stride + 1
        return (2 * kwargs["batch"] * kwargs["out_channels"] * h_out * w_out
                * (kwargs["in_channels"] / kwargs.get("groups", 1)) * k * k)

    def mistake(got, expected, kwargs):
        if as_number(got) == expected:
            return None
        divided = true_division(kwargs)
        if divided != expected and close(got, divided, rel_tol=1e-9, abs_tol=1.0):
            return "the output size is a floor division: ⌊(H + 2p − k)/s⌋ + 1"
        if kwargs.get("groups", 1) > 1 and got == expected * kwargs["groups"]:
            return "with groups, each output channel sees only in_channels / groups inputs"
        if kwargs.get("stride", 1) > 1 or kwargs.get("padding", 0) > 0:
            return "H_out = (H + 2·padding - kernel_size) // stride + 1, and the same for W"
        if got == expected // 2:
            return "that counts multiply-adds; a multiply-add is 2 FLOPs"
        return "2 · batch · C_out · H_out · W_out · (C_in / groups) · k · k"

    run_cases("2.2", conv2d_flops, cases(), mistake,
              f"FLOPs match PyTorch's FLOP counter on {len(convolutions)} convolutions (stride, "
              "padding, groups and depthwise included)")


def exercise_2_3(linear_intensity) -> None:
    """Check ``linear_intensity(batch, in_features, out_features)``: FLOPs per byte in
    float32, ``2·b·n·m / (4·(n·m + m + b·n + b·m))``."""
    from ..profile import linear_intensity as reference

    shapes = [(1, 1024, 1024), (256, 1024, 1024), (1, 784, 1024), (64, 512, 10)]
    cases = [Case(f"batch={batch}, in_features={n_in}, out_features={n_out}", (batch, n_in, n_out),
                  reference(batch, n_in, n_out), given=(batch, n_in, n_out))
             for batch, n_in, n_out in shapes]

    def mistake(got, expected, batch, n_in, n_out):
        if close(got, expected, rel_tol=1e-9):
            return None
        weights_only = 2 * batch * n_in * n_out / (4 * n_in * n_out)
        if close(got, expected * 4):
            return "count bytes, not elements: a float32 is 4 bytes"
        if close(got, weights_only):
            return "the input, the output and the bias are moved too, not only the weights"
        return "FLOPs = 2·b·n·m; bytes = 4·(n·m + m + b·n + b·m)"

    run_cases("2.3", linear_intensity, cases, mistake,
              f"arithmetic intensity matches on {len(cases)} layers, batch 1 and 256 included")


def _conv_and_bn_state(conv, bn) -> dict:
    """Every tensor of ``conv`` and ``bn``'s state dicts, the latter's keys prefixed ``bn.``."""
    return dict(list(conv.state_dict().items())
                + [("bn." + k, v) for k, v in bn.state_dict().items()])


def exercise_2_4(fold_batchnorm) -> None:
    """Check ``fold_batchnorm(conv, bn)``: a new nn.Conv2d equal to ``bn(conv(x))`` with
    ``bn`` in eval mode, leaving ``conv`` and ``bn`` unchanged."""
    generator = torch.Generator().manual_seed(0)

    def cases():
        for has_bias, stride, padding in [(False, 1, 1), (True, 2, 0)]:
            conv = nn.Conv2d(4, 6, 3, stride=stride, padding=padding, bias=has_bias)
            bn = nn.BatchNorm2d(6, eps=1e-3)
            with torch.no_grad():
                for tensor in [conv.weight, bn.weight, bn.bias, bn.running_mean] + (
                        [conv.bias] if has_bias else []):
                    tensor.copy_(torch.randn(tensor.shape, generator=generator))
                bn.running_var.copy_(torch.rand(6, generator=generator) + 0.1)
            bn.eval()
            before = {k: v.clone() for k, v in _conv_and_bn_state(conv, bn).items()}
            x = torch.randn(2, 4, 9, 9, generator=generator)
            with torch.no_grad():
                expected = bn(conv(x))
            yield Case(f"Conv2d(4, 6, 3, stride={stride}, padding={padding}, bias={has_bias}) "
                       "+ BatchNorm2d(6)", (conv, bn), expected, given=(conv, bn, before, x))

    def mistake(folded, expected, conv, bn, before, x):
        if not isinstance(folded, nn.Conv2d):
            return Failure("an nn.Conv2d", type(folded).__name__,
                           "return a new convolution (copy.deepcopy(conv), then set its "
                           "weight and bias)")
        after = _conv_and_bn_state(conv, bn)
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        if changed:
            return Failure("conv and bn unchanged", f"changed: {changed}",
                           "work on a copy (copy.deepcopy(conv)); never change the caller's "
                           "layers")
        with torch.no_grad():
            got = folded(x)
        if got.shape == expected.shape and torch.allclose(got, expected, atol=1e-4, rtol=1e-4):
            return None
        difference = (got - expected).abs().max().item() if got.shape == expected.shape else None
        if folded.bias is None:
            hint = "the folded convolution needs a bias: b' = s·(b − μ) + β"
        else:
            hint = ("s = γ / sqrt(running_var + eps) per output channel; W' = s·W "
                    "(reshape s to (C_out, 1, 1, 1)); b' = s·(b − μ) + β, with b = 0 "
                    "when the conv has no bias")
        return Failure("outputs equal to bn(conv(x)) within 1e-4",
                       f"max abs difference {difference}", hint)

    run_cases("2.4", fold_batchnorm, cases(), mistake,
              "the folded convolution equals conv followed by BatchNorm (with and without conv "
              "bias, stride 1 and 2), and the originals are unchanged")
