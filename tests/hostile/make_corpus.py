"""A corpus of malformed and hostile inputs for the upload and model loaders (issue 13, section 2).

Every case names the file, the loader it goes through (``entry``), and what must happen: a
refusal whose message matches ``expect`` (a ``UserError`` that names the file), or acceptance
checked by ``check``. Small cases are committed under ``tests/hostile/files/``; run

    python -m tests.hostile.make_corpus

from the repository root to rewrite them. Cases whose file would be large (``generated=True``:
over ~64 kB, or a decompression bomb of a gigabyte) are built in memory by the tests from the same
builders and never committed.

Payloads that would run code if unpickled create :data:`MARKER` (an empty file); the tests check
that it never appears.
"""
from __future__ import annotations

import io
import json
import pickle
import struct
import sys
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FILES = Path(__file__).resolve().parent / "files"
MARKER = Path(tempfile.gettempdir()) / "importance-explorer-hostile-marker"
#: The architecture every checkpoint and model-folder case is built against (timm's 0.4 M-parameter test ResNet).
ARCH = "test_resnet"
GOOD_CARD = {"architecture": {"family": "timm", "timm_name": ARCH, "kwargs": {"num_classes": 3}},
             "class_names": ["cat", "dog", "emu"], "input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.25] * 3}


class Payload:
    """Unpickling this creates MARKER (``open(MARKER, "w")``): proof that a pickle ran."""

    def __reduce__(self):
        return (open, (str(MARKER), "w"))


# ---------------------------------------------------------------------------------------------
# small building blocks


def png(w: int = 12, h: int = 10, mode: str = "RGB", colour=0) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (w, h), colour).save(buf, format="PNG")
    return buf.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_short(w: int = 64, h: int = 64, rows: int = 8) -> bytes:
    """A valid PNG (all checksums right) whose pixel data stops after ``rows`` of its ``h`` rows."""
    raw = b"".join(b"\x00" + b"\xc8" * (3 * w) for _ in range(rows))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def png_text_bomb() -> bytes:
    """A small PNG with a zTXt chunk that inflates to 4 MB of text (over Pillow's MAX_TEXT_CHUNK)."""
    small = png(8, 8)
    text = png_chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(b"a" * (4 << 20), 9))
    return small[:33] + text + small[33:]  # after the signature and IHDR


