"""lrlib.compress: model surgery on Linear layers and its report."""

import math

import pytest
import torch
from torch import nn

from lrlib import compress, models, svd
from lrlib.layers import LowRankLinear


@pytest.fixture(scope="module")
def mlp():
    return models.load_reference("mlp")


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_compress_leaves_the_original_untouched(mlp):
    before = _state(mlp)
    compressed, report = compress.compress(mlp, rank=32)
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())
    assert isinstance(mlp.fc1, nn.Linear)
    assert isinstance(compressed.fc1, LowRankLinear) and compressed.fc1.rank == 32


def test_inplace_changes_the_model():
    model = models.MLP(hidden=(64, 32))
    same, _ = compress.compress(model, rank=8, inplace=True)
    assert same is model and isinstance(model.fc1, LowRankLinear)


def test_report_rows_and_layers_that_stay_dense(mlp):
    compressed, report = compress.compress(mlp, rank=64)
    rows = {row["layer"]: row for row in report.rows}
    assert rows["fc1"]["rank"] == 64 and rows["fc1"]["shape"] == (1024, 784)
    assert rows["fc1"]["params_after"] == 64 * (784 + 1024) + 1024
    assert rows["fc1"]["flops_after"] == 2 * 64 * (784 + 1024)
    assert rows["fc3"]["rank"] is None and "rank 64 > min(10, 512)" in rows["fc3"]["note"]
    assert isinstance(compressed.fc3, nn.Linear)
    expected_error = svd.eckart_young_error(torch.linalg.svdvals(mlp.fc1.weight.detach().double()), 64)
    assert rows["fc1"]["relative_error"] == pytest.approx(
        expected_error / torch.linalg.matrix_norm(mlp.fc1.weight.detach().double()).item(), rel=1e-4)
    assert report.params_after == sum(p.numel() for p in compressed.parameters())
    text = str(report)
    assert "fc1" in text and "dense" in text and "total" in text
    assert "<table>" in report._repr_html_()


def test_rank_above_break_even_is_left_dense():
    model = nn.Sequential(nn.Linear(100, 100))
    _, report = compress.compress(model, rank=60)
    assert report.rows[0]["rank"] is None
    assert report.rows[0]["note"] == "rank 60 > break-even 49: no saving"


def test_fraction_and_energy_rules(mlp):
    _, by_fraction = compress.compress(mlp, rank=0.25, include=["fc1", "fc2"])
    for row in by_fraction.rows:
        m, n = row["shape"]
        assert row["rank"] == svd.rank_for_params((m, n), 0.25)
        assert row["params_after"] - m <= 0.25 * m * n
    _, by_energy = compress.compress(mlp, rank=compress.Energy(0.9), include=["fc2"])
    (row,) = by_energy.rows
    assert row["rank"] == svd.rank_for_energy(torch.linalg.svdvals(mlp.fc2.weight.detach().double()), 0.9)
    assert row["relative_error"] <= math.sqrt(0.1) + 1e-9


def test_include_exclude_and_per_layer_ranks(mlp):
    _, report = compress.compress(mlp, rank=16, exclude=["fc3"])
    assert [r["layer"] for r in report.rows] == ["fc1", "fc2"]
    _, report = compress.compress(mlp, rank=16, include=["fc*"], exclude=["fc2"])
    assert [r["layer"] for r in report.rows] == ["fc1", "fc3"]
    compressed, report = compress.compress(mlp, rank={"fc1": 100, "fc2": compress.Energy(0.5)})
    assert compressed.fc1.rank == 100 and isinstance(compressed.fc3, nn.Linear)
    assert [r["layer"] for r in report.rows] == ["fc1", "fc2"]


def test_compressed_model_keeps_accuracy_at_moderate_rank(mlp):
    from lrlib import data, train
    test = data.fashion_mnist("test")
    dense = train.evaluate(mlp, test).accuracy
    compressed, _ = compress.compress(mlp, rank=128, exclude=["fc3"])
    assert train.evaluate(compressed, test).accuracy > dense - 0.02


def test_randomized_method(mlp):
    exact, r1 = compress.compress(mlp, rank=32, include=["fc2"])
    randomized, r2 = compress.compress(mlp, rank=32, include=["fc2"], method="randomized")
    assert r1.rows[0]["relative_error"] <= r2.rows[0]["relative_error"] <= 1.1 * r1.rows[0]["relative_error"]


def test_nested_models():
    model = nn.Sequential(nn.Sequential(nn.Linear(64, 64), nn.ReLU()), nn.Linear(64, 4))
    compressed, report = compress.compress(model, rank=8)
    assert isinstance(compressed[0][0], LowRankLinear)
    assert [r["layer"] for r in report.rows] == ["0.0", "1"]


@pytest.mark.parametrize("rank, error, match", [
    (0, ValueError, "rank must be a positive int, got 0"),
    (-3, ValueError, "positive int"),
    (1.5, ValueError, r"must be in \(0, 1\], got 1.5"),
    (0.0, ValueError, r"\(0, 1\]"),
    (True, TypeError, "got True"),
    ("64", TypeError, "got str"),
    ({"fc9": 4}, ValueError, r"not Linear layers of the model: \['fc9'\]"),
    ({"fc1": -1}, ValueError, r"rank\['fc1'\] must be a positive int"),
])
def test_bad_ranks(mlp, rank, error, match):
    with pytest.raises(error, match=match):
        compress.compress(mlp, rank=rank)


def test_other_bad_arguments(mlp):
    with pytest.raises(ValueError, match="method must be one of"):
        compress.compress(mlp, rank=4, method="pca")
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        compress.compress("mlp", rank=4)
    with pytest.raises(TypeError, match="single nn.Linear"):
        compress.compress(nn.Linear(4, 4), rank=2)
    with pytest.raises(TypeError, match="include must be a list"):
        compress.compress(mlp, rank=4, include="fc1")
    with pytest.raises(ValueError, match="energy must be a number in"):
        compress.Energy(1.2)
    broken = models.MLP(hidden=(8,))
    with torch.no_grad():
        broken.fc1.weight[0, 0] = math.nan
    with pytest.raises(ValueError, match="layer 'fc1' has NaN or Inf weights"):
        compress.compress(broken, rank=2)
