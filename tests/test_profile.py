"""lrlib.profile: parameter, FLOP and byte counts, the per-layer table, the roofline."""

import time
from types import SimpleNamespace

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
    assert all(row["share"] == pytest.approx(row["time_ms"] / table.total_ms) for row in table.rows)
    text = str(table)
    assert "conv2" in text and "whole forward" in text and "<table>" in table._repr_html_()


class Tick(nn.Module):
    """A leaf layer that does nothing; the FakeClock decides how long each call took."""

    def forward(self, x):
        return x


class FakeClock:
    """Stands in for ``time.perf_counter_ns``: layer_table reads it before and after each
    leaf call, and the n-th pair of reads is ``durations_ms[n]`` apart."""

    def __init__(self, durations_ms):
        self.durations_ns = [round(ms * 1e6) for ms in durations_ms]
        self.reads, self.now = 0, 0

    def __call__(self):
        if self.reads % 2:
            self.now += self.durations_ns[self.reads // 2]
        self.reads += 1
        return self.now


class FakeTimer:
    """Stands in for ``torch.utils.benchmark.Timer``: runs nothing, and reports ``median``
    as the median and ``times`` as the blocks' times (seconds)."""

    median, times = None, None

    def __init__(self, stmt, globals, num_threads):
        self.num_threads = num_threads

    def blocked_autorange(self, min_run_time):
        return SimpleNamespace(median=self.median, times=self.times)


def test_layer_table_times_are_medians_of_the_hooked_calls(monkeypatch):
    shared = Tick()
    model = nn.Sequential(Tick(), nn.Sequential(shared, Tick()), shared)   # shared runs twice
    # per forward, the leaf calls in order: 0, 1.0 (shared), 1.1, 2 (shared again)
    warmup = [100.0, 100.0, 100.0, 100.0]                  # slow first call: not counted
    calls = [[2.0, 1.0, 3.0, 1.0], [9.0, 1.0, 3.0, 1.0], [2.0, 1.0, 4.0, 1.0]]
    monkeypatch.setattr(time, "perf_counter_ns", FakeClock(warmup + sum(calls, [])))
    monkeypatch.setattr(profile, "benchmark",
                        SimpleNamespace(Timer=type("Timer", (FakeTimer,), {"median": 0.02})))
    table = profile.layer_table(model, torch.zeros(1, 3), repeats=3, warmup=1)
    assert [r["name"] for r in table.rows] == ["0", "1.0", "1.1"]
    assert table.total_ms == pytest.approx(20.0)
    # the median of each layer's calls (9.0 is one slow call); the shared layer's two
    # calls per forward add up: median 1.0, twice
    assert [r["time_ms"] for r in table.rows] == pytest.approx([2.0, 2.0, 3.0])
    assert [r["share"] for r in table.rows] == pytest.approx([0.1, 0.1, 0.15])
    assert str(table).splitlines()[-1] == "whole forward: 20.000 ms"


def test_layer_table_of_nested_modules_uses_dotted_names():
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Linear(8, 2))
    table = profile.layer_table(model, torch.zeros(3, 4), repeats=2)
    assert [r["name"] for r in table.rows] == ["0.0", "0.1", "1"]
    assert [r["flops"] for r in table.rows] == [2 * 3 * 4 * 8, 0, 2 * 3 * 8 * 2]


