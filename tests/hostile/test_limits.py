"""The checks behind the hostile-input refusals, against closed forms and independent references.

PNG scanline sizes against what a real encoder wrote, Adam7 passes against the pixel count they
partition, JSON nesting depth against a recursive count, the vectorised label-candidate search
against its per-column definition, and every limit exactly at and one past its boundary.
"""
from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.data import DataError, load_image_zip, load_outputs_npz, load_table
from core.data.uploads import (
    _ADAM7,
    _png_raw_size,
    _png_shortfall,
    read_table_columns,
    table_label_candidates,
)
from core.models import ModelError, load, read_checkpoint
from core.models.registry import _json_depth
from tests.hostile import make_corpus as mc

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------------------------------------
# PNG pixel data


def _idat(content: bytes) -> bytes:
    pos, data = 8, b""
    while pos < len(content):
        length, kind = struct.unpack(">I4s", content[pos:pos + 8])
        if kind == b"IDAT":
            data += content[pos + 8:pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(data)


def _ihdr(content: bytes) -> tuple[int, ...]:
    return struct.unpack(">IIBBBBB", content[16:29])


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"])
@pytest.mark.parametrize("size", [(1, 1), (7, 3), (13, 8), (64, 5)])
def test_png_raw_size_matches_what_pillow_writes(mode, size):
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    content = buf.getvalue()
    w, h, depth, colour, _, _, interlace = _ihdr(content)
    assert _png_raw_size(w, h, depth, colour, interlace) == len(_idat(content))
    assert _png_shortfall(content) is None


@given(w=st.integers(1, 300), h=st.integers(1, 300))
@FAST
def test_adam7_passes_partition_the_pixels(w, h):
    # The 7 passes visit every pixel exactly once, so their sizes add up to w × h; with 8-bit
    # greyscale each row of a pass is one filter byte plus one byte per pixel.
    pixels = rows = 0
    for x0, y0, dx, dy in _ADAM7:
        pw = (w - x0 + dx - 1) // dx if w > x0 else 0
        ph = (h - y0 + dy - 1) // dy if h > y0 else 0
        pixels += pw * ph
        rows += ph if pw else 0
    assert pixels == w * h
    assert _png_raw_size(w, h, 8, 0, 1) == w * h + rows


@pytest.mark.parametrize("rows", [0, 1, 31])
def test_png_shortfall_measures_the_missing_rows(rows):
    short = mc.png_short(32, 32, rows)
    need, got = _png_shortfall(short)
    assert need == 32 * (1 + 3 * 32) and got == rows * (1 + 3 * 32)
    assert _png_shortfall(mc.png_short(32, 32, 32)) is None


def test_short_png_refused_but_a_full_one_kept():
    with pytest.raises(DataError, match=r"'a/s\.png' in 'p\.zip' is truncated: .* only 50%"):
        load_image_zip(mc.make_zip({"a/s.png": mc.png_short(8, 8, 4), "b/ok.png": mc.png()}), filename="p.zip")
    ds = load_image_zip(mc.make_zip({"a/s.png": mc.png_short(8, 8, 8), "b/ok.png": mc.png()}), image_size=8)
    assert (ds.images[0] == 0xC8).all()


# ---------------------------------------------------------------------------------------------
# pixel budget of an image zip


def _jpeg(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (10, 20, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def test_pixel_budget_boundary():
    entries = {"a/1.png": mc.png(100, 50), "b/2.png": mc.png(30, 20)}
    budget = 100 * 50 + 30 * 20
    ds = load_image_zip(mc.make_zip(entries), image_size=8, max_total_pixels=budget)
    assert ds.params["decoded_pixels"] == budget
    with pytest.raises(DataError, match=rf"hold {budget:,} pixels in all .*'a/1\.png', 5,000\); at most {budget - 1:,}"):
        load_image_zip(mc.make_zip(entries), image_size=8, max_total_pixels=budget - 1)


def test_jpeg_costs_its_reduced_decoding_size():
    # JPEG decodes at 1/8 scale when the target (64) fits: 2000×2000 costs 250×250 pixels.
    ds = load_image_zip(mc.make_zip({"a/1.jpg": _jpeg(2000), "b/2.png": mc.png(10, 10)}), image_size=64)
    assert ds.params["decoded_pixels"] == 250 * 250 + 100


def test_wrapper_folders_are_skipped_but_a_single_class_is_kept():
    ds = load_image_zip(mc.make_zip({"a/b/c/cats/1.png": mc.png(), "a/b/c/dogs/2.png": mc.png()}), image_size=8)
    assert ds.class_names == ["cats", "dogs"] and ds.params["wrapper_folder"] == "a/b/c"
    assert any("'a/b/c'" in note for note in ds.params["notes"])
    one = load_image_zip(mc.make_zip({"a/b/cats/1.png": mc.png(), "a/b/cats/2.png": mc.png()}), image_size=8)
    assert one.class_names == ["cats"] and one.params["wrapper_folder"] == "a/b"


# ---------------------------------------------------------------------------------------------
# tables


def _reference_candidates(frame: pd.DataFrame) -> list[str]:
    """The definition, one column at a time (what the vectorised search must reproduce)."""
    import re

    hint = re.compile(r"^(label|labels|target|class|y|outcome|category)$", re.IGNORECASE)
    out = []
    for col in frame.columns:
        s = frame[col]
        present = s.dropna()
        k = present.nunique()
        if not 2 <= k <= 50 or k == len(present):
            continue
        if pd.api.types.is_float_dtype(s) and not np.all(present.to_numpy() == np.round(present.to_numpy())):
            continue
        out.append((0 if hint.match(str(col)) else 1, k, str(col)))
    return [c for _, _, c in sorted(out)]


column_values = st.one_of(
    st.lists(st.integers(-3, 60), min_size=8, max_size=8),
    st.lists(st.sampled_from([0.0, 1.0, 2.5, np.nan, np.inf, -np.inf, -0.0]), min_size=8, max_size=8),
    st.lists(st.booleans(), min_size=8, max_size=8),
    st.lists(st.sampled_from(["a", "b", None]), min_size=8, max_size=8),
)


@given(columns=st.lists(column_values, min_size=1, max_size=6), label_at=st.integers(0, 5))
@FAST
def test_vectorised_label_candidates_match_the_definition(columns, label_at):
    frame = pd.DataFrame({("label" if j == label_at else f"c{j}"): v for j, v in enumerate(columns)})
    assert table_label_candidates(frame) == _reference_candidates(frame)


def test_table_cell_and_column_limits_at_the_boundary():
    csv = mc.csv_columns(5, rows=4)  # 5 columns; 4 rows and a header: 5 lines
    assert len(read_table_columns(csv, "t.csv", max_columns=5, max_cells=25)[0]) == 5
    with pytest.raises(DataError, match=r"'t\.csv' has about 5 columns; at most 4"):
        read_table_columns(csv, "t.csv", max_columns=4)
    with pytest.raises(DataError, match=r"'t\.csv' has about 5 rows × 5 columns = 25 cells; at most 24"):
        read_table_columns(csv, "t.csv", max_cells=24)
    pq = mc.parquet_rows(10)  # 10 rows × 2 columns, from the footer
    assert read_table_columns(pq, "t.parquet", max_cells=20)[0] == ["x", "label"]
    with pytest.raises(DataError, match=r"10 rows × 2 columns = 20 cells; at most 19"):
        read_table_columns(pq, "t.parquet", max_cells=19)
    with pytest.raises(DataError, match="at most 19"):
        load_table(pq, "t.parquet", label="label", max_cells=19)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "cp1252"])
def test_csv_encodings(encoding):
    text = "größe,y,label\n1,2,a\n3,4,b\n"
    ds = load_table(text.encode(encoding), "t.csv", label="label")
    assert ds.feature_names == ["größe", "y"] and ds.class_names == ["a", "b"]


def test_csv_separator_hint_and_quotes():
    ds = load_table(b"sep=|\nx|y|label\n1|2|a\n3|4|b\n", "t.csv", label="label")
    assert ds.feature_names == ["x", "y"] and any("sep=|" in n for n in ds.params["notes"])
    with pytest.raises(DataError, match=r"a quote \(\"\) opened on line 3 is never closed"):
        load_table(b'x,label\n1,a\n"2,b\n3,a\n', "t.csv", label="label")


# ---------------------------------------------------------------------------------------------
# .npz values


F32_MAX = float(np.finfo(np.float32).max)


def test_float32_range_boundary():
    at = np.array([[F32_MAX, -F32_MAX], [0.0, 1.0]])
    assert np.isfinite(load_outputs_npz(mc.npz(logits=at)).outputs.logits).all()
    above = at.copy()
    above[0, 0] = np.nextafter(np.float64(F32_MAX), np.inf) * 2
    with pytest.raises(DataError, match=r"'o\.npz': 'logits' holds 1 value\(s\) too large for float32"):
        load_outputs_npz(mc.npz(logits=above), filename="o.npz")


@pytest.mark.parametrize("labels, ok", [([-1, 0, 2, 2], True), ([0, 1, 3, 0], False), ([-2, 0, 1, 2], False),
                                        (np.array([0, 1, 2, 1], np.uint64), True), (np.array([1, 0, 1, 1], bool), True),
                                        (np.array([0, 1, 2, 2**64 - 1], np.uint64), False), ([0.0, 1.0, 2.0, -1.0], True)])
def test_label_range_is_checked_in_the_arrays_own_type(labels, ok):
    content = mc.npz(logits=mc.LOGITS, labels=np.asarray(labels))
    if ok:
        ds = load_outputs_npz(content)
        assert ds.labels.tolist() == [int(v) for v in np.asarray(labels).tolist()]
    else:
        with pytest.raises(DataError, match=r"class indices 0\.\.2 .* or -1 for no class"):
            load_outputs_npz(content)


def test_unrecognised_npz_members_are_not_read():
    # A member the loader does not use is listed, not decoded: a damaged one does not matter.
    content = mc.make_zip({"logits.npy": mc.npy(mc.LOGITS), "notes.npy": b"\x93NUMPY garbage"})
    assert load_outputs_npz(content).params["ignored_keys"] == ["notes"]


# ---------------------------------------------------------------------------------------------
# model cards and checkpoints


def _json_values():
    leaves = st.none() | st.integers() | st.text(alphabet='[]{}"\\ab,:', max_size=6)
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(alphabet='[]{}"\\ab', max_size=4), inner, max_size=3), max_leaves=20)


