"""lrlib.profile: parameter, FLOP and byte counts, the per-layer table, the roofline."""

import pytest
import torch
from torch import nn

from lrlib import models, profile


@pytest.mark.parametrize("batch, n_in, n_out", [(1, 784, 1024), (32, 1024, 512), (3, 5, 7)])
def test_linear_flops_match_the_hand_formula(batch, n_in, n_out):
    assert profile.count_flops(nn.Linear(n_in, n_out), torch.zeros(batch, n_in)) == 2 * batch * n_in * n_out


@pytest.mark.parametrize("c_in, c_out, k, stride, padding, groups, dilation, size", [
    (3, 8, 3, 1, 0, 1, 1, 10), (16, 32, 3, 2, 1, 1, 1, 15), (32, 32, 3, 1, 1, 32, 1, 8),
    (32, 64, 1, 1, 0, 4, 1, 7), (8, 8, 3, 1, 2, 1, 2, 12), (4, 6, 5, 3, 2, 2, 1, 11)])
def test_conv2d_flops_match_the_hand_formula(c_in, c_out, k, stride, padding, groups, dilation, size):
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, groups=groups, dilation=dilation)
    out = (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    expected = 2 * 2 * c_out * out * out * (c_in // groups) * k * k
    assert profile.count_flops(conv, torch.zeros(2, c_in, size, size)) == expected


def test_counts_of_the_reference_models():
    mlp, cnn = models.MLP(), models.CNN()
    assert profile.count_params(mlp) == 1_333_770
    assert profile.count_params(cnn) == 390_890
    assert profile.count_flops(mlp, torch.zeros(1, 1, 28, 28)) == 2 * (784 * 1024 + 1024 * 512 + 512 * 10)
    cnn.conv1.weight.requires_grad_(False)
    assert profile.count_params(cnn, trainable_only=True) == 390_890 - 288


def test_model_bytes_is_the_serialized_size():
    model = nn.Linear(1000, 100)
    size = profile.model_bytes(model)
    assert 4 * 100_100 <= size < 4 * 100_100 + 4096  # the tensors plus a small header
    half = profile.model_bytes(model.half())
    assert half < 0.6 * size


def test_counting_restores_training_mode():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    model.train()
    profile.count_flops(model, torch.zeros(1, 4))
    profile.layer_table(model, torch.zeros(1, 4), repeats=2)
    assert model.training


def test_layer_table_rows_add_up():
    cnn = models.CNN()
    x = torch.zeros(2, 1, 28, 28)
    table = profile.layer_table(cnn, x, repeats=3)
    names = [row["name"] for row in table.rows]
    assert names == [name for name, m in cnn.named_children()]
    assert sum(row["params"] for row in table.rows) == profile.count_params(cnn)
    assert sum(row["flops"] for row in table.rows) == profile.count_flops(cnn, x)
    conv2 = table.rows[names.index("conv2")]
    assert conv2["type"] == "Conv2d" and conv2["flops"] == 2 * 2 * 64 * 28 * 28 * 32 * 9
    assert all(row["time_ms"] >= 0 and row["share"] >= 0 for row in table.rows)
    assert table.total_ms > 0
    text = str(table)
    assert "conv2" in text and "whole forward" in text and "<table>" in table._repr_html_()


def test_layer_table_of_nested_modules_uses_dotted_names():
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Linear(8, 2))
    table = profile.layer_table(model, torch.zeros(3, 4), repeats=2)
    assert [r["name"] for r in table.rows] == ["0.0", "0.1", "1"]
    assert [r["flops"] for r in table.rows] == [2 * 3 * 4 * 8, 0, 2 * 3 * 8 * 2]


def test_linear_intensity_formula_and_regimes():
    n = m = 1024
    assert profile.linear_intensity(1, n, m) == pytest.approx(2 * n * m / (4 * (n * m + m + n + m)))
    assert profile.linear_intensity(1, n, m) < 0.5 < 50 < profile.linear_intensity(256, n, m)
    assert profile.linear_intensity(1, n, m, bytes_per_element=2) == pytest.approx(
        2 * profile.linear_intensity(1, n, m))
    with pytest.raises(ValueError, match="batch must be a positive int"):
        profile.linear_intensity(0, n, m)


def test_arithmetic_intensity_rejects_bad_values():
    assert profile.arithmetic_intensity(100, 50) == 2
    with pytest.raises(ValueError, match="bytes_moved must be positive"):
        profile.arithmetic_intensity(1, 0)
    with pytest.raises(ValueError, match="flops must be >= 0"):
        profile.arithmetic_intensity(-1, 4)


def test_machine_roofline_is_measured_and_consistent():
    saved = torch.get_num_threads()
    roof = profile.machine_roofline(matmul_size=256, copy_megabytes=16, min_run_time=0.05, threads=1)
    assert roof.peak_gflops > 0.1 and roof.bandwidth_gbs > 0.1 and roof.threads == 1
    assert torch.get_num_threads() == saved
    assert roof.ridge_point == pytest.approx(roof.peak_gflops / roof.bandwidth_gbs)
    low, high = roof.ridge_point / 10, roof.ridge_point * 10
    assert roof.attainable_gflops(low) == pytest.approx(roof.bandwidth_gbs * low)
    assert roof.attainable_gflops(high) == roof.peak_gflops
    assert roof.bound(low) == "memory" and roof.bound(high) == "compute"


def test_bad_arguments():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        profile.count_params("mlp")
    with pytest.raises(TypeError, match="example_input must be a tensor"):
        profile.count_flops(nn.Linear(2, 2), [1, 2])
    with pytest.raises(ValueError, match="repeats"):
        profile.layer_table(nn.Linear(2, 2), torch.zeros(1, 2), repeats=0)
    with pytest.raises(ValueError, match="matmul_size"):
        profile.machine_roofline(matmul_size=0)
