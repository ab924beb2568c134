"""The argument-check policy of ``lrlib.validate``, pinned across lrlib's public API.

A wrong **type** raises ``TypeError``, a right type with a wrong **value** raises
``ValueError``, and the message names the argument and shows the value that was given
(``rank must be an int between 1 and 5, got 0``).

The table is one list of rows per module, concatenated into ``CASES``. A row says: call
``function(*args, **kwargs)``; it must raise exactly ``raises``, and its message must
contain each of ``words`` (plain substrings: the argument's name and the bad value as the
message shows it -- its repr for numbers and strings, its type's name for other objects).
To pin another module, write its list (``LAYERS_CASES = [...]``), add it to ``CASES``, and
add the module to ``COVERED`` so that the completeness test below checks it too.
"""

import inspect
from pathlib import Path

import pytest
import torch
from torch import nn

from lrlib import (bench, blocks, claims, compress, data, deploy, env, factorizations, layers, models, optimize,
                   profile, rank_rules, sensitivity, svd, tensor, train, vbmf, viz)


def row(function, *args, raises, words, **kwargs):
    """One case of the table: ``function(*args, **kwargs)`` raises ``raises`` with every
    one of ``words`` in its message."""
    name = getattr(function, "__qualname__", type(function).__name__)
    return pytest.param(function, args, kwargs, raises, tuple(words),
                        id=f"{function.__module__}.{name}-{raises.__name__}-{words[0]}")


# small, valid values for the arguments a row does not test
W = torch.ones(5, 8, dtype=torch.float64)
S = torch.tensor([4.0, 3.0, 0.0])
X = torch.zeros(2, 4)
LINEAR = nn.Linear(4, 3)
IMAGES = data.ImageSet(torch.zeros(3, 1, 28, 28), torch.zeros(3, dtype=torch.long),
                       data.CLASS_NAMES, "test", "tensors")
PAIR = (torch.zeros(6, 2), torch.zeros(6, dtype=torch.long))
ROOF = profile.Roofline(peak_gflops=100.0, bandwidth_gbs=20.0, dtype="torch.float32", threads=1)
CURVE = [bench.ThroughputPoint(1, 1.0, 1.5, 1000.0)]
NOT_IDX = Path(data.__file__).resolve().parent / "assets" / "FASHION_MNIST_LICENSE.txt"


def one_ms(batch_size):
    return 1.0


SVD_CASES = [
    row(svd.truncated_svd, [[1.0, 2.0]], 1, raises=TypeError, words=["W", "list"]),
    row(svd.truncated_svd, W, 2.0, raises=TypeError, words=["rank", "2.0"]),
    row(svd.truncated_svd, W, 0, raises=ValueError, words=["rank", "got 0"]),
    row(svd.truncated_svd, torch.ones(2, 2, 2), 1, raises=ValueError, words=["W", "(2, 2, 2)"]),
    row(svd.randomized_svd, W, 2, oversamples=1.5, raises=TypeError, words=["oversamples", "1.5"]),
    row(svd.randomized_svd, W, 2, n_iter=-1, raises=ValueError, words=["n_iter", "-1"]),
    row(svd.randomized_svd, W, 9, raises=ValueError, words=["rank", "got 9"]),
    row(svd.eckart_young_error, [4.0, 3.0], 1, raises=TypeError, words=["S", "list"]),
    row(svd.eckart_young_error, S, 1.0, raises=TypeError, words=["rank", "1.0"]),
    row(svd.eckart_young_error, S, 4, raises=ValueError, words=["rank", "got 4"]),
    row(svd.eckart_young_error, S, 1, "nuclear", raises=ValueError, words=["norm", "'nuclear'"]),
    row(svd.rank_for_energy, S, "0.9", raises=TypeError, words=["energy", "'0.9'"]),
    row(svd.rank_for_energy, S, 1.5, raises=ValueError, words=["energy", "1.5"]),
    row(svd.rank_for_energy, torch.ones(2, 2), 0.5, raises=ValueError, words=["S", "(2, 2)"]),
    row(svd.rank_for_params, (4, 4), None, raises=TypeError, words=["keep", "None"]),
    row(svd.rank_for_params, (4, 4), 0, raises=ValueError, words=["keep", "got 0"]),
    row(svd.rank_for_params, (4, 4, 4), 0.5, raises=ValueError, words=["shape", "(4, 4, 4)"]),
    row(svd.break_even_rank, 16, raises=TypeError, words=["shape", "16"]),
    row(svd.break_even_rank, (4, 2.0), raises=TypeError, words=["shape[1]", "2.0"]),
    row(svd.break_even_rank, (4, 0), raises=ValueError, words=["shape[1]", "got 0"]),
    row(svd.check_rank, "3", (4, 8), raises=TypeError, words=["rank", "'3'"]),
    row(svd.check_rank, 9, (4, 8), raises=ValueError, words=["rank", "got 9"]),
]

