"""Plots and interactive explorers for the notebooks.

Introduced in notebook ``00_welcome``. Each explorer is a pure function that computes and
draws (testable without a browser) with a thin ipywidgets layer on top.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
from torch import nn

from .data import ImageSet
from .validate import check_int, check_number, check_tensor, check_type

__all__ = ["show_images", "predict", "image_explorer"]


def show_images(images, labels, class_names, *, predictions=None, ncols: int = 10,
                size: float = 1.3):
    """Draw a grid of grey-scale images titled with their class names.

    Parameters
    ----------
    images : Tensor of shape (N, 1, H, W) or (N, H, W)
    labels : Tensor of shape (N,)
    class_names : sequence of str
    predictions : Tensor of shape (N,), optional
        When given, each title reads ``label / prediction`` and wrong ones are red.
    ncols : int
        Images per row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    check_tensor(images, "images")
    check_tensor(labels, "labels")
    check_type(class_names, "class_names", (list, tuple), "a list or tuple of str")
    if predictions is not None:
        check_tensor(predictions, "predictions")
    check_int(ncols, "ncols", minimum=1)
    check_number(size, "size", low=0, low_open=True)
    if images.ndim == 4:
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, 1, H, W) or (N, H, W), got {tuple(images.shape)}")
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"got {len(images)} images and {len(labels)} labels; need the same, > 0")
    if predictions is not None and len(predictions) != len(images):
        raise ValueError(f"predictions must hold one class per image ({len(images)}), got "
                         f"{len(predictions)}")
    ncols = min(ncols, len(images))
    nrows = math.ceil(len(images) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * 1.25 * nrows),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images):
            continue
        ax.imshow(images[i].cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
        title = class_names[int(labels[i])]
        color = "black"
        if predictions is not None:
            predicted = class_names[int(predictions[i])]
            color = "black" if int(predictions[i]) == int(labels[i]) else "red"
            title = f"{title}\n→ {predicted}"
        ax.set_title(title, fontsize=8, color=color)
    fig.tight_layout()
    return fig


@torch.inference_mode()
def predict(model, images) -> tuple:
    """Class probabilities of ``model`` for a batch: returns ``(predicted_class,
    probabilities)`` with shapes ``(N,)`` and ``(N, classes)``."""
    check_type(model, "model", nn.Module)
    check_tensor(images, "images")
    was_training = model.training
    model.eval()
    try:
        probabilities = torch.softmax(model(images), dim=1)
    finally:
        model.train(was_training)
    return probabilities.argmax(dim=1), probabilities


def _draw_prediction(imageset, models: dict, index: int):
    """The figure behind :func:`image_explorer`: one image and each model's probabilities."""
    image = imageset.images[index : index + 1]
    label = int(imageset.labels[index])
    fig, axes = plt.subplots(1, 1 + len(models), figsize=(3 + 3 * len(models), 2.8))
    axes[0].imshow(image[0, 0].cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
    axes[0].set_title(f"#{index}: {imageset.class_names[label]}")
    axes[0].axis("off")
    for ax, (name, model) in zip(axes[1:], models.items()):
        predicted, probabilities = predict(model, image)
        colors = ["tab:green" if c == label else "tab:gray" for c in range(probabilities.shape[1])]
        ax.barh(imageset.class_names, probabilities[0].numpy(), color=colors)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(f"{name}: {imageset.class_names[int(predicted)]}", fontsize=10)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def image_explorer(imageset, models: dict):
    """A slider over ``imageset``; for each image, every model's class probabilities.

    ``models`` maps a display name to a model. Needs ipywidgets (in a notebook).
    """
    check_type(imageset, "imageset", ImageSet, "an lrlib.data.ImageSet")
    check_type(models, "models", dict, "a dict of name -> model")
    if not models:
        raise ValueError("models must name at least one model, got {}")
    for name, model in models.items():
        check_type(model, f"models[{name!r}]", nn.Module)
    import ipywidgets as widgets
    from IPython.display import display

    output = widgets.Output()
    slider = widgets.IntSlider(value=0, min=0, max=len(imageset) - 1, description="image")

    def redraw(change=None):
        with output:
            output.clear_output(wait=True)
            fig = _draw_prediction(imageset, models, slider.value)
            display(fig)
            plt.close(fig)

    slider.observe(redraw, names="value")
    redraw()
    return widgets.VBox([slider, output])