def _depth(value) -> int:
    if isinstance(value, (list, dict)):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max((_depth(c) for c in children), default=0)
    return 0


@given(value=_json_values())
@FAST
def test_json_depth_matches_a_recursive_count(value):
    # Brackets and quotes inside strings (escaped in the JSON text) must not count.
    assert _json_depth(json.dumps(value)) == _depth(value)


def test_wrong_extension_loads_the_same_weights():
    state = mc.full_state(seed=3)
    for data, name in ((mc.torch_bytes(state), "w.safetensors"), (mc.safetensors_bytes(state), "w.pth")):
        read = read_checkpoint(data, name)
        assert set(read) == set(state) and all(torch.equal(read[k], state[k]) for k in state)


def test_nan_in_a_buffer_is_named_and_float16_is_accepted():
    state = mc.full_state()
    state["bn1.running_var"] = state["bn1.running_var"].clone()
    state["bn1.running_var"][0] = float("inf")
    with pytest.raises(ModelError, match=r"'w\.pth': the tensor 'bn1\.running_var' holds 1 non-finite value\(s\) "
                                         r"\(0 NaN, 1 infinite\)"):
        read_checkpoint(mc.torch_bytes(state), "w.pth")
    half = {k: v.half() if v.is_floating_point() else v for k, v in mc.full_state().items()}
    model = load(mc.ARCH, checkpoint=mc.torch_bytes(half), checkpoint_name="half.pth")
    assert model.state_dict()["fc.weight"].dtype == torch.float32


