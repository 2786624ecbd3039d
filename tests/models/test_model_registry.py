"""core.models registry: zoo folders, timm by name, checkpoints (safe loading), offline pretrained."""
from __future__ import annotations

import io
import json
import os
import pickle

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save, save_file

import core.models as models
from core.models import ModelError, load, load_from_dir
from core.models.zoo import SHAPES_ARCHITECTURES, build_architecture

TINY = "resnet10t"
CARD_KEYS = {"name", "class_names", "input_size", "mean", "std", "test_accuracy", "source"}


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _zoo_folder(tmp_path, name="shapes-cnn"):
    torch.manual_seed(0)
    model = build_architecture(SHAPES_ARCHITECTURES[name])
    folder = tmp_path / name
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    card = {"name": name, "architecture": SHAPES_ARCHITECTURES[name], "input_size": [3, 64, 64],
            "mean": [0.5] * 3, "std": [0.25] * 3, "class_names": [f"c{i}" for i in range(6)], "test_accuracy": 0.5}
    (folder / "card.json").write_text(json.dumps(card))
    return folder, model


def _state_bytes_pth(state, wrap=None) -> bytes:
    buf = io.BytesIO()
    torch.save(state if wrap is None else {wrap: state, "epoch": 3}, buf)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["shapes-cnn", "shapes-vit"])
def test_zoo_folder_round_trip(tmp_path, name):
    folder, original = _zoo_folder(tmp_path, name)
    for model in (load_from_dir(folder), load(str(folder))):
        assert not model.training
        assert CARD_KEYS <= set(model.card)
        assert model.card["test_accuracy"] == 0.5 and model.card["source"].startswith("folder")
        own = model.state_dict()
        assert set(own) == set(original.state_dict())
        assert all(torch.equal(own[k], v) for k, v in original.state_dict().items())


def test_shipped_zoo_names_resolve(tmp_path, monkeypatch):
    from core.models import registry

    _zoo_folder(tmp_path, "shapes-cnn")
    monkeypatch.setattr(registry, "ASSETS", tmp_path)
    assert models.available() == ["shapes-cnn"]
    model = load("shapes-cnn")
    assert model.card["source"].startswith("shipped zoo") and model.card["class_names"][0] == "c0"


def test_folder_without_card_is_refused(tmp_path):
    with pytest.raises(ModelError, match="card.json"):
        load(str(tmp_path))


def test_timm_names_filter():
    names = models.timm_names("resnet10")
    assert TINY in names and all("resnet10" in n for n in names)
    assert "vit_tiny_patch16_224" in models.timm_names("vit_tiny*")


def test_timm_random_init_card():
    model = load(TINY, num_classes=3)
    assert not model.training
    card = model.card
    assert CARD_KEYS <= set(card)
    assert card["class_names"] == ["class 0", "class 1", "class 2"]
    assert card["input_size"] == [3, 176, 176] and card["test_accuracy"] is None
    assert card["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert "random init" in card["source"]


def test_vit_input_size_override():
    model = load("vit_tiny_patch16_224", num_classes=4, input_size=32, class_names=list("abcd"))
    assert model.card["input_size"] == [3, 32, 32] and model.card["class_names"] == list("abcd")
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 4)


def test_cnn_input_size_override_without_img_size_argument():
    model = load(TINY, num_classes=2, input_size=(48, 48))
    assert model.card["input_size"] == [3, 48, 48]


@pytest.mark.parametrize("fmt", ["safetensors", "pth", "pth-wrapped", "pth-module-prefix", "path"])
def test_checkpoint_upload_reproduces_outputs(tmp_path, fmt):
    torch.manual_seed(1)
    source = timm.create_model(TINY, num_classes=3).eval()
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    name = "weights.safetensors" if fmt == "safetensors" else "weights.pth"
    if fmt == "safetensors":
        data = save(state)
    elif fmt == "pth":
        data = _state_bytes_pth(state)
    elif fmt == "pth-wrapped":
        data = _state_bytes_pth(state, wrap="model_state_dict")
    elif fmt == "pth-module-prefix":
        data = _state_bytes_pth({f"module.{k}": v for k, v in state.items()}, wrap="state_dict")
    else:
        data = tmp_path / "weights.safetensors"
        save_file(state, str(data))
        name = None
    # num_classes is inferred from the checkpoint's classifier (fc.weight has 3 rows, timm's default is 1000)
    model = load(TINY, checkpoint=data, checkpoint_name=name)
    assert len(model.card["class_names"]) == 3 and "checkpoint" in model.card["source"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))


