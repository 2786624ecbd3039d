"""AppTest of the home page (app.py): the default workspace, switching dataset, and uploads."""
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]

TIMEOUT = 240


@pytest.fixture()
def home():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def charts(at):
    return at.get("plotly_chart")


def test_default_workspace_is_shapes_vit_on_shapes(home):
    assert home.session_state["workspace"]["model"] == {"kind": "zoo", "name": "shapes-vit"}
    assert home.session_state["workspace"]["data"]["name"] == "shapes"
    assert metric(home, "Samples") == "500"
    acc = float(metric(home, "Accuracy on this data").rstrip("%")) / 100
    assert acc >= 0.9
    assert len(home.get("imgs")) >= 1 or len(home.get("image")) >= 1
    specs = [c.proto.spec for c in charts(home)]
    assert any('"heatmap"' in s for s in specs), "confusion matrix missing"
    assert any('"bar"' in s for s in specs), "class balance missing"
    assert not home.error


def test_switch_dataset_to_digits_needs_matching_model(home):
    home.selectbox(key="home_data_name").set_value("digits").run()
    home.button(key="home_apply").click().run()
    # the shapes ViT has 6 classes but runs on digit images: allowed, accuracy is simply low
    assert not home.exception
    assert home.session_state["workspace"]["data"]["name"] == "digits"


def test_switch_to_table_and_tabular_model(home):
    home.selectbox(key="home_data_name").set_value("wine").run()
    home.selectbox(key="home_model_tab").set_value("logistic-regression").run()
    home.button(key="home_apply").click().run()
    assert not home.exception
    ws = home.session_state["workspace"]
    assert ws["data"]["name"] == "wine" and ws["model"]["kind"] == "tabular"
    acc = float(metric(home, "Accuracy on this data").rstrip("%")) / 100
    assert acc > 0.85


def _zip_of_images(bad: bool = False) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buf, "w") as z:
        for cls in ("cats", "dogs"):
            for i in range(3):
                img = Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
                b = io.BytesIO()
                img.save(b, format="PNG")
                z.writestr(f"{cls}/{i}.png", b.getvalue())
        if bad:
            z.writestr("../evil.png", b"x")
    return buf.getvalue()


def test_upload_image_zip(home):
    home.radio(key="home_data_source").set_value("Upload").run()
    home.file_uploader(key="home_data_upload").set_value(("pets.zip", _zip_of_images(), "application/zip")).run()
    home.button(key="home_apply").click().run()
    assert not home.exception
    assert home.session_state["workspace"]["data"]["kind"] == "upload"
    assert metric(home, "Samples") == "6"


def test_bad_upload_keeps_previous_workspace(home):
    before = dict(home.session_state["workspace"])
    home.radio(key="home_data_source").set_value("Upload").run()
    home.file_uploader(key="home_data_upload").set_value(("evil.zip", _zip_of_images(bad=True), "application/zip")).run()
    home.button(key="home_apply").click().run()
    assert not home.exception
    assert any("previous one is kept" in e.value for e in home.error)
    assert home.session_state["workspace"] == before
    assert metric(home, "Samples") == "500"


def test_upload_pickle_checkpoint_is_refused(home):
    import pickle

    home.radio(key="home_model_source").set_value("Local checkpoint").run()
    home.text_input(key="home_model_timm").set_value("resnet10t").run()
    payload = pickle.dumps({"a": 1})
    home.file_uploader(key="home_model_ckpt").set_value(("model.pth", payload, "application/octet-stream")).run()
    home.button(key="home_apply").click().run()
    assert not home.exception
    assert home.error, "a clear error is expected"
    assert home.session_state["workspace"]["model"]["kind"] == "zoo"


def _png_bytes(size=(12, 12)) -> bytes:
    b = io.BytesIO()
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(b, format="PNG")
    return b.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content in entries.items():
            z.writestr(name, content)
    return buf.getvalue()


BAD_DATA_UPLOADS = {
    "absolute path": ("abs.zip", _zip({"/etc/cats/a.png": _png_bytes()})),
    "truncated image": ("trunc.zip", _zip({"cats/a.png": _png_bytes()[:40], "dogs/b.png": _png_bytes()})),
    "not images": ("text.zip", _zip({"cats/a.txt": b"hello", "dogs/b.txt": b"world"})),
    "pickle disguised as npz": ("data.npz", b"\x80\x04\x95" + b"\x00" * 20),
    "npz with NaN": ("out.npz", None),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA_UPLOADS))
