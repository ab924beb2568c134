"""lrlib.deploy: a saved, reloaded or exported model computes what the original computes;
dynamic quantization replaces exactly the Linear layers and stays close to float32."""

import json

import pytest
import torch
from torch import nn

from lrlib import compress, deploy, models, optimize, train
from lrlib.data import fashion_mnist


def _compressed_cnn():
    """The reference CNN with BN folded and three kinds of chains (and a low-rank fc)."""
    dense = optimize.fold_batchnorms(models.load_reference("cnn"))
    methods = {"conv2": "cp-fused", "conv3": "tucker2", "conv4": "svd", "fc": "svd"}
    model, report = compress.compress(dense, rank={"conv2": 20, "conv3": (32, 16), "conv4": 40, "fc": 5},
                                      method=methods, include=list(methods))
    return model, report


def test_save_and_load_compressed_round_trip(tmp_path):
    model, report = _compressed_cnn()
    folder = deploy.save_compressed(model, tmp_path / "out", base_model="cnn",
                                    structure=deploy.factorized_structure(report),
                                    batchnorm_folded=True, extra={"note": "test"})
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.pt"]
    record = json.loads((folder / "model.json").read_text())
    assert record["note"] == "test" and record["layers"]["conv3"] == {"method": "tucker2", "rank": [32, 16]}
    loaded = deploy.load_compressed(folder)
    assert type(loaded.conv2).__name__ == "CPConv2d" and type(loaded.fc).__name__ == "LowRankLinear"
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".lrlib-")]


def test_save_compressed_refuses_to_overwrite_and_leaves_nothing_on_failure(tmp_path):
    model, report = _compressed_cnn()
    structure = deploy.factorized_structure(report)
    folder = tmp_path / "out"
    deploy.save_compressed(model, folder, base_model="cnn", structure=structure, batchnorm_folded=True)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        deploy.save_compressed(model, folder, base_model="cnn", structure=structure, batchnorm_folded=True)

    def broken(path):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        deploy.save_compressed(model, tmp_path / "new", base_model="cnn", structure=structure,
                               batchnorm_folded=True, extra_files={"plot.png": broken})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "nothing half-written is left"
    with pytest.raises(ValueError, match="base_model must be one of"):
        deploy.save_compressed(model, tmp_path / "x", base_model="resnet", structure=structure,
                               batchnorm_folded=True)
    with pytest.raises(TypeError, match="structure"):
        deploy.save_compressed(model, tmp_path / "x", base_model="cnn", structure=report,
                               batchnorm_folded=True)
    with pytest.raises(FileNotFoundError, match="model.pt"):
        deploy.load_compressed(tmp_path)


def test_exported_program_saved_and_reloaded_equals_the_module(tmp_path):
    model, _ = _compressed_cnn()
    program = deploy.export(model, torch.randn(4, 1, 28, 28))
    path = deploy.save_exported(program, tmp_path / "cnn.pt2")
    reloaded = deploy.load_exported(path)
    for batch in (1, 7, 32):                     # the batch size is dynamic
        x = torch.randn(batch, 1, 28, 28)
        assert deploy.max_difference(reloaded, model.eval(), x) <= 1e-5


def test_export_of_a_low_rank_mlp_and_bad_arguments(tmp_path):
    dense = models.load_reference("mlp")
    model, _ = compress.compress(dense, rank=0.2, measure=False)
    program = deploy.export(model, torch.randn(3, 1, 28, 28))
    assert deploy.max_difference(program.module(), model, torch.randn(9, 1, 28, 28)) <= 1e-5
    with pytest.raises(ValueError, match="batch of at least 2"):
        deploy.export(model, torch.randn(1, 1, 28, 28))
    with pytest.raises(TypeError, match="example_input"):
        deploy.export(model, [1.0])
    with pytest.raises(ValueError, match=r"\.pt2"):
        deploy.save_exported(program, tmp_path / "model.pt")
    with pytest.raises(TypeError, match="program"):
        deploy.save_exported(model, tmp_path / "model.pt2")
    with pytest.raises(FileNotFoundError):
        deploy.load_exported(tmp_path / "missing.pt2")


def test_quantize_dynamic_replaces_every_linear_and_nothing_else():
    mlp = models.load_reference("mlp")
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    quantized = deploy.quantize_dynamic(mlp)
    n_linear = sum(isinstance(m, nn.Linear) for m in mlp.modules())
    assert deploy.count_quantized(quantized) == n_linear == 3
    assert deploy.count_quantized(mlp) == 0
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items()), "caller's model changed"

    low_rank, _ = compress.compress(mlp, rank=0.25, measure=False)       # the two combined
    n_factorized = sum(type(m).__name__ == "LowRankLinear" for m in low_rank.modules())
    assert n_factorized >= 1
    assert deploy.count_quantized(deploy.quantize_dynamic(low_rank)) == 3 + n_factorized

    cnn = deploy.quantize_dynamic(models.load_reference("cnn"))
    assert deploy.count_quantized(cnn) == 1, "only the classifier of the CNN is a Linear layer"
    assert sum(isinstance(m, nn.Conv2d) for m in cnn.modules()) == 4


def test_quantized_mlp_stays_close_to_float32():
    mlp = models.load_reference("mlp")
    quantized = deploy.quantize_dynamic(mlp)
    test = fashion_mnist("test")
    images, labels = test.images[:500], test.labels[:500]
    with torch.no_grad():
        float_logits, int8_logits = mlp(images), quantized(images)
    relative = (int8_logits - float_logits).norm() / float_logits.norm()
    assert 0 < relative < 0.05, "int8 rounding changes the logits, a little"
    agreement = (float_logits.argmax(1) == int8_logits.argmax(1)).float().mean().item()
    assert agreement >= 0.97
    drop = train.evaluate(mlp, (images, labels)).accuracy - train.evaluate(quantized, (images, labels)).accuracy
    assert abs(drop) <= 0.02


def test_quantize_dynamic_rejects_non_modules():
    with pytest.raises(TypeError, match="model"):
        deploy.quantize_dynamic("mlp")
    with pytest.raises(TypeError, match="model"):
        deploy.count_quantized(None)


def test_rebuild_makes_untrained_layers_of_the_saved_structure_and_refuses_unknown_layers():
    model, report = _compressed_cnn()
    structure = deploy.factorized_structure(report)
    assert structure["conv3"] == {"method": "tucker2", "rank": [32, 16]}
    assert structure["conv2"] == {"method": "cp-fused", "rank": 20}
    dense = optimize.fold_batchnorms(models.build_reference("cnn"))
    rebuilt = deploy.rebuild(dense, structure)
    assert isinstance(dense.conv3, nn.Conv2d)                       # not inplace: untouched
    assert type(rebuilt.conv3).__name__ == "Tucker2Conv2d" and rebuilt.conv3.rank == (32, 16)
    assert rebuilt.conv2.implementation == "fused"
    assert set(rebuilt.state_dict()) == set(model.state_dict())
    with pytest.raises(ValueError, match="structure names 'bn9'"):
        deploy.rebuild(dense, {"bn9": {"method": "svd", "rank": 2}})
    with pytest.raises(TypeError, match="structure must be a dict from factorized_structure"):
        deploy.rebuild(dense, [("conv3", "svd")])
