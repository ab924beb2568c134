"""Training and evaluation loops: ``fit`` and ``evaluate``.

Introduced in notebook ``00_welcome`` (evaluating the reference models); later notebooks
use ``fit`` to fine-tune compressed models. ``tools/train_reference_models.py`` trains the
reference models with it.

Both loops show a tqdm progress bar. It is switched off when the environment variable
``LRLIB_QUIET`` is set to anything but ``0`` or when ``CI`` is set, so that test runs
(nbval, CI) print nothing that changes from run to run; ``progress=True/False`` overrides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import ImageSet
from .validate import check_bool, check_choice, check_int, check_number, check_tensor, check_type

__all__ = ["fit", "fine_tune", "recalibrate_batchnorm", "evaluate", "EvalResult", "top1_agreement",
           "progress_enabled", "SCHEDULES"]

#: The learning-rate schedules ``fit`` knows.
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class EvalResult:
    """What ``evaluate`` measured: accuracy in ``[0, 1]``, mean cross-entropy loss, and
    the number of examples."""

    accuracy: float
    loss: float
    n: int


def progress_enabled(progress=None) -> bool:
    """Whether to draw a progress bar: ``progress`` if given, else not under
    ``LRLIB_QUIET`` (other than ``"0"``) or ``CI``."""
    if progress is not None:
        return check_bool(progress, "progress")
    quiet = os.environ.get("LRLIB_QUIET", "0") not in ("", "0")
    return not quiet and not os.environ.get("CI")


def _as_loader(data, batch_size: int, shuffle: bool, seed: int):
    """Accept an ImageSet, an ``(inputs, labels)`` pair of tensors, or a DataLoader."""
    if isinstance(data, ImageSet):
        return data.loader(batch_size, shuffle=shuffle, seed=seed)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
        isinstance(t, torch.Tensor) for t in data
    ):
        inputs, labels = data
        if len(inputs) != len(labels):
            raise ValueError(
                f"data has {len(inputs)} inputs but {len(labels)} labels; they must match"
            )
        return ImageSet(inputs, labels, (), "custom", "tensors").loader(
            batch_size, shuffle=shuffle, seed=seed
        )
    if isinstance(data, torch.utils.data.DataLoader):
        return data
    raise TypeError(
        "data must be an lrlib.data.ImageSet, an (inputs, labels) pair of tensors or a "
        f"torch DataLoader, got {type(data).__name__}"
    )


def _model_device(model: nn.Module, device):
    if device is not None:
        return torch.device(device)
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def fit(
    model: nn.Module,
    data,
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    seed: int = 0,
    progress=None,
    device=None,
) -> list:
    """Train ``model`` in place with Adam (Kingma & Ba 2015) on the cross-entropy loss.

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits of shape ``(batch, classes)``; it is trained in place.
    data : ImageSet, (inputs, labels) or DataLoader
        Training data. An ImageSet or a pair of tensors is shuffled each epoch with a
        generator seeded by ``seed``, so the same call gives the same batches.
    epochs, lr, batch_size, weight_decay
        The usual training settings; ``epochs`` and ``batch_size`` positive ints, ``lr``
        positive.
    schedule : {"constant", "cosine"}
        Keep the learning rate at ``lr``, or lower it after every batch along a half
        cosine from ``lr`` to 0 over the whole run (Loshchilov & Hutter 2017).
    seed : int
        Seeds the shuffling and ``torch.manual_seed`` (for dropout and friends).
    progress : bool, optional
        Force the progress bar on or off (see the module docstring for the default).
    device : str or torch.device, optional
        Where to train; defaults to where the model's parameters are.

    Returns
    -------
    list of dict
        One entry per epoch: ``{"epoch", "loss", "accuracy"}`` measured on the training
        batches as they were seen.
    """
    check_type(model, "model", nn.Module)
    check_int(epochs, "epochs", minimum=1)
    check_number(lr, "lr", low=0, low_open=True)
    check_int(batch_size, "batch_size", minimum=1)
    check_number(weight_decay, "weight_decay", low=0)
    check_choice(schedule, "schedule", SCHEDULES)
    check_int(seed, "seed")
    if progress is not None:
        check_bool(progress, "progress")
    loader = _as_loader(data, batch_size, shuffle=True, seed=seed)
    device = _model_device(model, device)
    torch.manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    scheduler = None
    if schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=epochs * len(loader)
        )

    history = []
    for epoch in range(1, epochs + 1):
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", leave=False,
                   disable=not progress_enabled(progress))
        for inputs, labels in bar:
            inputs, labels = inputs.to(device), labels.to(device)
            optimizer.zero_grad()
            logits = model(inputs)
            loss = loss_fn(logits, labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the loss became {loss.item()} in epoch {epoch}; lower lr (now {lr})"
                )
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total_loss += loss.item() * len(labels)
            correct += (logits.argmax(dim=1) == labels).sum().item()
            seen += len(labels)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}")
        history.append({"epoch": epoch, "loss": total_loss / seen, "accuracy": correct / seen})
    model.eval()
    return history


def fine_tune(model: nn.Module, data, *, epochs: int = 1, lr: float = 3e-4,
              batch_size: int = 128, seed: int = 0, progress=None, device=None) -> list:
    """Briefly retrain a compressed model so that it recovers accuracy.

    :func:`fit` with the settings that suit fine-tuning: a learning rate about ten times
    lower than training from scratch, falling along a cosine to zero, and few epochs, so
    that the weights stay close to the factorized starting point.
    """
    return fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, schedule="cosine",
               seed=seed, progress=progress, device=device)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data, *, batch_size: int = 250, device=None) -> nn.Module:
    """Re-estimate the running mean and variance of every BatchNorm in ``model``, in place.

    After a layer is factorized its outputs have slightly different statistics than the
    dense layer's, and the BatchNorm that follows still normalizes with the old ones.
    Running a few thousand training images through the model in training mode, without
    gradients and without changing a weight, replaces them by the new layer's statistics
    (a cumulative average over all batches: ``momentum=None``). Notebook 05 shows that
    on the reference CNN this recovers much of what factorizing lost, at the cost of one
    evaluation; fine-tuning can follow. Like :func:`fine_tune`, this changes ``model``
    (only its BatchNorm buffers); it is returned in eval mode. Only the inputs of
    ``data`` are used; the labels are ignored.
    """
    check_type(model, "model", nn.Module)
    check_int(batch_size, "batch_size", minimum=1)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("model has no BatchNorm layer to recalibrate")
    loader = _as_loader(data, batch_size, shuffle=False, seed=0)
    device = _model_device(model, device)
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    try:
        for inputs, _labels in loader:
            model(inputs.to(device))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.eval()
    return model


@torch.inference_mode()
def evaluate(model: nn.Module, data, *, batch_size: int = 500, progress=None,
             device=None) -> EvalResult:
    """Accuracy and mean cross-entropy loss of ``model`` on ``data``.

    The model is run in ``eval()`` mode (BatchNorm uses its running statistics, dropout is
    off) and put back in the mode it was in.
    """
    check_type(model, "model", nn.Module)
    check_int(batch_size, "batch_size", minimum=1)
    if progress is not None:
        check_bool(progress, "progress")
    loader = _as_loader(data, batch_size, shuffle=False, seed=0)
    device = _model_device(model, device)
    was_training = model.training
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    try:
        for inputs, labels in tqdm(loader, desc="evaluate", leave=False,
                                   disable=not progress_enabled(progress)):
            inputs, labels = inputs.to(device), labels.to(device)
            logits = model(inputs)
            total_loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(dim=1) == labels).sum().item()
            seen += len(labels)
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("data holds no examples")
    return EvalResult(accuracy=correct / seen, loss=total_loss / seen, n=seen)


def top1_agreement(logits_a, logits_b) -> float:
    """The fraction of rows on which two models predict the same class: the mean of
    ``argmax(logits_a[i]) == argmax(logits_b[i])`` over the ``N`` rows of two ``(N, classes)``
    tensors. It needs no labels, so it also works on production traffic (notebook 07,
    Exercise 7.1)."""
    check_tensor(logits_a, "logits_a", ndim=2)
    check_tensor(logits_b, "logits_b", ndim=2)
    if logits_a.shape != logits_b.shape:
        raise ValueError(f"logits_a and logits_b must have the same shape, got "
                         f"{tuple(logits_a.shape)} and {tuple(logits_b.shape)}")
    if logits_a.shape[0] == 0:
        raise ValueError("logits_a must hold at least one row, got 0")
    return (logits_a.argmax(dim=1) == logits_b.argmax(dim=1)).double().mean().item()
