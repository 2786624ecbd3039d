"""Property-based fuzz of the loaders the pages call, with malformed and hostile inputs.

Each test builds random structures that are *almost* valid (the interesting failures hide next to
valid input): .npz archives of odd members, CSV text in odd encodings, zips of damaged images,
Parquet tables of odd types, checkpoints of odd tensors and model folders of odd cards. For every
example it asserts that

* only a :class:`~core.errors.UserError` escapes (anything else is a bug shown as a traceback);
* the call returns before the watchdog fires (:data:`tests.hostile.guards.WATCHDOG_S`, a hang);
* no pickled payload runs (payloads create :data:`MARKER` when unpickled);
* what is accepted is usable: finite float32 outputs, labels in range, finite model outputs.

The examples are derandomized so that a run is reproducible. For a longer, random search run
``HOSTILE_FUZZ_EXAMPLES=2000 python -m pytest tests/hostile/test_fuzz.py``.
"""
from __future__ import annotations

import functools
import io
import json
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.data.dataset import Dataset
from core.errors import UserError
from tests.hostile import make_corpus as mc
from tests.hostile.guards import run_entry, watchdog

_SCALE = os.environ.get("HOSTILE_FUZZ_EXAMPLES")


def fuzz_settings(examples: int):
    return settings(max_examples=int(_SCALE) if _SCALE else examples, deadline=None, derandomize=not _SCALE,
                    database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


_GIST = re.compile(r"'[^']*'|[0-9][0-9,.]*")


def attempt(entry: str, content, name: str, root: Path | None = None, options: dict | None = None):
    """Run one loader; None when it refused the input with a UserError. Fails on anything else."""
    mc.MARKER.unlink(missing_ok=True)
    try:
        with watchdog():
            result = run_entry(entry, content, name, root or Path(tempfile.gettempdir()), mc.ARCH, options)
    except UserError as err:
        assert str(err).strip(), "a refusal without a message"
        event(f"{entry}: refused: " + _GIST.sub("_", str(err))[:70])  # pytest --hypothesis-show-statistics lists these
        return None
    finally:
        assert not mc.MARKER.exists(), "a pickled payload ran"
    event(f"{entry}: accepted")
    return result


def check_dataset(ds: Dataset) -> None:
    assert isinstance(ds, Dataset) and ds.labels.dtype == np.int64 and len(ds.labels) == len(ds)
    if ds.outputs is not None:
        out = ds.outputs
        assert out.logits.dtype == np.float32 and np.isfinite(out.logits).all()
        for arr in (out.features, out.head_weight, out.head_bias):
            assert arr is None or (arr.dtype == np.float32 and np.isfinite(arr).all())
        assert ((ds.labels >= -1) & (ds.labels < out.logits.shape[1])).all()
        assert len(ds.class_names) == out.logits.shape[1]
    if ds.images is not None:
        assert ds.images.dtype == np.uint8 and ds.images.ndim == 4 and len(ds.images) == len(ds)
        assert ((ds.labels >= 0) & (ds.labels < len(ds.class_names))).all()
    if ds.frame is not None:
        x, y = ds.table_arrays()
        assert np.isfinite(x).all() and len(y) == len(x)


def check_model(model) -> None:
    size = model.card["input_size"]
    with torch.no_grad():
        out = model(torch.zeros(1, *size))
    assert torch.isfinite(out).all()


def flip_bytes(data: bytes, positions: list[int], values: list[int]) -> bytes:
    if not data:
        return data
    buf = bytearray(data)
    for pos, value in zip(positions, values):
        buf[pos % len(buf)] = value
    return bytes(buf)


damage = st.tuples(st.sampled_from(["none", "none", "flip", "truncate"]), st.lists(st.integers(0, 10**6), max_size=4),
                   st.lists(st.integers(0, 255), min_size=4, max_size=4), st.floats(0, 1))


def apply_damage(data: bytes, how) -> bytes:
    kind, positions, values, fraction = how
    if kind == "flip":
        return flip_bytes(data, positions, values)
    if kind == "truncate":
        return data[: int(len(data) * fraction)]
    return data


# ---------------------------------------------------------------------------------------------
# .npz


SPECIAL = [0.0, 1.0, -1.0, 2.0, 99.0, 0.5, 1e300, -1e300, 3.5e38, np.nan, np.inf, -np.inf, -2.0, 2.0**63]
DTYPES = ["<f4", "<f8", "<f2", "<i8", "<i4", "<u8", "|u1", "|b1", "<c8", "<U3", "|S2", "<M8[s]", "|V4", "g"]
SHAPES = [(4, 3), (4, 3), (4,), (4,), (3,), (3,), (4, 5), (3, 5), (0, 3), (), (4, 3, 1), (5, 3)]


@st.composite
def npy_arrays(draw) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(st.sampled_from(SHAPES))
    size = int(np.prod(shape))
    if dtype.kind in "US":
        words = ["cat", "dog", "é", ""] if dtype.kind == "U" else [b"cat", b"\xff\xfe", b""]
        return np.array(draw(st.lists(st.sampled_from(words), min_size=size, max_size=size)), dtype=dtype).reshape(shape)
    if dtype == np.uint64:
        values = draw(st.lists(st.sampled_from([0, 1, 2, 99, 2**64 - 1]), min_size=size, max_size=size))
        return np.array(values, np.uint64).reshape(shape)
    values = np.array(draw(st.lists(st.sampled_from(SPECIAL), min_size=size, max_size=size)), np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dtype.kind in "MV":
            return np.zeros(shape, dtype)
        return values.astype(dtype, casting="unsafe").reshape(shape)


@st.composite
def npz_archives(draw) -> bytes:
    members: dict[str, bytes] = {}
    if draw(st.integers(0, 3)):  # mostly valid logits, so that the other members are looked at too
        members["logits.npy"] = mc.npy(mc.LOGITS.astype(draw(st.sampled_from(["<f4", "<f8", "<f2", "<i4"]))))
    keys = draw(st.lists(st.sampled_from(["logits", "features", "labels", "labels", "head_weight", "head_bias",
                                          "class_names", "extra"]), max_size=4, unique=True))
    for key in keys:
        kind = draw(st.sampled_from(["array", "array", "array", "array", "array", "object", "raw", "header", "truncated"]))
        if kind == "array":
            members[f"{key}.npy"] = mc.npy(draw(npy_arrays()))
        elif kind == "object":
            members[f"{key}.npy"] = mc.npy(np.array([mc.Payload(), 1.0], dtype=object))
        elif kind == "raw":
            members[key if draw(st.booleans()) else f"{key}.npy"] = draw(st.binary(max_size=40))
        elif kind == "header":
            descr = draw(st.sampled_from(["'<f4'", "'<f8'", "'|O'", "os.system('x')", "[('a', '<f4')]", "'<f4'"]))
            shape = draw(st.sampled_from(["(4, 3)", "(4,)", "(10**12, 3)", "(-1, 3)", "(4, 'a')", "()", "[4, 3]"]))
            members[f"{key}.npy"] = mc.npy_header(descr, shape) + b"\x00" * draw(st.integers(0, 96))
        else:
            data = mc.npy(draw(npy_arrays()))
            members[f"{key}.npy"] = data[: draw(st.integers(0, len(data)))]
    return apply_damage(mc.make_zip(members), draw(damage))


@fuzz_settings(120)
@given(content=npz_archives())
def test_fuzz_npz(content):
    ds = attempt("upload", content, "fuzz.npz")
    if ds is not None:
        check_dataset(ds)


# ---------------------------------------------------------------------------------------------
# CSV


CELLS = st.one_of(st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True, width=32),
                  st.sampled_from(["a", "b", "", "NA", "1e400", '"q,uoted"', "x;y", "é", "\x00", "sep=;", '"', "1,5"]),
                  st.text(max_size=4))


@st.composite
def csv_texts(draw) -> bytes:
    sep = draw(st.sampled_from([",", ",", ";", "\t", "|"]))
    width = draw(st.integers(1, 5))
    names = st.sampled_from(["x", "y", "label", "a b", "", "é", "z", "w"])
    header = draw(st.lists(names, min_size=width, max_size=width, unique=draw(st.integers(0, 4)) > 0))
    rows = draw(st.lists(st.lists(CELLS, min_size=max(width - 1, 0), max_size=width + 1), max_size=8))
    lines = [sep.join(header)] + [sep.join(str(c) for c in row) for row in rows]
    if draw(st.booleans()):
        lines.insert(0, f"sep={sep}")
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines) + "\n"
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "cp1252", "latin-1"]))
    return apply_damage(text.encode(encoding, errors="ignore"), draw(damage))


