"""lrlib.compress: model surgery on Linear layers and its report."""

import math

import pytest
import torch
from torch import nn

from lrlib import compress, models, rank_rules, svd, vbmf
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
    compressed, report = compress.compress(mlp, rank=64, include=["fc1", "fc2", "fc3"])
    rows = {row["layer"]: row for row in report.rows}
    assert rows["fc1"]["rank"] == 64 and rows["fc1"]["shape"] == (1024, 784)
    assert rows["fc1"]["params_after"] == 64 * (784 + 1024) + 1024
    assert rows["fc1"]["flops_after"] == 2 * 64 * (784 + 1024)
    assert rows["fc3"]["rank"] is None and "got 64" in rows["fc3"]["note"] and "10" in rows["fc3"]["note"]
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
    _, report = compress.compress(model, rank=60, include=["0"])
    assert report.rows[0]["rank"] is None
    assert report.rows[0]["note"] == "rank 60 > break-even 49: no saving"


def test_fraction_and_energy_rules(mlp):
    _, by_fraction = compress.compress(mlp, rank=0.25, include=["fc1", "fc2"])
    for row in by_fraction.rows:
        m, n = row["shape"]
        assert row["rank"] == svd.rank_for_params((m, n), 0.25)
        assert row["params_after"] - m <= 0.25 * m * n
    _, by_energy = compress.compress(mlp, rank=rank_rules.Energy(0.9), include=["fc2"])
    (row,) = by_energy.rows
    assert row["rank"] == svd.rank_for_energy(torch.linalg.svdvals(mlp.fc2.weight.detach().double()), 0.9)
    assert row["relative_error"] <= math.sqrt(0.1) + 1e-9


def test_include_exclude_and_per_layer_ranks(mlp):
    _, report = compress.compress(mlp, rank=16, exclude=["fc3"])
    assert [r["layer"] for r in report.rows] == ["fc1", "fc2"]
    _, report = compress.compress(mlp, rank=16, include=["fc*"], exclude=["fc2"])
    assert [r["layer"] for r in report.rows] == ["fc1", "fc3"]
    compressed, report = compress.compress(mlp, rank={"fc1": 100, "fc2": rank_rules.Energy(0.5)})
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
    (1.5, ValueError, r"must be a number in \(0, 1\], got 1.5"),
    (0.0, ValueError, r"\(0, 1\]"),
    (True, TypeError, "got True"),
    ("64", TypeError, "got '64' \\(str\\)"),
    ({"fc9": 4}, ValueError, r"not Linear or Conv2d layers of the model: \['fc9'\]"),
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
    broken = models.MLP(hidden=(8,))
    with torch.no_grad():
        broken.fc1.weight[0, 0] = math.nan
    with pytest.raises(ValueError, match="layer 'fc1' weight contains NaN or Inf"):
        compress.compress(broken, rank=2)


# --------------------------------------------------------------------------- convolutions (lesson 05)
from lrlib import tensor  # noqa: E402
from lrlib.layers import CPConv2d, SVDConv2d, Tucker2Conv2d  # noqa: E402


@pytest.fixture(scope="module")
def cnn():
    return models.load_reference("cnn")


