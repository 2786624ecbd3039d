"""Upload loaders: image-folder zips, CSV/Parquet tables, .npz model outputs, and every bad input."""
from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.data import DataError, load_image_zip, load_outputs_npz, load_table, load_upload, table_label_candidates

# ---------------------------------------------------------------------------------------------
# helpers


def png(w=12, h=10, colour=(200, 30, 40), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), colour if mode == "RGB" else 0).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(w=20, h=16, colour=(10, 200, 90)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def make_zip(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return buf.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w x h pixels (a decompression bomb's signature)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + idat + png_chunk(b"IEND", b"")


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def outputs(n=20, c=3, d=5, seed=0):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(c, d)).astype(np.float32)
    b = rng.normal(size=c).astype(np.float32)
    return {"logits": feats @ w.T + b, "features": feats, "head_weight": w, "head_bias": b,
            "labels": rng.integers(0, c, n), "class_names": np.array(["cat", "dog", "emu"][:c])}


GOOD_ZIP = {"cats/1.png": png(colour=(255, 0, 0)), "cats/2.jpg": jpeg(), "dogs/a.png": png(30, 40, (0, 0, 255))}


# ---------------------------------------------------------------------------------------------
# image zips: good input


def test_image_zip_basic():
    ds = load_image_zip(make_zip(GOOD_ZIP), image_size=16, filename="pets.zip")
    assert ds.kind == "image" and ds.name == "pets"
    assert ds.class_names == ["cats", "dogs"]
    assert ds.images.shape == (3, 16, 16, 3) and ds.images.dtype == np.uint8
    assert ds.labels.tolist() == [0, 0, 1] and ds.labels.dtype == np.int64
    assert np.all(ds.images[0] == [255, 0, 0]) and np.all(ds.images[2] == [0, 0, 255])
    assert ds.params["skipped_files"] == 0 and ds.params["class_counts"] == {"cats": 2, "dogs": 1}


def test_image_zip_wrapper_folder_modes_and_junk():
    entries = {
        "pets/": b"", "pets/dogs/": b"",
        "pets/dogs/x.png": png(mode="L"),
        "pets/cats/y.png": png(mode="RGBA"),
        "pets/cats/sub/z.png": png(mode="P"),
        "__MACOSX/pets/cats/._y.png": b"junk", "pets/.DS_Store": b"junk",
    }
    ds = load_image_zip(make_zip(entries), image_size=8)
    assert ds.class_names == ["cats", "dogs"] and ds.params["wrapper_folder"] == "pets"
    assert ds.labels.tolist() == [0, 0, 1] and ds.params["skipped_files"] == 0
    single = load_image_zip(make_zip({"only/1.png": png(), "only/2.png": png()}), image_size=8)
    assert single.class_names == ["only"] and single.params["notes"]


def test_image_zip_accepts_file_like_and_upload_dispatch():
    content = make_zip(GOOD_ZIP)
    a = load_image_zip(io.BytesIO(content), image_size=8)
    b = load_upload(content, "Pets.ZIP", image_size=8, label="ignored for zips")
    assert np.array_equal(a.images, b.images) and b.name == "Pets"


def test_image_zip_non_image_files_skipped_and_counted():
    ds = load_image_zip(make_zip({**GOOD_ZIP, "cats/notes.txt": b"hello", "README.md": b"# hi"}), image_size=8)
    assert len(ds) == 3 and ds.params["skipped_files"] == 2


# ---------------------------------------------------------------------------------------------
# image zips: bad input


@pytest.mark.parametrize("name", ["../evil.png", "cats/../../evil.png", "/etc/x.png", "C:/x.png", "cats\\..\\..\\x.png"])
def test_image_zip_refuses_traversal_and_absolute_paths(name):
    with pytest.raises(DataError, match="Refusing the archive") as err:
        load_image_zip(make_zip({**GOOD_ZIP, name: png()}))
    assert repr(name) in str(err.value)


def test_image_zip_too_many_files():
    entries = {f"c{i % 2}/{i}.png": png() for i in range(5)}
    assert len(load_image_zip(make_zip(entries), max_files=5, image_size=8)) == 5
    with pytest.raises(DataError, match="5 files; at most 3"):
        load_image_zip(make_zip(entries), max_files=3)


def test_image_zip_too_large_uncompressed():
    big = {"a/1.png": png(), "a/pad.bin": b"\x00" * 50_000}  # compresses to almost nothing
    content = make_zip(big)
    assert len(content) < 2_000
    with pytest.raises(DataError, match="unpacks to"):
        load_image_zip(content, max_uncompressed=10_000)


def test_image_zip_header_understating_size_is_refused():
    # A stored member whose central-directory size is patched to claim 10 bytes.
    content = bytearray(make_zip({"a/1.png": png(64, 64), "b/2.png": png()}, compression=zipfile.ZIP_STORED))
    cd = content.index(b"PK\x01\x02")
    struct.pack_into("<I", content, cd + 24, 10)
    with pytest.raises(DataError, match="a/1.png"):
        load_image_zip(bytes(content), max_uncompressed=400)


def test_image_zip_only_non_images():
    with pytest.raises(DataError, match="No images found"):
        load_image_zip(make_zip({"a/readme.txt": b"x", "b/data.csv": b"1,2"}))
    with pytest.raises(DataError, match="empty"):
        load_image_zip(make_zip({}))


def test_image_zip_images_outside_class_folders():
    with pytest.raises(DataError, match="class folder"):
        load_image_zip(make_zip({"loose.png": png(), "cats/1.png": png()}))


def noisy_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def flip_byte(content: bytes, pos: int) -> bytes:
    return content[:pos] + bytes([content[pos] ^ 0xFF]) + content[pos + 1:]


@pytest.mark.parametrize("bad", [
    png()[:40], png()[:-20], noisy_png()[:1500], flip_byte(noisy_png(), 1000), jpeg()[:200],
    b"definitely not a png", png()[:8] + b"\x00" * 50,
], ids=["header-only", "no-iend", "truncated-idat", "flipped-byte", "truncated-jpeg", "text", "zeros"])
def test_image_zip_corrupt_image_named(bad):
    with pytest.raises(DataError, match="dogs/broken.png"):
        load_image_zip(make_zip({**GOOD_ZIP, "dogs/broken.png": bad}))


def test_image_zip_decompression_bomb_real_pixels():
    buf = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buf, format="PNG")
    content = make_zip({"a/bomb.png": buf.getvalue(), "a/ok.png": png()})
    assert len(content) < 20_000  # 4 million pixels compress to a few kB
    with pytest.raises(DataError, match="decompression bomb") as err:
        load_image_zip(content, max_pixels=1_000_000)
    assert "a/bomb.png" in str(err.value)


@pytest.mark.parametrize("side", [5_000, 60_000])
def test_image_zip_decompression_bomb_header_claim(side):
    # 25 M pixels (under Pillow's own limit) and 3.6 G pixels (over it): both refused by name.
    with pytest.raises(DataError, match="decompression bomb") as err:
        load_image_zip(make_zip({"a/bomb.png": png_header_only(side, side), "b/ok.png": png()}), max_pixels=10_000_000)
    assert "a/bomb.png" in str(err.value)


def test_image_zip_not_a_zip_and_bad_options():
    with pytest.raises(DataError, match="not a readable .zip"):
        load_image_zip(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="image_size"):
        load_image_zip(make_zip(GOOD_ZIP), image_size=0)
    with pytest.raises(DataError, match="Expected the uploaded file's bytes"):
        load_image_zip(12345)


def test_image_zip_encrypted_member_refused():
    content = bytearray(make_zip(GOOD_ZIP))
    cd = content.index(b"PK\x01\x02")
    struct.pack_into("<H", content, cd + 8, struct.unpack_from("<H", content, cd + 8)[0] | 1)
    with pytest.raises(DataError, match="encrypted"):
        load_image_zip(bytes(content))


# ---------------------------------------------------------------------------------------------
# tables


def frame_example(n=30):
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "age": rng.integers(20, 70, n).astype(float),
        "income": rng.normal(50, 10, n),
        "colour": rng.choice(["red", "green", "blue"], n),
        "name": [f"person {i}" for i in range(n)],
        "member": rng.random(n) < 0.5,
        "species": rng.choice(["setosa", "virginica"], n),
    })