@fuzz_settings(120)
@given(content=csv_texts(), label=st.sampled_from(["label", "x", None]))
def test_fuzz_csv(content, label):
    columns = attempt("columns", content, "fuzz.csv")
    if columns is not None:
        names, candidates = columns
        assert all(isinstance(c, str) for c in names) and set(candidates) <= set(names)
    ds = attempt("upload", content, "fuzz.csv", options={"label": label})
    if ds is not None:
        check_dataset(ds)


# ---------------------------------------------------------------------------------------------
# zips of images


@functools.cache
def image_library() -> dict[str, bytes]:
    from PIL import Image

    def encode(fmt, size=(12, 10), mode="RGB", **kw):
        buf = io.BytesIO()
        Image.new(mode, size, 90).save(buf, format=fmt, **kw)
        return buf.getvalue()

    good_png = mc.png()
    return {
        "png": good_png, "png_grey": mc.png(mode="L"), "png_rgba": mc.png(mode="RGBA"), "png_palette": mc.png(mode="P"),
        "png_16bit": mc.png(mode="I;16"), "jpeg": encode("JPEG"), "gif": encode("GIF"), "bmp": encode("BMP"),
        "tiff": encode("TIFF"), "webp": encode("WEBP"), "png_short": mc.png_short(32, 32, 3),
        "png_claims_40k": _png_claiming(40_000, 40_000), "png_claims_6k": _png_claiming(6000, 6000),
        "png_text_bomb": mc.png_text_bomb(), "png_truncated": good_png[:-20], "png_flipped": flip_bytes(good_png, [40], [0]),
        "pickle": pickle.dumps(mc.Payload(), protocol=4), "text": b"hello", "empty": b"",
        "png_interlaced_short": _png_interlaced_short(),
    }