def test_prefixed_duplicates_are_refused():
    state = mc.head_state()
    both = {**state, **{f"module.{k}": v for k, v in state.items()}}
    with pytest.raises(ModelError, match=r"holds the tensor 'fc\.weight' twice"):
        read_checkpoint(mc.torch_bytes(both), "w.pth")


def test_model_folder_round_trip_and_class_name_count(tmp_path):
    from tests.hostile.guards import write_folder

    files = mc.folder(mc.GOOD_CARD, mc.safetensors_bytes(mc.full_state(seed=1)))
    model = load(str(write_folder(tmp_path, "good", files)))
    assert model.card["class_names"] == ["cat", "dog", "emu"] and model.card["input_size"] == [3, 32, 32]
    assert torch.equal(model.state_dict()["fc.weight"], mc.full_state(seed=1)["fc.weight"])
    bom = {**files, "card.json": b"\xef\xbb\xbf" + files["card.json"]}
    assert load(str(write_folder(tmp_path, "bom", bom))).card["class_names"] == ["cat", "dog", "emu"]
    two = {**files, "card.json": json.dumps({**mc.GOOD_CARD, "class_names": ["a", "b"]}).encode()}
    with pytest.raises(ModelError, match="lists 2 class names but the model has 3 outputs"):
        load(str(write_folder(tmp_path, "two", two)))


