"""lrlib.checks, notebook 07: each checker passes the reference answer and fails helpfully
on the typical wrong ones (the message names the case, the expected value and a hint)."""

import pytest
import torch

from lrlib import checks, sensitivity
from lrlib.checks import nb07_capstone
from checker_asserts import fails_with, stub


@pytest.mark.parametrize("checker", [checks.exercise_7_1, checks.exercise_7_2,
                                     checks.exercise_7_3, checks.exercise_7_4])
def test_unfinished_exercises_raise_not_implemented_and_results_are_type_errors(checker):
    with pytest.raises(NotImplementedError):
        checker(stub)
    with pytest.raises(TypeError, match="pass your function itself"):
        checker(42)


def test_the_checkers_are_public():
    for name in ("exercise_7_1", "exercise_7_2", "exercise_7_3", "exercise_7_4"):
        assert name in checks.__all__


# ------------------------------------------------------------------ Exercise 7.1
def top1_agreement_reference(logits_a, logits_b):
    return (logits_a.argmax(dim=1) == logits_b.argmax(dim=1)).float().mean().item()


def test_exercise_7_1_passes_the_reference_and_a_tensor_answer(capsys):
    checks.exercise_7_1(top1_agreement_reference)
    checks.exercise_7_1(lambda a, b: (a.argmax(1) == b.argmax(1)).double().mean())
    checks.exercise_7_1(lambda a, b: (torch.softmax(a, 1).argmax(1) == b.argmax(1)).sum().item() / len(a))
    assert capsys.readouterr().out.count("✓ Exercise 7.1") == 3


def test_exercise_7_1_cases_are_the_documented_ones():
    cases = nb07_capstone.agreement_cases()
    expected = [0.6, 1.0, 4 / 6, 1.0, 0.0]
    for (case, a, b), value in zip(cases, expected):
        assert a.shape[0] != a.shape[1], case
        assert top1_agreement_reference(a, b) == pytest.approx(value), case


@pytest.mark.parametrize("wrong, hint", [
    (lambda a, b: (a == b).float().mean().item(), "not the logits themselves"),
    (lambda a, b: (a.argmax(dim=0) == b.argmax(dim=0)).float().mean().item(), "not over the images"),
    (lambda a, b: (a.argmax(1) == b.argmax(1)).sum().item(), "divide by the number of rows"),
    (lambda a, b: 100 * top1_agreement_reference(a, b), "not a percentage"),
    (lambda a, b: 1 - top1_agreement_reference(a, b), "DISAGREE"),
    (lambda a, b: a.argmax(1) == b.argmax(1), "return one number"),
    (lambda a, b: 0.5, "predictions = logits.argmax(dim=1)"),
])
def test_exercise_7_1_fails_helpfully(wrong, hint):
    fails_with(checks.exercise_7_1, wrong, hint, "7.1")


def test_exercise_7_1_reports_the_learners_exception():
    with pytest.raises(AssertionError, match="your function raised"):
        checks.exercise_7_1(lambda a, b: (a.argmax(1) == b.argmax(1)).mean())  # bool mean


# ------------------------------------------------------------------ Exercise 7.2
def choose_reference(rows, max_drop):
    choice = {}
    for layer in dict.fromkeys(row["layer"] for row in rows):
        good = [row for row in rows if row["layer"] == layer and row["rank"] is not None
                and row["drop"] <= max_drop]
        if good:
            choice[layer] = min(good, key=lambda row: row["params_after"])["rule"]
    return choice


def test_exercise_7_2_passes_the_reference_and_lrlib(capsys):
    checks.exercise_7_2(choose_reference)
    checks.exercise_7_2(lambda rows, max_drop: sensitivity.SensitivityScan(0.0, rows).choose(max_drop))
    assert capsys.readouterr().out.count("✓ Exercise 7.2") == 2


def test_exercise_7_2_cases_cover_what_the_message_says():
    cases = nb07_capstone.scan_cases()
    results = [sensitivity.SensitivityScan(0.9, rows).choose(max_drop) for _, rows, max_drop in cases]
    assert results[0] == {"conv2": 0.25, "conv3": 0.1}
    assert results[1] == {"conv4": 0.1, "conv2": 0.1}        # drop == max_drop is allowed
    assert results[2] == {"conv3": 0.25}                     # conv2 left out
    assert results[3] == {"conv4": 0.1}                      # rank None is not a choice
    assert results[4] == {"conv3": 0.25}                     # the first of equal counts