def test_csv_round_trip_with_cleaning():
    df = frame_example()
    df.loc[[1, 4], "income"] = np.nan
    df.loc[7, "species"] = None
    ds = load_table(df.to_csv(index=False).encode(), "people.csv", label="species")
    assert ds.kind == "table" and ds.name == "people" and ds.label == "species"
    assert ds.class_names == ["setosa", "virginica"] and len(ds) == 29
    assert ds.params["dropped_rows"] == 1
    assert ds.params["dropped_columns"] == ["name"] and ds.params["one_hot_columns"] == ["colour"]
    assert set(ds.feature_names) == {"age", "income", "colour=blue", "colour=green", "colour=red", "member"}
    assert "income" in ds.params["imputed"]
    x, y = ds.table_arrays()
    assert np.isfinite(x).all() and x.dtype == np.float64
    want = (df.dropna(subset=["species"])["species"] == "virginica").astype(int).to_numpy()
    assert np.array_equal(y, want) and np.array_equal(ds.frame["species"].to_numpy(), y)
    assert ds.frame["income"].iloc[1] == pytest.approx(ds.params["imputed"]["income"])
    assert np.all(ds.frame[["colour=blue", "colour=green", "colour=red"]].sum(axis=1) == 1)


def test_numeric_labels_sorted_as_numbers():
    df = pd.DataFrame({"x": np.arange(12.0), "grade": [10, 2, 1] * 4})
    ds = load_table(df.to_csv(index=False).encode(), "g.csv", label="grade")
    assert ds.class_names == ["1", "2", "10"] and ds.labels.tolist()[:3] == [2, 1, 0]