BENCH_CASES = [
    row(bench.percentile, 5, 50, raises=TypeError, words=["samples", "5"]),
    row(bench.percentile, [1.0], "50", raises=TypeError, words=["q", "'50'"]),
    row(bench.percentile, [1.0], 101, raises=ValueError, words=["q", "101"]),
    row(bench.percentile, [], 50, raises=ValueError, words=["samples", "[]"]),
    row(bench.measure_latency, "model", X, raises=TypeError, words=["model", "str"]),
    row(bench.measure_latency, LINEAR, [[1.0]], raises=TypeError, words=["example_input", "list"]),
    row(bench.measure_latency, LINEAR, X, warmup=2.0, raises=TypeError, words=["warmup", "2.0"]),
    row(bench.measure_latency, LINEAR, X, warmup=0, raises=ValueError, words=["warmup", "got 0"]),
    row(bench.measure_latency, LINEAR, X, min_run_time=-1.0, raises=ValueError,
        words=["min_run_time", "-1.0"]),
    row(bench.measure_latency, LINEAR, X, threads=0, raises=ValueError, words=["threads", "got 0"]),
    row(bench.measure_latency, LINEAR, (), raises=ValueError, words=["example_input", "()"]),
    row(bench.throughput_curve, LINEAR, torch.zeros, 5, raises=TypeError, words=["batch_sizes", "5"]),
    row(bench.throughput_curve, LINEAR, 3, [1], raises=TypeError, words=["make_input", "3"]),
    row(bench.throughput_curve, LINEAR, torch.zeros, [1, 0], raises=ValueError,
        words=["batch_sizes[1]", "got 0"]),
    row(bench.best_batch_size, 5, 10, raises=TypeError, words=["curve", "int"]),
    row(bench.best_batch_size, CURVE, "10", raises=TypeError, words=["p95_budget_ms", "'10'"]),
    row(bench.best_batch_size, CURVE, 0, raises=ValueError, words=["p95_budget_ms", "got 0"]),
    row(bench.compare, [LINEAR], X, raises=TypeError, words=["models", "list"]),
    row(bench.compare, {}, X, raises=ValueError, words=["models", "{}"]),
    row(bench.compare, {"a": LINEAR}, X, rounds=1, raises=ValueError, words=["rounds", "got 1"]),
    row(bench.compare, {"a": LINEAR}, X, inference_mode=1, raises=TypeError,
        words=["inference_mode", "1"]),
    row(bench.round_interval, 5.0, raises=TypeError, words=["rounds", "5.0"]),
    row(bench.round_interval, 1, raises=ValueError, words=["rounds", "got 1"]),
    row(bench.ratio_range, 3, [1.0], raises=TypeError, words=["baseline_ms", "3"]),
    row(bench.ratio_range, [1.0], [1.0], raises=ValueError, words=["length", "1 and 1"]),
    row(bench.verdict, "0.9", 1.1, raises=TypeError, words=["low", "'0.9'"]),
    row(bench.verdict, 1.2, 1.1, raises=ValueError, words=["high", "1.1"]),
    row(bench.simulate_server, one_ms, 10.0, max_batch=2.0, raises=TypeError,
        words=["max_batch", "2.0"]),
    row(bench.simulate_server, "fast", 10.0, raises=TypeError, words=["service_ms", "str"]),
    row(bench.pareto_front, [1.0], raises=TypeError, words=["points", "list"]),
    row(bench.pareto_front, {"a": (float("nan"), 0.5)}, raises=ValueError, words=["latency", "nan"]),
    row(bench.simulate_server, one_ms, 0, raises=ValueError, words=["arrival_rate", "got 0"]),
    row(bench.simulate_server, one_ms, 10.0, max_wait_ms=-1, raises=ValueError,
        words=["max_wait_ms", "-1"]),
    row(bench.simulate_server, one_ms, 10.0, seed=-1, raises=ValueError, words=["seed", "-1"]),
]

