"""core.extract: ModelOutputs validation and batched runs of timm models."""
import numpy as np
import pytest
import torch

from core.data.shapes import load_shapes
from core.extract import ExtractError, ModelOutputs, preprocess, run
from core.models.zoo import SHAPES_ARCHITECTURES, build_architecture


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    m = build_architecture(SHAPES_ARCHITECTURES["shapes-vit"]).eval()
    m.card = {"name": "tiny", "input_size": [3, 64, 64], "mean": [0.5] * 3, "std": [0.25] * 3,
              "class_names": [f"c{i}" for i in range(6)]}
    return m


def test_outputs_head_reproduces_logits(vit):
    ds = load_shapes(n=37, seed=3)
    calls = []
    out = run(vit, ds, batch_size=16, progress=lambda f, m: calls.append(f))
    assert out.logits.shape == (37, 6) and out.features.shape == (37, vit.embed_dim)
    assert out.logits.dtype == np.float32 and out.features.dtype == np.float32
    np.testing.assert_allclose(out.features @ out.head_weight.T + out.head_bias, out.logits, atol=1e-4)
    np.testing.assert_array_equal(out.preds, out.logits.argmax(1))
    np.testing.assert_array_equal(out.labels, ds.labels)
    assert calls == [16 / 37, 32 / 37, 1.0]


def test_batching_does_not_change_results(vit):
    ds = load_shapes(n=20, seed=1)
    a = run(vit, ds, batch_size=3)
    b = run(vit, ds, batch_size=20)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)


def test_preprocess_resizes_and_normalises():
    img = np.full((2, 32, 32, 3), 255, np.uint8)
    x = preprocess(img, {"input_size": [3, 64, 64], "mean": [0.5] * 3, "std": [0.25] * 3})
    assert x.shape == (2, 3, 64, 64)
    torch.testing.assert_close(x, torch.full_like(x, 2.0))


def test_model_outputs_validation():
    with pytest.raises(ExtractError, match="2-D"):
        ModelOutputs(logits=np.zeros(3), features=None, labels=None, preds=np.zeros(3))
    with pytest.raises(ExtractError, match="features"):
        ModelOutputs(logits=np.zeros((3, 2)), features=np.zeros((4, 5)), labels=None, preds=np.zeros(3))
    with pytest.raises(ExtractError, match="head_weight"):
        ModelOutputs(logits=np.zeros((3, 2)), features=np.zeros((3, 5)), labels=None, preds=np.zeros(3),
                     head_weight=np.zeros((2, 4)))
    out = ModelOutputs(logits=np.eye(3), features=None, labels=np.array([0, 1, -1]), preds=np.array([0, 2, 2]))
    assert out.accuracy() == 0.5  # the -1 label is skipped
    sub = out.subset([0, 2])
    assert len(sub) == 2 and list(sub.labels) == [0, -1]


def test_image_model_on_table_is_a_clear_error(vit):
    from core.data.dataset import Dataset

    table = Dataset(name="t", kind="table", labels=np.zeros(3, np.int64), class_names=["a"])
    with pytest.raises(ExtractError, match="needs images"):
        run(vit, table)