def test_exercise_7_2_does_not_let_the_learner_change_the_rows():
    def destructive(rows, max_drop):
        answer = choose_reference(rows, max_drop)
        rows.clear()
        return answer

    checks.exercise_7_2(destructive)


def _per_layer_pick(rows, max_drop, pick):
    # per layer, the rule that ``pick`` chooses among the ranks within max_drop
    choice = {}
    for layer in dict.fromkeys(row["layer"] for row in rows):
        good = [r for r in rows if r["layer"] == layer and r["rank"] is not None and r["drop"] <= max_drop]
        if good:
            choice[layer] = pick(good)["rule"]
    return choice


def _min_drop(rows, max_drop):
    return _per_layer_pick(rows, max_drop, lambda good: min(good, key=lambda r: r["drop"]))


def _largest(rows, max_drop):
    return _per_layer_pick(rows, max_drop, lambda good: max(good, key=lambda r: r["params_after"]))


def _first_listed(rows, max_drop):
    choice = {}
    for row in rows:
        if row["rank"] is not None and row["drop"] <= max_drop:
            choice.setdefault(row["layer"], row["rule"])
    return choice


def _strict(rows, max_drop):
    return choose_reference(rows, max_drop - 1e-12)


def _keeps_rank_none(rows, max_drop):
    choice = {}
    for layer in dict.fromkeys(row["layer"] for row in rows):
        good = [r for r in rows if r["layer"] == layer and r["drop"] <= max_drop]
        if good:
            choice[layer] = min(good, key=lambda r: r["params_after"])["rule"]
    return choice


def _last_of_equals(rows, max_drop):
    choice, best = {}, {}
    for row in rows:
        if row["rank"] is None or row["drop"] > max_drop:
            continue
        if row["layer"] not in best or row["params_after"] <= best[row["layer"]]:
            best[row["layer"]] = row["params_after"]
            choice[row["layer"]] = row["rule"]
    return choice


def _ranks(rows, max_drop):
    rule_of = choose_reference(rows, max_drop)
    return {layer: next(r["rank"] for r in rows if r["layer"] == layer and r["rule"] == rule)
            for layer, rule in rule_of.items()}


def _none_for_dense(rows, max_drop):
    choice = choose_reference(rows, max_drop)
    for row in rows:
        choice.setdefault(row["layer"], None)
    return choice


@pytest.mark.parametrize("wrong, hint", [
    (_min_drop, "not the one with the smallest drop"),
    (_largest, "you took the largest rank"),
    (_first_listed, "not sorted by size"),
    (_strict, "a drop equal to max_drop is allowed"),
    (_keeps_rank_none, "skip rows whose rank is None"),
    (_last_of_equals, "keep the FIRST of them"),
    (_ranks, "not to the rank"),
    (_none_for_dense, "leave such layers out"),
    (lambda rows, max_drop: list(choose_reference(rows, max_drop).items()), "return a dict"),
    (lambda rows, max_drop: {"conv9": 0.5}, "for each layer: keep its rows"),
])
def test_exercise_7_2_fails_helpfully(wrong, hint):
    fails_with(checks.exercise_7_2, wrong, hint, "7.2")


# ------------------------------------------------------------------ Exercise 7.3
def int8_bytes_reference(in_features, out_features, bias=True):
    return in_features * out_features + (4 * out_features if bias else 0) + 4 + 4


def test_exercise_7_3_passes_the_reference(capsys):
    checks.exercise_7_3(int8_bytes_reference)
    checks.exercise_7_3(lambda n, m, bias=True: torch.tensor(n * m + 4 * m * bias + 8))
    assert capsys.readouterr().out.count("✓ Exercise 7.3") == 2


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
def test_exercise_7_3_definition_matches_a_quantized_linear():
    # the int8 weight and the float32 bias of torch's dynamically quantized Linear
    from lrlib import deploy

    layer = deploy.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(64, 32))).get_submodule("0")
    weight, bias = layer._packed_params._weight_bias()
    assert weight.dtype == torch.qint8 and weight.element_size() == 1
    assert bias.dtype == torch.float32
    assert weight.qscheme() == torch.per_tensor_affine      # one scale, one zero point
    payload = weight.numel() * weight.element_size() + bias.numel() * bias.element_size() + 8
    assert payload == int8_bytes_reference(64, 32, True)