def _small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 24, 1),
                         nn.ReLU(), nn.Conv2d(24, 32, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def test_auto_uses_tucker2_for_kxk_svd_for_1x1_and_linear():
    model = _small_cnn()
    before = _state(model)
    compressed, report = compress.compress(model, rank=0.5, include=["0", "2", "4", "8"])
    assert isinstance(compressed[0], Tucker2Conv2d) and isinstance(compressed[2], SVDConv2d)
    assert isinstance(compressed[4], Tucker2Conv2d) and isinstance(compressed[8], LowRankLinear)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [row["method"] for row in report.rows] == ["tucker2", "svd", "tucker2", "svd"]
    for row in report.rows:
        weights = math.prod(row["shape"])
        bias = row["shape"][0]
        assert row["params_after"] - bias <= 0.5 * weights


def test_full_rank_tucker2_and_per_layer_methods_keep_the_function():
    model = _small_cnn()
    x = torch.randn(2, 3, 12, 12)
    compressed, report = compress.compress(model, rank={"0": (16, 3), "4": 18, "2": 20},
                                           method={"4": "cp-fused", "2": "svd"})
    assert isinstance(compressed[4], CPConv2d) and compressed[4].implementation == "fused"
    assert report.rows[0]["relative_error"] < 1e-6
    full, _ = compress.compress(model, rank={"0": (16, 3)})
    assert torch.allclose(full(x), model(x), atol=1e-5)


def test_flops_and_predicted_speedups_with_an_example_input(cnn):
    x = torch.randn(8, 1, 28, 28)
    compressed, report = compress.compress(cnn, rank=rank_rules.FlopReduction(4.0), example_input=x,
                                           include=["conv3", "conv4"])
    for row in report.rows:
        assert row["flops_before"] == 2 * row["shape"][0] * row["shape"][1] * 9 * {"conv3": 14, "conv4": 7}[row["layer"]] ** 2
        assert row["flops_after"] <= row["flops_before"] / 4
        assert row["flops_after"] > row["flops_before"] / 5  # the largest rank within the budget
        assert row["measured_speedup"] is None                # nothing is timed unless asked
    assert "predicted" in str(report) and "×" in str(report)
    without, plain = compress.compress(cnn, rank=0.3, include=["conv3"])
    assert plain.rows[0]["flops_before"] is None and plain.rows[0]["measured_speedup"] is None
    assert "–" in str(plain)
    with pytest.raises(ValueError, match="FlopReduction on a convolution needs example_input"):
        compress.compress(cnn, rank=rank_rules.FlopReduction(2.0), include=["conv3"])


def test_measure_times_each_replaced_layer_on_the_input_it_sees(cnn, monkeypatch):
    from lrlib import bench

    seen = []

    def fake_latency(module, x, **options):
        seen.append((type(module).__name__, tuple(x.shape)))
        median = 2.0 if isinstance(module, nn.Conv2d) else 0.5
        return type("Measurement", (), {"median_ms": median})()

    monkeypatch.setattr(bench, "measure_latency", fake_latency)
    x = torch.randn(8, 1, 28, 28)
    _, report = compress.compress(cnn, rank=0.25, include=["conv3", "conv4"], example_input=x,
                                  measure=True, measure_seconds=0.05)
    assert [row["measured_speedup"] for row in report.rows] == [4.0, 4.0]
    assert seen == [("Conv2d", (8, 64, 14, 14)), ("Tucker2Conv2d", (8, 64, 14, 14)),
                    ("Conv2d", (8, 128, 7, 7)), ("Tucker2Conv2d", (8, 128, 7, 7))]
    assert "4.00×" in str(report)
    with pytest.raises(ValueError, match="measure=True needs example_input"):
        compress.compress(cnn, rank=0.25, include=["conv3"], measure=True)


def test_energy_and_vbmf_rules_for_tucker2(cnn):
    K = cnn.conv3.weight.detach().double()
    _, report = compress.compress(cnn, rank=rank_rules.Energy(0.8), include=["conv3"])
    r_out = svd.rank_for_energy(torch.linalg.svdvals(tensor.unfold(K, 0)), 0.8)
    r_in = svd.rank_for_energy(torch.linalg.svdvals(tensor.unfold(K, 1)), 0.8)
    assert report.rows[0]["rank"] == (r_out, r_in)
    _, report = compress.compress(cnn, rank=rank_rules.VBMF(), include=["conv3"])
    assert report.rows[0]["rank"] == (vbmf.evbmf(tensor.unfold(K, 0)).rank,
                                      vbmf.evbmf(tensor.unfold(K, 1)).rank)
    with pytest.raises(ValueError, match="not for CP"):
        compress.compress(cnn, rank=rank_rules.Energy(0.8), include=["conv3"], method="cp")


def test_compressed_cnn_state_dict_round_trip(cnn):
    compressed, report = compress.compress(cnn, rank=0.25, include=["conv*"])
    ranks = {row["layer"]: row["rank"] for row in report.rows if row["rank"] is not None}
    rebuilt, _ = compress.compress(models.build_reference("cnn"), rank=ranks)
    rebuilt.load_state_dict(compressed.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(rebuilt.eval()(x), compressed.eval()(x))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"rank": 4, "method": "tucker3"}, ValueError, "method must be one of"),
    ({"rank": 4, "method": {"conv9": "svd"}}, ValueError, r"not Linear or Conv2d layers of the model: \['conv9'\]"),
    ({"rank": 4, "method": {"conv2": "pca"}}, ValueError, r"method\['conv2'\] must be one of"),
    ({"rank": (4, 4, 4)}, ValueError, r"pair \(R_out, R_in\)"),
    ({"rank": rank_rules.FlopReduction}, TypeError, "must be an int, a pair"),
    ({"rank": 4, "include": ["conv9"]}, ValueError, r"include pattern 'conv9' matches no Linear or Conv2d layer; the model's layers are \['conv1', 'conv2'"),
    ({"rank": 4, "exclude": ["fc*", "bn*"]}, ValueError, "exclude pattern 'bn\\*' matches no"),
])
def test_bad_conv_arguments(cnn, kwargs, error, match):
    with pytest.raises(error, match=match):
        compress.compress(cnn, **kwargs)