def test_parquet_round_trip():
    df = frame_example()
    buf = io.BytesIO()
    df.to_parquet(buf, engine="pyarrow")
    a = load_table(buf.getvalue(), "people.parquet", label="species")
    b = load_table(df.to_csv(index=False).encode(), "people.csv", label="species")
    assert a.class_names == b.class_names and np.array_equal(a.labels, b.labels)
    assert list(a.frame.columns) == list(b.frame.columns)
    assert np.allclose(a.table_arrays()[0], b.table_arrays()[0])
    c = load_upload(buf.getvalue(), "people.pq", label="species", image_size=10)
    assert np.array_equal(c.labels, a.labels)


def test_semicolon_csv():
    df = frame_example()
    ds = load_table(df.to_csv(index=False, sep=";").encode(), "semi.csv", label="species")
    assert len(ds) == len(df)


def test_label_candidates_and_missing_label():
    df = frame_example()
    cands = table_label_candidates(df)
    assert "species" in cands and "colour" in cands and "member" in cands and "name" not in cands
    with pytest.raises(DataError, match="Choose the label column") as err:
        load_table(df.to_csv(index=False).encode(), "p.csv")
    assert "species" in str(err.value)


def test_csv_without_usable_label_column():
    df = pd.DataFrame({"id": np.arange(100), "value": np.linspace(0, 1, 100)})
    content = df.to_csv(index=False).encode()
    with pytest.raises(DataError, match="No column looks like a class label"):
        load_table(content, "x.csv")
    with pytest.raises(DataError, match="100 distinct values"):
        load_table(content, "x.csv", label="value")
    with pytest.raises(DataError, match="not in"):
        load_table(content, "x.csv", label="nope")


@pytest.mark.parametrize("df, label, message", [
    (pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "a", "a"]}), "y", "single class"),
    (pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [None, None, None]}), "y", "every value is missing"),
    (pd.DataFrame({"txt": [f"t{i}" for i in range(40)], "y": ["a", "b"] * 20}), "y", "no numeric feature columns"),
    (pd.DataFrame({"y": ["a", "b"]}), "y", "only the label column"),
    (pd.DataFrame({"x": [], "y": []}), "y", "empty"),
])
def test_table_errors(df, label, message):
    with pytest.raises(DataError, match=message):
        load_table(df.to_csv(index=False).encode(), "t.csv", label=label)


def test_a_single_class_table_is_allowed_for_evaluation_sets():
    content = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "a", "a"]}).to_csv(index=False).encode()
    ds = load_table(content, "t.csv", label="y", min_classes=1)
    assert ds.class_names == ["a"] and list(ds.labels) == [0, 0, 0]
    assert load_upload(content, "t.csv", label="y", min_classes=1).class_names == ["a"]