PROFILE_CASES = [
    row(profile.as_input_tuple, 3.0, raises=TypeError, words=["example_input", "float"]),
    row(profile.as_input_tuple, (), raises=ValueError, words=["example_input", "()"]),
    row(profile.count_params, "mlp", raises=TypeError, words=["model", "'mlp'"]),
    row(profile.count_params, LINEAR, trainable_only=1, raises=TypeError,
        words=["trainable_only", "1"]),
    row(profile.count_flops, 3, X, raises=TypeError, words=["model", "int"]),
    row(profile.count_flops, LINEAR, [1, 2], raises=TypeError, words=["example_input", "list"]),
    row(profile.count_flops, LINEAR, (), raises=ValueError, words=["example_input", "()"]),
    row(profile.model_bytes, {"w": W}, raises=TypeError, words=["model", "dict"]),
    row(profile.layer_table, LINEAR, X, repeats=2.0, raises=TypeError, words=["repeats", "2.0"]),
    row(profile.layer_table, LINEAR, X, repeats=0, raises=ValueError, words=["repeats", "got 0"]),
    row(profile.layer_table, LINEAR, X, warmup=-1, raises=ValueError, words=["warmup", "-1"]),
    row(profile.layer_inputs, LINEAR, X, names="fc", raises=TypeError, words=["names", "'fc'"]),
    row(profile.layer_inputs, nn.Sequential(LINEAR), X, names=["fc"], raises=ValueError,
        words=["names", "'fc'"]),
    row(profile.arithmetic_intensity, "1", 4, raises=TypeError, words=["flops", "'1'"]),
    row(profile.arithmetic_intensity, 1, 0, raises=ValueError, words=["bytes_moved", "got 0"]),
    row(profile.arithmetic_intensity, -1, 4, raises=ValueError, words=["flops", "-1"]),
    row(profile.linear_intensity, 1.5, 4, 4, raises=TypeError, words=["batch", "1.5"]),
    row(profile.linear_intensity, 1, 0, 4, raises=ValueError, words=["in_features", "got 0"]),
    row(profile.Roofline, 100.0, 20.0, "torch.float32", "2", raises=TypeError, words=["threads", "'2'"]),
    row(profile.Roofline, -1.0, 20.0, "torch.float32", 2, raises=ValueError,
        words=["peak_gflops", "-1.0"]),
    row(ROOF.attainable_gflops, "2", raises=TypeError, words=["intensity", "'2'"]),
    row(ROOF.attainable_gflops, -1.0, raises=ValueError, words=["intensity", "-1.0"]),
    row(ROOF.bound, None, raises=TypeError, words=["intensity", "None"]),
    row(ROOF.bound, -1, raises=ValueError, words=["intensity", "-1"]),
    row(profile.machine_roofline, matmul_sizes=256.0, raises=TypeError, words=["matmul_sizes", "256.0"]),
    row(profile.machine_roofline, conv_shapes=[(1, 2, 3)], raises=ValueError,
        words=["conv_shapes[0]", "4 positive ints"]),
    row(profile.machine_roofline, dtype="float32", raises=TypeError, words=["dtype", "'float32'"]),
    row(profile.machine_roofline, copy_megabytes=0, raises=ValueError,
        words=["copy_megabytes", "got 0"]),
    row(profile.machine_roofline, dtype=torch.int64, raises=ValueError, words=["dtype", "torch.int64"]),
    row(profile.machine_roofline, min_run_time=0, raises=ValueError, words=["min_run_time", "got 0"]),
]

BLOCKS_CASES = [
    row(blocks.conv1x1_as_matmul, [[1.0]], torch.ones(2, 1), raises=TypeError, words=["x", "list"]),
    row(blocks.conv1x1_as_matmul, torch.ones(1, 1, 2, 2), torch.ones(2, 1), [0.0, 0.0],
        raises=TypeError, words=["bias", "list"]),
    row(blocks.conv1x1_as_matmul, torch.ones(1, 3), torch.ones(2, 3), raises=ValueError,
        words=["x", "(1, 3)"]),
    row(blocks.conv1x1_as_matmul, torch.ones(1, 3, 2, 2), torch.ones(2, 4), raises=ValueError,
        words=["weight", "(2, 4)"]),
    row(blocks.Fire, 16.0, 4, 8, 8, raises=TypeError, words=["in_channels", "16.0"]),
    row(blocks.Fire, 16, 16, 8, 8, raises=ValueError, words=["squeeze", "16"]),
    row(blocks.fire_params, 16, 4, True, 8, raises=TypeError, words=["expand1x1", "True"]),
    row(blocks.fire_params, 16, 4, 8, 0, raises=ValueError, words=["expand3x3", "got 0"]),
    row(blocks.fire_flops, 16, 4, 8, 8, 8.0, 8, raises=TypeError, words=["height", "8.0"]),
    row(blocks.fire_flops, 16, 4, 8, 8, 8, 8, batch=-2, raises=ValueError, words=["batch", "-2"]),
    row(blocks.DepthwiseSeparableConv2d, 4, 4, (3, 3), raises=TypeError,
        words=["kernel_size", "(3, 3)"]),
    row(blocks.DepthwiseSeparableConv2d, 4, 4, 3, bias=1, raises=TypeError, words=["bias", "1"]),
    row(blocks.DepthwiseSeparableConv2d, 4, 4, 3, padding=-1, raises=ValueError,
        words=["padding", "-1"]),
    row(blocks.DepthwiseSeparableConv2d.from_conv, LINEAR, raises=TypeError,
        words=["conv", "Linear"]),
    row(blocks.DepthwiseSeparableConv2d.from_conv, nn.Conv2d(4, 4, 3, groups=2),
        raises=ValueError, words=["conv", "groups=2"]),
    row(blocks.separable_params, 4, 4, 2.5, raises=TypeError, words=["kernel_size", "2.5"]),
    row(blocks.separable_params, 4, 0, 3, raises=ValueError, words=["out_channels", "got 0"]),
    row(blocks.separable_flops, 4, 4, 3, 8, 8, stride="1", raises=TypeError, words=["stride", "'1'"]),
    row(blocks.separable_flops, 4, 4, 5, 2, 8, padding=1, raises=ValueError, words=["height=2"]),
    row(blocks.separable_cost_ratio, 4, None, raises=TypeError, words=["kernel_size", "None"]),
    row(blocks.separable_cost_ratio, 0, 3, raises=ValueError, words=["out_channels", "got 0"]),
    row(blocks.Bottleneck, 8, "4", 8, raises=TypeError, words=["mid_channels", "'4'"]),
    row(blocks.Bottleneck, 8, 4, 8, residual="yes", raises=TypeError, words=["residual", "'yes'"]),
    row(blocks.Bottleneck, 8, 12, 16, raises=ValueError, words=["mid_channels", "12"]),
    row(blocks.bottleneck_params, 8, 4, 8.0, raises=TypeError, words=["out_channels", "8.0"]),
    row(blocks.bottleneck_params, 0, 4, 8, raises=ValueError, words=["in_channels", "got 0"]),
    row(blocks.bottleneck_flops, 8, 4, 8, 8, 8, stride=1.0, raises=TypeError, words=["stride", "1.0"]),
    row(blocks.bottleneck_flops, 8, 4, 8, 8, 0, raises=ValueError, words=["width", "got 0"]),
]

