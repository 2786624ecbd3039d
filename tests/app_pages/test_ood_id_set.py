"""The OOD page's ID set choice: the workspace's data or the user's own upload (fit stays on the training data)."""
import io
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
from ood_npz import npz_outputs
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 600


def _npz(n, ood=False, seed=0) -> bytes:
    return npz_outputs(n, 12, ood=ood, seed=seed)


def _page(workspace, uploads=None):
    at = AppTest.from_file(str(ROOT / "pages/1_OOD_detection.py"), default_timeout=TIMEOUT)
    if uploads:
        at.session_state["_uploads"] = OrderedDict(uploads)
    at.session_state["workspace"] = workspace
    at.run()
    assert not at.exception, at.exception
    return at


NPZ_WORKSPACE = {"model": {"kind": "none"}, "data": {"kind": "upload", "filename": "id.npz", "digest": "idset-npz",
                                                      "options": {}}}


def test_uploaded_id_set_is_evaluated_and_the_workspace_is_the_fit_set():
    at = _page(NPZ_WORKSPACE, {"idset-npz": ("id.npz", _npz(400))})
    at.multiselect(key="ood_detectors").set_value(["msp", "energy", "mahalanobis"])
    at.file_uploader(key="ood_upload").set_value(("far.npz", _npz(120, ood=True, seed=1), "application/octet-stream"))
    at.radio(key="ood_id_choice").set_value("upload").run()
    # no ID set uploaded yet: the page says so and Run waits for it
    assert any("Upload your ID set" in i.value for i in at.info)
    assert at.button(key="ood_run").disabled
    at.file_uploader(key="ood_id_upload").set_value(("mine.npz", _npz(150, seed=5), "application/octet-stream"))
    at.run()
    assert not at.button(key="ood_run").disabled
    at.button(key="ood_run").click().run()
    assert not at.exception, at.exception
    result = at.session_state["ood_result"]
    assert not result.errors, result.errors
    assert len(result.scores["msp"]["ID"]) == 150  # the uploaded ID set, whole
    assert result.id_spec["filename"] == "mine.npz" and result.id_index is None
    # Mahalanobis was fitted on all 400 workspace samples (class means of the workspace, not of the upload)
    assert result.table.set_index("detector").loc["mahalanobis", "auroc"] > 0.9


def test_a_broken_id_upload_gets_a_message_and_keeps_earlier_results():
    at = _page(NPZ_WORKSPACE, {"idset-npz": ("id.npz", _npz(400))})
    at.multiselect(key="ood_detectors").set_value(["msp", "energy"])
    at.file_uploader(key="ood_upload").set_value(("far.npz", _npz(120, ood=True, seed=1), "application/octet-stream"))
    at.run()
    at.button(key="ood_run").click().run()
    first = at.session_state["ood_result"]
    at.radio(key="ood_id_choice").set_value("upload").run()
    at.file_uploader(key="ood_id_upload").set_value(("bad.npz", b"not an npz file", "application/octet-stream"))
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception, at.exception
    assert at.error, "a broken ID upload must be explained"
    assert at.session_state["ood_result"] is first


def _zip_of_shapes(n=36) -> bytes:
    import core.data as data

    ds = data.load("shapes", split="val", n=n, seed=7)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, (img, y) in enumerate(zip(ds.images, ds.labels)):
            png = io.BytesIO()
            Image.fromarray(img).save(png, format="PNG")
            zf.writestr(f"{ds.class_names[y]}/{i:03d}.png", png.getvalue())
    return buf.getvalue()


def test_shapes_model_on_an_uploaded_image_folder_as_id(monkeypatch):
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    shown = []  # the bytes of every image the page displays (AppTest only exposes their URLs)
    original = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, mimetype, kind, filename=None):
        if str(mimetype).startswith("image/"):
            shown.append(path_or_data)
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    at = _page({"model": {"kind": "zoo", "name": "shapes-vit"},
                "data": {"kind": "builtin", "name": "shapes", "split": "test", "n": 200, "seed": 0, "shift": None}})
    at.number_input(key="ood_n_fit").set_value(300)
    at.multiselect(key="ood_detectors").set_value(["msp", "energy"])
    at.multiselect(key="ood_sets").set_value(["far: noise"])
    at.radio(key="ood_id_choice").set_value("upload").run()
    zipped = _zip_of_shapes()
    at.file_uploader(key="ood_id_upload").set_value(("mine.zip", zipped, "application/zip"))
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception, at.exception
    result = at.session_state["ood_result"]
    assert not result.errors, result.errors
    assert len(result.scores["energy"]["ID"]) == 36
    assert result.table.set_index("detector").loc["energy", "auroc"] > 0.95  # Shapes images vs noise
    # the gallery shows the uploaded ID images themselves (the most in-distribution-looking are ID samples),
    # not the workspace's test images at the same indices
    from core.data.uploads import load_image_zip

    captions = [c for im in at.image for c in im.captions]
    assert any(c.startswith("ID · ") for c in captions), captions
    uploaded = load_image_zip(zipped).images.astype(float)
    decoded = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), float) for b in shown if isinstance(b, bytes)]
    matches = [img for img in decoded if img.shape == uploaded.shape[1:]
               and np.abs(uploaded - img).mean(axis=(1, 2, 3)).min() < 8]
    assert matches, f"none of the {len(decoded)} shown images is an uploaded ID image"
    # the per-class breakdown uses the upload's own folders as classes
    eval_out = result.id_outputs
    assert set(eval_out.class_names) <= {"circle", "square", "triangle", "star", "plus", "bar"}


def test_a_single_class_table_is_a_valid_id_set():
    """Deployment data of one class: training needs two classes, an evaluation set does not."""
    import core.data as data

    at = _page({"model": {"kind": "tabular", "name": "logistic-regression", "seed": 0},
                "data": {"kind": "builtin", "name": "breast-cancer", "split": "test", "n": None, "seed": 0,
                         "shift": None}})
    at.multiselect(key="ood_detectors").set_value(["msp", "energy", "mahalanobis"])
    test = data.load("breast-cancer", split="test")
    one = test.frame[test.frame[test.label] == 1].copy()
    one[test.label] = test.class_names[1]  # a user's file names its classes ("benign")
    at.radio(key="ood_id_choice").set_value("upload").run()
    at.file_uploader(key="ood_id_upload").set_value(("benign.csv", one.to_csv(index=False).encode(), "text/csv"))
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception, at.exception
    result = at.session_state["ood_result"]
    assert not result.errors, result.errors
    assert len(result.scores["mahalanobis"]["ID"]) == len(one)
    eval_out = result.id_outputs
    assert set(eval_out.labels) == {1}  # matched to the model's own class by name
