"""The registry of factorizations: one place that turns a method name into a layer."""

import pytest
import torch
from torch import nn

from lrlib import calibration, factorizations, layers, profile
from lrlib.factorizations import REGISTRY, factorize, resolve, untrained_like

pytestmark = pytest.mark.filterwarnings("ignore::lrlib.tensor.DegenerateCPWarning")


def _dense(kind):
    torch.manual_seed(0)
    if kind is nn.Linear:
        return nn.Linear(12, 9).double()
    return nn.Conv2d(6, 10, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)).double()


def _statistics(entry, layer):
    """Calibration statistics of ``layer`` on random inputs, for the data-aware entries."""
    if entry.calibration is None:
        return None
    x = torch.randn(40, 12, dtype=torch.float64) if isinstance(layer, nn.Linear) else torch.randn(8, 6, 9, 8, dtype=torch.float64)
    return calibration.collect_statistics(layer, x)[""]


def _full_rank(entry, layer):
    """A rank at which the factorization is exact for any weight."""
    return entry.rank_candidates(layer)[-1]


@pytest.mark.parametrize("key", list(REGISTRY), ids=[f"{n}-{t.__name__}" for n, t in REGISTRY])
def test_every_entry_at_full_rank_computes_the_dense_layer(key):
    name, kind = key
    entry = REGISTRY[key]
    layer = _dense(kind)
    if entry.layer_class is layers.CPConv2d:
        # CP at its largest rank is exact only in principle; check it on a kernel of CP rank 3
        weights, factors = None, [torch.randn(n, 3, dtype=torch.float64) for n in layer.weight.shape]
        with torch.no_grad():
            layer.weight.copy_(0.1 * torch.einsum("or,ir,yr,xr->oiyx", *factors))
        rank = 3
    else:
        rank = _full_rank(entry, layer)
    built = entry.build(layer, rank, seed=0, statistics=_statistics(entry, layer))
    assert type(built) is entry.layer_class and entry.name == name
    x = torch.randn(2, 12, dtype=torch.float64) if kind is nn.Linear else torch.randn(2, 6, 9, 8, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(built(x), layer(x), atol=1e-6)
    assert built.last.bias is not None


@pytest.mark.parametrize("key", list(REGISTRY), ids=[f"{n}-{t.__name__}" for n, t in REGISTRY])
def test_like_has_the_geometry_and_costs_of_the_built_layer(key):
    entry = REGISTRY[key]
    layer = _dense(key[1])
    rank = entry.rank_candidates(layer)[1]
    built = entry.build(layer, rank, statistics=_statistics(entry, layer))
    empty = entry.like(layer, rank, device="meta")
    assert type(empty) is type(built) and empty.rank == built.rank
    assert empty.params == built.params == profile.count_params(built)
    if key[1] is nn.Conv2d:
        x = torch.randn(3, 6, 9, 8, dtype=torch.float64)
        assert built(x).shape == layer(x).shape
        assert empty.flops((9, 8)) == built.flops((9, 8)) == profile.count_flops(built, x) // 3
        assert (empty.stride, empty.padding, empty.dilation) == ((2, 1), (1, 0), (1, 2))
        assert getattr(empty, "implementation", None) == entry.structure.get("implementation")
    else:
        assert empty.flops() == built.flops() == profile.count_flops(built, torch.zeros(1, 12, dtype=torch.float64))
    no_bias = nn.Conv2d(6, 10, 3, bias=False) if key[1] is nn.Conv2d else nn.Linear(12, 9, bias=False)
    assert entry.like(no_bias, rank).last.bias is None


def test_rank_candidates_grow_and_the_costs_with_them():
    conv = nn.Conv2d(16, 32, 3)
    for name in ("svd", "tucker2", "cp-fused", "cp-separable"):
        entry = REGISTRY[name, nn.Conv2d]
        candidates = entry.rank_candidates(conv)
        costs = [entry.like(conv, r, device="meta").params for r in candidates]
        assert costs == sorted(costs) and len(set(map(str, candidates))) == len(candidates)
    pairs = REGISTRY["tucker2", nn.Conv2d].rank_candidates(conv)
    assert pairs[-1] == (32, 16) and all(r_out >= r_in for r_out, r_in in pairs)


@pytest.mark.parametrize("method, layer, expected", [
    ("auto", nn.Linear(4, 4), "svd"),
    ("auto", nn.Conv2d(4, 4, 1), "svd"),
    ("auto", nn.Conv2d(4, 4, 3), "tucker2"),
    ("cp", nn.Conv2d(4, 4, 3), "cp-" + layers.DEFAULT_CP_IMPLEMENTATION),
    ("randomized", nn.Conv2d(4, 4, 3), "randomized"),
    ("cp-separable", nn.Conv2d(4, 4, 3), "cp-separable"),
])
def test_resolve_names_one_entry(method, layer, expected):
    entry = resolve(method, layer)
    assert entry.name == expected and isinstance(layer, entry.dense_type)


def test_conv_methods_on_a_linear_layer():
    with pytest.raises(ValueError, match=r"method 'tucker2' does not apply to an nn.Linear; methods for it: \['asvd', 'randomized', 'svd', 'whitened'\]"):
        resolve("tucker2", nn.Linear(4, 4))
    assert resolve("cp", nn.Linear(4, 4), linear_fallback=True).name == "svd"


@pytest.mark.parametrize("call, error, match", [
    (lambda: resolve("pca", nn.Linear(4, 4)), ValueError, r"method must be one of \('auto', 'svd'"),
    (lambda: resolve(3, nn.Linear(4, 4)), TypeError, "method must be one of"),
    (lambda: resolve("svd", nn.Conv1d(4, 4, 3)), TypeError, "layer must be an nn.Linear or an nn.Conv2d, got Conv1d"),
    (lambda: factorize(nn.Linear(4, 4), 9), ValueError, "rank must be"),
    (lambda: untrained_like(nn.Conv2d(4, 6, 3), (7, 2), method="tucker2"), ValueError, r"rank\[0\] \(R_out\)"),
    (lambda: factorizations.check_method({"fc1": "qr"}), ValueError, r"method\['fc1'\] must be one of"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_factorize_leaves_the_dense_layer_alone_and_untrained_like_is_untrained():
    conv = nn.Conv2d(4, 6, 3, padding=1)
    before = conv.weight.clone()
    chain = factorize(conv, (6, 4), method="tucker2")
    assert torch.equal(conv.weight, before)
    assert torch.allclose(chain.to_dense().weight, conv.weight, atol=1e-5)
    empty = untrained_like(conv, (6, 4), method="tucker2")
    assert not torch.allclose(empty.to_dense().weight, conv.weight, atol=1e-2)


def test_what_the_rules_and_the_command_line_ask_the_registry():
    """Spectral rules read the modes an entry names; fine-tuning uses its learning rate."""
    assert {key: entry.spectral_modes for key, entry in REGISTRY.items()} == {
        ("svd", nn.Linear): (0,), ("randomized", nn.Linear): (0,), ("svd", nn.Conv2d): (0,),
        ("randomized", nn.Conv2d): (0,), ("tucker2", nn.Conv2d): (0, 1),
        ("cp-fused", nn.Conv2d): (), ("cp-separable", nn.Conv2d): (),
        ("whitened", nn.Linear): (0,), ("whitened", nn.Conv2d): (0,), ("asvd", nn.Linear): (0,),
        ("asvd", nn.Conv2d): (0,), ("whitened-tucker2", nn.Conv2d): (0, 1)}
    assert {entry.name for entry in REGISTRY.values() if entry.fine_tune_lr < 3e-4} == {"cp-fused", "cp-separable"}
    assert {entry.name for entry in REGISTRY.values() if entry.iterative} == {"tucker2", "cp-fused", "cp-separable"}