def test_pairs_need_tucker2_and_grouped_convs_are_refused(cnn):
    _, report = compress.compress(cnn, rank={"conv3": (8, 8), "fc": (2, 2)})
    rows = {row["layer"]: row for row in report.rows}
    assert rows["conv3"]["rank"] == (8, 8) and rows["fc"]["rank"] is None
    assert "needs method 'tucker2'" in rows["fc"]["note"]
    with pytest.raises(TypeError, match="single nn.Conv2d"):
        compress.compress(nn.Conv2d(2, 2, 3), rank=1)
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="layer '0' has groups=2"):
        compress.compress(grouped, rank=1)


def test_n_iter_max_reaches_the_iterative_methods_only(cnn):
    conv = cnn.conv3
    _, few = compress.compress(cnn, rank=24, method="cp-fused", include=["conv3"], n_iter_max=3)
    expected = CPConv2d.from_conv(conv, 24, n_iter_max=3).to_dense().weight
    assert few.rows[0]["relative_error"] == pytest.approx(tensor.relative_error(expected, conv.weight))
    _, default = compress.compress(cnn, rank=24, method="cp-fused", include=["conv3"])
    assert default.rows[0]["relative_error"] < few.rows[0]["relative_error"]
    _, svd_rows = compress.compress(cnn, rank=24, method="svd", include=["conv3"], n_iter_max=3)
    _, svd_plain = compress.compress(cnn, rank=24, method="svd", include=["conv3"])
    assert svd_rows.rows[0]["relative_error"] == svd_plain.rows[0]["relative_error"]
    with pytest.raises(ValueError, match="n_iter_max must be a positive int, got 0"):
        compress.compress(cnn, rank=24, n_iter_max=0)


# --------------------------------------------------------------------------- safe defaults (issue 19)
def test_default_scope_names_the_output_layer_and_a_first_conv_on_few_channels(cnn, mlp):
    assert set(compress.default_scope(cnn)) == {"conv1", "fc"}
    assert "first conv, 1 input channel(s)" in compress.default_scope(cnn)["conv1"]
    assert "output layer (10 outputs)" in compress.default_scope(cnn)["fc"]
    assert set(compress.default_scope(mlp)) == {"fc3"}
    wide_first = nn.Sequential(nn.Conv2d(16, 32, 3), nn.Conv2d(32, 8, 1))
    assert set(compress.default_scope(wide_first)) == {"1"}
    assert compress.default_scope(nn.Sequential(nn.ReLU())) == {}


def test_the_default_scope_stays_dense_with_its_reason_unless_named_exactly(cnn):
    _, report = compress.compress(cnn, rank=0.5)
    rows = {row["layer"]: row for row in report.rows}
    assert rows["conv1"]["rank"] is None and rows["fc"]["rank"] is None
    assert rows["fc"]["note"] == compress.default_scope(cnn)["fc"]
    assert all(rows[name]["rank"] is not None for name in ("conv2", "conv3", "conv4"))
    # a pattern does not override the default scope; an exact name, or a rank dict key, does
    _, by_pattern = compress.compress(cnn, rank=0.5, include=["conv*", "fc"])
    assert {r["layer"]: r["rank"] is None for r in by_pattern.rows} == {
        "conv1": True, "conv2": False, "conv3": False, "conv4": False, "fc": False}
    named, by_name = compress.compress(cnn, rank={"fc": 0.5})
    assert isinstance(named.fc, LowRankLinear) and by_name.rows[0]["rank"] == 4