def test_bad_data_uploads_get_a_message_and_keep_the_workspace(home, case):
    filename, content = BAD_DATA_UPLOADS[case]
    if content is None:
        buf = io.BytesIO()
        np.savez(buf, logits=np.array([[np.nan, 1.0], [0.0, 1.0]]))
        content = buf.getvalue()
    before = dict(home.session_state["workspace"])
    home.radio(key="home_data_source").set_value("Upload").run()
    home.file_uploader(key="home_data_upload").set_value((filename, content, "application/octet-stream")).run()
    if not home.button(key="home_apply").disabled:
        home.button(key="home_apply").click().run()
    assert not home.exception
    assert home.error, f"{case}: a clear error message is expected"
    assert home.session_state["workspace"] == before
    assert metric(home, "Samples") == "500"


def test_csv_without_usable_label_gets_a_message(home):
    home.selectbox(key="home_data_name").set_value("wine").run()  # any table workspace
    home.radio(key="home_data_source").set_value("Upload").run()
    csv = b"id,value\n" + b"".join(f"{i},{i * 0.5}\n".encode() for i in range(30))
    home.file_uploader(key="home_data_upload").set_value(("t.csv", csv, "text/csv")).run()
    home.button(key="home_apply").click().run()
    assert not home.exception
    assert home.error
    assert home.session_state["workspace"]["data"]["name"] == "shapes"


@pytest.mark.parametrize("case", ["truncated", "mismatch"])
def test_bad_checkpoints_get_a_message(home, case):
    import torch
    from safetensors.torch import save

    home.radio(key="home_model_source").set_value("Local checkpoint").run()
    home.text_input(key="home_model_timm").set_value("resnet10t").run()
    state = {"fc.weight": torch.zeros(6, 512), "unrelated.weight": torch.zeros(3)}
    payload = save(state)
    if case == "truncated":
        payload = payload[: len(payload) // 2]
    home.file_uploader(key="home_model_ckpt").set_value(("m.safetensors", payload, "application/octet-stream")).run()
    home.button(key="home_apply").click().run()
    assert not home.exception
    message = " ".join(e.value for e in home.error)
    assert ("truncated" in message) if case == "truncated" else ("missing" in message and "unexpected" in message)
    assert home.session_state["workspace"]["model"] == {"kind": "zoo", "name": "shapes-vit"}


def test_timm_architecture_random_init_and_pretrained_offline(home):
    home.radio(key="home_model_source").set_value("timm architecture").run()
    home.text_input(key="home_model_timm").set_value("resnet10t").run()
    home.button(key="home_apply").click().run()
    assert not home.exception and not home.error
    assert home.session_state["workspace"]["model"]["name"] == "resnet10t"
    # pretrained hub weights cannot be fetched offline: a message that says how to provide a file instead
    home.checkbox(key="home_model_pretrained").check().run()
    home.button(key="home_apply").click().run()
    assert not home.exception
    message = " ".join(e.value for e in home.error)
    assert "checkpoint" in message.lower() or "weights" in message.lower(), message
    assert home.session_state["workspace"]["model"]["pretrained"] is False


@pytest.mark.parametrize("case,limits", [
    ("too many files", {"max_files": 3}),
    ("too large uncompressed", {"max_uncompressed": 50_000}),
    ("decompression bomb", {"max_pixels": 10_000}),
])
def test_zip_limits_in_the_ui(home, monkeypatch, case, limits):
    """The zip limits, lowered so that small files hit them, give a message and keep the workspace."""
    import core.data.uploads as uploads

    defaults = dict(zip(["image_size", "max_files", "max_uncompressed", "max_pixels"], uploads.load_image_zip.__defaults__))
    defaults.update(limits)
    monkeypatch.setattr(uploads.load_image_zip, "__defaults__", tuple(defaults.values()))
    rng = np.random.default_rng(1)
    big = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(big, format="PNG")
    entries = {f"{c}/{i}.png": big.getvalue() for c in ("a", "b") for i in range(2)}
    before = dict(home.session_state["workspace"])
    home.radio(key="home_data_source").set_value("Upload").run()
    home.file_uploader(key="home_data_upload").set_value((f"{case}.zip", _zip(entries), "application/zip")).run()
    home.button(key="home_apply").click().run()
    assert not home.exception
    assert home.error, case
    assert home.session_state["workspace"] == before
