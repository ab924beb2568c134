"""Data-aware low rank (lrlib.calibration, lrlib.data_aware, compress(calibration=...)):
the mathematics of the whitened and activation-aware SVD, and the collection of the
statistics they need."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lrlib import calibration, compress, data_aware, layers


def _inputs(n, count, seed):
    """``count`` input vectors of length ``n`` (rows), with features of very different scales,
    as real activations have."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-1, 1, n, dtype=torch.float64)
    return torch.randn(count, n, generator=generator, dtype=torch.float64) * scales


def _weight(m, n, seed):
    return torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _plain(W, rank):
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return (U[:, :rank] * S[:rank]) @ Vh[:rank]


# ------------------------------------------------------------------ the mathematics
@settings(max_examples=40, deadline=None)
@given(m=st.integers(2, 12), n=st.integers(2, 12), extra=st.integers(0, 20), seed=st.integers(0, 10_000),
       data=st.data())
def test_whitened_svd_reaches_the_optimum_on_the_calibration_inputs(m, n, extra, seed, data):
    rank = data.draw(st.integers(1, min(m, n)))
    W, X = _weight(m, n, seed), _inputs(n, n + extra, seed + 1)
    gram = X.T @ X
    first, last = data_aware.whitened_factors(W, gram, rank)
    approximation = last @ first
    error = torch.linalg.matrix_norm((W - approximation) @ X.T).item()
    S, _, _ = data_aware.whitening(gram)
    discarded = torch.linalg.svdvals(W @ S)[rank:]
    # the output error is the Eckart–Young error of W S ...
    assert error == pytest.approx(discarded.pow(2).sum().sqrt().item(), rel=1e-7, abs=1e-9)
    # ... which is never larger than the plain truncated SVD's at the same rank
    plain_error = torch.linalg.matrix_norm((W - _plain(W, rank)) @ X.T).item()
    assert error <= plain_error * (1 + 1e-9) + 1e-9
    assert torch.linalg.matrix_rank(approximation).item() <= rank
    # and the error computed from the Gram matrix alone is the same number
    assert data_aware.output_error(W, approximation, gram) == pytest.approx(error, rel=1e-7, abs=1e-9)


def test_whitened_svd_with_an_identity_gram_is_the_plain_svd():
    W = _weight(7, 5, 0)
    first, last = data_aware.whitened_factors(W, torch.eye(5, dtype=torch.float64), 3)
    assert torch.allclose(last @ first, _plain(W, 3), atol=1e-10)


def test_whitened_svd_at_full_rank_is_exact():
    W, X = _weight(6, 9, 1), _inputs(9, 30, 2)
    first, last = data_aware.whitened_factors(W, X.T @ X, 6)
    assert torch.allclose(last @ first, W, atol=1e-9)


def test_a_singular_gram_falls_back_to_the_eigen_square_root_and_stays_optimal():
    W = _weight(6, 10, 3)
    X = _inputs(10, 4, 4)                      # 4 vectors in 10 dimensions: G has rank 4
    X[:, 0] = 0                                # and one feature is never active
    gram = X.T @ X
    S, S_inverse, method = data_aware.whitening(gram)
    assert method == "eigen" and S.shape == (10, 4)
    assert torch.allclose(S @ S.T, gram, atol=1e-9) and torch.allclose(S_inverse @ S, torch.eye(4, dtype=torch.float64), atol=1e-9)
    first, last = data_aware.whitened_factors(W, gram, 2)
    error = torch.linalg.matrix_norm((W - last @ first) @ X.T).item()
    assert error == pytest.approx(torch.linalg.svdvals(W @ S)[2:].pow(2).sum().sqrt().item(), rel=1e-7)
    with pytest.raises(ValueError, match="above the rank 4 of the calibration inputs"):
        data_aware.whitened_factors(W, gram, 5)


def test_asvd_with_alpha_zero_is_the_plain_svd_and_otherwise_favours_active_columns():
    W, X = _weight(8, 6, 5), _inputs(6, 50, 6)
    mean_abs = X.abs().mean(dim=0)
    first, last = data_aware.activation_aware_factors(W, mean_abs, 3, alpha=0.0)
    assert torch.allclose(last @ first, _plain(W, 3), atol=1e-10)
    first, last = data_aware.activation_aware_factors(W, mean_abs, 3, alpha=1.0)
    scale = mean_abs
    assert torch.allclose((last @ first) * scale, _plain(W * scale, 3), atol=1e-9)