DATA_CASES = [
    row(IMAGES.loader, "32", raises=TypeError, words=["batch_size", "'32'"]),
    row(IMAGES.loader, 8, shuffle=1, raises=TypeError, words=["shuffle", "1"]),
    row(IMAGES.loader, 0, raises=ValueError, words=["batch_size", "got 0"]),
    row(data.fashion_mnist, None, raises=TypeError, words=["split", "None"]),
    row(data.fashion_mnist, "test", path=3, raises=TypeError, words=["path", "int"]),
    row(data.fashion_mnist, "valid", raises=ValueError, words=["split", "'valid'"]),
    row(data.read_idx, 3, raises=TypeError, words=["file", "int"]),
    row(data.read_idx, NOT_IDX, raises=ValueError, words=["FASHION_MNIST_LICENSE.txt", "not an IDX"]),
    row(data.synthetic_input, "abc", raises=TypeError, words=["shape", "'abc'"]),
    row(data.load_photo, 3, raises=TypeError, words=["name", "3"]),
    row(data.load_photo, "logo.png", raises=ValueError, words=["name", "'logo.png'", "grace_hopper.jpg"]),
    row(data.photo_crops, 1.5, seed=0, raises=TypeError, words=["per_photo", "1.5"]),
    row(data.photo_crops, 0, seed=0, raises=ValueError, words=["per_photo", "got 0"]),
    row(models.efficientnet_input, [0.5], raises=TypeError, words=["pictures", "list"]),
    row(models.efficientnet_input, torch.full((1, 3, 2, 2), 255.0), raises=ValueError,
        words=["pictures", "[0, 1]", "255"]),
    row(data.synthetic_input, (2,), dtype="float32", raises=TypeError, words=["dtype", "'float32'"]),
    row(data.synthetic_input, (0, 3), raises=ValueError, words=["shape[0]", "got 0"]),
    row(data.synthetic_input, (2,), dtype=torch.int64, raises=ValueError,
        words=["dtype", "torch.int64"]),
]

TRAIN_CASES = [
    row(train.top1_agreement, [[1.0]], torch.zeros(1, 2), raises=TypeError, words=["logits_a", "list"]),
    row(train.top1_agreement, torch.zeros(3), torch.zeros(3), raises=ValueError, words=["logits_a", "2"]),
    row(train.fit, "model", PAIR, raises=TypeError, words=["model", "'model'"]),
    row(train.fit, LINEAR, PAIR, epochs=1.5, raises=TypeError, words=["epochs", "1.5"]),
    row(train.fit, LINEAR, PAIR, schedule=None, raises=TypeError, words=["schedule", "None"]),
    row(train.fit, LINEAR, [1, 2, 3], raises=TypeError, words=["data", "list"]),
    row(train.fit, LINEAR, PAIR, lr=0, raises=ValueError, words=["lr", "got 0"]),
    row(train.fit, LINEAR, PAIR, schedule="step", raises=ValueError, words=["schedule", "'step'"]),
    row(train.fit, LINEAR, PAIR, weight_decay=-0.1, raises=ValueError,
        words=["weight_decay", "-0.1"]),
    row(train.fine_tune, LINEAR, PAIR, epochs="2", raises=TypeError, words=["epochs", "'2'"]),
    row(train.fine_tune, LINEAR, PAIR, batch_size=0, raises=ValueError, words=["batch_size", "got 0"]),
    row(train.recalibrate_batchnorm, nn.BatchNorm1d(2), PAIR, batch_size=8.0, raises=TypeError,
        words=["batch_size", "8.0"]),
    row(train.recalibrate_batchnorm, nn.BatchNorm1d(2), PAIR, batch_size=0, raises=ValueError,
        words=["batch_size", "got 0"]),
    row(train.recalibrate_batchnorm, LINEAR, PAIR, raises=ValueError, words=["model", "BatchNorm"]),
    row(train.evaluate, LINEAR, PAIR, progress="yes", raises=TypeError, words=["progress", "'yes'"]),
    row(train.evaluate, LINEAR, PAIR, batch_size=0, raises=ValueError, words=["batch_size", "got 0"]),
    row(train.evaluate, LINEAR, (PAIR[0], PAIR[1][:5]), raises=ValueError,
        words=["data", "6 inputs but 5 labels"]),
    row(train.progress_enabled, 1, raises=TypeError, words=["progress", "1"]),
]

