"""lrlib.optimize: BatchNorm folding keeps the function and never touches the caller's model."""

import platform
import subprocess
import sys

import pytest
import torch
from torch import nn

from lrlib import layers, models, optimize


def _random_bn(channels, seed):
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels, eps=1e-3)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(channels, generator=g))
        bn.bias.copy_(torch.randn(channels, generator=g))
        bn.running_mean.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(torch.rand(channels, generator=g) + 0.1)
    return bn.eval()


@pytest.mark.parametrize("bias, stride, padding, groups", [
    (False, 1, 1, 1), (True, 2, 0, 1), (True, 1, 1, 2), (False, 1, 1, 6)])
def test_fold_batchnorm_equals_conv_then_bn(bias, stride, padding, groups):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 12, 3, stride=stride, padding=padding, groups=groups, bias=bias)
    bn = _random_bn(12, 1)
    conv_state = {k: v.clone() for k, v in conv.state_dict().items()}
    x = torch.randn(3, 6, 10, 10)
    folded = optimize.fold_batchnorm(conv, bn)
    with torch.no_grad():
        assert torch.allclose(folded(x), bn(conv(x)), atol=1e-5)
    assert folded.bias is not None and folded is not conv
    assert all(torch.equal(conv_state[k], v) for k, v in conv.state_dict().items())


def test_fold_batchnorm_in_float64_is_exact_to_rounding():
    conv = nn.Conv2d(3, 5, 3, padding=1).double()
    bn = _random_bn(5, 2).double()
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(optimize.fold_batchnorm(conv, bn)(x), bn(conv(x)), atol=1e-12)


def test_fold_batchnorm_rejects_bad_arguments():
    with pytest.raises(TypeError, match="conv must be an nn.Conv2d, got Linear"):
        optimize.fold_batchnorm(nn.Linear(2, 2), nn.BatchNorm2d(2))
    with pytest.raises(TypeError, match="bn must be an nn.BatchNorm2d"):
        optimize.fold_batchnorm(nn.Conv2d(2, 2, 1), nn.BatchNorm1d(2))
    with pytest.raises(ValueError, match="bn has 3 features but conv has 4 output channels"):
        optimize.fold_batchnorm(nn.Conv2d(2, 4, 1), nn.BatchNorm2d(3))
    with pytest.raises(ValueError, match="track_running_stats"):
        optimize.fold_batchnorm(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2, track_running_stats=False))


def test_fold_batchnorms_on_the_reference_cnn():
    cnn = models.load_reference("cnn")
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    folded = optimize.fold_batchnorms(cnn)
    assert isinstance(cnn.bn1, nn.BatchNorm2d), "the caller's model must be unchanged"
    assert all(isinstance(getattr(folded, f"bn{i}"), nn.Identity) for i in range(1, 5))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert torch.allclose(folded(x), cnn(x), atol=1e-4)
    same = optimize.fold_batchnorms(cnn, inplace=True)
    assert same is cnn and isinstance(cnn.bn1, nn.Identity)


def test_pairs_outside_sequential_containers_are_left_alone():
    class Reversed(nn.Module):  # uses bn before conv: folding by child order would be wrong
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x):
            return self.conv(self.bn(x))

    model = optimize.fold_batchnorms(Reversed())
    assert isinstance(model.bn, nn.BatchNorm2d)


@pytest.mark.parametrize("make_chain", [
    lambda conv: layers.SVDConv2d.from_conv(conv, 5),
    lambda conv: layers.Tucker2Conv2d.from_conv(conv, (4, 6)),
    lambda conv: layers.CPConv2d.from_conv(conv, 7, implementation="separable", n_iter_max=5),
    lambda conv: layers.CPConv2d.from_conv(conv, 7, implementation="fused", n_iter_max=5),
])
def test_fold_batchnorms_folds_into_the_last_step_of_a_factorized_chain(make_chain):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 12, 3, padding=1, bias=False)
    model = nn.Sequential(make_chain(conv), _random_bn(12, 3), nn.ReLU()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 6, 9, 9)
    folded = optimize.fold_batchnorms(model)
    assert isinstance(folded[1], nn.Identity)
    assert type(folded[0]) is type(model[0])
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(folded[0].to_dense()(x), folded[0](x), atol=1e-5, rtol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_freeze_computes_the_same_function_and_leaves_the_model_alone():
    model = models.load_reference("cnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    x = torch.randn(4, 1, 28, 28)
    frozen = optimize.freeze(model, x)
    assert model.training, "freeze must not change the caller's model (its mode included)"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    other = torch.randn(6, 1, 28, 28)      # another batch size than the traced one
    with torch.no_grad():
        torch.testing.assert_close(frozen(other), model.eval()(other), atol=1e-4, rtol=1e-4)
    assert isinstance(frozen, torch.jit.ScriptModule)


def test_freeze_rejects_bad_arguments():
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        optimize.freeze("cnn", torch.randn(1, 1, 28, 28))
    with pytest.raises(TypeError, match="example_input must be a torch.Tensor, got list"):
        optimize.freeze(models.build_reference("cnn"), [1, 2])
    with pytest.raises(ValueError, match="atol must be a number >= 0, got -1"):
        optimize.freeze(models.build_reference("cnn"), torch.randn(1, 1, 28, 28), atol=-1)


_FREED_MEMORY_SCRIPT = """
import os, sys, torch
from lrlib import optimize
if sys.argv[1] == "keep":
    assert optimize.keep_freed_memory()
def resident_bytes():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
block = torch.ones(16 << 20 >> 2)          # 16 MiB, every page touched
before = resident_bytes()
del block
print(before - resident_bytes())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="keep_freed_memory acts on glibc's malloc")
def test_keep_freed_memory_keeps_a_freed_block_resident():
    # in a fresh process each, since the setting lasts for the life of the process
    def released(mode):
        result = subprocess.run([sys.executable, "-c", _FREED_MEMORY_SCRIPT, mode],
                                capture_output=True, text=True, check=True)
        return int(result.stdout.strip())

    assert released("default") >= 12 << 20      # glibc handed the 16 MiB back
    assert released("keep") <= 2 << 20          # now it stays in the process


@pytest.mark.parametrize("bad, error", [(0, ValueError), (1000, ValueError), (True, TypeError),
                                        (2.5, TypeError), ("1G", TypeError)])
def test_keep_freed_memory_rejects_bad_limits(bad, error):
    with pytest.raises(error, match=f"limit_bytes must be an int >= 1048576, got {bad!r}"):
        optimize.keep_freed_memory(bad)
