"""The shipped zoo: cards, size budget, accuracy on fresh Shapes images, and a reproducible recipe."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import core.models as models
from core.data.shapes import ID_CLASSES, load_shapes
from core.extract import run
from core.models.registry import ASSETS
from core.models.train_zoo import train

pytestmark = pytest.mark.slow


def test_zoo_lists_both_models_and_fits_the_size_budget():
    assert {"shapes-vit", "shapes-cnn"} <= set(models.available())
    total = sum(p.stat().st_size for p in ASSETS.rglob("*.safetensors"))
    assert total <= 30 * 2**20, f"shipped weights are {total / 2**20:.1f} MB"


@pytest.mark.parametrize("name", ["shapes-vit", "shapes-cnn"])
def test_card_is_complete(name):
    card = json.loads((ASSETS / name / "card.json").read_text())
    for key in ("architecture", "input_size", "mean", "std", "class_names", "test_accuracy", "training"):
        assert key in card, key
    assert card["class_names"] == ID_CLASSES
    assert card["training"]["seed"] == 0 and "script" in card["training"]
    assert card["test_accuracy"] >= 0.95


def test_vit_is_a_timm_vision_transformer_with_64_patch_tokens():
    from timm.models.vision_transformer import VisionTransformer

    m = models.load("shapes-vit")
    assert isinstance(m, VisionTransformer)
    assert m.patch_embed.num_patches >= 64 and m.num_prefix_tokens == 1
    tokens = m.forward_features(torch.zeros(1, 3, 64, 64))
    assert tokens.shape[1] == m.patch_embed.num_patches + 1


@pytest.mark.parametrize("name", ["shapes-vit", "shapes-cnn"])
def test_accuracy_on_freshly_generated_images(name):
    # a seed never used for the card's test set or for training batches
    ds = load_shapes(split="test", n=600, seed=2024)
    out = run(models.load(name), ds, batch_size=200)
    assert out.accuracy() >= 0.95


def test_training_recipe_is_deterministic(tmp_path: Path):
    a = train("shapes-cnn", tmp_path / "a", steps=2, threads=1, log=lambda s: None, evaluate_n=50, batch=16)
    b = train("shapes-cnn", tmp_path / "b", steps=2, threads=1, log=lambda s: None, evaluate_n=50, batch=16)
    assert a["test_accuracy"] == b["test_accuracy"]
    from safetensors.numpy import load_file

    wa = load_file(str(tmp_path / "a" / "shapes-cnn" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "shapes-cnn" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])


def test_block_shuffled_outliers_keep_the_pixels_and_lose_the_layout():
    from core.models.train_zoo import shuffled_block_outliers

    imgs = load_shapes(split="train", n=6, seed=3).images
    a = shuffled_block_outliers(imgs, np.random.default_rng(0), blocks=(16,))
    b = shuffled_block_outliers(imgs, np.random.default_rng(0), blocks=(16,))
    np.testing.assert_array_equal(a, b)  # seeded
    for src, out in zip(imgs, a):
        # every 16×16 block of the output is a block of the source turned by a multiple of 90°
        src_blocks = [src[i:i + 16, j:j + 16] for i in range(0, 64, 16) for j in range(0, 64, 16)]
        keys = sorted(min(np.rot90(blk, k).tobytes() for k in range(4)) for blk in src_blocks)
        out_keys = sorted(min(np.rot90(out[i:i + 16, j:j + 16], k).tobytes() for k in range(4))
                          for i in range(0, 64, 16) for j in range(0, 64, 16))
        assert keys == out_keys
    assert not np.array_equal(a, imgs)
    with pytest.raises(ValueError, match="does not divide"):
        shuffled_block_outliers(imgs, np.random.default_rng(0), blocks=(24,))


def test_outlier_exposure_stage_is_deterministic_and_changes_the_weights(tmp_path: Path):
    kw = dict(init_dir=ASSETS / "shapes-vit", oe_steps=2, threads=1, log=lambda s: None, evaluate_n=50, batch=8)
    a = train("shapes-vit", tmp_path / "a", **kw)
    train("shapes-vit", tmp_path / "b", **kw)
    assert a["training"]["oe_steps"] == 2 and a["training"]["outlier_exposure"]
    from safetensors.numpy import load_file

    wa = load_file(str(tmp_path / "a" / "shapes-vit" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "shapes-vit" / "model.safetensors"))
    w0 = load_file(str(ASSETS / "shapes-vit" / "model.safetensors"))
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])
    assert any(not np.array_equal(wa[k], w0[k]) for k in wa)