@pytest.mark.parametrize("wrong, hint", [
    (lambda n, m, bias=True: n * m + 4 * m * bias, "one int32 zero point"),
    (lambda n, m, bias=True: 4 * n * m + 4 * m * bias + 8, "an int8 weight takes 1 byte"),
    (lambda n, m, bias=True: n * m + m * bias + 8, "stays float32"),
    (lambda n, m, bias=True: n * m + 8, "bias=True: add the float32 bias"),
    (lambda n, m, bias=True: n * m + 4 * m + 8, "bias=False: the layer has no bias"),
    (lambda n, m, bias=True: n * m + 4 * m * bias + 8 * m, "per tensor"),
    (lambda n, m, bias=True: 8 * int8_bytes_reference(n, m, bias), "not bits"),
    (lambda n, m, bias=True: float(int8_bytes_reference(n, m, bias)), "return an int"),
    (lambda n, m, bias=True: n + m, "in_features·out_features (1 byte each)"),
])
def test_exercise_7_3_fails_helpfully(wrong, hint):
    fails_with(checks.exercise_7_3, wrong, hint, "7.3")


# ------------------------------------------------------------------ Exercise 7.4
def pareto_reference(points):
    def dominates(q, p):
        return q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1])

    front = [name for name, p in points.items()
             if not any(dominates(q, p) for other, q in points.items() if other != name)]
    return sorted(front, key=lambda name: points[name][0])


def test_exercise_7_4_passes_the_reference(capsys):
    checks.exercise_7_4(pareto_reference)
    checks.exercise_7_4(lambda points: tuple(pareto_reference(points)))
    assert capsys.readouterr().out.count("✓ Exercise 7.4") == 2


def _strict_dominance(points):
    front = [n for n, p in points.items()
             if not any(q[0] < p[0] and q[1] > p[1] for o, q in points.items() if o != n)]
    return sorted(front, key=lambda n: points[n][0])


def _loose_dominance(points):
    front = [n for n, p in points.items()
             if not any(q[0] <= p[0] and q[1] >= p[1] for o, q in points.items() if o != n)]
    return sorted(front, key=lambda n: points[n][0])


def _higher_latency_better(points):
    flipped = {name: (-latency, accuracy) for name, (latency, accuracy) in points.items()}
    return sorted(pareto_reference(flipped), key=lambda n: points[n][0])


def _sweep(points):
    front, best = [], float("-inf")
    for name, (latency, accuracy) in sorted(points.items(), key=lambda item: (item[1][0], -item[1][1])):
        if accuracy > best:
            front.append(name)
            best = accuracy
    return front


@pytest.mark.parametrize("wrong, hint", [
    (lambda points: pareto_reference(points)[::-1], "fastest first"),
    (lambda points: [n for n in points if n in pareto_reference(points)], "fastest first"),
    (_strict_dominance, "AT LEAST as fast"),
    (_loose_dominance, "an identical point does not dominate"),
    (_higher_latency_better, "lower latency is better"),
    (_sweep, "two identical points"),
    (lambda points: set(pareto_reference(points)), "return a list of names"),
    (lambda points: list(points), "keep a name when no other point"),
])
def test_exercise_7_4_fails_helpfully(wrong, hint):
    fails_with(checks.exercise_7_4, wrong, hint, "7.4")


def test_exercise_7_4_names_a_wrong_order_among_the_right_names():
    def shuffled(points):
        front = pareto_reference(points)
        return front[1:] + front[:1] if len(front) > 2 else front

    fails_with(checks.exercise_7_4, shuffled, "not in order", "7.4")


def _sweep_keeping_ties(points):
    """Sort and sweep as notebooks 05 and 06 do, but keep a point equal to the last one kept
    (two identical points do not dominate each other)."""
    front, best, last = [], float("-inf"), None
    for name, p in sorted(points.items(), key=lambda item: (item[1][0], -item[1][1])):
        if p[1] > best or p == last:
            front.append(name)
            best, last = p[1], p
    return front


def test_exercise_7_4_accepts_a_sort_and_sweep_front(capsys):
    checks.exercise_7_4(_sweep_keeping_ties)

    def ties_reversed(points):   # identical points in the other order: still fastest first
        front = _sweep_keeping_ties(points)
        return sorted(front, key=lambda n: (points[n][0], -list(points).index(n)))

    checks.exercise_7_4(ties_reversed)
    assert capsys.readouterr().out.count("✓ Exercise 7.4") == 2


def test_exercise_7_4_still_rejects_the_sweep_that_drops_an_identical_point():
    # the exercise keeps both of two identical points; notebook 05's sweep drops the second
    fails_with(checks.exercise_7_4, _sweep, "two identical points", "7.4")
    fails_with(checks.exercise_7_4, lambda points: _sweep(points) + _sweep(points)[:1],
               "keep a name when no other point", "7.4")
