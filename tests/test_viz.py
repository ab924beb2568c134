"""lrlib.viz: the pure functions under the plots and explorers."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from lrlib import data, viz  # noqa: E402


@pytest.fixture(scope="module")
def few():
    test = data.fashion_mnist("test")
    return test.images[:12], test.labels[:12], test


def test_show_images_grid_and_titles(few):
    images, labels, test = few
    fig = viz.show_images(images, labels, test.class_names, ncols=5)
    axes = fig.axes
    assert len(axes) == 15  # 3 rows of 5, the last 3 empty
    assert [ax.get_title() for ax in axes[:12]] == [test.class_names[int(y)] for y in labels]
    plt.close(fig)


def test_show_images_marks_wrong_predictions_red(few):
    images, labels, test = few
    predictions = labels.clone()
    predictions[0] = (labels[0] + 1) % 10
    fig = viz.show_images(images, labels, test.class_names, predictions=predictions)
    assert fig.axes[0].title.get_color() == "red"
    assert fig.axes[1].title.get_color() == "black"
    assert "→" in fig.axes[0].get_title()
    plt.close(fig)


def test_show_images_rejects_mismatched_input(few):
    images, labels, test = few
    with pytest.raises(ValueError, match="12 images and 3 labels"):
        viz.show_images(images, labels[:3], test.class_names)
    with pytest.raises(ValueError, match="ncols"):
        viz.show_images(images, labels, test.class_names, ncols=0)


def test_predict_returns_argmax_of_softmax_and_restores_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Dropout(0.5))
    model.train()
    x = data.synthetic_input((4, 1, 28, 28))
    predicted, probabilities = viz.predict(model, x)
    assert model.training
    assert torch.allclose(probabilities.sum(1), torch.ones(4))
    model.eval()
    assert torch.equal(predicted, model(x).argmax(1))


def test_prediction_figure_has_a_panel_per_model(few):
    _, _, test = few
    modelset = {"a": nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
                "b": nn.Sequential(nn.Flatten(), nn.Linear(784, 10))}
    fig = viz._draw_prediction(test, modelset, 3)
    assert len(fig.axes) == 3
    assert fig.axes[0].get_title().startswith("#3: ")
    plt.close(fig)


def test_image_explorer_builds_a_slider(few):
    _, _, test = few
    explorer = viz.image_explorer(test, {"m": nn.Sequential(nn.Flatten(), nn.Linear(784, 10))})
    slider = explorer.children[0]
    assert slider.max == len(test) - 1
    slider.value = 5  # redraws without error
    with pytest.raises(ValueError, match="at least one model"):
        viz.image_explorer(test, {})
    plt.close("all")