def test_bad_statistics_are_named():
    W = _weight(4, 3, 0)
    with pytest.raises(ValueError, match="input_gram must be 3×3"):
        data_aware.whitened_factors(W, torch.eye(4, dtype=torch.float64), 2)
    with pytest.raises(ValueError, match="symmetric"):
        data_aware.whitened_factors(W, torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), 2)
    with pytest.raises(ValueError, match="input_gram.*NaN|NaN.*input_gram|finite"):
        data_aware.whitened_factors(W, torch.full((3, 3), float("nan")), 2)
    with pytest.raises(ValueError, match="input_gram is zero"):
        data_aware.whitened_factors(W, torch.zeros(3, 3), 2)
    with pytest.raises(ValueError, match="input_mean_abs must have 3 entries"):
        data_aware.activation_aware_factors(W, torch.ones(4), 2)
    with pytest.raises(ValueError, match="non-negative"):
        data_aware.activation_aware_factors(W, torch.tensor([1.0, -1.0, 1.0]), 2)
    with pytest.raises(ValueError, match="alpha"):
        data_aware.activation_aware_factors(W, torch.ones(3), 2, alpha=-1.0)
    with pytest.raises(ValueError, match="not both"):
        layers.LowRankLinear.from_linear(nn.Linear(3, 4), 2, input_gram=torch.eye(3), input_mean_abs=torch.ones(3))


# ------------------------------------------------------------------ the statistics
def test_a_linear_layer_s_statistics_are_the_sums_over_its_input_vectors():
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    x = torch.randn(7, 2, 5, dtype=torch.float64)                  # 7 sequences of 2 tokens
    stats = calibration.collect_statistics(model, [x[:3], x[3:]], progress=False)
    hidden = torch.relu(model[0](x)).reshape(-1, 4)
    assert stats["0"].count == 14 and stats["0"].calls == 2 and stats.batches == 2
    assert torch.allclose(stats["0"].gram, x.reshape(-1, 5).T @ x.reshape(-1, 5))
    assert torch.allclose(stats["2"].gram, hidden.T @ hidden)
    assert torch.allclose(stats["2"].mean_abs, hidden.abs().mean(dim=0))


@pytest.mark.parametrize("geometry", [dict(kernel_size=3, padding=1), dict(kernel_size=(3, 2), stride=2),
                                      dict(kernel_size=3, padding="same", dilation=2), dict(kernel_size=1)])
def test_a_convolution_s_statistics_make_the_output_error_exact(geometry):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, **geometry).double()
    x = torch.randn(3, 4, 9, 8, dtype=torch.float64)
    stats = calibration.collect_statistics(conv, x)[""]
    approximation = layers.SVDConv2d.from_conv(conv, 2)
    with torch.no_grad():
        direct = torch.linalg.vector_norm(conv(x) - approximation(x)).item()
    W = conv.weight.reshape(6, -1)
    from_gram = data_aware.output_error(W, approximation.to_dense().weight.reshape(6, -1), stats.gram)
    assert from_gram == pytest.approx(direct, rel=1e-8)


def test_the_whitened_channel_svd_beats_the_plain_one_on_the_calibration_images():
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 8, 3, padding=1).double()
    x = torch.randn(6, 4, 10, 10, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.3, 0.1], dtype=torch.float64)[:, None, None]
    stats = calibration.collect_statistics(conv, x)[""]
    with torch.no_grad():
        errors = {name: torch.linalg.vector_norm(conv(x) - chain(x)).item()
                  for name, chain in [("plain", layers.SVDConv2d.from_conv(conv, 3)),
                                      ("whitened", layers.SVDConv2d.from_conv(conv, 3, input_gram=stats.gram))]}
    assert errors["whitened"] < errors["plain"]


def test_a_layer_called_twice_counts_both_calls_and_a_nested_layer_is_found():
    shared = nn.Linear(3, 3).double()

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(shared)

        def forward(self, x):
            return self.block(self.block(x))

    x = torch.randn(4, 3, dtype=torch.float64)
    stats = calibration.collect_statistics(Twice(), x)
    assert stats["block.0"].calls == 2 and stats["block.0"].count == 8
    once = shared(x).detach()
    assert torch.allclose(stats["block.0"].gram, x.T @ x + once.T @ once)


