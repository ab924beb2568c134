"""lrlib.sensitivity: accuracy lost when one layer at a time is factorized."""

import pytest
import torch

from lrlib import models, sensitivity


@pytest.fixture(scope="module")
def cnn():
    return models.load_reference("cnn")


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_sensitivity_scan_ranks_layers_and_chooses(cnn):
    from lrlib import data

    subset = data.fashion_mnist("test")
    inputs, labels = subset.images[:300], subset.labels[:300]
    before = _state(cnn)
    scan = sensitivity.sensitivity_scan(cnn, (inputs, labels), rules=(0.05, 0.5), include=["conv3", "conv4"])
    assert all(torch.equal(before[k], v) for k, v in cnn.state_dict().items())
    assert [(row["layer"], row["rule"]) for row in scan.rows] == [
        ("conv3", 0.05), ("conv3", 0.5), ("conv4", 0.05), ("conv4", 0.5)]
    for row in scan.rows:
        assert row["drop"] == pytest.approx(scan.baseline - row["accuracy"])
    # a layer kept at half its parameters loses less than one kept at 5%
    assert scan.rows[1]["accuracy"] >= scan.rows[0]["accuracy"]
    generous = scan.choose(max_drop=1.0)
    assert generous == {"conv3": 0.05, "conv4": 0.05}
    strict = scan.choose(max_drop=-0.0)
    assert set(strict) <= {"conv3", "conv4"}
    for layer, rule in strict.items():
        assert any(r["layer"] == layer and r["rule"] == rule and r["drop"] <= 0 for r in scan.rows)
    assert "dense accuracy" in str(scan)
    with pytest.raises(ValueError, match="rules must not be empty"):
        sensitivity.sensitivity_scan(cnn, (inputs, labels), rules=[])
    with pytest.raises(ValueError, match="max_drop must be a number >= 0"):
        scan.choose(-1)
    with pytest.raises(ValueError, match="method must be one of"):
        sensitivity.sensitivity_scan(cnn, (inputs, labels), method="pca")
    with pytest.raises(TypeError, match="rules must be a sequence"):
        sensitivity.sensitivity_scan(cnn, (inputs, labels), rules=0.5)