def test_explicit_include_of_the_classifier_factorizes_it_and_warns(cnn):
    from lrlib import data

    images = data.fashion_mnist("train").images[:64]
    compressed, report = compress.compress(optimize_free(cnn), rank=0.5, include=["fc"],
                                           example_input=images)
    assert isinstance(compressed.fc, LowRankLinear) and compressed.fc.rank == 4
    (row,) = report.rows
    dense_out, low_out = cnn.fc(cnn_features(cnn, images)), compressed.fc(cnn_features(cnn, images))
    assert row["output_error"] == pytest.approx(tensor.relative_error(low_out, dense_out), rel=1e-5)
    assert report.warnings == [
        f"fc: its outputs on example_input are off by {row['output_error']:.2f} (relative): accuracy "
        "is at risk; raise its rank, fine-tune, or leave it dense",
        "fc: the output layer now has rank 4, fewer than its 10 outputs (classes): it can no longer "
        "score them independently"]
    assert str(report).endswith("\n".join(f"warning: {w}" for w in report.warnings))
    assert report._repr_html_().count("<b>warning:</b>") == 2


def optimize_free(model):
    """``model`` with BatchNorm folded, so that only the warnings under test appear."""
    from lrlib import optimize

    return optimize.fold_batchnorms(model)


def cnn_features(model, images):
    """The input of the reference CNN's classifier."""
    from lrlib import profile

    return profile.layer_inputs(model, images, ["fc"])["fc"]


def test_warnings_appear_exactly_when_they_should(cnn, mlp):
    from lrlib import data

    images = data.fashion_mnist("train").images[:64]
    batchnorm = ("the model has 4 BatchNorm layer(s) whose running statistics were measured for "
                 "the dense layers: re-estimate them with lrlib.train.recalibrate_batchnorm(model, "
                 "data) on a few thousand training images before evaluating or fine-tuning")
    assert compress.compress(mlp, rank=0.25, example_input=images)[1].warnings == []   # no BatchNorm
    assert compress.compress(cnn, rank=0.5, example_input=images)[1].warnings == [batchnorm]
    assert compress.compress(optimize_free(cnn), rank=0.5, example_input=images)[1].warnings == []
    # nothing factorized: nothing is stale
    assert compress.compress(cnn, rank={"conv2": 10_000})[1].warnings == []
    # the first conv, named: its outputs are far off (0.89 measured), its weights too
    _, first = compress.compress(optimize_free(cnn), rank=0.5, include=["conv1"], example_input=images)
    assert first.rows[0]["output_error"] > 0.8
    assert first.warnings[0].startswith("conv1: its outputs on example_input are off by")
    _, blind = compress.compress(optimize_free(cnn), rank=0.25, include=["conv1", "conv4"])
    assert blind.rows[0]["relative_error"] > compress.WEIGHT_ERROR_WARNING > blind.rows[1]["relative_error"]
    assert blind.warnings == [f"conv1: its weights are off by {blind.rows[0]['relative_error']:.2f} "
                              "(relative): accuracy may be at risk; pass example_input= to see the "
                              "error of its outputs, a better sign"]


@pytest.mark.parametrize("keep, cnn_bound", [(0.5, 0.03), (0.25, 0.05)])
def test_library_defaults_lose_no_more_than_the_command_lines_did(cnn, mlp, keep, cnn_bound):
    """Before the default scope, compress() factorized the classifier and lost 70–80 points;
    the command line excluded the first conv and the classifier. Same seed, same data."""
    from lrlib import data, train

    test = data.fashion_mnist("test")
    for model, command_line_exclude, bound in ((cnn, ["conv1", "fc"], cnn_bound), (mlp, ["fc3"], 0.01)):
        dense = train.evaluate(model, test).accuracy
        by_default = train.evaluate(compress.compress(model, rank=keep)[0], test).accuracy
        as_before = train.evaluate(compress.compress(model, rank=keep, exclude=command_line_exclude)[0],
                                   test).accuracy
        assert by_default >= as_before
        assert dense - by_default <= bound