def test_calibration_takes_pairs_dicts_datasets_and_a_function():
    model = nn.Linear(4, 2).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    expected = x.T @ x
    for given in [[(x[:3], torch.zeros(3)), (x[3:], torch.ones(3))],       # DataLoader-like pairs
                  (x, torch.zeros(6, dtype=torch.long)),                    # an (images, labels) dataset
                  [{"input": x}],                                           # keyword inputs
                  lambda m: m(x)]:                                          # a function that runs it
        assert torch.allclose(calibration.collect_statistics(model, given, batch_size=4)[""].gram, expected)


def test_hooks_are_removed_and_the_mode_restored_even_when_the_model_raises():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(5, 2)).double().train()   # the second cannot run
    with pytest.raises(ValueError, match="in_features=5 received an input of shape"):
        calibration.collect_statistics(model, torch.randn(2, 4, dtype=torch.float64))
    assert all(not m._forward_pre_hooks for m in model.modules()) and model.training


def test_bad_calibration_data_is_named():
    model = nn.Linear(4, 2)
    with pytest.raises(ValueError, match="holds no batch"):
        calibration.collect_statistics(model, [])
    with pytest.raises(TypeError, match="calibration item 0 is a str"):
        calibration.collect_statistics(model, ["text"])
    with pytest.raises(TypeError, match="calibration must be"):
        calibration.collect_statistics(model, 3)
    with pytest.raises(ValueError, match="NaN or infinite"):
        calibration.collect_statistics(model, torch.full((2, 4), float("nan")))
    with pytest.raises(ValueError, match="in_features=4 received an input of shape \\(2, 5\\)"):
        calibration.collect_statistics(model, torch.randn(2, 5))
    with pytest.raises(ValueError, match="matches no Linear or Conv2d"):
        calibration.collect_statistics(model, torch.randn(2, 4), include=["fc9"])


def test_memory_is_bounded_by_skipping_the_widest_layers():
    model = nn.Sequential(nn.Linear(40, 4), nn.Linear(4, 2))
    stats = calibration.collect_statistics(model, torch.randn(3, 40), max_bytes=8 * 4 * 4 + 1)
    assert "1" in stats and "0" in stats.skipped and "40×40" in stats.skipped["0"]
    assert stats.nbytes == stats["1"].nbytes


# ------------------------------------------------------------------ compress(calibration=...)
def test_compress_with_calibration_whitens_reports_the_error_and_leaves_the_model_alone():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(200, 12) * torch.logspace(-1, 1, 12)
    plain, plain_report = compress.compress(model, rank={"0": 3, "2": 3}, method="svd")
    aware, report = compress.compress(model, rank={"0": 3, "2": 3}, calibration=x)   # "auto" whitens
    assert [row["method"] for row in report.rows] == ["whitened", "whitened"]
    assert all(k in model.state_dict() and torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with torch.no_grad():
        first_plain = torch.linalg.vector_norm(model[0](x) - plain[0](x))
        first_aware = torch.linalg.vector_norm(model[0](x) - aware[0](x))
    assert first_aware < first_plain
    assert report.rows[0]["calibration_error"] == pytest.approx(
        (first_aware / torch.linalg.vector_norm(model[0](x))).item(), rel=1e-4)
    text = str(report)
    assert "calib. err." in text and "calibration: 1 batch(es)" in text
    assert "calib. err." not in str(plain_report)


def test_a_data_aware_method_without_calibration_is_a_clear_note_or_error():
    model = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 2))
    _, report = compress.compress(model, rank={"0": 2}, method="whitened")
    assert report.rows[0]["rank"] is None and "no calibration= given" in report.rows[0]["note"]
    with pytest.raises(ValueError, match="is data-aware"):
        from lrlib.factorizations import REGISTRY
        REGISTRY["whitened", nn.Linear].build(nn.Linear(6, 5), 2)