MODELS_CASES = [
    row(models.MLP, 512, raises=TypeError, words=["hidden", "512"]),
    row(models.MLP, (3.5,), raises=TypeError, words=["hidden[0]", "3.5"]),
    row(models.MLP, (0, 5), raises=ValueError, words=["hidden[0]", "got 0"]),
    row(models.CNN, (8.0, 8, 8), raises=TypeError, words=["channels[0]", "8.0"]),
    row(models.CNN, (8, 8), raises=ValueError, words=["channels", "(8, 8)"]),
] + [
    case
    for function in (models.load_reference, models.reference_info, models.build_reference)
    for case in (row(function, 3, raises=TypeError, words=["name", "3"]),
                 row(function, "resnet", raises=ValueError, words=["name", "'resnet'", "'mlp'"]))
] + [
    case
    for function in (models.build_variant, models.load_variant, models.variant_info,
                     models.variant_weights_path)
    for case in (row(function, None, raises=TypeError, words=["name", "None"]),
                 row(function, "vgg", raises=ValueError, words=["name", "'vgg'", "'fire'"]))
]

OPTIMIZE_CASES = [
    row(optimize.fold_batchnorm, LINEAR, nn.BatchNorm2d(3), raises=TypeError, words=["conv", "Linear"]),
    row(optimize.fold_batchnorm, nn.Conv2d(2, 4, 1), nn.BatchNorm1d(4), raises=TypeError,
        words=["bn", "BatchNorm1d"]),
    row(optimize.fold_batchnorm, nn.Conv2d(2, 4, 1), nn.BatchNorm2d(3), raises=ValueError,
        words=["bn", "3 features", "4 output channels"]),
    row(optimize.fold_batchnorms, "cnn", raises=TypeError, words=["model", "'cnn'"]),
    row(optimize.fold_batchnorms, LINEAR, inplace=1, raises=TypeError, words=["inplace", "1"]),
    row(optimize.freeze, LINEAR, [1, 2], raises=TypeError, words=["example_input", "list"]),
    row(optimize.freeze, LINEAR, X, check=1, raises=TypeError, words=["check", "1"]),
    row(optimize.freeze, LINEAR, X, atol=-1, raises=ValueError, words=["atol", "-1"]),
    row(claims.claim, "yes", "text", raises=TypeError, words=["holds", "'yes'"]),
    row(claims.claim, True, "", raises=ValueError, words=["statement", "empty"]),
    row(claims.failed_claims, 5, raises=TypeError, words=["text", "int"]),
    row(claims.difference_is_clear, "0.9", 0.8, 10, raises=TypeError, words=["accuracy_a", "'0.9'"]),
    row(claims.difference_is_clear, 0.9, 0.8, 10, z=0, raises=ValueError, words=["z", "got 0"]),
    row(optimize.keep_freed_memory, 2.5, raises=TypeError, words=["limit_bytes", "2.5"]),
    row(optimize.keep_freed_memory, 1000, raises=ValueError, words=["limit_bytes", "1000"]),
]

VIZ_CASES = [
    row(viz.show_images, [[0.0]], IMAGES.labels, data.CLASS_NAMES, raises=TypeError,
        words=["images", "list"]),
    row(viz.show_images, IMAGES.images, IMAGES.labels, "names", raises=TypeError,
        words=["class_names", "'names'"]),
    row(viz.show_images, IMAGES.images, IMAGES.labels, data.CLASS_NAMES, ncols=2.5,
        raises=TypeError, words=["ncols", "2.5"]),
    row(viz.show_images, IMAGES.images, IMAGES.labels, data.CLASS_NAMES, ncols=0,
        raises=ValueError, words=["ncols", "got 0"]),
    row(viz.show_images, IMAGES.images, IMAGES.labels[:2], data.CLASS_NAMES, raises=ValueError,
        words=["3 images and 2 labels"]),
    row(viz.show_images, IMAGES.images, IMAGES.labels, data.CLASS_NAMES,
        predictions=IMAGES.labels[:1], raises=ValueError, words=["predictions", "got 1"]),
    row(viz.predict, one_ms, IMAGES.images, raises=TypeError, words=["model", "function"]),
    row(viz.predict, LINEAR, [[0.0]], raises=TypeError, words=["images", "list"]),
    row(viz.image_explorer, [IMAGES], {"m": LINEAR}, raises=TypeError, words=["imageset", "list"]),
    row(viz.image_explorer, IMAGES, {"m": "mlp"}, raises=TypeError, words=["models['m']", "'mlp'"]),
    row(viz.image_explorer, IMAGES, {}, raises=ValueError, words=["models", "{}"]),
]

ENV_CASES = [
    row(env.report, "report.txt", raises=TypeError, words=["file", "str"]),
]


CONV = nn.Conv2d(4, 6, 3, padding=1)
MLP_LIKE = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
SVD_ENTRY = factorizations.REGISTRY["svd", nn.Linear]
T3 = torch.ones(3, 4, 5, dtype=torch.float64)
FACTORS3 = [torch.ones(n, 2, dtype=torch.float64) for n in (3, 4, 5)]
SCAN = sensitivity.SensitivityScan(0.9, [])
EXPORTED = torch.export.export(MLP_LIKE.eval(), (torch.zeros(2, 4),))

