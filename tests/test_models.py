"""lrlib.models: architectures, the registry and the shipped trained weights."""

import pytest
import torch
from torch import nn

from lrlib import data, models, train


def test_mlp_layers_and_parameter_count():
    mlp = models.MLP()
    assert [name for name, m in mlp.named_children() if isinstance(m, nn.Linear)] == [
        "fc1", "fc2", "fc3"]
    assert mlp.fc1.weight.shape == (1024, 784)
    assert mlp.fc2.weight.shape == (512, 1024)
    assert sum(p.numel() for p in mlp.parameters()) == 1_333_770  # as the docstring says
    assert mlp(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_cnn_layers_parameter_count_and_spatial_sizes():
    cnn = models.CNN()
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 32, (3, 3)), (32, 64, (3, 3)), (64, 128, (3, 3)), (128, 256, (3, 3))]
    assert sum(p.numel() for p in cnn.parameters()) == 390_890
    sizes = {}
    for name, module in cnn.named_children():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(lambda m, i, o, n=name: sizes.__setitem__(n, o.shape[-1]))
    assert cnn(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert sizes == {"conv1": 28, "conv2": 28, "conv3": 14, "conv4": 7}


def test_multiply_adds_of_the_cnn_match_its_docstring():
    cnn = models.CNN()
    spatial = {"conv1": 28 * 28, "conv2": 28 * 28, "conv3": 14 * 14, "conv4": 7 * 7}
    macs = sum(getattr(cnn, name).weight.numel() * pixels for name, pixels in spatial.items())
    assert macs == 288 * 784 + 3 * 14_450_688 == 43_577_856         # "about 43 million"


@pytest.mark.parametrize("builder, kwargs, error", [
    (models.MLP, {"hidden": ()}, ValueError), (models.MLP, {"hidden": (0, 5)}, ValueError),
    (models.MLP, {"hidden": (3.5,)}, TypeError), (models.MLP, {"hidden": 512}, TypeError),
    (models.CNN, {"channels": (8, 8)}, ValueError), (models.CNN, {"channels": (8, -1, 8)}, ValueError)])
def test_bad_widths_raise(builder, kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        builder(**kwargs)


def test_unknown_reference_name_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"one of \('cnn', 'mlp'\), got 'resnet'"):
        models.load_reference("resnet")
    with pytest.raises(TypeError, match=r"one of \('cnn', 'mlp'\), got 3"):
        models.build_reference(3)


@pytest.fixture(scope="module")
def test_set():
    return data.fashion_mnist("test")


@pytest.mark.parametrize("name, floor", [("mlp", 0.80), ("cnn", 0.85)])
def test_shipped_weights_load_offline_and_are_trained(name, floor, test_set):
    model = models.load_reference(name)
    assert not model.training
    result = train.evaluate(model, test_set)
    assert result.accuracy > floor, f"{name} accuracy {result.accuracy:.3f}"
    # The accuracy recorded by tools/train_reference_models.py is what we measure now.
    assert result.accuracy == pytest.approx(models.reference_info(name)["test_accuracy"], abs=0.003)
    untrained = train.evaluate(models.build_reference(name), test_set)
    assert untrained.accuracy < 0.3


def test_load_reference_returns_independent_copies():
    a, b = models.load_reference("mlp"), models.load_reference("mlp")
    with torch.no_grad():
        a.fc1.weight.zero_()
    assert torch.equal(b.fc1.weight, models.load_reference("mlp").fc1.weight)
    assert not torch.equal(a.fc1.weight, b.fc1.weight)


def test_weights_are_a_plain_state_dict_of_tensors():
    state = torch.load(models.REFERENCE_MODELS["cnn"].weights_path, weights_only=True)
    assert set(state) == set(models.CNN().state_dict())
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_missing_or_damaged_weights_say_how_to_rebuild(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "ASSETS", tmp_path)
    with pytest.raises(FileNotFoundError, match="tools/train_reference_models.py"):
        models.load_reference("mlp")
    (tmp_path / "mlp.pt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(RuntimeError, match="tools/train_reference_models.py"):
        models.load_reference("mlp")


def test_load_reference_on_a_device_and_input_shape():
    model = models.load_reference("cnn", device="cpu")
    assert next(model.parameters()).device.type == "cpu"
    assert models.REFERENCE_MODELS["cnn"].input_shape == (1, 28, 28)


def test_efficientnet_lite0_loads_offline_and_takes_scaled_pictures():
    effnet = models.load_efficientnet_lite0()
    assert not effnet.training
    assert sum(p.numel() for p in effnet.parameters()) == 4_652_008
    pictures = torch.tensor([0.0, 127 / 255, 1.0])
    assert torch.allclose(models.efficientnet_input(pictures), torch.tensor([-127 / 128, 0.0, 1.0]))
    with torch.no_grad():
        logits = effnet(models.efficientnet_input(torch.rand(1, 3, 224, 224)))
    assert logits.shape == (1, 1000)