# ------------------------------------------------------------------ data-aware Tucker-2
def _correlated_images(count, channels, seed):
    """Images whose channels have very different scales and whose neighbouring pixels
    correlate, so that the patches' Gram matrix is far from the identity."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, channels, 9, 9, generator=generator, dtype=torch.float64)
    x = x * torch.logspace(-1, 0.5, channels, dtype=torch.float64)[None, :, None, None]
    return x + 0.8 * x.roll(1, dims=3)


def _explicit_optimum_given_input_factor(conv, x, v_in, r_out):
    """The best output error of a Tucker-2 chain with input factor ``v_in``, computed on the
    patches themselves: least squares of the outputs on the reduced patches, then the
    best rank-``r_out`` part of the fit (an independent route to step 2–3's closed form)."""
    z = nn.functional.conv2d(x, v_in.T[:, :, None, None])
    patches = nn.functional.unfold(z, conv.kernel_size, padding=conv.padding, stride=conv.stride)
    patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    with torch.no_grad():
        y = conv(x) - conv.bias[None, :, None, None]
    y = y.permute(0, 2, 3, 1).reshape(-1, conv.out_channels)
    fit = patches @ torch.linalg.lstsq(patches, y).solution
    U, S, Vh = torch.linalg.svd(fit, full_matrices=False)
    best = (U[:, :r_out] * S[:r_out]) @ Vh[:r_out]
    return torch.linalg.vector_norm(y - best).item()


@pytest.mark.parametrize("rank", [(4, 3), (8, 2), (10, 4), (3, 6)])
def test_whitened_tucker2_is_the_optimum_for_its_input_factor_and_beats_hooi(rank):
    torch.manual_seed(3)
    conv = nn.Conv2d(6, 10, 3, padding=1).double()
    x = _correlated_images(20, 6, seed=4)
    stats = calibration.collect_statistics(conv, x)[""]
    chain = layers.Tucker2Conv2d.from_conv(conv, rank, input_gram=stats.gram)
    hooi = layers.Tucker2Conv2d.from_conv(conv, rank)
    assert chain.rank == rank
    u_out = chain.last.weight[:, :, 0, 0]
    assert torch.allclose(u_out.T @ u_out, torch.eye(rank[0], dtype=torch.float64), atol=1e-10)
    with torch.no_grad():
        error = torch.linalg.vector_norm(conv(x) - chain(x)).item()
        hooi_error = torch.linalg.vector_norm(conv(x) - hooi(x)).item()
    v_in = chain.first.weight[:, :, 0, 0].T
    assert error == pytest.approx(_explicit_optimum_given_input_factor(conv, x, v_in, rank[0]), rel=1e-6)
    assert error < hooi_error


def test_whitened_tucker2_at_full_ranks_is_exact_and_with_damping_tends_to_the_weights():
    torch.manual_seed(5)
    conv = nn.Conv2d(5, 7, (3, 2), stride=2, padding=(1, 0)).double()
    x = _correlated_images(6, 5, seed=6)
    stats = calibration.collect_statistics(conv, x)[""]
    full = layers.Tucker2Conv2d.from_conv(conv, (7, 5), input_gram=stats.gram)
    with torch.no_grad():
        assert torch.allclose(full(x), conv(x), atol=1e-10)
    # a huge damping makes the Gram matrix a multiple of the identity: the input factor is
    # then the plain SVD's of the stacked taps, and the output error no longer reads the data
    data_fit = layers.Tucker2Conv2d.from_conv(conv, (3, 2), input_gram=stats.gram)
    weights_fit = layers.Tucker2Conv2d.from_conv(conv, (3, 2), input_gram=stats.gram, damping=1e9)
    identity = layers.Tucker2Conv2d.from_conv(conv, (3, 2), input_gram=torch.eye(30, dtype=torch.float64))
    assert torch.allclose(weights_fit.to_dense().weight, identity.to_dense().weight, atol=1e-6)
    with torch.no_grad():
        assert (torch.linalg.vector_norm(conv(x) - data_fit(x))
                < torch.linalg.vector_norm(conv(x) - weights_fit(x)))


def test_whitened_tucker2_names_a_wrong_gram():
    conv = nn.Conv2d(4, 6, 3).double()
    with pytest.raises(ValueError, match="input_gram must be 36×36"):
        layers.Tucker2Conv2d.from_conv(conv, (2, 2), input_gram=torch.eye(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="damping"):
        layers.Tucker2Conv2d.from_conv(conv, (2, 2), input_gram=torch.eye(36, dtype=torch.float64), damping=-1)


def test_channel_gram_sums_the_taps_of_the_patch_gram():
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    conv = nn.Conv2d(3, 4, 3).double()
    stats = calibration.collect_statistics(conv, x)[""]
    patches = calibration.input_vectors(conv, x).reshape(-1, 3, 9)     # (patch, channel, tap)
    expected = torch.einsum("pat,pbt->ab", patches, patches)
    assert torch.allclose(data_aware.channel_gram(stats.gram, 3), expected)


# ------------------------------------------------------------------ damping and output energy
def test_damping_blends_the_output_error_with_the_weight_error():
    W, X = _weight(6, 10, 1), _inputs(10, 4, 2)             # 4 vectors: a Gram of rank 4
    gram = X.T @ X
    with pytest.raises(ValueError, match="pass damping"):
        data_aware.whitened_factors(W, gram, 5)
    damping, rank = 0.3, 5
    first, last = data_aware.whitened_factors(W, gram, rank, damping=damping)
    mu = gram.diagonal().mean()

    def objective(approximation):
        return (data_aware.output_error(W, approximation, gram) ** 2
                + damping * mu * torch.linalg.matrix_norm(W - approximation) ** 2)

    best = objective(last @ first)
    generator = torch.Generator().manual_seed(3)
    for _ in range(20):                                     # nearby rank-5 maps are no better
        nearby = (last + 1e-3 * torch.randn(last.shape, generator=generator, dtype=torch.float64)) @ first
        assert objective(nearby) >= best
    huge_first, huge_last = data_aware.whitened_factors(W, gram, rank, damping=1e9)
    assert torch.allclose(huge_last @ huge_first, _plain(W, rank), atol=1e-6)


def test_energy_reads_the_outputs_spectrum_for_the_whitened_methods():
    from lrlib.rank_rules import Energy
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(16, 12, bias=False))
    x = _inputs(16, 300, 8).float()
    stats = calibration.collect_statistics(model, x)
    for energy in (0.5, 0.9, 0.99):
        _, report = compress.compress(model, rank={"0": Energy(energy)}, method="whitened",
                                      calibration=stats)
        row = report.rows[0]
        # the smallest rank whose output error is at most √(1 − energy): the chosen one is
        # within it, one rank less is not
        assert row["calibration_error"] <= (1 - energy) ** 0.5 + 1e-9
        if row["rank"] > 1:
            _, smaller = compress.compress(model, rank={"0": row["rank"] - 1}, method="whitened",
                                           calibration=stats)
            assert smaller.rows[0]["calibration_error"] > (1 - energy) ** 0.5
    # weights-only SVD reads the weights' spectrum, which knows nothing of the inputs' scales
    _, plain = compress.compress(model, rank={"0": Energy(0.9)}, method="svd")
    _, aware = compress.compress(model, rank={"0": Energy(0.9)}, method="whitened", calibration=stats)
    assert plain.rows[0]["rank"] != aware.rows[0]["rank"]


def test_auto_with_calibration_uses_the_whitened_tucker2_for_larger_kernels():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                          nn.ReLU(), nn.Conv2d(8, 6, 1))
    x = _correlated_images(4, 3, seed=10).float()
    _, report = compress.compress(model, rank={"2": (4, 4), "4": 3}, calibration=x, example_input=x)
    assert [row["method"] for row in report.rows] == ["whitened-tucker2", "whitened"]
    _, plain = compress.compress(model, rank={"2": (4, 4), "4": 3}, example_input=x)
    assert [row["method"] for row in plain.rows] == ["tucker2", "svd"]


def test_sampling_input_vectors_bounds_the_count_and_is_seeded():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(8, 2, 10, 10)
    batches = [x[:4], x[4:]]
    full = calibration.collect_statistics(conv, batches)[""]
    assert full.count == 800
    sampled = calibration.collect_statistics(conv, batches, max_vectors_per_batch=50, seed=1)[""]
    again = calibration.collect_statistics(conv, batches, max_vectors_per_batch=50, seed=1)[""]
    other = calibration.collect_statistics(conv, batches, max_vectors_per_batch=50, seed=2)[""]
    assert sampled.count == 100 and sampled.calls == 2
    assert torch.equal(sampled.gram, again.gram) and not torch.equal(sampled.gram, other.gram)
    # a sample of the patches themselves: its Gram is a sum of 100 of the 800 outer products
    patches = calibration.input_vectors(conv, x).double()
    assert torch.trace(sampled.gram) <= torch.trace(full.gram)
    assert full.gram.allclose(patches.T @ patches)
    with pytest.raises(ValueError, match="max_vectors_per_batch"):
        calibration.collect_statistics(conv, batches, max_vectors_per_batch=0)
