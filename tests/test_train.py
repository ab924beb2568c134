"""lrlib.train: fit and evaluate."""

import pytest
import torch
from torch import nn

from lrlib import data, train


def _toy_problem(n=256, seed=0):
    """Two well separated Gaussian blobs in 2-D: any working training loop learns them."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    inputs = centres[labels] + 0.5 * torch.randn(n, 2, generator=g)
    return inputs, labels


@pytest.fixture
def learning_rates(monkeypatch):
    """The learning rate of every Adam step taken while the test runs."""
    seen = []
    original_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    return seen


def test_fit_learns_a_separable_problem_and_reports_history():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    inputs, labels = _toy_problem()
    before = train.evaluate(model, (inputs, labels))
    history = train.fit(model, (inputs, labels), epochs=20, lr=0.05, batch_size=32, progress=False)
    after = train.evaluate(model, (inputs, labels))
    assert [h["epoch"] for h in history] == list(range(1, 21))
    assert history[-1]["loss"] < history[0]["loss"]
    assert after.accuracy > 0.97 and after.loss < before.loss
    assert after.n == 256


def test_fit_is_reproducible_with_the_same_seed():
    inputs, labels = _toy_problem()
    weights = []
    for _ in range(2):
        torch.manual_seed(123)
        model = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.2), nn.Linear(8, 2))
        train.fit(model, (inputs, labels), epochs=2, seed=7, progress=False)
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_evaluate_matches_a_hand_computation_and_restores_mode():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.train()
    inputs, labels = _toy_problem(100)
    result = train.evaluate(model, (inputs, labels), batch_size=7)
    model.eval()
    with torch.no_grad():
        logits = model(inputs)
    assert result.accuracy == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert result.loss == pytest.approx(nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    model.train()
    train.evaluate(model, (inputs, labels))
    assert model.training


def test_evaluate_accepts_imagesets_and_loaders():
    subset = data.fashion_mnist("test")
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    by_set = train.evaluate(model, subset)
    by_loader = train.evaluate(model, subset.loader(333))
    assert by_set.n == by_loader.n == 2000
    assert by_set.accuracy == pytest.approx(by_loader.accuracy)


def test_bad_arguments_raise_clear_errors():
    inputs, labels = _toy_problem(10)
    with pytest.raises(TypeError, match="model must be an nn.Module, got .*str"):
        train.fit("not a model", (inputs, labels))
    with pytest.raises(TypeError, match="data must be"):
        train.evaluate(nn.Linear(2, 2), [1, 2, 3])
    with pytest.raises(ValueError, match="10 inputs but 9 labels"):
        train.evaluate(nn.Linear(2, 2), (inputs, labels[:9]))
    with pytest.raises(ValueError, match="epochs must be a positive int, got 0"):
        train.fit(nn.Linear(2, 2), (inputs, labels), epochs=0)
    with pytest.raises(ValueError, match="lr must be a number > 0, got -1.0"):
        train.fit(nn.Linear(2, 2), (inputs, labels), lr=-1.0)
    with pytest.raises(TypeError, match="epochs must be a positive int, got 2.0"):
        train.fit(nn.Linear(2, 2), (inputs, labels), epochs=2.0)
    with pytest.raises(TypeError, match="progress must be True or False, got 'yes'"):
        train.evaluate(nn.Linear(2, 2), (inputs, labels), progress="yes")


def test_diverging_training_raises():
    inputs, labels = _toy_problem(64)
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="lower lr"):
        train.fit(model, (inputs, labels), progress=False)


def test_progress_bar_switch(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("LRLIB_QUIET", "0")
    assert train.progress_enabled() is True
    monkeypatch.setenv("LRLIB_QUIET", "1")
    assert train.progress_enabled() is False
    assert train.progress_enabled(True) is True
    monkeypatch.setenv("LRLIB_QUIET", "0")
    monkeypatch.setenv("CI", "true")
    assert train.progress_enabled() is False


def test_quiet_training_prints_nothing(capsys, monkeypatch):
    monkeypatch.setenv("LRLIB_QUIET", "1")
    train.fit(nn.Linear(2, 2), _toy_problem(64), epochs=1)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_bar_is_drawn_when_asked(capsys):
    train.fit(nn.Linear(2, 2), _toy_problem(64), epochs=1, progress=True)
    assert "epoch 1/1" in capsys.readouterr().err


def test_cosine_schedule_ends_near_zero_and_bad_schedule_raises(learning_rates):
    seen = learning_rates
    train.fit(nn.Linear(2, 2), _toy_problem(64), epochs=2, lr=0.1, batch_size=16,
              schedule="cosine", progress=False)
    assert len(seen) == 8
    assert seen[0] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(seen, seen[1:]))
    assert seen[-1] == pytest.approx(0.1 * (1 + torch.cos(torch.tensor(7 / 8 * torch.pi)).item()) / 2)
    with pytest.raises(ValueError, match=r"schedule must be one of \('constant', 'cosine'\)"):
        train.fit(nn.Linear(2, 2), _toy_problem(8), schedule="step")


def test_fine_tune_recovers_a_damaged_model_with_a_falling_learning_rate(learning_rates):
    inputs, labels = _toy_problem(256)
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    train.fit(model, (inputs, labels), epochs=10, lr=0.05, progress=False)
    with torch.no_grad():
        model.weight.mul_(-0.2)  # damage it, as a crude compression would
    damaged = train.evaluate(model, (inputs, labels)).accuracy
    seen = learning_rates
    seen.clear()  # only the fine-tuning steps from here on
    history = train.fine_tune(model, (inputs, labels), epochs=3, lr=0.05, progress=False)
    assert len(history) == 3 and seen[0] == pytest.approx(0.05) and seen[-1] < 0.01
    assert train.evaluate(model, (inputs, labels)).accuracy > max(damaged, 0.95)


def test_recalibrate_batchnorm_sets_the_statistics_of_the_data_and_only_those():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.3), nn.ReLU())
    model[1].running_mean.fill_(5.0)       # stale statistics, as after factorizing conv
    model[1].running_var.fill_(9.0)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    images = torch.randn(40, 3, 6, 6) * 2 + 1
    result = train.recalibrate_batchnorm(model, (images, torch.zeros(40, dtype=torch.long)), batch_size=8)
    assert result is model and not model.training
    with torch.no_grad():
        features = model[0](images)                     # what the BatchNorm sees
    expected_mean = features.mean(dim=(0, 2, 3))
    torch.testing.assert_close(model[1].running_mean, expected_mean, atol=1e-5, rtol=1e-5)
    # a cumulative average of the per-batch unbiased variances (5 batches of 8 images)
    per_batch = torch.stack([features[i:i + 8].var(dim=(0, 2, 3), unbiased=True) for i in range(0, 40, 8)])
    torch.testing.assert_close(model[1].running_var, per_batch.mean(dim=0), atol=1e-4, rtol=1e-4)
    assert model[1].momentum == 0.3, "the BatchNorm's own momentum is restored"
    for key, value in weights.items():
        assert torch.equal(model.state_dict()[key], value), f"{key} changed"


def test_recalibrate_batchnorm_rejects_bad_arguments():
    with pytest.raises(ValueError, match="no BatchNorm"):
        train.recalibrate_batchnorm(nn.Linear(2, 2), _toy_problem(8))
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        train.recalibrate_batchnorm(nn.BatchNorm1d(2), _toy_problem(8), batch_size=0)


def test_top1_agreement_counts_equal_predictions():
    a = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 4.0], [1.0, 0.0]])
    b = torch.tensor([[9.0, 1.0], [4.0, 3.0], [1.0, 4.0], [7.0, -1.0]])    # rows 0 and 3 agree
    assert train.top1_agreement(a, b) == 0.5
    assert train.top1_agreement(a, 10 * a + 3) == 1.0                     # a rescaled copy
    with pytest.raises(ValueError, match=r"same shape, got \(4, 2\) and \(3, 2\)"):
        train.top1_agreement(a, b[:3])
    with pytest.raises(TypeError, match="logits_b must be a torch.Tensor"):
        train.top1_agreement(a, [[1.0, 2.0]])
