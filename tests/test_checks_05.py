"""lrlib.checks, notebook 05: each checker passes the reference answer and fails helpfully
on the typical wrong ones (the message names the case, the expected value and a hint)."""

import math

import pytest
import torch

from lrlib import checks, compress, factorizations, layers, rank_rules, train
from lrlib.checks import nb05_decomposing_convolutions
from checker_asserts import fails_with, stub


@pytest.mark.parametrize("checker", [checks.exercise_5_1, checks.exercise_5_2, checks.exercise_5_3,
                                     checks.exercise_5_4, checks.exercise_5_5])
def test_unfinished_exercises_raise_not_implemented_and_results_are_type_errors(checker):
    with pytest.raises(NotImplementedError):
        checker(stub)
    with pytest.raises(TypeError, match="pass your function itself"):
        checker(42)


# ------------------------------------------------------------------ Exercise 5.1
def cp_chain_weights_reference(weights, factors):
    a_out, a_in, a_h, a_w = factors
    return (a_in.T[:, :, None, None], a_h.T[:, None, :, None], a_w.T[:, None, None, :],
            (a_out * weights)[:, :, None, None])


def _from_lrlib(weights, factors):
    chain = layers.CPConv2d.from_cp(weights, factors, implementation="separable")
    return chain.first.weight, chain.vertical.weight, chain.horizontal.weight, chain.last.weight


def test_exercise_5_1_passes_the_reference_and_lrlib(capsys):
    checks.exercise_5_1(cp_chain_weights_reference)
    checks.exercise_5_1(_from_lrlib)
    # λ may sit in any one factor
    checks.exercise_5_1(lambda w, f: (((f[1] * w).T)[:, :, None, None], f[2].T[:, None, :, None],
                                      f[3].T[:, None, None, :], f[0][:, :, None, None]))
    assert capsys.readouterr().out.count("✓ Exercise 5.1") == 3


def _no_weights(weights, factors):
    return cp_chain_weights_reference(torch.ones_like(weights), factors)


def _weights_twice(weights, factors):
    first, vertical, horizontal, last = cp_chain_weights_reference(weights, factors)
    return first * weights[:, None, None, None], vertical, horizontal, last


def _swapped_spatial(weights, factors):
    a_out, a_in, a_h, a_w = factors
    return (a_in.T[:, :, None, None], a_w.T[:, None, :, None], a_h.T[:, None, None, :],
            (a_out * weights)[:, :, None, None])


def _untransposed_first(weights, factors):
    a_out, a_in, a_h, a_w = factors
    return (a_in[:, :, None, None], a_h.T[:, None, :, None], a_w.T[:, None, None, :],
            (a_out * weights)[:, :, None, None])


def _scrambled(weights, factors):
    first, vertical, horizontal, last = cp_chain_weights_reference(weights, factors)
    return first, vertical, horizontal, last.flip(0)


@pytest.mark.parametrize("wrong, hint", [
    (_no_weights, "λ are missing"),
    (_weights_twice, "more than once"),
    (_swapped_spatial, "you swapped them"),
    (_untransposed_first, "A_in.T[:, :, None, None]"),
    (_scrambled, "column r of every factor"),
    (lambda w, f: cp_chain_weights_reference(w, f)[:3], "return first, vertical, horizontal, last"),
    (lambda w, f: f, "A_in.T[:, :, None, None]"),
])
def test_exercise_5_1_fails_helpfully(wrong, hint):
    fails_with(checks.exercise_5_1, wrong, hint, "5.1")


# ------------------------------------------------------------------ Exercise 5.2
def chain_flops_reference(method, c_in, c_out, k, rank, hw):
    pixels = hw[0] * hw[1]
    if method == "svd":
        return 2 * pixels * rank * (c_in * k * k + c_out)
    if method == "tucker2":
        r_out, r_in = rank
        return 2 * pixels * (c_in * r_in + r_in * r_out * k * k + r_out * c_out)
    spatial = 2 * k if method == "cp-separable" else k * k
    return 2 * pixels * rank * (c_in + spatial + c_out)


def test_exercise_5_2_passes_the_reference(capsys):
    checks.exercise_5_2(chain_flops_reference)
    assert "✓ Exercise 5.2" in capsys.readouterr().out


def test_exercise_5_2_agrees_with_pytorchs_flop_counter():
    from lrlib import profile

    x = torch.zeros(1, 64, 14, 14)
    dense = torch.nn.Conv2d(64, 128, 3, padding=1)
    for method, rank in [("svd", 16), ("tucker2", (49, 24)), ("cp-separable", 93), ("cp-fused", 93)]:
        chain = factorizations.untrained_like(dense, rank, method=method)
        assert profile.count_flops(chain, x) == chain_flops_reference(method, 64, 128, 3, rank, (14, 14))