LAYERS_CASES = [
    row(layers.LowRankLinear, "8", 6, 2, raises=TypeError, words=["in_features", "'8'"]),
    row(layers.LowRankLinear, 0, 6, 2, raises=ValueError, words=["in_features", "0"]),
    row(layers.LowRankLinear.from_linear, CONV, 1, raises=TypeError, words=["linear", "Conv2d"]),
    row(layers.LowRankLinear.from_linear, LINEAR, 9, raises=ValueError, words=["rank", "9"]),
    row(layers.SVDConv2d, 4, 6, 3, 2.5, raises=TypeError, words=["rank", "2.5"]),
    row(layers.SVDConv2d, 4, 6, 3, 0, raises=ValueError, words=["rank", "0"]),
    row(layers.Tucker2Conv2d, 4, 6, 3, 2, raises=TypeError, words=["rank", "2"]),
    row(layers.Tucker2Conv2d, 4, 6, 3, (7, 2), raises=ValueError, words=["rank[0] (R_out)", "7"]),
    row(layers.CPConv2d, 4, 6, 3, 2, implementation=1, raises=TypeError, words=["implementation", "1"]),
    row(layers.CPConv2d, 4, 6, 3, 2, implementation="winograd", raises=ValueError,
        words=["implementation", "'winograd'"]),
    row(layers.check_conv, LINEAR, raises=TypeError, words=["conv", "Linear"]),
    row(layers.check_conv, nn.Conv2d(4, 4, 3, groups=2), raises=ValueError, words=["conv", "groups=2"]),
    row(layers.conv_output_size, (8, 8), "3", raises=TypeError, words=["kernel_size[0]", "'3'"]),
    row(layers.conv_output_size, (0, 8), 3, raises=ValueError, words=["input_hw[0]", "0"]),
    row(layers.conv_flops, LINEAR, (8, 8), raises=TypeError, words=["conv", "Linear"]),
    row(layers.conv_flops, CONV, (8, -1), raises=ValueError, words=["input_hw[1]", "-1"]),
    row(layers.dense_flops, nn.ReLU(), raises=TypeError, words=["layer", "ReLU"]),
    row(layers.dense_flops, CONV, raises=ValueError, words=["input_hw"]),
    row(layers.max_cp_rank, "ab", raises=TypeError, words=["shape", "'ab'"]),
    row(layers.max_cp_rank, (3, 0), raises=ValueError, words=["shape[1]", "0"]),
]

FACTORIZATIONS_CASES = [
    row(factorizations.check_method, 3, raises=TypeError, words=["method", "3"]),
    row(factorizations.check_method, "qr", raises=ValueError, words=["method", "'qr'"]),
    row(factorizations.resolve, "svd", nn.Conv1d(4, 4, 3), raises=TypeError, words=["layer", "Conv1d"]),
    row(factorizations.resolve, "tucker2", LINEAR, raises=ValueError, words=["method", "'tucker2'"]),
    row(factorizations.factorize, nn.ReLU(), 2, raises=TypeError, words=["layer", "ReLU"]),
    row(factorizations.factorize, LINEAR, 9, raises=ValueError, words=["rank", "9"]),
    row(factorizations.untrained_like, LINEAR, "2", raises=TypeError, words=["rank", "'2'"]),
    row(factorizations.untrained_like, CONV, (7, 2), method="tucker2", raises=ValueError,
        words=["rank[0] (R_out)", "7"]),
]

RANK_RULES_CASES = [
    row(rank_rules.Energy, "0.9", raises=TypeError, words=["energy", "'0.9'"]),
    row(rank_rules.Energy, 1.5, raises=ValueError, words=["energy", "1.5"]),
    row(rank_rules.FlopReduction, "2", raises=TypeError, words=["factor", "'2'"]),
    row(rank_rules.FlopReduction, 4, multiple_of=0, raises=ValueError, words=["multiple_of", "0"]),
    row(rank_rules.check_rule, None, raises=TypeError, words=["rank", "None"]),
    row(rank_rules.check_rule, (4, 0), raises=ValueError, words=["rank[1]", "0"]),
    row(rank_rules.choose_rank, 0.5, "svd", LINEAR, raises=TypeError, words=["factorization", "'svd'"]),
    row(rank_rules.choose_rank, 0, SVD_ENTRY, LINEAR, raises=ValueError, words=["rank", "0"]),
    row(rank_rules.choose_ranks, nn.ReLU(), 2, raises=TypeError, words=["layer", "ReLU"]),
    row(rank_rules.choose_ranks, LINEAR, 1.5, raises=ValueError, words=["rank", "1.5"]),
    row(rank_rules.aligned, [1, 2], 2.0, raises=TypeError, words=["multiple", "2.0"]),
    row(rank_rules.aligned, [1, 2], 0, raises=ValueError, words=["multiple", "0"]),
    row(rank_rules.largest_within, (1, 2), abs, 1, raises=TypeError, words=["candidates", "tuple"]),
]

COMPRESS_CASES = [
    row(compress.compress, "mlp", rank=4, raises=TypeError, words=["model", "str"]),
    row(compress.compress, MLP_LIKE, rank=0, raises=ValueError, words=["rank", "0"]),
    row(compress.select_layers, MLP_LIKE, include="0", raises=TypeError, words=["include", "'0'"]),
    row(compress.select_layers, MLP_LIKE, include=["fc9"], raises=ValueError, words=["include", "'fc9'"]),
    row(compress.default_scope, "mlp", raises=TypeError, words=["model", "str"]),
]