def test_table_bad_files():
    with pytest.raises(DataError, match=".csv or .parquet"):
        load_table(b"a,b\n1,2\n", "t.xlsx", label="a")
    with pytest.raises(DataError, match="empty"):
        load_table(b"", "t.csv", label="a")
    with pytest.raises(DataError, match="not a Parquet"):
        load_table(b"a,b\n1,2\n", "t.parquet", label="a")
    with pytest.raises(DataError, match="could not be read as Parquet"):
        load_table(b"PAR1" + b"\x00" * 100 + b"PAR1", "t.parquet", label="a")
    with pytest.raises(DataError, match="binary"):
        load_table(b"\x00\x01\x02", "t.csv", label="a")


label_values = st.sampled_from([["a", "b"], ["x", "y", "z"], [0, 1], [1, 5, 9, 12]])


@st.composite
def random_frames(draw):
    n = draw(st.integers(2, 40))
    classes = draw(label_values)
    cols = {"label": draw(st.lists(st.sampled_from(classes), min_size=n, max_size=n))}
    for k in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["float", "int", "cat", "text", "nan"]))
        if kind == "float":
            v = draw(st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(np.nan)), min_size=n, max_size=n))
        elif kind == "int":
            v = draw(st.lists(st.integers(-1000, 1000), min_size=n, max_size=n))
        elif kind == "cat":
            v = draw(st.lists(st.sampled_from(["u", "v", "w", None]), min_size=n, max_size=n))
        elif kind == "text":
            text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6)
            v = draw(st.lists(text, min_size=n, max_size=n))
        else:
            v = [np.nan] * n
        cols[f"c{k}_{kind}"] = v
    return pd.DataFrame(cols)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=random_frames(), fmt=st.sampled_from(["csv", "parquet"]))
def test_random_frames_load_or_fail_cleanly(df, fmt):
    if fmt == "csv":
        content = df.to_csv(index=False).encode()
    else:
        buf = io.BytesIO()
        df.to_parquet(buf)
        content = buf.getvalue()
    try:
        ds = load_table(content, f"r.{fmt}", label="label")
    except DataError:
        return
    x, y = ds.table_arrays()
    assert np.isfinite(x).all() and x.shape[0] == len(y) == len(ds.frame)
    assert y.min() >= 0 and y.max() == len(ds.class_names) - 1
    assert ds.class_names == [str(v) for v in sorted(df["label"].unique())]


# ---------------------------------------------------------------------------------------------
# npz model outputs


def test_npz_round_trip():
    arrays = outputs()
    ds = load_outputs_npz(npz(**arrays), filename="run1.npz")
    assert ds.kind == "outputs" and ds.name == "run1" and len(ds) == 20
    assert ds.class_names == ["cat", "dog", "emu"]
    out = ds.outputs
    assert out.logits.dtype == np.float32 and np.allclose(out.logits, arrays["logits"])
    assert np.array_equal(out.labels, arrays["labels"]) and np.array_equal(ds.labels, arrays["labels"])
    assert np.array_equal(out.preds, arrays["logits"].argmax(1)) and out.has_head
    assert np.allclose(out.features @ out.head_weight.T + out.head_bias, out.logits, atol=1e-4)


def test_npz_logits_only_and_extra_keys():
    ds = load_upload(npz(logits=np.zeros((4, 2)), extra=np.ones(3)), "o.npz", label="x")
    assert ds.labels.tolist() == [-1] * 4 and ds.class_names == ["0", "1"]
    assert ds.outputs.labels is None and ds.outputs.features is None
    assert ds.params["ignored_keys"] == ["extra"]


def test_npz_object_array_refused():
    content = npz(logits=np.zeros((2, 2)), class_names=np.array(["a", {"evil": 1}], dtype=object))
    with pytest.raises(DataError, match="pickled objects are not accepted"):
        load_outputs_npz(content)


def test_npz_nan_refused_with_count():
    arrays = outputs()
    arrays["logits"][[0, 3, 5], 1] = np.nan
    arrays["logits"][7, 0] = np.inf
    with pytest.raises(DataError, match=r"'logits' contains 4 non-finite value\(s\) \(3 NaN, 1 inf\)"):
        load_outputs_npz(npz(**arrays))
    arrays = outputs()
    arrays["features"][2, 2] = np.nan
    with pytest.raises(DataError, match="'features' contains 1 non-finite"):
        load_outputs_npz(npz(**arrays))