class _PaddedConv(nn.Conv2d):
    """A convolution that pads in its forward, as EfficientNet's package does: not a leaf."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pad = nn.ZeroPad2d(1)

    def forward(self, x):
        return super().forward(self.pad(x))


def test_layer_table_of_chosen_module_types_includes_modules_that_are_not_leaves():
    model = nn.Sequential(_PaddedConv(3, 4, 3), nn.ReLU(), _PaddedConv(4, 2, 3), nn.Flatten())
    x = torch.zeros(2, 3, 5, 5)
    leaves = profile.layer_table(model, x, repeats=2)
    assert [r["name"] for r in leaves.rows] == ["0.pad", "1", "2.pad", "3"]   # the convs are missed
    table = profile.layer_table(model, x, repeats=2, modules=(nn.Conv2d, nn.ReLU))
    assert [(r["name"], r["type"]) for r in table.rows] == [("0", "_PaddedConv"), ("1", "ReLU"),
                                                            ("2", "_PaddedConv")]
    assert [r["flops"] for r in table.rows] == [2 * 2 * 25 * 4 * 3 * 9, 0, 2 * 2 * 25 * 2 * 4 * 9]
    assert [r["params"] for r in table.rows] == [4 * 3 * 9 + 4, 0, 2 * 4 * 9 + 2]
    assert profile.layer_table(model, x, repeats=2, modules=nn.ReLU).rows[0]["name"] == "1"
    with pytest.raises(TypeError, match="modules must be an nn.Module class or a tuple of them"):
        profile.layer_table(model, x, modules="conv")
    with pytest.raises(ValueError, match="no layers to profile"):
        profile.layer_table(model, x, modules=nn.Linear)


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
    with pytest.raises(ValueError, match="bytes_moved must be a number > 0, got 0"):
        profile.arithmetic_intensity(1, 0)
    with pytest.raises(ValueError, match="flops must be a number >= 0, got -1"):
        profile.arithmetic_intensity(-1, 4)


def test_machine_roofline_divides_the_work_by_the_fastest_block(monkeypatch):
    # the same blocks for both kernels: the fastest (2 ms) counts, the slower ones do not
    timer = type("Timer", (FakeTimer,), {"times": [0.003, 0.002, 0.005]})
    monkeypatch.setattr(profile, "benchmark", SimpleNamespace(Timer=timer))
    roof = profile.machine_roofline(matmul_sizes=[64], conv_shapes=[(1, 1, 1, 1)], copy_megabytes=2,
                                    threads=1)
    assert roof.peak_gflops == pytest.approx(2 * 64 ** 3 / 0.002 / 1e9)
    assert roof.bandwidth_gbs == pytest.approx(2 * 2_000_000 / 0.002 / 1e9)     # read + write
    assert roof.dtype == "torch.float32" and roof.threads == 1


def test_machine_roofline_is_measured_and_consistent():
    saved = torch.get_num_threads()
    roof = profile.machine_roofline(matmul_sizes=[128, 256], conv_shapes=[(2, 16, 16, 8)],
                                    copy_megabytes=16, min_run_time=0.05, threads=1)
    assert roof.peak_kernel.startswith(("matmul", "conv3x3"))
    assert roof.threads == 1
    assert torch.get_num_threads() == saved
    assert roof.ridge_point == pytest.approx(roof.peak_gflops / roof.bandwidth_gbs)
    low, high = roof.ridge_point / 10, roof.ridge_point * 10
    assert roof.attainable_gflops(low) == pytest.approx(roof.bandwidth_gbs * low)
    assert roof.attainable_gflops(high) == roof.peak_gflops
    assert roof.bound(low) == "memory" and roof.bound(high) == "compute"


def test_machine_roofline_keeps_the_best_of_several_kernels(monkeypatch):
    """One kernel can run badly (caches, threads, its library); the peak is the best one's."""
    class Timer(FakeTimer):
        def __init__(self, stmt, globals, num_threads):
            shape = tuple(globals["a"].shape) if "a" in globals else None
            # the 128 matrix product takes 4 ms, the 64 one 1 ms: 128 runs twice as fast;
            # the convolution on 2 channels (a tiny one) is slow, the copy takes 2 ms
            self.times = [{(64, 64): 0.001, (128, 128): 0.004}.get(shape, 0.002)]
            if "conv2d" in stmt:
                self.times = [1.0]
    monkeypatch.setattr(profile, "benchmark", SimpleNamespace(Timer=Timer))
    roof = profile.machine_roofline(matmul_sizes=[64, 128], conv_shapes=[(1, 2, 2, 4)], copy_megabytes=2,
                                    threads=1)
    assert roof.peak_kernel == "matmul 128×128"
    assert roof.peak_gflops == pytest.approx(2 * 128 ** 3 / 0.004 / 1e9)


def test_a_convolution_can_set_the_peak(monkeypatch):
    class Timer(FakeTimer):
        def __init__(self, stmt, globals, num_threads):
            self.times = [1e-6 if "conv2d" in stmt else 1.0]
    monkeypatch.setattr(profile, "benchmark", SimpleNamespace(Timer=Timer))
    roof = profile.machine_roofline(matmul_sizes=[8], conv_shapes=[(2, 4, 6, 5)], copy_megabytes=1,
                                    threads=1)
    assert roof.peak_kernel == "conv3x3 4→6 on 2×4×5×5"
    assert roof.peak_gflops == pytest.approx(2 * 2 * 5 * 5 * 9 * 4 * 6 / 1e-6 / 1e9)


def test_roofline_formulas_on_known_numbers():
    roof = profile.Roofline(peak_gflops=100.0, bandwidth_gbs=20.0, dtype="torch.float32", threads=2)
    assert roof.ridge_point == 5.0
    assert roof.attainable_gflops(2.0) == 40.0 and roof.attainable_gflops(8.0) == 100.0
    assert roof.bound(4.99) == "memory" and roof.bound(5.0) == "compute"


def test_bad_arguments():
    with pytest.raises(TypeError, match="model must be an nn.Module, got .*str"):
        profile.count_params("mlp")
    with pytest.raises(TypeError, match="example_input must be a tensor"):
        profile.count_flops(nn.Linear(2, 2), [1, 2])
    with pytest.raises(ValueError, match="repeats"):
        profile.layer_table(nn.Linear(2, 2), torch.zeros(1, 2), repeats=0)
    with pytest.raises(ValueError, match=r"matmul_sizes\[0\]"):
        profile.machine_roofline(matmul_sizes=[0])