def _png_claiming(w: int, h: int) -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + mc.png_chunk(b"IHDR", ihdr) + mc.png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + mc.png_chunk(b"IEND", b""))


def _png_interlaced_short() -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 1)  # Adam7: the full data would be 7 passes
    return (b"\x89PNG\r\n\x1a\n" + mc.png_chunk(b"IHDR", ihdr) + mc.png_chunk(b"IDAT", zlib.compress(b"\x00" * 40))
            + mc.png_chunk(b"IEND", b""))


PARTS = ["cats", "dogs", "a", "b", "..", "", ".", "__MACOSX", "C:", "x y", "ü"]
FILES = ["1.png", "2.jpg", "3.gif", "4.bmp", "5.tiff", "6.webp", "n.txt", "p.pkl", "7.PNG", ".DS_Store"]


@st.composite
def image_zips(draw) -> bytes:
    library = image_library()
    entries: dict[str, bytes] = {}
    plain = st.lists(st.sampled_from(["cats", "dogs", "a", "b"]), min_size=1, max_size=3)
    for _ in range(draw(st.integers(0, 6))):
        folders = draw(st.one_of(plain, plain, plain, st.lists(st.sampled_from(PARTS), max_size=6)))
        name = "/".join([*folders, draw(st.sampled_from(FILES))])
        entries[name] = library[draw(st.sampled_from(sorted(library)))]
    if draw(st.booleans()):
        entries["cats/ok.png"] = library["png"]
        entries["dogs/ok.png"] = library["jpeg"]
    compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    return apply_damage(mc.make_zip(entries, compression), draw(damage))


@fuzz_settings(120)
@given(content=image_zips(), budget=st.sampled_from([None, None, 2_000]))
def test_fuzz_image_zips(content, budget):
    options = {"image_size": 8} if budget is None else {"image_size": 8, "max_total_pixels": budget}
    ds = attempt("upload", content, "fuzz.zip", options=options)
    if ds is not None:
        check_dataset(ds)


# ---------------------------------------------------------------------------------------------
# Parquet