def test_checkpoint_format_sniffed_without_name():
    torch.manual_seed(2)
    source = timm.create_model(TINY, num_classes=2)
    state = source.state_dict()
    for data in (save({k: v.contiguous() for k, v in state.items()}), _state_bytes_pth(state)):
        model = load(TINY, checkpoint=data)
        assert torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])


@pytest.mark.parametrize("name", ["w.safetensors", "w.pth"])
def test_truncated_checkpoint(name):
    state = timm.create_model(TINY, num_classes=2).state_dict()
    data = save({k: v.contiguous() for k, v in state.items()}) if name.endswith("safetensors") else _state_bytes_pth(state)
    with pytest.raises(ModelError, match="truncated or not a safetensors/torch file"):
        load(TINY, checkpoint=data[: len(data) // 2], checkpoint_name=name)
    with pytest.raises(ModelError, match="truncated or not a safetensors/torch file"):
        load(TINY, checkpoint=b"not a checkpoint at all", checkpoint_name=name)


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("container", ["torch.save", "torch.save-inside-state", "pickle"])
def test_pickle_with_code_is_never_executed(tmp_path, container):
    marker = tmp_path / "pwned"
    if container == "pickle":
        data = pickle.dumps(_Payload(marker), protocol=2)
    else:
        buf = io.BytesIO()
        payload = (_Payload(marker) if container == "torch.save"
                   else {"fc.weight": torch.zeros(2, 2), "evil": _Payload(marker)})
        torch.save(payload, buf)
        data = buf.getvalue()
    with pytest.raises(ModelError, match="never unpickled"):
        load(TINY, checkpoint=data, checkpoint_name="evil.pth")
    assert not marker.exists()


def test_mismatched_checkpoint_lists_keys():
    other = timm.create_model("resnet18", num_classes=2).state_dict()
    other = {k: v for k, v in other.items() if not k.startswith("layer1")}
    other["extra.bias"] = torch.zeros(3)
    with pytest.raises(ModelError) as err:
        load(TINY, num_classes=2, checkpoint=save({k: v.contiguous() for k, v in other.items()}),
             checkpoint_name="x.safetensors")
    text = str(err.value)
    assert "missing keys" in text and "unexpected keys" in text and "extra.bias" in text


def test_head_size_mismatch_asks_for_number_of_classes():
    state = timm.create_model(TINY, num_classes=5).state_dict()
    with pytest.raises(ModelError, match="Set the number of classes to 5"):
        load(TINY, num_classes=3, checkpoint=_state_bytes_pth(state), checkpoint_name="w.pt")


def test_unknown_timm_name_suggests_close_names():
    with pytest.raises(ModelError, match="Did you mean.*resnet10t"):
        load("resnet10tt")


def test_pretrained_offline_gives_download_hint(monkeypatch):
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    seen = {}

    def offline_create_model(name, pretrained=False, **kwargs):
        seen["env"] = os.environ.get("HF_HUB_OFFLINE")
        seen["const"] = constants.HF_HUB_OFFLINE
        assert pretrained
        raise LocalEntryNotFoundError("Cannot find the requested files in the local cache and outgoing traffic is disabled.")

    before = (os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE)
    monkeypatch.setattr(timm, "create_model", offline_create_model)
    with pytest.raises(ModelError) as err:
        load(TINY, pretrained=True)
    text = str(err.value)
    assert "offline" in text and f"timm.create_model('{TINY}', pretrained=True)" in text
    assert f"safetensors.torch.save_file(model.state_dict(), '{TINY}.safetensors')" in text
    assert seen == {"env": "1", "const": True}  # the hub was told to fail fast
    assert (os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE) == before  # and restored


def test_model_outputs_from_loaded_timm_model():
    from core.data.dataset import Dataset
    from core.extract import run

    model = load(TINY, num_classes=3, input_size=32)
    rng = np.random.default_rng(0)
    ds = Dataset(name="noise", kind="image", labels=np.array([0, 1, 2, -1]), class_names=["a", "b", "c"],
                 images=rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8))
    out = run(model, ds, batch_size=2)
    assert out.logits.shape == (4, 3) and out.features.shape[0] == 4 and out.head_weight.shape[0] == 3
    np.testing.assert_allclose(out.features @ out.head_weight.T + out.head_bias, out.logits, rtol=1e-4, atol=1e-4)