def make_zip(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return buf.getvalue()


def zip_with_zero_member(name: str, size: int, extra: dict[str, bytes] | None = None, header: bytes = b"") -> bytes:
    """A zip whose member ``name`` is ``header`` followed by ``size`` zero bytes, streamed (a real bomb)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for key, content in (extra or {}).items():
            zf.writestr(key, content)
        with zf.open(name, "w", force_zip64=True) as fh:
            fh.write(header)
            block = bytes(1 << 20)
            left = size
            while left > 0:
                fh.write(block[:min(left, len(block))])
                left -= len(block)
    return buf.getvalue()


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def npy_header(descr: str, shape: str) -> bytes:
    header = "{'descr': " + descr + ", 'fortran_order': False, 'shape': " + shape + ", }"
    header = header.ljust(-(-(len(header) + 11) // 64) * 64 - 11) + "\n"  # magic + header: a multiple of 64 bytes
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin-1")


def npz(**arrays) -> bytes:
    return make_zip({f"{k}.npy": npy(v) for k, v in arrays.items()})


LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [-0.2, 0.0, 3.0], [1.0, 1.0, 0.0]], np.float32)


def csv_bytes(text: str, encoding: str = "utf-8") -> bytes:
    return text.encode(encoding)


def parquet(table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def torch_bytes(obj, legacy: bool = False) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def head_state(weight=None, bias=None) -> dict:
    import torch

    torch.manual_seed(0)
    weight = torch.randn(3, 160) if weight is None else weight
    return {"fc.weight": weight, "fc.bias": torch.zeros(3) if bias is None else bias}


def full_state(seed: int = 0) -> dict:
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(ARCH, num_classes=3)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def safetensors_bytes(state: dict) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in state.items()})


def folder(card, weights: bytes | None = None, raw_card: bytes | None = None) -> dict[str, bytes]:
    """A model folder: card.json (JSON of ``card``, or ``raw_card`` as is) and model.safetensors."""
    import torch

    if weights is None:  # a stand-in: the card is refused before the weights are compared with it
        weights = safetensors_bytes({"placeholder": torch.zeros(1)})
    text = raw_card if raw_card is not None else json.dumps(card).encode()
    return {"card.json": text, "model.safetensors": weights}


# ---------------------------------------------------------------------------------------------
# the builders of the cases that are not one-liners


def zip_400_large_pngs() -> bytes:
    """400 PNGs of 6000×6000 (1-bit, so each is a few kB): 14.4 G pixels to decode."""
    one = png(6000, 6000, mode="1")
    return make_zip({f"{'cats' if i % 2 else 'dogs'}/{i:03d}.png": one for i in range(400)}, zipfile.ZIP_STORED)


def zip_bad_crc() -> bytes:
    content = bytearray(make_zip({"cats/a.png": png(), "dogs/a.png": png(30, 30)}, zipfile.ZIP_STORED))
    start = content.index(b"dogs/a.png") + len("dogs/a.png") + 40  # inside the stored PNG's bytes
    content[start] ^= 0xFF
    return bytes(content)


def csv_columns(n_columns: int, rows: int = 3) -> bytes:
    header = ",".join(f"c{i}" for i in range(n_columns - 1)) + ",label"
    body = "\n".join(",".join("1" for _ in range(n_columns - 1)) + f",{r % 2}" for r in range(rows))
    return (header + "\n" + body + "\n").encode()


def parquet_rows(n_rows: int) -> bytes:
    import pyarrow as pa

    return parquet(pa.table({"x": pa.array(np.zeros(n_rows, np.int8)), "label": pa.array(np.zeros(n_rows, np.int8))}))


def parquet_duplicate_columns() -> bytes:
    import pyarrow as pa

    return parquet(pa.table([pa.array([1, 2, 3]), pa.array([4, 5, 6]), pa.array([0, 1, 0])], names=["x", "x", "label"]))


def parquet_binary_label() -> bytes:
    import pyarrow as pa

    labels = pa.array([b"\xff\xfe", b"ok", b"\xff\xfe", b"ok"] * 3, pa.binary())
    return parquet(pa.table({"x": pa.array(np.arange(12.0)), "label": labels}))


def parquet_column_name_not_utf8() -> bytes:
    import pyarrow as pa

    return parquet(pa.table({"x": [1, 2, 3], "label": ["a", "b", "a"]})).replace(b"label", b"lab\xffl")


def parquet_repeated_long_string() -> bytes:
    """A million rows that all hold the same 1 MB string: a terabyte when decoded cell by cell."""
    import pyarrow as pa

    n = 1_000_000
    text = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array(["x" * (1 << 20)]))
    return parquet(pa.table({"note": text, "x": pa.array(np.zeros(n, np.int8)), "label": pa.array(np.arange(n) % 2)}))


def npz_bomb() -> bytes:
    """A .npz whose logits inflate to 1.15 GB of zeros (float64 [1_200_000, 120])."""
    header = npy_header("'<f8'", "(1200000, 120)")
    return zip_with_zero_member("logits.npy", 1_200_000 * 120 * 8, header=header)


def npz_header_with_call() -> bytes:
    header = npy_header(f"__import__('os').system('touch {MARKER}')", "(4, 3)")
    return make_zip({"logits.npy": header + b"\x00" * 96})


def ckpt_zip_bomb() -> bytes:
    """A torch.save archive with a deflated record that inflates to 1.1 GB."""
    import torch

    good = torch_bytes({"fc.weight": torch.zeros(3, 160)})
    with zipfile.ZipFile(io.BytesIO(good)) as src:
        extra = {info.filename: src.read(info.filename) for info in src.infolist()}
    prefix = next(iter(extra)).split("/")[0]
    return zip_with_zero_member(f"{prefix}/data/99", 1_100_000_000, extra=extra)


def ckpt_truncated() -> bytes:
    data = torch_bytes(head_state())
    return data[: len(data) // 2]


def ckpt_quantized() -> bytes:
    import torch

    with warnings.catch_warnings():  # quantized dtypes are deprecated, which is the point: uploads may hold them
        warnings.simplefilter("ignore")
        weight = torch.quantize_per_tensor(torch.randn(3, 160), 0.1, 0, torch.qint8)
    return torch_bytes(head_state(weight=weight))


def deep_card() -> dict[str, bytes]:
    return folder(None, raw_card=b"[" * 100_000 + b"]" * 100_000)


# ---------------------------------------------------------------------------------------------
# the cases


@dataclass(frozen=True)
class Case:
    name: str  # file (or folder) name under files/
    family: str
    entry: str  # "upload" (load_upload), "columns" (read_table_columns), "checkpoint", "folder" (models.load of a path)
    build: Callable[[], bytes | dict[str, bytes]]
    expect: str | None  # regex the refusal's message must match; None: the input is accepted
    check: Callable | None = None  # called on the loaded result when accepted
    options: dict = field(default_factory=dict)
    generated: bool = False  # too large to commit: built by the tests


def _classes(names):
    def check(ds):
        assert ds.class_names == names, ds.class_names
    return check


def _columns(names):
    def check(result):
        assert result[0] == names, result[0][:10]
    return check


def _n_columns(n):
    def check(result):
        assert len(result[0]) == n
    return check


def _finite_model(model):
    import torch

    with torch.no_grad():
        out = model(torch.zeros(1, 3, 32, 32))
    assert torch.isfinite(out).all() and out.shape == (1, 3)


CASES: list[Case] = [
    # --- hangs
    Case("columns_10k.csv", "hangs", "columns", lambda: csv_columns(10_000), None, check=_n_columns(10_000)),
    Case("columns_100k.csv", "hangs", "columns", lambda: csv_columns(100_000), r"100,000 columns; at most 10,000",
         generated=True),
    Case("pngs_400_of_6000x6000.zip", "hangs", "upload", zip_400_large_pngs, r"14,400,000,000 pixels in all",
         generated=True),
    # --- npz
    Case("npz_logits_plain_file.npz", "npz", "upload", lambda: make_zip({"logits": b"1,2,3\n4,5,6\n"}),
         r"'logits' is a plain file, not a numpy array"),
    Case("npz_labels_plain_file.npz", "npz", "upload", lambda: make_zip({"logits.npy": npy(LOGITS), "labels": b"0 1 2 0"}),
         r"'labels' is a plain file, not a numpy array"),
    Case("npz_class_names_pickled.npz", "npz", "upload",
         lambda: npz(logits=LOGITS, class_names=np.array(["a", Payload(), "c"], dtype=object)),
         r"'class_names' holds Python objects; pickled objects are not accepted"),
    Case("npz_features_pickled.npz", "npz", "upload",
         lambda: npz(logits=LOGITS, features=np.array([Payload()] * 4, dtype=object)), r"pickled objects are not accepted"),
    Case("npz_logits_1e300_float64.npz", "npz", "upload", lambda: npz(logits=np.full((4, 3), 1e300)),
         r"'logits' holds 12 value\(s\) too large for float32 \(up to 1e\+300"),
    Case("npz_logits_1e300_longdouble.npz", "npz", "upload",
         lambda: npz(logits=np.array([[1.0, 2.0, 3.0]] * 3 + [[1e300, 0.0, 0.0]], np.longdouble)),
         r"'logits' holds 1 value\(s\) too large for float32"),
    Case("npz_labels_2pow64_minus_1.npz", "npz", "upload",
         lambda: npz(logits=LOGITS, labels=np.array([0, 1, 2, 2**64 - 1], np.uint64)), r"found 18446744073709551615"),
    Case("npz_labels_99_of_3_classes.npz", "npz", "upload", lambda: npz(logits=LOGITS, labels=np.array([0, 1, 99, 2])),
         r"class indices 0\.\.2 \(one per logit\) or -1 for no class; found 99"),
    Case("npz_header_with_code.npz", "npz", "upload", npz_header_with_call,
         r"'logits' is not a valid \.npy array: its header is damaged"),
    Case("npz_logits_complex.npz", "npz", "upload", lambda: npz(logits=LOGITS.astype(np.complex64)),
         r"'logits' must be a numeric array"),
    # --- checkpoints
    Case("ckpt_fc_0d.pth", "checkpoints", "checkpoint", lambda: torch_bytes(head_state(weight=_scalar())),
         r"classifier weight 'fc\.weight' of shape \(\)"),
    Case("ckpt_fc_sparse.pth", "checkpoints", "checkpoint", lambda: torch_bytes(head_state(weight=_sparse())),
         r"the tensor 'fc\.weight' is not a dense tensor \(layout sparse_coo\)"),
    Case("ckpt_fc_meta.pth", "checkpoints", "checkpoint", lambda: torch_bytes(head_state(weight=_meta())),
         r"the tensor 'fc\.weight' holds no data \(it is a 'meta' tensor"),
    Case("ckpt_fc_quantized.pth", "checkpoints", "checkpoint", ckpt_quantized, r"the tensor 'fc\.weight' is quantized"),
    Case("ckpt_fc_nan.pth", "checkpoints", "checkpoint", lambda: torch_bytes(head_state(weight=_nan())),
         r"the tensor 'fc\.weight' holds 480 non-finite value\(s\) \(480 NaN"),
    Case("ckpt_fc_nan.safetensors", "checkpoints", "checkpoint", lambda: safetensors_bytes(head_state(weight=_nan())),
         r"the tensor 'fc\.weight' holds 480 non-finite"),
    Case("ckpt_fc_zero_classes.pth", "checkpoints", "checkpoint",
         lambda: torch_bytes(head_state(weight=_zeros(0, 160), bias=_zeros(0))), r"classifier weight 'fc\.weight' of shape "
         r"\(0, 160\)", options={"num_classes": 3}),
    Case("ckpt_truncated.pth", "checkpoints", "checkpoint", ckpt_truncated,
         r"truncated or not a safetensors/torch file: it starts like a torch\.save archive but its end is missing"),
    Case("ckpt_not_a_checkpoint.safetensors", "checkpoints", "checkpoint", lambda: b"<html>Not found</html>" * 4,
         r"neither how a safetensors file nor how a torch\.save file begins"),
    Case("ckpt_torch_file_named.safetensors", "checkpoints", "checkpoint", lambda: torch_bytes(full_state()), None,
         check=_finite_model, generated=True),
    Case("ckpt_safetensors_file_named.pth", "checkpoints", "checkpoint", lambda: safetensors_bytes(full_state()), None,
         check=_finite_model, generated=True),
    Case("ckpt_pickle_payload.pth", "checkpoints", "checkpoint", lambda: torch_bytes({"fc.weight": Payload()}),
         r"never unpickled"),
    Case("ckpt_pickle_payload_legacy.pth", "checkpoints", "checkpoint", lambda: torch_bytes(Payload(), legacy=True),
         r"never unpickled"),
    Case("ckpt_plain_pickle.pt", "checkpoints", "checkpoint", lambda: pickle.dumps(Payload(), protocol=4),
         r"never unpickled"),
    Case("ckpt_zip_bomb.pth", "memory", "checkpoint", ckpt_zip_bomb, r"unpacks to 1,100,\d{3},\d{3} bytes; at most",
         generated=True),
    # --- model folders (a path typed as the model name)
    Case("card_nested_100000_deep", "folders", "folder", deep_card, r"nested 100,000 levels deep", generated=True),
    Case("card_is_a_list", "folders", "folder", lambda: folder([GOOD_CARD]), r"must hold a JSON object .*; it holds a list"),
    Case("card_is_a_string", "folders", "folder", lambda: folder("architecture"), r"it holds a string"),
    Case("card_is_a_number", "folders", "folder", lambda: folder(3), r"it holds a number"),
    Case("card_is_null", "folders", "folder", lambda: folder(None), r"it holds null"),
    Case("card_architecture_without_family", "folders", "folder",
         lambda: folder({**GOOD_CARD, "architecture": {"timm_name": ARCH}}), r"'family' must be one of .*; it is missing"),
    Case("card_architecture_is_a_string", "folders", "folder", lambda: folder({**GOOD_CARD, "architecture": ARCH}),
         r"'architecture' must be an object .*; it is a string"),
    Case("card_unknown_timm_name", "folders", "folder",
         lambda: folder({**GOOD_CARD, "architecture": {"family": "timm", "timm_name": "resnet10tt"}}),
         r"names the timm architecture 'resnet10tt', which this version of timm does not have\. Did you mean: resnet10t"),
    Case("card_hub_timm_name", "folders", "folder",
         lambda: folder({**GOOD_CARD, "architecture": {"family": "timm", "timm_name": "local-dir:/etc"}}),
         r"'local-dir:/etc', which this version of timm does not have"),
    Case("card_unknown_argument", "folders", "folder",
         lambda: folder({**GOOD_CARD, "architecture": {"family": "timm", "timm_name": ARCH,
                                                       "kwargs": {"num_classes": 3, "colour": "blue"}}}),
         r"gives the argument 'colour' to 'test_resnet', which does not accept it"),
    Case("card_checkpoint_path_argument", "folders", "folder",
         lambda: folder({**GOOD_CARD, "architecture": {"family": "timm", "timm_name": ARCH,
                                                       "kwargs": {"checkpoint_path": "/etc/passwd"}}}),
         r"'checkpoint_path' are not accepted in a model card"),
    Case("card_class_names_number", "folders", "folder", lambda: folder({**GOOD_CARD, "class_names": 3}),
         r"'class_names' must be a list of names .*got a number \(3\)"),
    Case("card_class_names_string", "folders", "folder", lambda: folder({**GOOD_CARD, "class_names": "cat,dog,emu"}),
         r"'class_names' must be a list of names .*got the text 'cat,dog,emu'"),
    Case("card_billion_parameters", "folders", "folder",
         lambda: folder({**GOOD_CARD, "architecture": {"family": "vit-convstem", "kwargs": {
             "img_size": 64, "patch_size": 8, "embed_dim": 65536, "depth": 64, "num_heads": 1, "num_classes": 3}}}),
         r"do not match the architecture that the model card describes"),
    Case("card_million_layers", "folders", "folder",
         lambda: folder({**GOOD_CARD, "architecture": {"family": "vit-convstem", "kwargs": {
             "img_size": 64, "patch_size": 8, "embed_dim": 8, "depth": 1_000_000, "num_heads": 1, "num_classes": 3}}}),
         r"the architecture argument 'depth' = 1000000 is larger than any real model uses"),
    Case("card_mean_is_text", "folders", "folder", lambda: folder({**GOOD_CARD, "mean": "imagenet"}),
         r"'mean' must be a list of three numbers"),
    Case("card_nan_weights", "folders", "folder", lambda: folder(GOOD_CARD, safetensors_bytes({"fc.weight": _nan()})),
         r"the tensor 'fc\.weight' holds 480 non-finite"),
    Case("card_good", "folders", "folder", lambda: folder(GOOD_CARD, safetensors_bytes(full_state())), None,
         check=_finite_model, generated=True),
    # --- silent oddities
    Case("png_shorter_than_header.zip", "oddities", "upload",
         lambda: make_zip({"cats/short.png": png_short(), "dogs/ok.png": png()}),
         r"'cats/short\.png' in 'png_shorter_than_header\.zip' is truncated: its header declares 64x64 pixels but its "
         r"image data holds only 12%"),
    Case("classes_under_a_b_c_d_e.zip", "oddities", "upload",
         lambda: make_zip({"a/b/c/d/e/cats/1.png": png(), "a/b/c/d/e/cats/2.png": png(), "a/b/c/d/e/dogs/1.png": png()}),
         None, check=_classes(["cats", "dogs"])),
    Case("sep_hint_first_line.csv", "oddities", "columns", lambda: csv_bytes("sep=;\nx;y;label\n1;2;a\n3;4;b\n"), None,
         check=_columns(["x", "y", "label"])),
    # --- memory amplification
    Case("parquet_20M_rows.parquet", "memory", "columns", lambda: parquet_rows(20_000_000),
         r"20,000,000 rows × 2 columns = 40,000,000 cells; at most 10,000,000", generated=True),
    Case("npz_logits_1_15GB.npz", "memory", "upload", npz_bomb,
         r"The arrays in 'npz_logits_1_15GB\.npz' unpack to 1,152,000,128 bytes; at most", generated=True),
    Case("parquet_repeated_1MB_string.parquet", "memory", "columns", parquet_repeated_long_string, None,
         check=_columns(["note", "x", "label"]), generated=True),
    # --- unclear messages, now plain
    Case("csv_utf16.csv", "messages", "columns", lambda: csv_bytes("x,y,label\n1,2,a\n3,4,b\n", "utf-16"), None,
         check=_columns(["x", "y", "label"])),
    Case("csv_utf16_no_bom.csv", "messages", "columns", lambda: csv_bytes("x,y,label\n1,2,a\n3,4,b\n", "utf-16-le"), None,
         check=_columns(["x", "y", "label"])),
    Case("xlsx_named.csv", "messages", "columns", lambda: make_zip({"[Content_Types].xml": b"<Types/>", "xl/x": b"\x00"}),
         r"looks like an Excel workbook .*Save the table as 'CSV UTF-8"),
    Case("parquet_duplicate_columns.parquet", "messages", "columns", parquet_duplicate_columns,
         r"Column names must be unique, but in 'parquet_duplicate_columns\.parquet' the name 'x' appears 2 times"),
    Case("csv_duplicate_columns.csv", "messages", "columns", lambda: csv_bytes("x,x,label\n1,2,a\n3,4,b\n"),
         r"the name 'x' appears 2 times"),
    Case("parquet_binary_label.parquet", "messages", "upload", parquet_binary_label, None,
         check=_classes(["\\xff\\xfe", "ok"]), options={"label": "label"}),
    Case("parquet_column_name_not_utf8.parquet", "messages", "columns", parquet_column_name_not_utf8,
         r"has a column name \(or other metadata\) that is not UTF-8 text"),
    Case("csv_ragged_rows.csv", "messages", "upload", lambda: csv_bytes("x,y,label\n1,2,a\n3,4,b,extra,more\n"),
         r"line 3 has 5 fields but the header has 3", options={"label": "label"}),
    Case("png_text_bomb.zip", "messages", "upload", lambda: make_zip({"cats/a.png": png_text_bomb(), "dogs/b.png": png()}),
         r"'cats/a\.png' in 'png_text_bomb\.zip' carries more text metadata than is safe"),
    Case("zip_bad_crc.zip", "messages", "upload", zip_bad_crc,
         r"'dogs/a\.png' in 'zip_bad_crc\.zip' is damaged: its content does not match the checksum"),
    Case("pickle_named.npz", "messages", "upload", lambda: pickle.dumps(Payload(), protocol=4), r"never unpickled"),
]


def _scalar():
    import torch

    return torch.tensor(1.0)


def _sparse():
    import torch

    return torch.randn(3, 160).to_sparse()


def _meta():
    import torch

    return torch.empty(3, 160, device="meta")


def _nan():
    import torch

    return torch.full((3, 160), float("nan"))


def _zeros(*shape):
    import torch

    return torch.zeros(*shape)


def write(case: Case, root: Path = FILES) -> Path:
    """Write one case under ``root`` (a file, or a folder of files) and return its path."""
    content = case.build()
    path = root / case.family / case.name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        path.mkdir(exist_ok=True)
        for name, data in content.items():
            (path / name).write_bytes(data)
    else:
        path.write_bytes(content)
    return path


def main() -> None:
    for case in CASES:
        if not case.generated:
            path = write(case)
            size = sum(p.stat().st_size for p in ([path] if path.is_file() else path.iterdir()))
            print(f"{size:>9,}  {path.relative_to(FILES.parent)}")
            if size > 200_000:
                sys.exit(f"{case.name} is {size:,} bytes: mark it generated instead of committing it")


if __name__ == "__main__":
    main()