SENSITIVITY_CASES = [
    row(SCAN.choose, "0.1", raises=TypeError, words=["max_drop", "'0.1'"]),
    row(SCAN.choose, -1, raises=ValueError, words=["max_drop", "-1"]),
    row(sensitivity.sensitivity_scan, MLP_LIKE, PAIR, rules=0.5, raises=TypeError, words=["rules", "0.5"]),
    row(sensitivity.sensitivity_scan, MLP_LIKE, PAIR, rules=[], raises=ValueError, words=["rules"]),
]

DEPLOY_CASES = [
    row(deploy.factorized_structure, {"rows": []}, raises=TypeError, words=["report", "dict"]),
    row(deploy.rebuild, MLP_LIKE, [("0", "svd")], raises=TypeError, words=["structure", "list"]),
    row(deploy.rebuild, MLP_LIKE, {"bn9": {"method": "svd", "rank": 2}}, raises=ValueError,
        words=["structure", "'bn9'"]),
    row(deploy.save_compressed, "model", "out", base_model="cnn", structure={}, batchnorm_folded=True,
        raises=TypeError, words=["model", "str"]),
    row(deploy.save_compressed, MLP_LIKE, "out", base_model="resnet", structure={},
        batchnorm_folded=True, raises=ValueError, words=["base_model", "'resnet'"]),
    row(deploy.load_compressed, 3, raises=TypeError, words=["folder", "3"]),
    row(deploy.export, MLP_LIKE, [1.0], raises=TypeError, words=["example_input", "list"]),
    row(deploy.export, MLP_LIKE, torch.zeros(1, 4), raises=ValueError, words=["example_input", "(1, 4)"]),
    row(deploy.save_exported, "program", "a.pt2", raises=TypeError, words=["program", "str"]),
    row(deploy.save_exported, EXPORTED, "a.onnx", raises=ValueError, words=["path", "a.onnx"]),
    row(deploy.load_exported, 3, raises=TypeError, words=["path", "3"]),
    row(deploy.max_difference, MLP_LIKE, MLP_LIKE, [1.0], raises=TypeError, words=["inputs", "list"]),
    row(deploy.quantize_dynamic, "model", raises=TypeError, words=["model", "str"]),
    row(deploy.count_quantized, "model", raises=TypeError, words=["model", "str"]),
]

VBMF_CASES = [
    row(vbmf.evbmf, "M", raises=TypeError, words=["M", "str"]),
    row(vbmf.evbmf, T3, raises=ValueError, words=["M", "(3, 4, 5)"]),
]

TENSOR_CASES = [
    row(tensor.unfold, T3, 1.0, raises=TypeError, words=["mode", "1.0"]),
    row(tensor.unfold, T3, 3, raises=ValueError, words=["mode", "3"]),
    row(tensor.fold, [1.0], 0, (3, 4, 5), raises=TypeError, words=["M", "list"]),
    row(tensor.fold, torch.ones(3, 20), 0, (3, 0, 5), raises=ValueError, words=["shape[1]", "0"]),
    row(tensor.mode_dot, T3, "M", 0, raises=TypeError, words=["M", "str"]),
    row(tensor.mode_dot, T3, torch.ones(2, 2, dtype=torch.float64), 0, raises=ValueError, words=["M"]),
    row(tensor.khatri_rao, "AB", raises=TypeError, words=["matrices"]),
    row(tensor.khatri_rao, [torch.ones(2, 3), torch.ones(2, 4)], raises=ValueError, words=["matrices"]),
    row(tensor.mttkrp, T3, FACTORS3, "0", raises=TypeError, words=["mode", "'0'"]),
    row(tensor.mttkrp, T3, FACTORS3[:2], 0, raises=ValueError, words=["factors", "2"]),
    row(tensor.cp_to_tensor, [1.0, 2.0], FACTORS3, raises=TypeError, words=["weights", "list"]),
    row(tensor.cp_to_tensor, torch.ones(3, dtype=torch.float64), FACTORS3, raises=ValueError,
        words=["weights", "(3,)"]),
    row(tensor.tucker_to_tensor, "core", FACTORS3, raises=TypeError, words=["core", "str"]),
    row(tensor.tucker_to_tensor, torch.ones(2, 2, dtype=torch.float64), FACTORS3, raises=ValueError,
        words=["factor", "3"]),
    row(tensor.relative_error, [1.0], torch.ones(1), raises=TypeError, words=["approximation", "list"]),
    row(tensor.relative_error, torch.ones(2), torch.ones(3), raises=ValueError, words=["approximation", "(3,)"]),
    row(tensor.cp_als, T3, 2.0, raises=TypeError, words=["rank", "2.0"]),
    row(tensor.cp_als, T3, 0, raises=ValueError, words=["rank", "0"]),
    row(tensor.hosvd, T3, (1, 2, "3"), raises=TypeError, words=["ranks[2]", "'3'"]),
    row(tensor.hosvd, T3, (1, 2, 6), raises=ValueError, words=["ranks[2]", "6"]),
    row(tensor.tucker_hooi, T3, 2, n_iter_max=1.5, raises=TypeError, words=["n_iter_max", "1.5"]),
    row(tensor.tucker_hooi, T3, 2, init="svd", raises=ValueError, words=["init", "'svd'"]),
    row(tensor.cp_params, (3, 4), "2", raises=TypeError, words=["rank", "'2'"]),
    row(tensor.cp_params, (3, 4), 0, raises=ValueError, words=["rank", "0"]),
    row(tensor.tucker_params, (3, 4), (2, "2"), raises=TypeError, words=["ranks[1]", "'2'"]),
    row(tensor.tucker_params, (3, 4), (2,), raises=ValueError, words=["ranks", "(2,)"]),
]

