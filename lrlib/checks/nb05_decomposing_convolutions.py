"""Checkers of notebook ``05_decomposing_convolutions``: Exercises 5.1 to 5.6."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .core import (Case, Failure, as_number, call, close, failed, outputs_differ, passed,
                   run_cases)
from .pipeline import (Requirement, check_requirements, learner_model, percent, state_of,
                       test_accuracy, unchanged_requirement)

__all__ = ["exercise_5_1", "exercise_5_2", "exercise_5_3", "exercise_5_4", "exercise_5_5",
           "exercise_5_6", "speedup_cases", "CNN_FLOP_REDUCTION", "CNN_TARGET_ACCURACY"]


def _cp_chain_output(weights4, x, padding):
    """Run the four convolutions of a separable CP chain on ``x``."""
    first, vertical, horizontal, last = weights4
    rank = first.shape[0]
    y = nn.functional.conv2d(x, first)
    y = nn.functional.conv2d(y, vertical, padding=(padding[0], 0), groups=rank)
    y = nn.functional.conv2d(y, horizontal, padding=(0, padding[1]), groups=rank)
    return nn.functional.conv2d(y, last)


def _cp_shape_hint(name: str, factor: str) -> str:
    """Exercise 5.1: how to build the kernel ``name`` of the chain from its CP factor."""
    if name == "last":
        return ("the last 1×1 conv maps R → C_out: its weight is A_out (C_out × R), "
                "with two trailing 1-sized dimensions: A_out[:, :, None, None]")
    if name == "first":
        return ("the first 1×1 conv maps C_in → R: its weight is A_inᵀ (R × C_in) with "
                "two trailing 1-sized dimensions: A_in.T[:, :, None, None]")
    return (f"a depthwise conv over R channels has weight (R, 1, kernel height, kernel "
            f"width): {name} is built from {factor}ᵀ, e.g. "
            + ("A_h.T[:, None, :, None]" if name == "vertical" else "A_w.T[:, None, None, :]"))


def exercise_5_1(cp_chain_weights) -> None:
    """Check ``cp_chain_weights(weights, factors)`` → ``(first, vertical, horizontal,
    last)``: the kernels of the separable CP chain (Lebedev et al. 2015) for the CP kernel
    ``K = Σ_r λ_r a_r^out ∘ a_r^in ∘ a_r^h ∘ a_r^w``, with ``factors = [A_out, A_in, A_h,
    A_w]``: ``first`` ``(R, C_in, 1, 1)``, ``vertical`` ``(R, 1, k_h, 1)``, ``horizontal``
    ``(R, 1, 1, k_w)``, ``last`` ``(C_out, R, 1, 1)``, λ applied once (anywhere). The chain
    must compute the same as one convolution with ``K``."""
    from .. import tensor

    names = ("first", "vertical", "horizontal", "last")

    def cases():
        for seed, (c_out, c_in, k_h, k_w, rank) in enumerate(
                [(6, 4, 3, 3, 5), (8, 3, 3, 5, 4), (5, 7, 5, 3, 2), (4, 4, 1, 3, 3)]):
            generator = torch.Generator().manual_seed(50 + seed)
            weights = torch.rand(rank, generator=generator, dtype=torch.float64) + 0.5
            factors = [torch.randn(size, rank, generator=generator, dtype=torch.float64)
                       for size in (c_out, c_in, k_h, k_w)]
            x = torch.randn(2, c_in, 7, 6, generator=generator, dtype=torch.float64)
            shapes = [(s, rank) for s in (c_out, c_in, k_h, k_w)]
            yield Case(f"λ of shape ({rank},), factors of shapes {shapes} "
                       f"(C_out={c_out}, C_in={c_in}, k_h={k_h}, k_w={k_w}, R={rank})",
                       (weights.clone(), [f.clone() for f in factors]),
                       given=(weights, factors, x, (c_out, c_in, k_h, k_w, rank)))

    def mistake(got, _, weights, factors, x, sizes):
        c_out, c_in, k_h, k_w, rank = sizes
        padding = (k_h // 2, k_w // 2)
        if not (isinstance(got, (tuple, list)) and len(got) == 4
                and all(isinstance(t, torch.Tensor) for t in got)):
            return Failure("a tuple of four tensors (first, vertical, horizontal, last)",
                           type(got).__name__, "return first, vertical, horizontal, last")
        shapes = [(rank, c_in, 1, 1), (rank, 1, k_h, 1), (rank, 1, 1, k_w), (c_out, rank, 1, 1)]
        for name, tensor_, shape, factor in zip(names, got, shapes, ("A_in", "A_h", "A_w", "A_out")):
            if tuple(tensor_.shape) != shape:
                return Failure(f"{name} of shape {shape}", tuple(tensor_.shape),
                               _cp_shape_hint(name, factor))
        expected = nn.functional.conv2d(x, tensor.cp_to_tensor(weights, factors), padding=padding)
        output = _cp_chain_output([t.double() for t in got], x, padding)
        if torch.allclose(output, expected, atol=1e-8):
            return None
        without = nn.functional.conv2d(x, tensor.cp_to_tensor(None, factors), padding=padding)
        swapped = nn.functional.conv2d(
            x, tensor.cp_to_tensor(weights, factors).transpose(2, 3), padding=padding) \
            if k_h == k_w else None
        if torch.allclose(output, without, atol=1e-8):
            hint = "the weights λ are missing: multiply one factor's columns by λ (e.g. A_out * λ)"
        elif any(torch.allclose(output, nn.functional.conv2d(
                x, tensor.cp_to_tensor(weights ** power, factors), padding=padding), atol=1e-8)
                for power in (2, 3, 4)):
            hint = "λ is applied more than once: put it into ONE factor only"
        elif swapped is not None and torch.allclose(output, swapped, atol=1e-8):
            hint = "vertical (k_h×1) holds A_h and horizontal (1×k_w) holds A_w; you swapped them"
        else:
            hint = ("first = A_inᵀ, vertical = A_hᵀ, horizontal = A_wᵀ, last = A_out·diag(λ), each "
                    "reshaped to a conv weight; column r of every factor belongs to channel r")
        return outputs_differ("the chain equal to one conv with the CP kernel", output, expected,
                              hint)

    run_cases("5.1", cp_chain_weights, cases(), mistake,
              "the four kernels reproduce the CP convolution on 4 cases (non-square and 1-row "
              "kernels included)")


def exercise_5_2(chain_flops) -> None:
    """Check ``chain_flops(method, c_in, c_out, kernel_size, rank, hw)``: FLOPs per example
    (multiply-add = 2) of the factorized chain at stride 1 with "same" padding on an
    ``hw = (H, W)`` input, for ``method`` ``"svd"``, ``"tucker2"`` (``rank = (R_out,
    R_in)``), ``"cp-separable"`` and ``"cp-fused"``; as ``lrlib.profile.count_flops``
    counts them on the lrlib layers."""
    from ..factorizations import untrained_like

    inputs = [("svd", 64, 128, 3, 16, (14, 14)), ("tucker2", 64, 128, 3, (49, 24), (14, 14)),
              ("tucker2", 32, 64, 3, (24, 12), (28, 28)), ("cp-separable", 64, 128, 3, 93, (14, 14)),
              ("cp-fused", 128, 256, 3, 187, (7, 7)), ("cp-separable", 16, 8, 5, 7, (9, 11)),
              ("cp-fused", 8, 16, 5, 6, (10, 6)), ("svd", 3, 32, 5, 8, (12, 9))]

    def layer(method, c_in, c_out, k, rank):
        # lrlib's chain for a k×k conv with "same" padding, shapes only
        dense = nn.Conv2d(c_in, c_out, k, padding=k // 2, device="meta")
        return untrained_like(dense, rank, method=method, device="meta")

    cases = (Case(f"method={method!r}, c_in={c_in}, c_out={c_out}, kernel_size={k}, "
                  f"rank={rank}, hw={hw}", (method, c_in, c_out, k, rank, hw),
                  layer(method, c_in, c_out, k, rank).flops(hw),
                  given=(method, c_in, c_out, k, rank, hw))
             for method, c_in, c_out, k, rank, hw in inputs)

    def mistake(got, expected, method, c_in, c_out, k, rank, hw):
        if as_number(got) == expected:
            return None
        pixels = hw[0] * hw[1]
        if method == "tucker2":
            r_out, r_in = rank
            alternatives = {
                "swapped": layer(method, c_in, c_out, k, (r_in, r_out)).flops(hw)
                if r_in <= c_out and r_out <= c_in else None,
                "core only": 2 * pixels * r_in * r_out * k * k}
        elif method.startswith("cp"):
            other = "cp-fused" if method == "cp-separable" else "cp-separable"
            alternatives = {"other cp": layer(other, c_in, c_out, k, rank).flops(hw)}
        else:
            alternatives = {"no c_out": 2 * pixels * rank * c_in * k * k}
        if as_number(got) == expected // 2:
            return "that counts multiply-adds; a multiply-add is 2 FLOPs"
        if as_number(got) == expected // pixels:
            return "that is per output pixel: multiply by the number of pixels H·W"
        if got == alternatives.get("swapped"):
            return ("rank = (R_out, R_in), the kernel's mode order: the first 1×1 conv maps C_in → "
                    "R_in, the last R_out → C_out")
        if got == alternatives.get("core only"):
            return "count the two 1×1 convolutions too, not only the k×k core"
        if got == alternatives.get("other cp") and method == "cp-separable":
            return ("separable: two depthwise convs, k×1 then 1×k: (k_h + k_w)·R multiply-adds "
                    "per pixel, not k_h·k_w·R")
        if got == alternatives.get("other cp"):
            return ("fused: ONE depthwise k×k conv, k_h·k_w·R multiply-adds per pixel, not "
                    "(k_h + k_w)·R")
        if got == alternatives.get("no c_out"):
            return "the chain has two convs: add the last 1×1 conv R → C_out"
        formula = {"svd": "2·H·W·R·(C_in·k² + C_out)",
                   "tucker2": "2·H·W·(C_in·R_in + R_in·R_out·k² + R_out·C_out)",
                   "cp-separable": "2·H·W·R·(C_in + 2k + C_out)",
                   "cp-fused": "2·H·W·R·(C_in + k² + C_out)"}[method]
        return f"for {method} at stride 1 with same padding: {formula}"

    run_cases("5.2", chain_flops, cases, mistake,
              f"FLOPs of the SVD, Tucker-2 and both CP chains match lrlib's layers on "
              f"{len(inputs)} cases")


def speedup_cases() -> list:
    """The layers of Exercise 5.3: ``((C_in, C_out, k, stride, padding), input_hw, speedup)``,
    stride 2 and an unreachable speedup included."""
    return [((64, 128, 3, 1, 1), (14, 14), 4), ((32, 64, 3, 1, 1), (28, 28), 2),
            ((128, 256, 3, 1, 1), (7, 7), 8), ((48, 96, 3, 2, 1), (16, 16), 4),
            ((96, 40, 3, 1, 1), (10, 10), 3), ((16, 16, 3, 1, 1), (8, 8), 100)]


def exercise_5_3(tucker_ranks_for_speedup) -> None:
    """Check ``tucker_ranks_for_speedup(conv, input_hw, speedup)`` → ``(R_out, R_in)``: of
    the pairs ``(max(1, round(t·C_out/m)), max(1, round(t·C_in/m)))``, ``m = max(C_in,
    C_out)``, ``t = 1, 2, …, m``, the last whose Tucker-2 chain needs at most ``1/speedup``
    of the dense convolution's FLOPs on an ``input_hw`` input; ``None`` when none does.
    Equal to ``lrlib.rank_rules.choose_ranks(conv, FlopReduction(speedup),
    method="tucker2", input_hw=input_hw)``."""
    from ..layers import Tucker2Conv2d, conv_flops
    from ..rank_rules import FlopReduction, choose_ranks

    inputs = speedup_cases()

    def cases():
        for (c_in, c_out, k, stride, padding), hw, speedup in inputs:
            torch.manual_seed(c_in + c_out)
            conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=False)
            expected = choose_ranks(conv, FlopReduction(speedup), method="tucker2", input_hw=hw)
            yield Case(f"Conv2d({c_in}, {c_out}, {k}, stride={stride}, padding={padding}) on a "
                       f"{hw} input, speedup={speedup}", (conv, hw, speedup), expected,
                       given=(conv, (c_in, c_out, k, stride, padding), hw, speedup))

    def mistake(got, expected, conv, geometry, hw, speedup):
        c_in, c_out, k, stride, padding = geometry
        if got is None and expected is None:
            return None
        if isinstance(got, (tuple, list)) and len(got) == 2 and expected is not None \
                and all(isinstance(r, int) and not isinstance(r, bool) for r in got) \
                and tuple(got) == tuple(expected):
            return None
        dense = conv_flops(conv, hw)
        budget = dense / speedup

        def chain(ranks):
            return Tucker2Conv2d.like(conv, ranks, device="meta").flops(hw)

        candidates = Tucker2Conv2d.rank_candidates(conv)
        if expected is None:
            hint = ("even ranks (1, 1) need more than 1/speedup of the dense FLOPs here: return "
                    "None when no pair is fast enough")
        elif got is None:
            hint = "some pair is fast enough here; return it"
        elif not (isinstance(got, (tuple, list)) and len(got) == 2):
            hint = "return a pair (R_out, R_in)"
        elif not all(isinstance(r, int) and not isinstance(r, bool) for r in got):
            hint = "return ints (round, then int(...))"
        elif tuple(got) == tuple(expected)[::-1]:
            hint = ("the order is (R_out, R_in), the kernel's mode order (C_out, C_in, k, k): R_out "
                    "belongs to the C_out output channels")
        elif stride > 1:
            hint = ("with stride 2 the first 1×1 conv runs at the INPUT size H×W and the k×k core "
                    "and last 1×1 at the OUTPUT size; the dense conv runs at the output size")
        elif tuple(got) in candidates and candidates.index(tuple(got)) == candidates.index(tuple(expected)) + 1:
            hint = (f"the chain at your ranks needs {chain(tuple(got)):,} FLOPs, more than dense/"
                    f"speedup = {budget:,.0f}: keep the LAST pair within the budget")
        elif tuple(got) in candidates and candidates.index(tuple(got)) < candidates.index(tuple(expected)):
            hint = ("a larger pair still fits the budget: take the last candidate whose FLOPs are "
                    "<= dense FLOPs / speedup")
        elif tuple(got) in candidates and candidates.index(tuple(got)) > candidates.index(tuple(expected)):
            hint = ("your ranks are too large: count all three convolutions of the chain, "
                    "C_in·R_in·H·W + (R_in·R_out·k² + R_out·C_out)·H_out·W_out (times 2)")
        else:
            hint = ("scan t = 1 … max(C_in, C_out) with R_out = max(1, round(t·C_out/m)), R_in = "
                    "max(1, round(t·C_in/m)) and keep the last pair within the FLOP budget")
        return hint

    run_cases("5.3", tucker_ranks_for_speedup, cases(), mistake,
              f"Tucker-2 ranks match lrlib's FlopReduction rule on {len(inputs)} layers (stride 2 "
              "and an unreachable speedup included)")


def exercise_5_4(end_to_end_speedup) -> None:
    """Check ``end_to_end_speedup(times_ms, speedups)``: the whole model's speedup when each
    part ``name`` of ``times_ms`` (milliseconds per call, every part of the model) runs
    ``speedups.get(name, 1)`` times faster (Amdahl's law): ``Σ t / Σ t/s``; a speedup of
    ``inf`` makes a part free."""
    inf = float("inf")
    inputs = [
        ({"conv": 6.0, "bn": 2.0, "rest": 2.0}, {"conv": 3.0, "bn": 2.0}, 2.0),
        ({"conv": 6.0, "rest": 4.0}, {"conv": inf}, 2.5),
        ({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 2.0, "c": 3.0}, 6.0 / 3.5),
        ({"a": 5.0, "b": 5.0}, {}, 1.0),
        ({"conv2": 10.0, "conv3": 5.0, "bn": 3.0, "pool": 2.0}, {"conv2": 4.0, "conv3": 0.5},
         20.0 / 17.5),
    ]
    cases = [Case(f"times_ms={times}, speedups={speedups}", (dict(times), dict(speedups)),
                  expected, given=(times, speedups))
             for times, speedups, expected in inputs]

    def mistake(got, expected, times, speedups):
        if close(got, expected, rel_tol=1e-9):
            return None
        mean_speedup = sum(speedups.values()) / len(speedups) if speedups else 1.0
        changed_only = (sum(times[n] for n in speedups)
                        / sum(times[n] / speedups[n] for n in speedups) if speedups else 1.0)
        if close(got, mean_speedup):
            return ("averaging the speedups ignores how long each part takes: divide the total "
                    "time before by the total time after")
        if close(got, changed_only):
            return ("the parts that are not sped up still take their time: sum over ALL parts of "
                    "times_ms (speedup 1 where none is given)")
        if close(got, 1 / expected):
            return "speedup = time before / time after (greater than 1 when faster)"
        return "Σ t_i / Σ (t_i / s_i), with s_i = speedups.get(name, 1); t/inf is 0"

    run_cases("5.4", end_to_end_speedup, cases, mistake,
              f"Amdahl's law matches on {len(cases)} cases (a free part and a slower part "
              "included)")


def exercise_5_5(sensitivity) -> None:
    """Check ``sensitivity(model, data, layer_names, rules)`` → ``{(name, rule): drop}``:
    for each layer alone and each rank rule, the accuracy drop ``baseline − accuracy`` when
    only that layer is factorized (``compress(model, rank={name: rule})``, method
    ``"auto"``), everything else dense; ``model`` unchanged. Compared with
    ``lrlib.sensitivity.sensitivity_scan`` on the reference CNN and 200 test images."""
    from ..compress import compress
    from ..sensitivity import sensitivity_scan
    from ..data import fashion_mnist
    from ..models import load_reference
    from ..train import evaluate

    exercise = "5.5"
    model = load_reference("cnn")
    test = fashion_mnist("test")
    subset = (test.images[:200], test.labels[:200])
    layer_names, rules = ["conv2", "conv3"], [0.05, 0.1]
    case = f"the reference CNN, 200 test images, layer_names={layer_names}, rules={rules}"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = call(exercise, sensitivity, case, model, subset, list(layer_names), list(rules))
    after = model.state_dict()
    if set(after) != set(before) or any(not torch.equal(before[k], after[k]) for k in before):
        raise failed(exercise, case, "the model unchanged", "the model's weights or layers changed",
                     "compress works on a copy unless inplace=True: do not pass inplace=True, and "
                     "do not change the model yourself")
    scan = sensitivity_scan(model, subset, rules=rules, include=layer_names)
    expected = {(row["layer"], row["rule"]): row["drop"] for row in scan.rows}
    if not isinstance(got, dict) or set(got) != set(expected):
        keys = sorted(got, key=str) if isinstance(got, dict) else type(got).__name__
        raise failed(exercise, case, f"a dict with keys {sorted(expected)}", keys,
                     "one entry per (layer name, rule) pair, e.g. result[('conv3', 0.05)]")
    tolerance = 1.5 / len(subset[1])  # one image, in case evaluation batches differ
    for key, drop in expected.items():
        if close(got[key], drop, abs_tol=tolerance):
            continue
        accuracy = scan.baseline - drop
        all_layers, _ = compress(model, rank=key[1])
        everywhere = scan.baseline - evaluate(all_layers, subset).accuracy
        if close(got[key], accuracy, abs_tol=tolerance):
            hint = "return the DROP, baseline accuracy − accuracy after compressing, not the accuracy"
        elif close(got[key], -drop, abs_tol=tolerance) and drop != 0:
            hint = "the drop is baseline − compressed accuracy (positive when accuracy falls)"
        elif close(got[key], everywhere, abs_tol=tolerance):
            hint = ("factorize ONE layer at a time: compress(model, rank={name: rule}) leaves every "
                    "other layer dense")
        else:
            hint = ("for each layer and rule: compressed, _ = compress(model, rank={name: rule}); "
                    "drop = evaluate(model, data).accuracy − evaluate(compressed, "
                    "data).accuracy")
        raise failed(exercise, case + f", entry {key}", drop, got[key], hint)
    passed(exercise, f"accuracy drops match lrlib's sensitivity scan for {len(expected)} "
                     "(layer, rule) pairs, and the model is unchanged")


#: Exercise 5.6: conv2–conv4 together must need at least this many times fewer FLOPs …
CNN_FLOP_REDUCTION = 6
#: … and the whole model must reach at least this test accuracy (the dense CNN: 89.3%).
CNN_TARGET_ACCURACY = 0.875
_CNN_CONVS = ("conv2", "conv3", "conv4")


def is_conv_chain(layer) -> bool:
    """Whether ``layer`` is a factorized convolution: one of lrlib's chains (SVDConv2d,
    Tucker2Conv2d, CPConv2d) or an ``nn.Sequential`` of two or more ``nn.Conv2d``."""
    from ..layers import _ConvChain

    if isinstance(layer, _ConvChain):
        return True
    children = list(layer.children()) if isinstance(layer, nn.Sequential) else []
    return len(children) >= 2 and all(isinstance(c, nn.Conv2d) for c in children)


def _chain_text(model, name) -> str:
    layer = getattr(model, name, None)
    if layer is None:
        return f"no layer {name}"
    rank = getattr(layer, "rank", None)
    if type(layer) is nn.Conv2d:
        return f"{name} Conv2d (dense)"
    kind = type(layer).__name__.removesuffix("Conv2d")        # Tucker2Conv2d -> Tucker2
    return f"{name} {kind}" + (f" {rank}" if rank is not None else "")


def exercise_5_6(compress_cnn) -> None:
    """Check ``compress_cnn(cnn, train_set)``: a new model, built from the reference CNN, in
    which conv2, conv3 and conv4 are factorized convolutions that together need at least
    ``CNN_FLOP_REDUCTION`` (6) times fewer FLOPs than the dense ones, with no BatchNorm layer
    left (folded, ready to deploy), and test accuracy ≥ 87.5% on the 2,000 shipped test
    images. The CNN passed in must come back unchanged.

    The checker loads the reference CNN and the training images itself, calls
    ``compress_cnn`` once (it may fine-tune: several seconds) and evaluates the result, in
    channels_last, on the test images, which the learner's function never sees.
    """
    from .. import data, models, profile

    cnn = models.load_reference("cnn")
    dense = copy.deepcopy(cnn)                     # the learner's function may change cnn
    before = state_of(cnn)
    x1 = data.fashion_mnist("test").images[:1]
    inputs = profile.layer_inputs(dense, x1, list(_CNN_CONVS))
    conv_flops = sum(profile.count_flops(getattr(dense, n), inputs[n]) for n in _CNN_CONVS)
    dense_flops = profile.count_flops(dense, x1)
    budget = dense_flops - conv_flops + conv_flops / CNN_FLOP_REDUCTION
    model = learner_model("5.6", compress_cnn, cnn, data.fashion_mnist("train"))

    flops = profile.count_flops(model, x1)
    accuracy = test_accuracy("5.6", model, data.fashion_mnist("test"))
    batchnorms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    chains = all(is_conv_chain(getattr(model, n, None)) for n in _CNN_CONVS)
    requirements = [
        unchanged_requirement("reference CNN", cnn, before,
                              "work on a copy: compress.compress copies by default; "
                              "copy.deepcopy(cnn) before recalibrating, fine-tuning or folding "
                              "in place"),
        Requirement("conv2–conv4 factorized", "three conv chains",
                    ", ".join(_chain_text(model, n) for n in _CNN_CONVS), chains,
                    "replace conv2, conv3 and conv4 by factorized chains (Tucker-2, CP or the "
                    "channel SVD of this lesson), e.g. with compress.compress(..., include=...)"),
        Requirement("MFLOPs per image", f"≤ {budget / 1e6:.2f}", f"{flops / 1e6:.2f}",
                    flops <= budget,
                    f"the three convolutions hold {conv_flops / 1e6:.1f} of the dense model's "
                    f"{dense_flops / 1e6:.1f} MFLOPs, and together may keep 1/{CNN_FLOP_REDUCTION} "
                    "of theirs; a FlopReduction rule per layer sets each layer's share"),
        Requirement("BatchNorm layers left", "0", str(batchnorms), batchnorms == 0,
                    "a deployed model has its BatchNorm folded into the layer before it, here "
                    "the chain's last 1×1 convolution: optimize.fold_batchnorms at the end"),
        Requirement("test accuracy", f"≥ {percent(CNN_TARGET_ACCURACY)}", percent(accuracy),
                    accuracy >= CNN_TARGET_ACCURACY - 1e-9,
                    "three things win accuracy back (section 7): factorize with BatchNorm in "
                    "place and re-estimate its statistics (train.recalibrate_batchnorm) before "
                    "folding; fine-tune with BatchNorm active at a rate Tucker-2 tolerates "
                    "(about 1e-3), for longer or on more images; and spend the budget unevenly: "
                    "the layers differ in how much accuracy a FLOP costs (section 9's scan)"),
    ]
    check_requirements("5.6", requirements,
                       f"conv2–conv4 need {conv_flops / (flops - dense_flops + conv_flops):.1f}× "
                       f"fewer FLOPs ({flops / 1e6:.2f} MFLOPs per image in all), no BatchNorm "
                       f"left, test accuracy {percent(accuracy)}; the reference CNN unchanged")