# --------------------------------------------------------------------------- input tuples
def test_as_input_tuple():
    x, y = torch.zeros(2), torch.ones(3)
    assert profile.as_input_tuple(x) == (x,)
    assert profile.as_input_tuple((x, y)) == (x, y) and profile.as_input_tuple([x, y]) == (x, y)
    for bad in ([1.0, 2.0], 3.0, (x, "y")):
        with pytest.raises(TypeError, match="example_input must be a tensor or a tuple of tensors"):
            profile.as_input_tuple(bad)
    with pytest.raises(ValueError, match=r"example_input must hold at least one tensor, got \(\)"):
        profile.as_input_tuple(())


# --------------------------------------------------------------------------- layer inputs
class Twice(nn.Module):
    """Runs its Linear twice (a shared layer), on x and then on its own output."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(self.fc(x))


def test_layer_inputs_of_a_nested_model_are_what_each_layer_received():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(Twice(), nn.Linear(4, 2)))
    x = torch.randn(5, 3)
    seen = profile.layer_inputs(model, x)
    assert list(seen) == ["0", "2.0.fc", "2.1"]
    with torch.no_grad():
        first = torch.relu(model[0](x))
        torch.testing.assert_close(seen["0"], x, rtol=0, atol=0)
        # the shared layer keeps the input of its first call, not of its second
        torch.testing.assert_close(seen["2.0.fc"], first, rtol=0, atol=0)
        torch.testing.assert_close(seen["2.1"], model[2][0](first), rtol=0, atol=0)
    assert all(not t.requires_grad for t in seen.values())
    assert seen["0"].data_ptr() != x.data_ptr()                       # a copy, not x itself


def test_layer_inputs_of_chosen_layers_and_conv_inputs():
    cnn = models.CNN()
    x = torch.randn(2, 1, 28, 28)
    seen = profile.layer_inputs(cnn, x, names=["conv3", "fc", "bn1"])
    assert list(seen) == ["conv3", "fc", "bn1"]
    assert seen["conv3"].shape == (2, 64, 14, 14) and seen["fc"].shape == (2, 256)
    assert seen["bn1"].shape == (2, 32, 28, 28)
    assert list(profile.layer_inputs(cnn, (x,))) == ["conv1", "conv2", "conv3", "conv4", "fc"]


def test_layer_inputs_removes_its_hooks_and_restores_the_mode_when_the_model_raises():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            self.fc(x)
            raise RuntimeError("broken model")

    model = Broken().train()
    model.drop.eval()                                      # a mixed mode is restored as it was
    with pytest.raises(RuntimeError, match="broken model"):
        profile.layer_inputs(model, torch.zeros(1, 2))
    assert not model.fc._forward_pre_hooks and not model._forward_pre_hooks
    assert model.training and model.fc.training and not model.drop.training


def test_layer_inputs_runs_in_eval_mode_without_gradients_and_restores_training():
    modes = []

    class Recorder(nn.Linear):
        def forward(self, x):
            modes.append((self.training, torch.is_grad_enabled()))
            return super().forward(x)

    model = nn.Sequential(Recorder(2, 2), nn.Dropout(0.5)).train()
    seen = profile.layer_inputs(model, torch.zeros(1, 2))
    assert modes == [(False, False)]
    assert model.training and model[1].training and not model[0]._forward_pre_hooks
    # ordinary tensors: they can feed a computation that autograd tracks
    assert not seen["0"].is_inference()
    model[0](seen["0"]).sum().backward()
    assert model[0].weight.grad is not None


def test_layer_inputs_rejects_bad_names():
    model = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(ValueError, match=r"names holds \['fc9'\].*its submodules are \['0', '1', '1.0'\]"):
        profile.layer_inputs(model, torch.zeros(1, 2), names=["0", "fc9"])
    with pytest.raises(TypeError, match="names must be a list of submodule names, got '0'"):
        profile.layer_inputs(model, torch.zeros(1, 2), names="0")
    with pytest.raises(TypeError, match=r"names\[0\] must be a str, got 0"):
        profile.layer_inputs(model, torch.zeros(1, 2), names=[0])
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        profile.layer_inputs(lambda x: x, torch.zeros(1, 2))


def test_layer_inputs_leaves_out_a_layer_that_did_not_run():
    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    assert list(profile.layer_inputs(Skips(), torch.zeros(1, 2))) == ["used"]
    assert list(profile.layer_inputs(Skips(), torch.zeros(1, 2), names=["unused", "used"])) == ["used"]