def test_card_limits(tmp_path):
    from tests.hostile.guards import write_folder

    big = {"card.json": b" " * (1024 * 1024 + 1), "model.safetensors": b""}
    with pytest.raises(ModelError, match=r"is 1,048,577 bytes; a model card is a short JSON file"):
        load(str(write_folder(tmp_path, "big", big)))
    nested = {"card.json": b'{"x": ' + b"[" * 33 + b"]" * 33 + b"}", "model.safetensors": b""}
    with pytest.raises(ModelError, match=r"nested 34 levels deep"):
        load(str(write_folder(tmp_path, "nested", nested)))


def test_checkpoint_size_limit_and_zip_declared_sizes():
    data = mc.torch_bytes(mc.head_state())
    with pytest.raises(ModelError, match=rf"'w\.pth' is {len(data):,} bytes; at most {len(data) - 1:,}"):
        read_checkpoint(data, "w.pth", max_bytes=len(data) - 1)
    # torch.save archives may be deflated: a zero tensor re-zipped takes far less than it unpacks to.
    stored = mc.torch_bytes({"fc.weight": torch.zeros(3, 4000), "fc.bias": torch.zeros(3)})
    with zipfile.ZipFile(io.BytesIO(stored)) as zf:
        members = {i.filename: zf.read(i.filename) for i in zf.infolist()}
    deflated = mc.make_zip(members, zipfile.ZIP_DEFLATED)
    declared = sum(len(v) for v in members.values())
    assert len(deflated) < declared // 4
    with pytest.raises(ModelError, match=rf"unpacks to {declared:,} bytes; at most {declared - 1:,}"):
        read_checkpoint(deflated, "w.pth", max_bytes=declared - 1)
    assert torch.equal(read_checkpoint(deflated, "w.pth", max_bytes=declared)["fc.weight"], torch.zeros(3, 4000))


@pytest.mark.parametrize("value, message", [(0, "between 1 and 50,000"), (10**9, "between 1 and 50,000"),
                                            (2.5, "whole number"), ("3", "whole number"), (True, "whole number")])
def test_number_of_classes_is_checked_before_building(value, message):
    with pytest.raises(ModelError, match=message):
        load(mc.ARCH, num_classes=value)


@pytest.mark.parametrize("value", [4096, [3, 8, 5000], "big", [3.5, 32], [1, 32, 32]])
def test_input_size_is_bounded(value):
    with pytest.raises(ModelError, match="input_size"):
        load(mc.ARCH, input_size=value)