def _swap_tucker(method, c_in, c_out, k, rank, hw):
    if method == "tucker2":
        rank = rank[::-1]
    return chain_flops_reference(method, c_in, c_out, k, rank, hw)


def _core_only(method, c_in, c_out, k, rank, hw):
    if method == "tucker2":
        return 2 * hw[0] * hw[1] * rank[0] * rank[1] * k * k
    return chain_flops_reference(method, c_in, c_out, k, rank, hw)


def _fused_for_both(method, c_in, c_out, k, rank, hw):
    return chain_flops_reference("cp-fused" if method.startswith("cp") else method,
                                 c_in, c_out, k, rank, hw)


def _separable_for_both(method, c_in, c_out, k, rank, hw):
    return chain_flops_reference("cp-separable" if method.startswith("cp") else method,
                                 c_in, c_out, k, rank, hw)


def _svd_without_last(method, c_in, c_out, k, rank, hw):
    if method == "svd":
        return 2 * hw[0] * hw[1] * rank * c_in * k * k
    return chain_flops_reference(method, c_in, c_out, k, rank, hw)


@pytest.mark.parametrize("wrong, hint", [
    (lambda *args: chain_flops_reference(*args) // 2, "multiply-add is 2 FLOPs"),
    (lambda m, ci, co, k, r, hw: chain_flops_reference(m, ci, co, k, r, (1, 1)), "pixels H·W"),
    (_swap_tucker, "rank = (R_out, R_in)"),
    (_core_only, "two 1×1 convolutions too"),
    (_fused_for_both, "separable: two depthwise convs"),
    (_separable_for_both, "fused: ONE depthwise"),
    (_svd_without_last, "add the last 1×1 conv"),
    (lambda *args: 0, "stride 1 with same padding"),
])
def test_exercise_5_2_fails_helpfully(wrong, hint):
    fails_with(checks.exercise_5_2, wrong, hint, "5.2")


# ------------------------------------------------------------------ Exercise 5.3
def tucker_ranks_reference(conv, input_hw, speedup):
    c_in, c_out = conv.in_channels, conv.out_channels
    m = max(c_in, c_out)
    budget = layers.conv_flops(conv, input_hw) / speedup
    best = None
    for t in range(1, m + 1):
        ranks = (max(1, round(t * c_out / m)), max(1, round(t * c_in / m)))
        chain = layers.Tucker2Conv2d(c_in, c_out, conv.kernel_size, ranks, stride=conv.stride,
                                     padding=conv.padding, device="meta")
        if chain.flops(input_hw) > budget:
            break
        best = ranks
    return best


def test_exercise_5_3_passes_the_reference_and_lrlib(capsys):
    checks.exercise_5_3(tucker_ranks_reference)
    assert capsys.readouterr().out.count("✓ Exercise 5.3") == 1
    # lrlib's rule is the checker's expected value, so passing it to the checker cannot fail:
    # compare lrlib's ranks with the reference's on the checker's layers instead
    for (c_in, c_out, k, stride, padding), hw, speedup in nb05_decomposing_convolutions.speedup_cases():
        conv = torch.nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=False)
        ranks = rank_rules.choose_ranks(conv, rank_rules.FlopReduction(speedup), method="tucker2",
                                        input_hw=hw)
        assert ranks == tucker_ranks_reference(conv, hw, speedup), (conv, hw, speedup)
        assert ranks is None or all(type(r) is int for r in ranks), ranks


def _one_too_far(conv, input_hw, speedup):
    c_in, c_out = conv.in_channels, conv.out_channels
    m = max(c_in, c_out)
    budget = layers.conv_flops(conv, input_hw) / speedup
    for t in range(1, m + 1):
        ranks = (max(1, round(t * c_out / m)), max(1, round(t * c_in / m)))
        chain = layers.Tucker2Conv2d(c_in, c_out, conv.kernel_size, ranks, stride=conv.stride,
                                     padding=conv.padding, device="meta")
        if chain.flops(input_hw) > budget:
            return ranks
    return None


def _all_at_output_size(conv, input_hw, speedup):
    # the first 1×1 conv counted at the output size: wrong only when the stride is 2
    h, w = layers.conv_output_size(input_hw, conv.kernel_size, conv.stride, conv.padding)
    c_in, c_out, k = conv.in_channels, conv.out_channels, conv.kernel_size[0]
    m = max(c_in, c_out)
    budget = layers.conv_flops(conv, input_hw) / speedup
    best = None
    for t in range(1, m + 1):
        r_in, r_out = max(1, round(t * c_in / m)), max(1, round(t * c_out / m))
        if 2 * h * w * (c_in * r_in + r_in * r_out * k * k + r_out * c_out) > budget:
            break
        best = (r_out, r_in)
    return best


