"""Shipping a compressed model: save and reload it, export its graph, quantize it.

Introduced in notebook ``07_capstone``, the last step of the course's path: a model that
is faster on the benchmark is only useful once it can be saved, loaded somewhere else and
shown to compute what was measured.

* :func:`save_compressed` / :func:`load_compressed` store a factorized model as its
  ``state_dict`` plus a small JSON record of what rebuilds it: the dense reference model
  it came from, whether BatchNorm was folded, and the method and ranks of every
  factorized layer (:func:`factorized_structure`). Loading rebuilds the
  architecture (:func:`rebuild`, untrained layers from :mod:`lrlib.factorizations`) and
  loads the weights. The folder appears
  only when everything was written (a temporary folder is renamed into place), so an
  interrupted save leaves nothing half-written.
* :func:`export` records the model as a graph with ``torch.export`` (an
  ``ExportedProgram``: operators and weights, no Python classes), with a dynamic batch
  size; :func:`save_exported` / :func:`load_exported` store it in one ``.pt2`` file that
  loads with plain PyTorch, without lrlib. :func:`max_difference` checks that a
  reloaded or exported model computes what the original does.
* :func:`quantize_dynamic` is PyTorch's dynamic int8 quantization
  (``torch.ao.quantization.quantize_dynamic``; Jacob et al. 2018 describe integer
  inference): the weights of every ``nn.Linear`` are stored as 8-bit integers with a
  per-tensor scale, and activations are quantized on the fly for each call. It is
  compression of the bytes, not of the FLOPs, and it touches only Linear layers
  (including both halves of a ``LowRankLinear``); convolutions stay float32.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .factorizations import untrained_like
from .validate import check_type

__all__ = ["factorized_structure", "rebuild", "save_compressed", "load_compressed", "export",
           "save_exported", "load_exported",
           "max_difference", "quantize_dynamic", "count_quantized"]

#: The files :func:`save_compressed` writes into its folder.
WEIGHTS_FILE, RECORD_FILE = "model.pt", "model.json"


def _check_module(name: str, value) -> None:
    check_type(value, name, nn.Module)


def _path(value, name: str) -> Path:
    return Path(check_type(value, name, (str, os.PathLike), "a path (a str or a pathlib.Path)"))


def factorized_structure(report) -> dict:
    """``{layer name: {"method": ..., "rank": ...}}`` for every layer a
    :class:`lrlib.compress.CompressionReport` replaced: what, together with the dense
    architecture, rebuilds the compressed model. Tucker-2 pairs become lists (JSON)."""
    from .compress import CompressionReport

    check_type(report, "report", CompressionReport, "a CompressionReport from compress")
    return {row["layer"]: {"method": row["method"],
                           "rank": list(row["rank"]) if isinstance(row["rank"], tuple) else row["rank"]}
            for row in report.rows if row["rank"] is not None}


def rebuild(dense_model: nn.Module, structure: dict, *, inplace: bool = False) -> nn.Module:
    """Replace the layers named in ``structure`` (from :func:`factorized_structure`) by
    factorized layers of those methods and ranks, untrained, so that the compressed model's
    ``state_dict`` can be loaded into the result. ``dense_model`` must have the architecture
    the compressed model started from (e.g. ``models.build_reference("cnn")``, with
    BatchNorm folded if it was folded before compressing)."""
    _check_module("dense_model", dense_model)
    check_type(structure, "structure", dict, "a dict from factorized_structure")
    target = dense_model if inplace else copy.deepcopy(dense_model)
    modules = dict(target.named_modules())
    for name, entry in structure.items():
        if name not in modules or not isinstance(modules[name], (nn.Linear, nn.Conv2d)):
            raise ValueError(f"structure names {name!r}, which is not a Linear or Conv2d layer of "
                             "dense_model")
        rank = tuple(entry["rank"]) if isinstance(entry["rank"], list) else entry["rank"]
        target.set_submodule(name, untrained_like(modules[name], rank, method=entry["method"]))
    return target


def save_compressed(model: nn.Module, folder, *, base_model: str, structure: dict,
                    batchnorm_folded: bool, extra: dict | None = None, overwrite: bool = False,
                    extra_files: dict | None = None) -> Path:
    """Save a compressed reference model into ``folder``: ``model.pt`` and ``model.json``.

    Parameters
    ----------
    model : nn.Module
        The compressed model (not changed).
    folder : str or Path
        Where to save. It must not exist unless ``overwrite=True``.
    base_model : str
        The name of the reference model it was compressed from (``lrlib.models``).
    structure : dict
        ``deploy.factorized_structure(report)``: the method and ranks per layer.
    batchnorm_folded : bool
        Whether the saved model has its BatchNorm layers folded (``optimize.fold_batchnorms``,
        before or after factorizing): loading then folds the dense reference model before
        rebuilding the factorized layers, so that the state_dict keys match.
    extra : dict, optional
        More JSON-serializable facts to record (accuracy, latency, settings).
    extra_files : dict, optional
        ``{file name: function(path)}``: more files to write into the folder before it
        appears, e.g. a plot.
    """
    from .models import REFERENCE_MODELS

    _check_module("model", model)
    if base_model not in REFERENCE_MODELS:
        raise ValueError(f"base_model must be one of {sorted(REFERENCE_MODELS)}, got {base_model!r}")
    check_type(structure, "structure", dict, "a dict from factorized_structure")
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"folder {folder} exists; pass overwrite=True or choose another folder")
    record = {"base_model": base_model, "batchnorm_folded": bool(batchnorm_folded),
              "layers": structure, **(extra or {})}
    text = json.dumps(record, indent=2) + "\n"        # fails here, before anything is written

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".lrlib-", dir=folder.parent))
    staging.chmod(0o755)
    try:
        torch.save(model.state_dict(), staging / WEIGHTS_FILE)
        (staging / RECORD_FILE).write_text(text)
        for name, write in (extra_files or {}).items():
            write(staging / name)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def load_compressed(folder) -> nn.Module:
    """The model :func:`save_compressed` (or ``lrlib compress``) saved into ``folder``,
    rebuilt and loaded, in eval mode."""
    from .models import build_reference
    from .optimize import fold_batchnorms

    folder = _path(folder, "folder")
    for name in (WEIGHTS_FILE, RECORD_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing: folder must hold what "
                                    "save_compressed wrote")
    record = json.loads((folder / RECORD_FILE).read_text())
    dense = build_reference(record["base_model"])
    if record["batchnorm_folded"]:
        dense = fold_batchnorms(dense)
    model = rebuild(dense, record["layers"], inplace=True)
    model.load_state_dict(torch.load(folder / WEIGHTS_FILE, weights_only=True))
    return model.eval()


def export(model: nn.Module, example_input: torch.Tensor, *, dynamic_batch: bool = True):
    """``torch.export.export`` of ``model`` in eval mode (the caller's model is not changed).

    The result is an ``ExportedProgram``: the operators the model runs and its weights,
    independent of the Python classes that defined it. With ``dynamic_batch=True`` the
    first dimension of the input may differ from ``example_input``'s (at least 2; PyTorch
    specializes sizes 0 and 1, so use a batch of 2 or more as the example). Call
    ``.module()`` on the result to run it.
    """
    _check_module("model", model)
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a torch.Tensor, got {type(example_input).__name__}")
    if dynamic_batch and example_input.shape[0] < 2:
        raise ValueError(f"example_input must have a batch of at least 2 for dynamic_batch=True, "
                         f"got shape {tuple(example_input.shape)}")
    eager = copy.deepcopy(model).eval()
    # one entry per positional input: dimension 0 of the only input is the batch
    shapes = ({0: torch.export.Dim("batch", min=1, max=65536)},) if dynamic_batch else None
    with torch.no_grad():
        return torch.export.export(eager, (example_input,), dynamic_shapes=shapes)


def save_exported(program, path) -> Path:
    """Write an exported program (from :func:`export`) to ``path`` (a ``.pt2`` file)."""
    if not isinstance(program, torch.export.ExportedProgram):
        raise TypeError(f"program must be a torch.export.ExportedProgram, got {type(program).__name__}")
    path = _path(path, "path")
    if path.suffix != ".pt2":
        raise ValueError(f"path must end in .pt2, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path)
    return path


def load_exported(path) -> nn.Module:
    """Load a ``.pt2`` file written by :func:`save_exported` as a runnable module."""
    path = _path(path, "path")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return torch.export.load(path).module()


@torch.no_grad()
def max_difference(model_a, model_b, inputs: torch.Tensor) -> float:
    """The largest absolute difference between the outputs of two models on ``inputs``."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    for name, value in (("model_a", model_a), ("model_b", model_b)):
        if not callable(value):
            raise TypeError(f"{name} must be callable (a module or an exported module), got "
                            f"{type(value).__name__}")
    return (model_a(inputs) - model_b(inputs)).abs().max().item()


def quantize_dynamic(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by a dynamically quantized
    int8 Linear (``torch.ao.quantization.quantize_dynamic``); the caller's model is not
    changed. Weights are stored as ``round(w / s)`` in int8 with one scale ``s`` per
    tensor; each call quantizes its input with a scale computed from that input, runs an
    integer matrix product and returns float32. Only inference; CPU only.

    PyTorch is moving quantization out of ``torch.ao`` into the separate ``torchao``
    package, and recent releases warn that quantized tensors are deprecated; those
    warnings are silenced here, since the course pins PyTorch 2.13, where this works."""
    _check_module("model", model)
    eager = copy.deepcopy(model).eval().cpu()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=UserWarning)
        return torch.ao.quantization.quantize_dynamic(eager, {nn.Linear}, dtype=torch.qint8)


def count_quantized(model: nn.Module) -> int:
    """How many dynamically quantized Linear layers ``model`` holds."""
    _check_module("model", model)
    quantized = torch.ao.nn.quantized.dynamic.Linear
    return sum(isinstance(module, quantized) for module in model.modules())
