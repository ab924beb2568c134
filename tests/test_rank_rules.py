"""lrlib.rank_rules: the rank rules and the ranks they choose."""

import pytest
import torch
from torch import nn

from lrlib import compress, rank_rules
from lrlib.factorizations import REGISTRY, untrained_like


def test_rule_objects_validate_their_arguments():
    with pytest.raises(ValueError, match=r"factor must be a number > 1, got 0.5"):
        rank_rules.FlopReduction(0.5)
    with pytest.raises(TypeError, match=r"factor must be a number > 1, got '2'"):
        rank_rules.FlopReduction("2")
    with pytest.raises(ValueError, match=r"energy must be a number in \(0, 1\], got 1.2"):
        rank_rules.Energy(1.2)
    with pytest.raises(TypeError, match="energy must be a number"):
        rank_rules.Energy(None)


@pytest.mark.parametrize("rule, error, match", [
    (0, ValueError, "rank must be a positive int, got 0"),
    (1.5, ValueError, r"rank \(as a float, the fraction of parameters to keep\) must be a number in \(0, 1\]"),
    ((4, 0), ValueError, r"rank\[1\] must be a positive int, got 0"),
    ((4, 4, 4), ValueError, r"pair \(R_out, R_in\)"),
    ((4, 2.0), TypeError, r"rank\[1\] must be a positive int"),
    ("64", TypeError, "rank must be an int, a pair"),
    (None, TypeError, "rank must be an int, a pair"),
])
def test_check_rule(rule, error, match):
    with pytest.raises(error, match=match):
        rank_rules.check_rule(rule)


def test_largest_within_is_the_last_candidate_in_budget():
    candidates = list(range(1, 101))
    asked = []

    def cost(r):
        asked.append(r)
        return 3 * r

    assert rank_rules.largest_within(candidates, cost, 150) == 50
    assert len(asked) <= 8                              # a bisection, not a scan
    assert rank_rules.largest_within(candidates, cost, 2) is None
    assert rank_rules.largest_within(candidates, cost, 10_000) == 100
    assert rank_rules.largest_within([], cost, 1) is None


def test_aligned_rounds_down_and_drops_repeats():
    assert rank_rules.aligned([1, 7, 8, 9, 15, 16, 17], 8) == [8, 16]
    assert rank_rules.aligned([(4, 2), (9, 8), (12, 9), (17, 16)], 8) == [(8, 8), (16, 16)]
    assert rank_rules.aligned([3, 5], 1) == [3, 5]


WEIGHTS = {   # the docstring formulas of lrlib.layers, for a 24 → 40 channel 3×3 conv
    "svd": lambda r: r * (24 * 9 + 40),
    "tucker2": lambda r: 24 * r[1] + r[1] * r[0] * 9 + r[0] * 40,
    "cp-fused": lambda r: r * (24 + 9 + 40),
    "cp-separable": lambda r: r * (24 + 3 + 3 + 40),
}


@pytest.mark.parametrize("method", list(WEIGHTS))
def test_a_parameter_fraction_gives_the_largest_rank_within_it(method):
    """Against a scan over every candidate, with the weights counted by the formulas."""
    conv = nn.Conv2d(24, 40, 3, padding=1)
    candidates = REGISTRY[method, nn.Conv2d].rank_candidates(conv)
    fitting = [r for r in candidates if WEIGHTS[method](r) <= 0.3 * conv.weight.numel()]
    assert rank_rules.choose_ranks(conv, 0.3, method=method) == fitting[-1]
    assert untrained_like(conv, fitting[-1], method=method).params == WEIGHTS[method](fitting[-1]) + 40


@pytest.mark.parametrize("method", ["tucker2", "cp-fused", "cp-separable", "svd"])
def test_flop_reduction_with_ranks_that_are_multiples_of_8(method):
    conv = nn.Conv2d(64, 64, 3, padding=1)
    hw = (16, 16)
    budget = 2 * 64 * 64 * 9 * 16 * 16 / 4
    chosen = rank_rules.choose_ranks(conv, rank_rules.FlopReduction(4, multiple_of=8), method=method, input_hw=hw)
    plain = rank_rules.choose_ranks(conv, rank_rules.FlopReduction(4), method=method, input_hw=hw)

    def flops(rank):
        return untrained_like(conv, rank, method=method, device="meta").flops(hw)

    # independently: the largest multiple of 8 (the same for both ranks of this square
    # layer) whose chain fits in a quarter of the dense FLOPs
    largest = 64 if method in ("tucker2", "svd") else 64 * 9
    fitting = [r for r in range(8, largest + 1, 8)
               if flops((r, r) if method == "tucker2" else r) <= budget]
    expected = fitting[-1]
    assert chosen == ((expected, expected) if method == "tucker2" else expected)
    assert plain != chosen and flops(plain) >= flops(chosen)   # the plain rule is not aligned here


def test_flop_reduction_multiple_of_on_pairs_small_layers_and_bad_values():
    wide = nn.Conv2d(32, 96, 3, padding=1)
    r_out, r_in = rank_rules.choose_ranks(wide, rank_rules.FlopReduction(3, multiple_of=8), method="tucker2",
                                        input_hw=(8, 8))
    assert r_in % 8 == 0 and r_out % 8 == 0 and r_out > r_in
    narrow = nn.Conv2d(4, 6, 3, padding=1)
    assert rank_rules.choose_ranks(narrow, rank_rules.FlopReduction(2, multiple_of=8), method="tucker2",
                                 input_hw=(8, 8)) is None
    _, report = compress.compress(nn.Sequential(narrow), rank=rank_rules.FlopReduction(2, multiple_of=8),
                                  example_input=torch.randn(1, 4, 8, 8), include=["0"])
    assert report.rows[0]["rank"] is None
    assert "no rank that is a multiple of 8 reaches 2× fewer FLOPs" in report.rows[0]["note"]
    with pytest.raises(ValueError, match="multiple_of must be a positive int, got 0"):
        rank_rules.FlopReduction(4, multiple_of=0)
    for bad in (2.5, True, "8"):
        with pytest.raises(TypeError, match=f"multiple_of must be a positive int, got {bad!r}"):
            rank_rules.FlopReduction(4, multiple_of=bad)