def _core_only_budget(conv, input_hw, speedup):
    c_in, c_out, k = conv.in_channels, conv.out_channels, conv.kernel_size[0]
    m = max(c_in, c_out)
    best = None
    for t in range(1, m + 1):
        r_in, r_out = max(1, round(t * c_in / m)), max(1, round(t * c_out / m))
        if r_in * r_out * k * k > c_in * c_out * k * k / speedup:
            break
        best = (r_out, r_in)
    return best


@pytest.mark.parametrize("wrong, hint", [
    (_one_too_far, "keep the LAST pair"),
    (lambda conv, hw, f: (lambda r: r and r[::-1])(tucker_ranks_reference(conv, hw, f)),
     "order is (R_out, R_in)"),
    (lambda conv, hw, f: (lambda r: r and tuple(float(v) for v in r))(tucker_ranks_reference(conv, hw, f)),
     "return ints"),
    (_all_at_output_size, "runs at the INPUT size"),
    (_core_only_budget, "count all three convolutions"),
    (lambda conv, hw, f: tucker_ranks_reference(conv, hw, f) or (1, 1), "return None"),
    (lambda conv, hw, f: (1, 1), "a larger pair still fits"),
])
def test_exercise_5_3_fails_helpfully(wrong, hint):
    fails_with(checks.exercise_5_3, wrong, hint, "5.3")


# ------------------------------------------------------------------ Exercise 5.4
def end_to_end_reference(times_ms, speedups):
    before = sum(times_ms.values())
    after = sum(t / speedups.get(name, 1.0) for name, t in times_ms.items())
    return before / after


def test_exercise_5_4_passes_the_reference(capsys):
    checks.exercise_5_4(end_to_end_reference)
    assert "✓ Exercise 5.4" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda t, s: sum(s.values()) / len(s) if s else 1.0, "averaging the speedups"),
    (lambda t, s: (sum(t[n] for n in s) / sum(t[n] / s[n] for n in s)) if s else 1.0,
     "still take their time"),
    (lambda t, s: 1 / end_to_end_reference(t, s), "time before / time after"),
    (lambda t, s: sum(t.values()), "Σ t_i / Σ (t_i / s_i)"),
])
def test_exercise_5_4_fails_helpfully(wrong, hint):
    fails_with(checks.exercise_5_4, wrong, hint, "5.4")


# ------------------------------------------------------------------ Exercise 5.5
def sensitivity_reference(model, data, layer_names, rules):
    baseline = train.evaluate(model, data).accuracy
    drops = {}
    for name in layer_names:
        for rule in rules:
            compressed, _ = compress.compress(model, rank={name: rule})
            drops[(name, rule)] = baseline - train.evaluate(compressed, data).accuracy
    return drops


def test_exercise_5_5_passes_the_reference(capsys):
    checks.exercise_5_5(sensitivity_reference)
    assert "✓ Exercise 5.5" in capsys.readouterr().out


def _accuracies(model, data, layer_names, rules):
    baseline = train.evaluate(model, data).accuracy
    return {key: baseline - drop for key, drop in sensitivity_reference(model, data, layer_names, rules).items()}


def _all_layers(model, data, layer_names, rules):
    baseline = train.evaluate(model, data).accuracy
    drops = {}
    for name in layer_names:
        for rule in rules:
            compressed, _ = compress.compress(model, rank=rule)
            drops[(name, rule)] = baseline - train.evaluate(compressed, data).accuracy
    return drops


def _in_place(model, data, layer_names, rules):
    drops = sensitivity_reference(model, data, layer_names, rules)
    compress.compress(model, rank={layer_names[0]: rules[0]}, inplace=True)
    return drops


@pytest.mark.parametrize("wrong, hint", [
    (_accuracies, "not the accuracy"),
    (lambda *args: {k: -v for k, v in sensitivity_reference(*args).items()}, "positive when accuracy falls"),
    (_all_layers, "ONE layer at a time"),
    (_in_place, "do not pass inplace=True"),
    (lambda m, d, names, rules: {name: 0.0 for name in names}, "one entry per (layer name, rule)"),
])
def test_exercise_5_5_fails_helpfully(wrong, hint):
    fails_with(checks.exercise_5_5, wrong, hint, "5.5")