CASES = (SVD_CASES + BENCH_CASES + PROFILE_CASES + BLOCKS_CASES + DATA_CASES + TRAIN_CASES
         + MODELS_CASES + OPTIMIZE_CASES + VIZ_CASES + ENV_CASES + LAYERS_CASES + FACTORIZATIONS_CASES
         + RANK_RULES_CASES + COMPRESS_CASES + SENSITIVITY_CASES + DEPLOY_CASES + TENSOR_CASES
         + VBMF_CASES)


@pytest.mark.parametrize("function, args, kwargs, raises, words", CASES)
def test_a_bad_argument_raises_the_policy_error_naming_it(function, args, kwargs, raises, words):
    with pytest.raises(Exception) as info:
        function(*args, **kwargs)
    assert info.type is raises, f"raised {info.type.__name__}({info.value}), expected {raises.__name__}"
    message = str(info.value)
    missing = [word for word in words if word not in message]
    assert not missing, f"the message {message!r} lacks {missing}"


# --------------------------------------------------------------------------- completeness
#: The modules whose whole public API the table covers, each with the public callables
#: that need no row (records that lrlib builds, functions without arguments) and those
#: that only have type errors (no argument with a restricted value), with the reason.
COVERED = {
    svd: {"exempt": {}, "type_only": {}},
    bench: {
        "exempt": {name: "a result record built by bench" for name in
                   ("LatencyResult", "ThroughputPoint", "Comparison", "SimulationResult")},
        "type_only": {},
    },
    profile: {"exempt": {"LayerTable": "a result record built by layer_table"},
              "type_only": {"count_params": "takes any module", "model_bytes": "takes any module"}},
    blocks: {"exempt": {}, "type_only": {}},
    data: {"exempt": {}, "type_only": {}},
    train: {"exempt": {"EvalResult": "a result record built by evaluate"},
            "type_only": {"progress_enabled": "None, True and False are all allowed"}},
    models: {"exempt": {"ReferenceModel": "a registry record, built once in lrlib.models",
                        "load_efficientnet_lite0": "no arguments"},
             "type_only": {}},
    claims: {"exempt": {}, "type_only": {"failed_claims": "any text is allowed"}},
    optimize: {"exempt": {"freed_memory_kept": "no arguments"},
               "type_only": {"fold_batchnorms": "takes any module"}},
    viz: {"exempt": {}, "type_only": {"predict": "takes any module and batch"}},
    env: {"exempt": {"environment": "no arguments", "cpu_name": "no arguments"},
          "type_only": {"report": "any writable stream"}},
    layers: {"exempt": {}, "type_only": {}},
    factorizations: {"exempt": {"Factorization": "a registry record, built once in lrlib.factorizations"},
                     "type_only": {}},
    rank_rules: {"exempt": {"VBMF": "no arguments", "RankChoice": "a result record built by choose_rank"},
                 "type_only": {"largest_within": "any budget is allowed (none fits: None)"}},
    compress: {"exempt": {"CompressionReport": "a result record built by compress"},
               "type_only": {"default_scope": "takes any model"}},
    sensitivity: {"exempt": {}, "type_only": {}},
    deploy: {"exempt": {},
             "type_only": {"factorized_structure": "takes any report", "load_compressed":
                           "a missing folder is a FileNotFoundError", "load_exported":
                           "a missing file is a FileNotFoundError", "max_difference": "any inputs",
                           "quantize_dynamic": "takes any model", "count_quantized": "takes any model"}},
    vbmf: {"exempt": {"VBMFResult": "a result record built by evbmf"}, "type_only": {}},
    tensor: {"exempt": {"CPResult": "a result record built by cp_als",
                        "TuckerResult": "a result record built by hosvd and tucker_hooi",
                        "DegenerateCPWarning": "a warning class"},
             "type_only": {}},
}


def _owner(function) -> str:
    """The public name a row's callable belongs to: ``Roofline`` for ``ROOF.bound``."""
    function = getattr(function, "__func__", function)
    return function.__qualname__.split(".")[0]


@pytest.mark.parametrize("module", list(COVERED), ids=lambda m: m.__name__)
def test_every_public_callable_has_a_wrong_type_and_a_wrong_value_row(module):
    exempt, type_only = COVERED[module]["exempt"], COVERED[module]["type_only"]
    public = [name for name in module.__all__
              if (inspect.isfunction(getattr(module, name)) or inspect.isclass(getattr(module, name)))
              and getattr(module, name).__module__ == module.__name__]
    raised = {}
    for case in CASES:
        function, _, _, raises, _ = case.values
        if getattr(function, "__module__", None) == module.__name__:
            raised.setdefault(_owner(function), set()).add(raises)
    for name in public:
        if name in exempt:
            continue
        wanted = {TypeError} if name in type_only else {TypeError, ValueError}
        assert wanted <= raised.get(name, set()), \
            f"{module.__name__}.{name} needs a row for each of {sorted(e.__name__ for e in wanted)}"