@st.composite
def parquet_tables(draw) -> bytes:
    import decimal

    import pyarrow as pa

    n = draw(st.integers(0, 6))
    columns, names = [], []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["int", "float", "string", "binary", "bool", "list", "struct", "decimal", "date",
                                     "timestamp", "null", "dictionary"]))
        if kind == "int":
            arr = pa.array(draw(st.lists(st.integers(-(2**63), 2**63 - 1) | st.none(), min_size=n, max_size=n)), pa.int64())
        elif kind == "float":
            arr = pa.array(draw(st.lists(st.floats() | st.none(), min_size=n, max_size=n)), pa.float64())
        elif kind == "string":
            arr = pa.array(draw(st.lists(st.text(max_size=4) | st.none(), min_size=n, max_size=n)), pa.string())
        elif kind == "binary":
            arr = pa.array(draw(st.lists(st.binary(max_size=3), min_size=n, max_size=n)), pa.binary())
        elif kind == "bool":
            arr = pa.array(draw(st.lists(st.booleans() | st.none(), min_size=n, max_size=n)), pa.bool_())
        elif kind == "list":
            arr = pa.array([[1, 2]] * n, pa.list_(pa.int64()))
        elif kind == "struct":
            arr = pa.array([{"a": 1}] * n, pa.struct([("a", pa.int64())]))
        elif kind == "decimal":
            arr = pa.array([decimal.Decimal("1.5")] * n, pa.decimal128(5, 2))
        elif kind == "date":
            arr = pa.array(list(range(n)), pa.date32())
        elif kind == "timestamp":
            arr = pa.array([10**17] * n, pa.timestamp("ms"))
        elif kind == "null":
            arr = pa.nulls(n)
        else:
            arr = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array(["x" * draw(st.integers(0, 5000))]))
        columns.append(arr)
        names.append(draw(st.sampled_from(["x", "y", "label", "x", "é", ""])))
    labels = pa.array(draw(st.lists(st.sampled_from(["a", "b"]), min_size=n, max_size=n)), pa.string())
    table = pa.table([*columns, labels], names=[*names, "label"])
    return apply_damage(mc.parquet(table), draw(damage))


@fuzz_settings(80)
@given(content=parquet_tables())
def test_fuzz_parquet(content):
    columns = attempt("columns", content, "fuzz.parquet")
    if columns is not None:
        assert all(isinstance(c, str) for c in columns[0])
    ds = attempt("upload", content, "fuzz.parquet", options={"label": "label"})
    if ds is not None:
        check_dataset(ds)


# ---------------------------------------------------------------------------------------------
# checkpoints


@functools.cache
def good_state() -> dict[str, torch.Tensor]:
    return mc.full_state()


def odd_tensor(kind: str, base: torch.Tensor) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "float16": lambda: base.half(), "bfloat16": lambda: base.bfloat16(), "float64": lambda: base.double(),
            "int64": lambda: base.long(), "bool": lambda: base > 0, "complex": lambda: base.to(torch.complex64),
            "0-d": lambda: torch.tensor(1.0), "empty": lambda: base[:0], "1-d": lambda: base.flatten(),
            "3-d": lambda: base.unsqueeze(-1), "more rows": lambda: torch.cat([base, base]),
            "nan": lambda: base.clone().fill_(float("nan")), "inf": lambda: base.clone().fill_(float("inf")),
            "sparse": lambda: base.to_sparse(), "meta": lambda: torch.empty(base.shape, device="meta"),
            "quantized": lambda: torch.quantize_per_tensor(base.float(), 0.1, 0, torch.qint8),
            "payload": lambda: mc.Payload(), "text": lambda: "weights", "number": lambda: 3, "list": lambda: [base],
        }[kind]()


KINDS = ["float16", "bfloat16", "float64", "int64", "bool", "complex", "0-d", "empty", "1-d", "3-d", "more rows",
         "nan", "inf", "sparse", "meta", "quantized", "payload", "text", "number", "list"]


@st.composite
def checkpoints(draw) -> tuple[bytes, str, dict]:
    state = dict(good_state()) if draw(st.integers(0, 3)) else mc.head_state()
    weights = [k for k, v in state.items() if v.is_floating_point() and v.ndim >= 1]
    for key in draw(st.lists(st.sampled_from(["fc.weight", "fc.bias", *weights[-6:]]), max_size=2, unique=True)):
        state[key] = odd_tensor(draw(st.sampled_from(KINDS)), state[key])
    if draw(st.booleans()):
        prefix = draw(st.sampled_from(["module.", "_orig_mod.", "backbone."]))
        state = {prefix + k: v for k, v in state.items()}
    if draw(st.booleans()):
        state = {draw(st.sampled_from(["state_dict", "model_state_dict", "model", "weights"])): state, "epoch": 3}
    container = draw(st.sampled_from(["torch", "torch", "legacy", "safetensors", "pickle", "bytes"]))
    if container == "safetensors":
        try:
            data = mc.safetensors_bytes(state)
        except Exception:  # sparse, meta, non-tensor values: safetensors cannot hold them, torch.save can
            data = mc.torch_bytes(state)
    elif container in ("torch", "legacy"):
        data = mc.torch_bytes(state, legacy=container == "legacy")
    elif container == "pickle":
        data = pickle.dumps({"state_dict": {"fc.weight": mc.Payload()}}, protocol=draw(st.integers(2, 5)))
    else:
        data = draw(st.binary(max_size=64))
    name = "ckpt" + draw(st.sampled_from([".pth", ".pt", ".safetensors", ".bin", ".ckpt", "", ".txt"]))
    options = {"num_classes": draw(st.sampled_from([None, None, 3, 5]))}
    return apply_damage(data, draw(damage)), name, {k: v for k, v in options.items() if v is not None}


