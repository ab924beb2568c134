"""The command line (`python -m lrlib`, installed as `lrlib`): end to end on a small setting."""

import json
import subprocess
import sys

import pytest
import torch

from lrlib import cli, deploy, optimize


def test_models_lists_the_reference_models(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "mlp" in out and "cnn" in out and "0.8930" in out


def test_bench_prints_a_row_per_batch_size(capsys):
    assert cli.main(["bench", "--model", "mlp", "--batch-sizes", "1,4", "--seconds", "0.02"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("mlp")]
    assert [line.split()[1] for line in lines] == ["1", "4"]


def test_bench_keeps_freed_memory_unless_told_not_to(capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(optimize, "keep_freed_memory", lambda: calls.append("called") or True)
    monkeypatch.setattr(optimize, "freed_memory_kept", lambda: bool(calls))
    assert cli.main(["bench", "--model", "mlp", "--batch-sizes", "1", "--seconds", "0.02",
                     "--default-allocator"]) == 0
    assert calls == [] and "allocator: glibc's default settings" in capsys.readouterr().out
    assert cli.main(["bench", "--model", "mlp", "--batch-sizes", "1", "--seconds", "0.02"]) == 0
    assert calls == ["called"]
    assert "allocator: freed memory kept" in capsys.readouterr().out


def test_compress_end_to_end_writes_a_model_that_reloads(tmp_path):
    """As a user runs it: a subprocess, `python -m lrlib compress`, then reload the result."""
    output = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "lrlib", "compress", "--model", "mlp", "--target-speedup", "2",
         "--fine-tune-epochs", "0", "--batch-sizes", "1,8", "--seconds", "0.02", "--test-images", "300",
         "--output", str(output)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "fc1" in done.stdout and "test accuracy" in done.stdout and "measured speedup" in done.stdout
    assert sorted(p.name for p in output.iterdir()) == ["latency.png", "model.json", "model.pt"]
    record = json.loads((output / "model.json").read_text())
    assert set(record["layers"]) == {"fc1", "fc2"}  # the classifier stays dense by default
    model = deploy.load_compressed(output)
    state = torch.load(output / "model.pt", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    from lrlib import data, train
    test = data.fashion_mnist("test")
    accuracy = train.evaluate(model, (test.images[:300], test.labels[:300])).accuracy
    assert accuracy == pytest.approx(record["accuracy"]["fine-tuned"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".lrlib-")]


def test_compress_with_calibration_images_whitens_and_records_it(tmp_path, capsys):
    output = tmp_path / "mlp"
    assert cli.main(["compress", "--model", "mlp", "--target-speedup", "4", "--fine-tune-epochs", "0",
                     "--calibration-images", "500", "--batch-sizes", "2", "--seconds", "0.02",
                     "--test-images", "100", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "calib. err." in printed and "calibration: 2 batch(es)" in printed
    record = json.loads((output / "model.json").read_text())
    assert record["calibration_images"] == 500
    assert all(entry["method"] == "whitened" for entry in record["layers"].values())
    model = deploy.load_compressed(output)                   # rebuilds the whitened layers' structure
    assert set(record["layers"]) == {"fc1", "fc2"} and model.fc1.rank == record["layers"]["fc1"]["rank"]


def test_compress_fine_tunes_the_cnn_and_folds_batchnorm(tmp_path, capsys):
    output = tmp_path / "cnn"
    assert cli.main(["compress", "--model", "cnn", "--target-speedup", "4", "--fine-tune-epochs", "0",
                     "--method", "cp", "--batch-sizes", "2", "--seconds", "0.02", "--test-images", "100",
                     "--output", str(output)]) == 0
    record = json.loads((output / "model.json").read_text())
    assert record["batchnorm_folded"] and set(record["layers"]) == {"conv2", "conv3", "conv4"}
    printed = capsys.readouterr().out          # the library's default scope, with its reasons
    assert "kept dense by default: first conv, 1 input channel(s)" in printed
    assert "kept dense by default: output layer (10 outputs)" in printed
    assert "warning: the model has 4 BatchNorm layer(s)" in printed
    assert all(entry["method"] == "cp-fused" for entry in record["layers"].values())
    assert list(record["accuracy"]) == ["original", "factorized", "BN recalibrated", "fine-tuned"]
    model = deploy.load_compressed(output)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    from lrlib import data, train
    test = data.fashion_mnist("test")
    accuracy = train.evaluate(model, (test.images[:100], test.labels[:100])).accuracy
    assert accuracy == pytest.approx(record["accuracy"]["fine-tuned"])


@pytest.mark.parametrize("argv, message", [
    (["bench", "--model", "resnet"], "--model must be one of"),
    (["bench", "--model", "mlp", "--batch-sizes", "0,2"], "positive ints"),
    (["compress", "--model", "mlp", "--target-speedup", "-1"], "positive number"),
    (["compress", "--model", "mlp", "--target-speedup", "1"], "must be > 1"),
    (["compress", "--model", "mlp", "--method", "qr"], "invalid choice"),
    (["compress", "--model", "mlp", "--fine-tune-epochs", "two"], "int >= 0"),
    (["compress", "--model", "mlp", "--test-images", "0"], "positive int"),
    (["compress", "--model", "mlp", "--lr", "0"], "positive number"),
    (["compress", "--model", "mlp", "--method", "whitened"], "is data-aware: pass --calibration-images N"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_with_status_2_and_write_nothing(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_folder_is_kept_unless_overwrite(tmp_path, capsys):
    output = tmp_path / "taken"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compress", "--model", "mlp", "--output", str(output)])
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert (output / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("command", [[], ["models"], ["bench"], ["compress"]])
def test_help_on_each_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(command + ["--help"])
    assert exit_info.value.code == 0 and "usage: lrlib" in capsys.readouterr().out


def test_include_names_a_layer_of_the_default_scope(tmp_path):
    output = tmp_path / "mlp"
    assert cli.main(["compress", "--model", "mlp", "--target-speedup", "2", "--fine-tune-epochs", "0",
                     "--include", "fc2", "fc3", "--batch-sizes", "1", "--seconds", "0.02",
                     "--test-images", "50", "--output", str(output)]) == 0
    record = json.loads((output / "model.json").read_text())
    assert set(record["layers"]) == {"fc2", "fc3"}