@pytest.mark.parametrize("change, message", [
    ({"head_weight": np.zeros((3, 4))}, r"head_weight.*\[3, 5\]"),
    ({"head_weight": np.zeros((2, 5))}, "C = 3"),
    ({"features": np.zeros((19, 5))}, "one row per sample"),
    ({"labels": np.zeros(7, int)}, "labels"),
    ({"labels": np.full(20, -3)}, "-1 for no class"),
    ({"labels": np.full(20, 0.5)}, "whole numbers"),
    ({"head_bias": np.zeros(4)}, "head_bias"),
    ({"class_names": np.array(["a", "b"])}, "C = 3 entries"),
    ({"class_names": np.arange(3)}, "string array"),
    ({"logits": np.zeros(20)}, r"\[N, C\]"),
    ({"logits": np.array([["a", "b", "c"]] * 20)}, "numeric"),
])
def test_npz_shape_errors(change, message):
    arrays = {**outputs(), **change}
    with pytest.raises(DataError, match=message):
        load_outputs_npz(npz(**arrays))


def test_npz_structural_errors():
    with pytest.raises(DataError, match="must contain an array named 'logits'"):
        load_outputs_npz(npz(features=np.zeros((2, 2))))
    with pytest.raises(DataError, match="without 'head_weight'"):
        load_outputs_npz(npz(logits=np.zeros((2, 2)), head_bias=np.zeros(2)))
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 2)))
    with pytest.raises(DataError, match="not a .npz"):
        load_outputs_npz(buf.getvalue())
    with pytest.raises(DataError, match="at least one sample"):
        load_outputs_npz(npz(logits=np.zeros((0, 3))))


def test_npz_header_claiming_huge_array_refused():
    # Rewrite a member's .npy header to claim 10^12 rows while holding 16 bytes of data.
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 2), }"
    header = header + " " * (118 - len(header)) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\x00" * 16
    with pytest.raises(DataError, match="declares"):
        load_outputs_npz(make_zip({"logits.npy": npy}))


# ---------------------------------------------------------------------------------------------
# pickles and dispatch


@pytest.mark.parametrize("filename", ["model.pkl", "data.pickle", "weights.pt", "disguised.csv", "disguised.npz", "x.zip"])
def test_pickle_upload_refused(filename):
    content = pickle.dumps({"logits": np.zeros((2, 2))}, protocol=4)
    with pytest.raises(DataError, match="never unpickled"):
        load_upload(content, filename)


def test_upload_dispatch_errors():
    with pytest.raises(DataError, match="Unsupported file type"):
        load_upload(b"hello", "notes.txt")
    with pytest.raises(DataError, match="no extension"):
        load_upload(b"hello", "README")
    with pytest.raises(DataError, match="Unknown upload option"):
        load_upload(b"hello", "t.csv", lable="x")
    with pytest.raises(DataError, match="empty"):
        load_upload(b"", "t.npz")


def _valid_uploads():
    buf = io.BytesIO()
    frame_example().to_parquet(buf)
    return [
        ("good.zip", make_zip(GOOD_ZIP)),
        ("good.csv", frame_example().to_csv(index=False).encode()),
        ("good.parquet", buf.getvalue()),
        ("good.npz", npz(**outputs())),
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=st.binary(max_size=400), ext=st.sampled_from([".zip", ".csv", ".parquet", ".pq", ".npz", ".pkl", ".txt", ""]))
def test_random_bytes_only_raise_data_error(content, ext):
    try:
        load_upload(content, "upload" + ext, label="species", image_size=8)
    except DataError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, 3), data=st.data())
def test_corrupted_valid_uploads_only_raise_data_error(which, data):
    filename, content = _valid_uploads()[which]
    content = bytearray(content)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(content) - 1))
        content[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        content = content[: data.draw(st.integers(0, len(content)))]
    try:
        ds = load_upload(bytes(content), filename, label="species", image_size=8)
    except DataError:
        return
    assert len(ds) == len(ds.labels)