@fuzz_settings(60)
@given(case=checkpoints())
def test_fuzz_checkpoints(case):
    data, name, options = case
    model = attempt("checkpoint", data, name, options=options)
    if model is not None:
        check_model(model)


# ---------------------------------------------------------------------------------------------
# model folders


JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=10)
ARCHITECTURES = st.one_of(
    JSON,
    st.fixed_dictionaries({"family": st.sampled_from(["timm", "vit-convstem", "TIMM", None, 3]),
                           "timm_name": st.sampled_from([mc.ARCH, "resnet10tt", "local-dir:/", "hf-hub:x/y", "", 3]),
                           "kwargs": st.one_of(JSON, st.dictionaries(
                               st.sampled_from(["num_classes", "drop_rate", "colour", "checkpoint_path", "img_size",
                                                "pretrained", "global_pool", "in_chans"]),
                               st.sampled_from([3, 0, -1, 10**12, 0.5, "avg", None, True, [3], "x"]), max_size=3))}),
)
FIELDS = {"architecture": ARCHITECTURES, "class_names": JSON | st.lists(st.text(max_size=3), min_size=3, max_size=3),
          "input_size": JSON | st.sampled_from([[3, 32, 32], 32, [32, 32], [3, 10**6, 10**6], [1, 32, 32]]),
          "mean": JSON, "std": JSON | st.just([0, 0, 0]), "test_accuracy": JSON, "name": JSON, "description": JSON}


@st.composite
def model_folders(draw) -> tuple[bytes, str | bytes]:
    if draw(st.integers(0, 6)) == 0:
        card = draw(JSON)
    else:
        card = json.loads(json.dumps(mc.GOOD_CARD))
        for field in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=2, unique=True)):  # often none: a valid card
            card[field] = draw(FIELDS[field])
    raw = json.dumps(card).encode()
    how = draw(st.sampled_from(["json", "json", "json", "json", "json", "damaged", "nan", "deep", "bom"]))
    if how == "damaged":
        raw = apply_damage(raw, draw(damage))
    elif how == "nan":
        raw = raw.replace(b"0.25", b"NaN")
    elif how == "deep":
        depth = draw(st.sampled_from([30, 40, 2000]))
        raw = b'{"x": ' + b"[" * depth + b"]" * depth + b", " + raw[1:] if raw.startswith(b"{") else b"[" * depth
    elif how == "bom":
        raw = b"\xef\xbb\xbf" + raw
    # The weights are named here and built in the test, so that a failing example prints briefly.
    weights = draw(st.sampled_from(["good", "good", "placeholder", "nan", "pickle"]) | st.binary(max_size=64))
    return raw, weights


def weights_file(kind) -> bytes:
    if kind == "good":
        return _good_weights()
    if kind == "placeholder":
        return mc.safetensors_bytes({"placeholder": torch.zeros(1)})
    if kind == "nan":
        return mc.safetensors_bytes({**good_state(), "fc.bias": torch.full((3,), float("nan"))})
    if kind == "pickle":
        return pickle.dumps(mc.Payload(), protocol=4)
    return kind  # random bytes


@functools.cache
def _good_weights() -> bytes:
    return mc.safetensors_bytes(good_state())


@fuzz_settings(80)
@given(folder=model_folders())
def test_fuzz_model_folders(folder):
    card, weights = folder
    files = {"card.json": card, "model.safetensors": weights_file(weights)}
    with tempfile.TemporaryDirectory() as root:
        model = attempt("folder", files, "fuzz_model", root=Path(root))
    if model is not None:
        check_model(model)
        assert isinstance(model.card["class_names"], list) and all(isinstance(c, str) for c in model.card["class_names"])
