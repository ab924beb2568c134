"""lrlib.checks, the pipeline exercises 3.7, 5.6 and 7.5: each checker passes a model that
meets its requirements and names the first requirement a wrong model misses. Fine-tuning
is left out where the test is about another requirement (the solution notebooks, run by
nbval, pass the checkers with the real targets); no timing is measured or asserted: the
measured speedup of 7.5 comes from a stand-in for ``bench.compare``."""

import copy

import pytest
import torch
from torch import nn

from lrlib import bench, checks, compress, deploy, optimize, rank_rules, train
from lrlib.checks import nb03_svd_low_rank, nb05_decomposing_convolutions, nb07_capstone, pipeline
from checker_asserts import stub

CONVS = ["conv2", "conv3", "conv4"]


def fails_on(checker, function, requirement, hint):
    """``checker(function)`` raises an AssertionError naming ``requirement`` first and
    containing ``hint``."""
    with pytest.raises(AssertionError) as info:
        checker(function)
    message = str(info.value)
    assert message.startswith(f"Exercise {checker.__name__[9:].replace('_', '.')}: the "
                              f"requirement '{requirement}' is not met"), message
    assert "expected:" in message and "got:" in message
    assert hint in message, message
    return message


@pytest.mark.parametrize("checker", [checks.exercise_3_7, checks.exercise_5_6, checks.exercise_7_5])
def test_unfinished_pipelines_raise_not_implemented_and_results_are_type_errors(checker):
    with pytest.raises(NotImplementedError):
        checker(stub)
    with pytest.raises(TypeError, match="pass your function itself"):
        checker(42)


def test_the_pipeline_checkers_are_public():
    for name in ("exercise_3_7", "exercise_5_6", "exercise_7_5"):
        assert name in checks.__all__


def test_check_requirements_prints_every_requirement_and_raises_on_the_first_missed(capsys):
    met = pipeline.Requirement("size", "≤ 10", "8", True, "smaller")
    missed = pipeline.Requirement("accuracy", "≥ 90%", "85%", False, "fine-tune")
    also = pipeline.Requirement("speed", "≥ 2×", "1.5×", False, "faster")
    with pytest.raises(AssertionError) as info:
        pipeline.check_requirements("9.9", [met, missed, also], "never printed")
    printed = capsys.readouterr().out
    assert "size" in printed and "✓" in printed and "✗" in printed
    message = str(info.value)
    assert "'accuracy'" in message and "≥ 90%" in message and "85%" in message
    assert "fine-tune" in message and "1 more not met: speed" in message
    pipeline.check_requirements("9.9", [met], "all met")
    assert "✓ Exercise 9.9: all met" in capsys.readouterr().out


def test_a_model_that_cannot_run_on_the_images_is_named():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("shapes do not match")

    with pytest.raises(AssertionError, match="your model raised RuntimeError"):
        checks.exercise_3_7(lambda mlp, train_set: Broken())


# ------------------------------------------------------------------ Exercise 3.7
def mlp_at(r1, r2):
    return lambda mlp, train_set: compress.compress(mlp, rank={"fc1": r1, "fc2": r2}, method="svd")[0]


def test_3_7_passes_a_fine_tuned_model_within_the_budget(capsys):
    def small_mlp(mlp, train_set):
        small, _ = compress.compress(mlp, rank={"fc1": 12, "fc2": 8}, method="svd")
        train.fine_tune(small, train_set, epochs=3, lr=1e-3, progress=False)
        return small

    checks.exercise_3_7(small_mlp)
    assert "✓ Exercise 3.7: fc1 at rank 12, fc2 at rank 8" in capsys.readouterr().out


def test_3_7_names_factors_that_were_never_fine_tuned():
    fails_on(checks.exercise_3_7, mlp_at(12, 8), "test accuracy", "still the truncated SVD")


def test_3_7_names_a_model_over_the_budget_and_what_the_budget_allows():
    fails_on(checks.exercise_3_7, mlp_at(32, 32), "parameters", "r1·1,808 + r2·1,536 ≤ 35,014")


def test_3_7_names_a_changed_reference_model():
    def in_place(mlp, train_set):
        return compress.compress(mlp, rank={"fc1": 12, "fc2": 8}, method="svd", inplace=True)[0]

    fails_on(checks.exercise_3_7, in_place, "reference MLP unchanged", "work on a copy")


def test_3_7_names_layers_left_dense_and_accepts_two_linear_layers():
    fails_on(checks.exercise_3_7, lambda mlp, train_set: copy.deepcopy(mlp),
             "fc1 and fc2 factorized", "fc1 Linear, fc2 Linear")
    assert nb03_svd_low_rank.low_rank_of(nn.Sequential(nn.Linear(6, 2, bias=False), nn.Linear(2, 4))) == 2
    assert nb03_svd_low_rank.low_rank_of(nn.Sequential(nn.Linear(6, 2), nn.ReLU(), nn.Linear(2, 4))) is None
    assert nb03_svd_low_rank.low_rank_of(nn.Linear(6, 4)) is None


def test_3_7_wants_a_module():
    with pytest.raises(AssertionError, match="must return the compressed model"):
        checks.exercise_3_7(lambda mlp, train_set: {"fc1": 12})


# ------------------------------------------------------------------ Exercise 5.6
def tucker(plan, *, recalibrate=True, fold=True):
    def compress_cnn(cnn, train_set):
        model, _ = compress.compress(cnn, rank=plan, method="tucker2", include=CONVS,
                                     example_input=train_set.images[:32])
        if recalibrate:
            train.recalibrate_batchnorm(model, (train_set.images[:2000], train_set.labels[:2000]))
        return optimize.fold_batchnorms(model.eval()) if fold else model
    return compress_cnn


def test_5_6_passes_a_deployable_model_within_the_budget(monkeypatch, capsys):
    # the accuracy target is the one thing lowered here: reaching it needs a fine-tune
    # (the solution notebook's), which this test leaves out to stay quick
    monkeypatch.setattr(nb05_decomposing_convolutions, "CNN_TARGET_ACCURACY", 0.5)
    checks.exercise_5_6(tucker(rank_rules.FlopReduction(6)))
    assert "✓ Exercise 5.6: conv2–conv4 need" in capsys.readouterr().out


def test_5_6_names_a_model_without_recalibration_or_fine_tuning():
    fails_on(checks.exercise_5_6, tucker(rank_rules.FlopReduction(6), recalibrate=False),
             "test accuracy", "recalibrate_batchnorm")


def test_5_6_names_batchnorm_left_in_the_model():
    fails_on(checks.exercise_5_6, tucker(rank_rules.FlopReduction(6), fold=False),
             "BatchNorm layers left", "fold_batchnorms")


def test_5_6_names_a_model_over_the_flop_budget():
    fails_on(checks.exercise_5_6, tucker(rank_rules.FlopReduction(4)), "MFLOPs per image",
             "may keep 1/6")


def test_5_6_names_convolutions_left_dense_and_accepts_a_sequential_of_convolutions():
    def dense(cnn, train_set):
        return optimize.fold_batchnorms(cnn)

    fails_on(checks.exercise_5_6, dense, "conv2–conv4 factorized", "conv2 Conv2d (dense)")
    own = nn.Sequential(nn.Conv2d(64, 8, 3, padding=1, bias=False), nn.Conv2d(8, 128, 1))
    assert nb05_decomposing_convolutions.is_conv_chain(own)
    assert not nb05_decomposing_convolutions.is_conv_chain(nn.Conv2d(64, 128, 3))
    assert not nb05_decomposing_convolutions.is_conv_chain(nn.Sequential(nn.Conv2d(64, 128, 3)))


# ------------------------------------------------------------------ Exercise 7.5
class StandIn:
    """What the checker reads from ``bench.compare``: one row per candidate, here with a
    fixed speedup, and the candidates it was asked to compare."""

    def __init__(self, speedup):
        self.speedup, self.candidates = speedup, None

    def __call__(self, candidates, **options):
        self.candidates = candidates
        return self

    def row(self, name):
        return {"speedup": self.speedup, "speedup_low": 0.9 * self.speedup,
                "speedup_high": 1.1 * self.speedup}


PLAN = {"conv2": rank_rules.FlopReduction(4), "conv3": rank_rules.FlopReduction(4),
        "conv4": rank_rules.FlopReduction(16)}


def shipper(*, fold=True, save=True):
    def ship(cnn, train_set, folder):
        model, report = compress.compress(cnn, rank=PLAN, method="tucker2",
                                          example_input=train_set.images[:32])
        train.recalibrate_batchnorm(model, (train_set.images[:2000], train_set.labels[:2000]))
        model = optimize.fold_batchnorms(model.eval()) if fold else model
        if save:
            deploy.save_compressed(model, folder, base_model="cnn", batchnorm_folded=fold,
                                   structure=deploy.factorized_structure(report))
    return ship


@pytest.fixture
def lenient_accuracy(monkeypatch):
    # without the fine-tune of the solution notebook, the recalibrated model loses about
    # 1.5 points; these tests are about the other requirements
    monkeypatch.setitem(nb07_capstone.SHIP_TARGET, "max_drop", 0.05)
    monkeypatch.setitem(nb07_capstone.SHIP_TARGET, "agreement", 0.8)


def test_7_5_passes_a_reloaded_model_and_measures_it_against_the_model_as_shipped(
        monkeypatch, lenient_accuracy, capsys):
    stand_in = StandIn(3.2)
    monkeypatch.setattr(bench, "compare", stand_in)
    checks.exercise_7_5(shipper())
    assert "✓ Exercise 7.5: reloaded from the folder, 3.20× faster" in capsys.readouterr().out
    baseline, baseline_input = stand_in.candidates["as shipped"]
    yours, your_input = stand_in.candidates["yours"]
    assert any(isinstance(m, nn.BatchNorm2d) for m in baseline.modules())     # the CNN as shipped
    assert not any(isinstance(m, nn.BatchNorm2d) for m in yours.modules())    # reloaded, folded
    assert baseline_input.shape == your_input.shape == (32, 1, 28, 28)
    assert your_input.is_contiguous(memory_format=torch.channels_last)


def test_7_5_names_a_measured_speedup_below_the_target_and_says_to_measure_again(
        monkeypatch, lenient_accuracy):
    monkeypatch.setattr(bench, "compare", StandIn(1.3))
    fails_on(checks.exercise_7_5, shipper(), "speedup at batch 32 (measured)", "run the check again")


def test_7_5_names_a_folder_it_cannot_reload():
    with pytest.raises(AssertionError, match="could not reload the folder") as info:
        checks.exercise_7_5(shipper(save=False))
    assert "save_compressed" in str(info.value)


def test_7_5_names_batchnorm_left_in_the_saved_model(monkeypatch):
    monkeypatch.setattr(bench, "compare", StandIn(3.2))
    fails_on(checks.exercise_7_5, shipper(fold=False), "BatchNorm layers left", "batchnorm_folded=True")


def test_7_5_names_accuracy_lost_beyond_the_target(monkeypatch):
    monkeypatch.setattr(bench, "compare", StandIn(3.2))
    fails_on(checks.exercise_7_5, shipper(), "accuracy lost", "fine-tune")
