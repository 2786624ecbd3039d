"""Loaders for user uploads: an image-folder .zip, a CSV/Parquet table, or a .npz of model outputs.

Every loader takes the upload's bytes (or a file-like object such as Streamlit's ``UploadedFile``)
and validates strictly; every failure is a :class:`DataError` whose message says what was expected
and what was found. Nothing is ever unpickled: pickle files are refused outright, ``.npz`` files are
read with ``allow_pickle=False``, and archives are read in memory (nothing is written to disk, so
path tricks cannot escape; they are refused anyway because they signal a hostile archive).

What an upload unpacks to is bounded *before* it is decoded (see :mod:`core.limits`): image sizes
from their headers (per image and summed over the zip), a table's rows × columns from the CSV's
header and line count or the Parquet footer, and a .npz's arrays from their .npy headers. Messages
name the file (and the member of an archive) and say how to fix it.
"""
from __future__ import annotations

import csv
import io
import re
import stat
import struct
import warnings
import zipfile
import zlib
from collections import Counter
from contextlib import contextmanager
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from core.limits import (
    MAX_IMAGE_PIXELS,
    MAX_NPZ_BYTES,
    MAX_TABLE_BYTES,
    MAX_TABLE_CELLS,
    MAX_TABLE_COLUMNS,
    MAX_TOTAL_PIXELS,
    MB,
)

from .dataset import DataError, Dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TABLE_EXTENSIONS = (".csv", ".parquet", ".pq")
PICKLE_EXTENSIONS = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt")
PIL_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
ACCEPTED_EXTENSIONS = (".zip",) + TABLE_EXTENSIONS + (".npz",)

MAX_CLASSES = 50  # a label column with more distinct values is not treated as a class label
MAX_ONE_HOT = 20  # categorical feature columns with at most this many values are one-hot encoded
# Files that archivers add by themselves; ignored without a note.
_JUNK = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$|\._)", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# helpers


def _read_bytes(data) -> bytes:
    """The content of ``data``: bytes-like, or a file-like object with getvalue()/read()."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if hasattr(data, "getvalue"):
        data = data.getvalue()
    elif hasattr(data, "read"):
        if hasattr(data, "seek"):
            try:
                data.seek(0)
            except (OSError, ValueError):
                pass
        data = data.read()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise DataError(f"Expected the uploaded file's bytes (or a file object), got {type(data).__name__}.")


def _stem(filename: str, default: str) -> str:
    name = PurePosixPath(str(filename).replace("\\", "/")).name
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return stem or default


def _extension(filename: str) -> str:
    name = PurePosixPath(str(filename).replace("\\", "/").lower()).name
    return "." + name.rsplit(".", 1)[1] if "." in name else ""


def looks_like_pickle(content: bytes) -> bool:
    """True for the start of a pickle stream (protocol 2 and later begin with b"\\x80", protocol byte)."""
    return content[:1] == b"\x80"


def _refuse_pickle(filename: str) -> DataError:
    return DataError(f"{filename!r} is a pickle file. Pickles can run arbitrary code, so uploads are never unpickled. "
                     "Upload a .zip of images, a .csv/.parquet table, or a .npz of arrays instead.")


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (hi is not None and value > hi):
        rng = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise DataError(f"{name} must be an integer {rng}, got {value!r}.")
    return int(value)


# ---------------------------------------------------------------------------------------------
# image folders in a .zip


def _unsafe_member_name(name: str) -> str | None:
    """Why an archive member name is refused, or None when it is a plain relative path."""
    norm = name.replace("\\", "/")
    if "\x00" in norm:
        return "contains a NUL character"
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return "is an absolute path"
    if any(part == ".." for part in norm.split("/")):
        return "climbs out of the archive with '..'"
    return None


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


_REZIP = "Create the .zip again from the original files and upload it."


def _member_read_error(archive: str, member: str, exc: BaseException) -> DataError:
    """A DataError that says, in plain words, why one archive member could not be unpacked."""
    text = str(exc)
    where = f"{member!r} in {archive!r}"
    if "CRC" in text:
        why = ("is damaged: its content does not match the checksum the archive stores for it (the file was "
               "corrupted while it was copied or downloaded)")
    elif isinstance(exc, NotImplementedError) or "compression method" in text:
        why = ("is compressed with a method that cannot be unpacked here (for example Deflate64, which Windows uses for "
               "large files). Zip the folder again with the standard Deflate method, e.g. 'zip -r images.zip folder'")
        return DataError(f"{where} {why}.")
    elif "password" in text or "encrypted" in text:
        return DataError(f"{where} is encrypted; upload an archive without a password.")
    elif "Overlapped" in text:
        why = "overlaps another entry of the archive (a trick of zip bombs), so the archive is refused"
    elif isinstance(exc, (EOFError, zipfile.BadZipFile)) or "truncated" in text.lower() or "end of" in text.lower():
        why = "is cut short: the archive ends before this file's data does (the upload is truncated)"
    else:
        why = f"is damaged: its compressed data cannot be unpacked ({text or type(exc).__name__})"
    return DataError(f"{where} {why}. {_REZIP}")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int, archive: str = "the archive") -> bytes:
    """Read one member, never more than ``budget`` bytes even if its header understates its size."""
    chunks, total = [], 0
    try:
        with zf.open(info) as fh:
            while True:
                chunk = fh.read(min(1 * MB, budget - total + 1))
                if not chunk:
                    break
                total += len(chunk)
                if total > budget or total > info.file_size:
                    raise DataError(f"{info.filename!r} in {archive!r} holds more data than its header declares "
                                    f"({info.file_size} bytes) or than the upload limit allows; refusing the archive. {_REZIP}")
                chunks.append(chunk)
    except DataError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError, zlib.error) as exc:
        raise _member_read_error(archive, info.filename, exc) from None
    return b"".join(chunks)


# Channels per PNG colour type (greyscale, RGB, palette, grey+alpha, RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7 interlacing: (first column, first row, column step, row step) of each of the 7 passes.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_raw_size(width: int, height: int, bit_depth: int, colour_type: int, interlace: int) -> int | None:
    """Bytes of filtered scanlines that a PNG of this header must inflate to (PNG spec, section 7-8)."""
    channels = _PNG_CHANNELS.get(colour_type)
    if channels is None or width <= 0 or height <= 0:
        return None

    def rows(w: int, h: int) -> int:  # each scanline is one filter-type byte plus its packed pixels
        return h * (1 + (w * channels * bit_depth + 7) // 8)

    if interlace == 0:
        return rows(width, height)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        w = (width - x0 + dx - 1) // dx if width > x0 else 0
        h = (height - y0 + dy - 1) // dy if height > y0 else 0
        if w and h:
            total += rows(w, h)
    return total


def _png_shortfall(content: bytes) -> tuple[int, int] | None:
    """(bytes the header needs, bytes the image data holds) when a PNG's pixel data is shorter than its header
    declares, else None.

    Pillow fills the missing rows of such a PNG with zeros without complaint, so the pixel data is
    inflated here (in 1 MB steps, stopping as soon as enough is there) and measured against the size
    that IHDR implies.
    """
    if not content.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    pos, need, got = 8, None, 0
    inflate = zlib.decompressobj()
    try:
        while pos + 8 <= len(content):
            length, kind = struct.unpack(">I4s", content[pos:pos + 8])
            data = content[pos + 8:pos + 8 + length]
            pos += 12 + length
            if kind == b"IHDR" and len(data) >= 13:
                width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[:13])
                need = _png_raw_size(width, height, depth, colour, interlace)
                if need is None:
                    return None
            elif kind == b"IDAT" and need is not None:
                while data:
                    got += len(inflate.decompress(data, 1 * MB))
                    if got >= need:
                        return None
                    data = inflate.unconsumed_tail
            elif kind == b"IEND":
                break
    except (zlib.error, struct.error):
        return None  # damaged rather than short: Pillow's own checks report it
    return (need, got) if need is not None and got < need else None


@contextmanager
def _image_errors(member: str, archive: str, max_pixels: int):
    """Turn whatever Pillow raises for a damaged or hostile image into one plain-words DataError."""
    from PIL import Image, UnidentifiedImageError

    where = f"{member!r} in {archive!r}"
    bomb = (f"{where} has too many pixels (a possible decompression bomb): at most {max_pixels:,} pixels "
            "per image are accepted")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield bomb
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(bomb + ". Resize it (e.g. to 1024×1024) and upload again.") from None
    except UnidentifiedImageError:
        raise DataError(f"{where} has an image file extension but is not a readable PNG, JPEG, BMP, GIF, WebP or TIFF "
                        "image. Fix or remove it and upload again.") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError, struct.error,
            MemoryError, zlib.error, RuntimeError) as exc:
        text = str(exc)
        if "MAX_TEXT_CHUNK" in text or "MAX_TEXT_MEMORY" in text or "text chunks" in text:
            raise DataError(f"{where} carries more text metadata than is safe to unpack (a compressed text chunk of "
                            "megabytes). Re-save the image without metadata (e.g. export it again as PNG) or remove it "
                            "from the archive, then upload again.") from None
        raise DataError(f"{where} is corrupt or truncated and could not be decoded (the image reader says: "
                        f"{text or type(exc).__name__}). Open and re-save it, or remove it from the archive, "
                        "then upload again.") from None


def _image_decode_cost(content: bytes, member: str, archive: str, image_size: int, max_pixels: int) -> int:
    """Pixels that decoding this image will cost, read from its header (nothing is decoded).

    JPEG decodes at a reduced scale (1/2 to 1/8) when the target is small, so its cost is the
    reduced size; other formats decode every pixel. Also checks the per-image pixel limit and the
    file's structure (PNG chunk checksums) with ``verify``.
    """
    from PIL import Image

    with _image_errors(member, archive, max_pixels) as bomb:
        with Image.open(io.BytesIO(content), formats=PIL_FORMATS) as im:
            w, h = im.size
            if w <= 0 or h <= 0:
                raise DataError(f"{member!r} in {archive!r} has an empty size {w}x{h}. Fix or remove it and upload again.")
            if w * h > max_pixels:
                raise DataError(f"{bomb}; it declares {w}x{h} = {w * h:,}. Resize it (e.g. to 1024×1024) and upload again.")
            im.draft("RGB", (image_size, image_size))
            cost = im.size[0] * im.size[1]
        with Image.open(io.BytesIO(content), formats=PIL_FORMATS) as im:
            im.verify()  # checksums and structure (PNG chunk CRCs) without decoding pixels
    return cost


def _decode_image(content: bytes, member: str, image_size: int, max_pixels: int, archive: str = "the archive") -> np.ndarray:
    """Decode one image file to RGB uint8 [S, S, 3], refusing corrupt, short and oversized files."""
    from PIL import Image

    with _image_errors(member, archive, max_pixels):
        with Image.open(io.BytesIO(content), formats=PIL_FORMATS) as im:
            w, h = im.size
            if w * h > max_pixels:  # checked again: a caller may decode without the header pass
                raise DataError(f"{member!r} in {archive!r} has too many pixels (a possible decompression bomb): "
                                f"at most {max_pixels:,} pixels per image are accepted; it declares {w}x{h}.")
            # JPEG can decode at a reduced scale, which is much faster for large photos.
            im.draft("RGB", (image_size, image_size))
            im.load()
            if im.format == "PNG":
                short = _png_shortfall(content)
                if short is not None:
                    need, got = short
                    raise DataError(f"{member!r} in {archive!r} is truncated: its header declares {w}x{h} pixels but its "
                                    f"image data holds only {got / need:.0%} of them (the rest would silently be black). "
                                    "Re-save the image from the original, or remove it from the archive.")
            rgb = im.convert("RGB")
            small = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.asarray(small, dtype=np.uint8).copy()


def _class_folders(paths: dict[str, list[str]]) -> tuple[dict[str, list[str]], str | None]:
    """Strip the wrapper folders that every image shares, so the class is the first folder that differs.

    ``pets/cats/1.png, pets/dogs/2.png`` -> classes cats, dogs with wrapper 'pets';
    ``a/b/c/cats/1.png, a/b/c/dogs/2.png`` -> wrapper 'a/b/c'. A shared folder is only stripped while
    every image stays inside a folder below it (otherwise that shared folder is the one class).
    """
    wrapper: list[str] = []
    while paths:
        firsts = {p[0] for p in paths.values()}
        if len(firsts) != 1 or not all(len(p) >= 3 for p in paths.values()):
            break
        wrapper.append(next(iter(firsts)))
        paths = {k: p[1:] for k, p in paths.items()}
    return paths, "/".join(wrapper) or None


def load_image_zip(data, image_size: int = 64, max_files: int = 5000, max_uncompressed: int = 200 * MB,
                   max_pixels: int = MAX_IMAGE_PIXELS, *, filename: str = "images.zip",
                   max_total_pixels: int = MAX_TOTAL_PIXELS) -> Dataset:
    """A .zip of an image folder: one sub-folder per class (optionally inside wrapper folders).

    ``cats/001.png, dogs/002.jpg`` or ``pets/cats/001.png, pets/dogs/002.jpg`` give the classes
    ``["cats", "dogs"]`` (sorted folder names); wrapper folders that every image shares
    (``a/b/c/cats/...``) are skipped. Images are converted to RGB and resized to
    ``image_size x image_size`` (bilinear). Files that are not images are skipped and counted in
    ``params["skipped_files"]``. The upload is refused when an entry has an absolute path or
    ``..``, when there are more than ``max_files`` files or more than ``max_uncompressed`` bytes
    (headers are checked first and actual reads are capped too), when an image declares more than
    ``max_pixels`` pixels, when all images together would decode more than ``max_total_pixels``
    pixels (checked from the image headers before any image is decoded), or when an image is
    corrupt or shorter than its header says (the message names the file).
    """
    image_size = _check_int("image_size", image_size, 8, 512)
    max_files = _check_int("max_files", max_files, 1)
    max_uncompressed = _check_int("max_uncompressed", max_uncompressed, 1)
    max_pixels = _check_int("max_pixels", max_pixels, 1)
    max_total_pixels = _check_int("max_total_pixels", max_total_pixels, 1)
    content = _read_bytes(data)
    if looks_like_pickle(content):
        raise _refuse_pickle(filename)
    try:
        zf = zipfile.ZipFile(io.BytesIO(content))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise DataError(f"{filename!r} is not a readable .zip archive ({_plain(exc)}). Expected a .zip of one folder "
                        "per class, e.g. 'cats/001.png'; if it is one, it is damaged: " + _REZIP) from None

    with zf:
        for info in infos:
            why = _unsafe_member_name(info.filename)
            if why:
                raise DataError(f"Refusing the archive {filename!r}: the entry {info.filename!r} {why}. "
                                "Entries must be relative paths such as 'cats/001.png'.")
        files = [i for i in infos if not i.is_dir() and not _JUNK.search(i.filename.replace("\\", "/"))]
        if len(files) > max_files:
            raise DataError(f"The archive {filename!r} holds {len(files):,} files; at most {max_files:,} are accepted. "
                            "Upload a sample of the images.")
        declared = sum(i.file_size for i in files)
        if declared > max_uncompressed:
            raise DataError(f"The archive {filename!r} unpacks to {declared:,} bytes; at most {max_uncompressed:,} are "
                            "accepted. Upload fewer or smaller images.")
        seen: set[str] = set()
        for info in files:
            if info.flag_bits & 0x1:
                raise DataError(f"{info.filename!r} in {filename!r} is encrypted; upload an archive without a password.")
            if _is_symlink(info):
                raise DataError(f"{info.filename!r} in {filename!r} is a symbolic link; links are not accepted in uploads.")
            if info.filename in seen:
                raise DataError(f"The archive {filename!r} holds two entries named {info.filename!r}. {_REZIP}")
            seen.add(info.filename)

        images = [i for i in files if _extension(i.filename) in IMAGE_EXTENSIONS]
        skipped = sorted(i.filename for i in files if _extension(i.filename) not in IMAGE_EXTENSIONS)
        if not images:
            found = f" (found {len(files)} other file(s), e.g. {skipped[0]!r})" if skipped else " (the archive is empty)"
            raise DataError(f"No images found in {filename!r}" + found + ". Expected one folder per class holding "
                            f"{', '.join(IMAGE_EXTENSIONS)} files, e.g. 'cats/001.png'.")

        parts = {i.filename: [p for p in i.filename.replace("\\", "/").split("/") if p not in ("", ".")] for i in images}
        parts, wrapper = _class_folders(parts)
        top = sorted(k for k, p in parts.items() if len(p) < 2)
        if top:
            raise DataError(f"Images must sit in one sub-folder per class (e.g. 'cats/001.png'), but {top[0]!r} "
                            f"in {filename!r} is not in a class folder ({len(top)} such file(s)).")
        class_names = sorted({p[0] for p in parts.values()})
        class_index = {c: k for k, c in enumerate(class_names)}
        images.sort(key=lambda i: (parts[i.filename][0], i.filename))

        # Pass 1: headers only. The pixel budget is checked before a single image is decoded.
        budget, total_pixels, largest = max_uncompressed, 0, (0, "")
        for info in images:
            raw = _read_member(zf, info, budget, filename)
            budget -= len(raw)
            cost = _image_decode_cost(raw, info.filename, filename, image_size, max_pixels)
            total_pixels += cost
            largest = max(largest, (cost, info.filename))
        if total_pixels > max_total_pixels:
            raise DataError(
                f"The {len(images):,} images in {filename!r} hold {total_pixels:,} pixels in all (the largest, "
                f"{largest[1]!r}, {largest[0]:,}); at most {max_total_pixels:,} pixels are decoded per upload. "
                f"Every image is shrunk to {image_size}×{image_size} anyway: resize the images (e.g. to 256×256) "
                "or upload fewer of them.")

        # Pass 2: decode, one member in memory at a time.
        out = np.empty((len(images), image_size, image_size, 3), np.uint8)
        labels = np.empty(len(images), np.int64)
        budget = max_uncompressed
        for k, info in enumerate(images):
            raw = _read_member(zf, info, budget, filename)
            budget -= len(raw)
            out[k] = _decode_image(raw, info.filename, image_size, max_pixels, filename)
            labels[k] = class_index[parts[info.filename][0]]

    counts = np.bincount(labels, minlength=len(class_names))
    notes = []
    if wrapper and "/" in wrapper:
        notes.append(f"Every image sits inside {wrapper!r}; the folders inside it are the classes.")
    if skipped:
        notes.append(f"Skipped {len(skipped)} file(s) that are not images, e.g. {skipped[0]!r}.")
    if len(class_names) == 1:
        notes.append(f"Only one class folder ({class_names[0]!r}); every image gets that label.")
    return Dataset(
        name=_stem(filename, "images"), kind="image", labels=labels, class_names=class_names, images=out,
        params={"source": str(filename), "image_size": image_size, "wrapper_folder": wrapper,
                "class_counts": {c: int(m) for c, m in zip(class_names, counts)},
                "skipped_files": len(skipped), "skipped_examples": skipped[:10], "notes": notes,
                "decoded_pixels": int(total_pixels)},
    )


# ---------------------------------------------------------------------------------------------
# tables


def _numeric_distinct(frame: pd.DataFrame, columns: list[str]) -> dict[str, tuple[int, int, bool]]:
    """(distinct non-missing values, non-missing count, all whole numbers) of numeric columns, vectorised.

    One sort per block of columns instead of a pandas ``nunique`` per column: a table of 10,000
    columns takes milliseconds instead of seconds.
    """
    out: dict[str, tuple[int, int, bool]] = {}
    if not columns:
        return out
    rows = len(frame)
    step = max(1, 1_000_000 // max(rows, 1))  # about 8 MB of float64 per block
    for start in range(0, len(columns), step):
        block = columns[start:start + step]
        x = frame[block].to_numpy(dtype=np.float64, na_value=np.nan)
        present = ~np.isnan(x)
        count = present.sum(axis=0)
        ordered = np.sort(x, axis=0)  # NaN sorts last, so the first count[j] values of column j are present
        changes = (ordered[1:] != ordered[:-1]) & (np.arange(1, rows)[:, None] < count[None, :])
        distinct = np.where(count > 0, 1 + changes.sum(axis=0), 0)
        with np.errstate(invalid="ignore"):
            whole = np.all((x == np.round(x)) | ~present, axis=0)
        for j, col in enumerate(block):
            out[col] = (int(distinct[j]), int(count[j]), bool(whole[j]))
    return out


def _numeric_blocks(frame: pd.DataFrame, columns: list[str]) -> dict[str, np.ndarray | None]:
    """Numeric columns as float64 arrays (NaN for missing), converted a block of columns at a time;
    None for a column whose values cannot be read as numbers."""
    out: dict[str, np.ndarray | None] = {}
    step = max(1, 1_000_000 // max(len(frame), 1))
    for start in range(0, len(columns), step):
        block = columns[start:start + step]
        try:
            x = frame[block].to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):  # one odd column: convert this block column by column
            for col in block:
                try:
                    out[col] = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                except (TypeError, ValueError):
                    out[col] = None
            continue
        for j, col in enumerate(block):
            out[col] = x[:, j]
    return out


def table_label_candidates(frame: pd.DataFrame) -> list[str]:
    """Columns that could be a class label: between 2 and 50 distinct non-missing values.

    Columns whose values are all distinct (identifiers) and float columns with fractional values
    (measurements) are left out. Ordered with the most likely first: columns named like a label, then fewer distinct values.
    """
    hint = re.compile(r"^(label|labels|target|class|y|outcome|category)$", re.IGNORECASE)
    names = [str(c) for c in frame.columns]
    dtypes = dict(zip(names, frame.dtypes))  # one lookup, not a pandas column access per column
    numeric = [c for c in names if pd.api.types.is_numeric_dtype(dtypes[c]) and not pd.api.types.is_complex_dtype(dtypes[c])]
    stats = _numeric_distinct(frame, numeric)
    out = []
    for col in names:
        if col in stats:
            k, n_present, whole = stats[col]
            if pd.api.types.is_float_dtype(dtypes[col]) and not whole:
                continue  # fractional measurements are not class labels
        else:
            try:
                present = frame[col].dropna()
                k, n_present = present.nunique(), len(present)
            except TypeError:  # unhashable cells
                continue
        if not 2 <= k <= MAX_CLASSES or k == n_present:  # all-distinct columns are identifiers, not labels
            continue
        out.append((0 if hint.match(col) else 1, k, col))
    return [c for _, _, c in sorted(out)]


def read_table_columns(data, filename: str, *, max_cells: int = MAX_TABLE_CELLS,
                       max_columns: int = MAX_TABLE_COLUMNS) -> tuple[list[str], list[str]]:
    """(all columns, likely label columns) of an uploaded CSV/Parquet table, for choosing the label."""
    content = _read_bytes(data)
    ext = _extension(filename)
    if ext not in (".csv", ".parquet", ".pq"):
        raise DataError(f"{filename!r} is not a table: expected a .csv or .parquet file.")
    if looks_like_pickle(content):
        raise _refuse_pickle(filename)
    frame, _ = _parse_table(content, filename, ".csv" if ext == ".csv" else ".parquet", max_cells, max_columns)
    if frame.shape[1] < 2:
        raise DataError(f"{filename!r} has {frame.shape[1]} column(s); a table needs a label column and at least one feature.")
    return list(frame.columns), table_label_candidates(frame)


def _plain(exc: BaseException) -> str:
    """The first line of an exception's message, without memory addresses, for a user-facing message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)[:300]


_SAVE_AS_CSV = "Save the table as 'CSV UTF-8 (comma delimited)' from your spreadsheet program and upload it again."
# Byte-order marks, longest first (the UTF-32 LE mark starts with the UTF-16 LE one).
_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xef\xbb\xbf", "utf-8-sig"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def _csv_text(content: bytes, filename: str) -> tuple[str, list[str]]:
    """Decode a CSV upload to text: UTF-8, UTF-16/32 (by byte-order mark, or UTF-16 without one), else Windows-1252."""
    notes: list[str] = []
    for bom, codec in _BOMS:
        if content.startswith(bom):
            try:
                text = content.decode(codec)
            except UnicodeDecodeError:
                raise DataError(f"{filename!r} starts with a {codec.upper()} text marker but is not valid {codec.upper()} "
                                f"text (it is damaged or not a text file). {_SAVE_AS_CSV}") from None
            if codec != "utf-8-sig":
                notes.append(f"Read {filename!r} as {codec.upper()} text.")
            return text, notes
    head = content[:4096]
    if b"\x00" in head:
        even, odd = head[0::2], head[1::2]
        for codec, zeros, chars in (("utf-16-le", odd, even), ("utf-16-be", even, odd)):
            # ASCII text in UTF-16 has a zero byte in every other position and none in the others.
            if len(content) % 2 == 0 and zeros.count(0) >= 0.9 * len(zeros) and chars.count(0) <= 0.1 * len(chars):
                try:
                    return content.decode(codec), [f"Read {filename!r} as {codec.upper()} text."]
                except UnicodeDecodeError:
                    break
        if content.startswith(b"PK\x03\x04"):
            hint = "It looks like an Excel workbook (or another zip file), not a CSV file. " + _SAVE_AS_CSV
        elif content.startswith(b"PAR1"):
            hint = "It is a Parquet file: rename it so that it ends in .parquet."
        else:
            hint = _SAVE_AS_CSV
        raise DataError(f"{filename!r} does not look like a text CSV file (it contains binary data: zero bytes). {hint}")
    try:
        return content.decode("utf-8"), notes
    except UnicodeDecodeError as exc:
        at = exc.start
    try:
        text = content.decode("cp1252")
    except UnicodeDecodeError:
        text = content.decode("latin-1")
    line = content.count(b"\n", 0, at) + 1
    notes.append(f"{filename!r} is not UTF-8 text (first at line {line}); it was read as Windows-1252 (Western European). "
                 "If some names look wrong, save it as 'CSV UTF-8'.")
    return text, notes


def _check_shape(filename: str, rows: int, columns: int, max_cells: int, max_columns: int, about: str = "") -> None:
    if columns > max_columns:
        raise DataError(f"{filename!r} has {about}{columns:,} columns; at most {max_columns:,} are accepted. Keep the label "
                        "column and the features you need, and upload again.")
    if rows * columns > max_cells:
        raise DataError(f"{filename!r} has {about}{rows:,} rows × {columns:,} columns = {rows * columns:,} cells; at most "
                        f"{max_cells:,} are accepted. Upload a sample of the rows (e.g. a random 100,000) or fewer columns.")


def _check_unique_names(names: list[str], filename: str) -> None:
    counts = Counter(names)  # linear: a list.count per column is quadratic, minutes for 10,000 columns
    dupes = sorted(c for c, k in counts.items() if k > 1 and c != "")
    if dupes:
        if len(dupes) == 1:
            shown = f"the name {dupes[0]!r} appears {counts[dupes[0]]} times"
        else:
            shown = ("the names " + ", ".join(f"{c!r} ({counts[c]} times)" for c in dupes[:5])
                     + (" …" if len(dupes) > 5 else "") + " appear more than once")
        raise DataError(f"Column names must be unique, but in {filename!r} {shown}. "
                        "Rename the columns so that each name appears once, and upload again.")


def _parse_csv(content: bytes, filename: str, max_cells: int, max_columns: int) -> tuple[pd.DataFrame, list[str]]:
    text, notes = _csv_text(content, filename)
    first, _, rest = text.partition("\n")
    hint = re.fullmatch(r"\s*sep=([,;\t|: ])\s*", first.rstrip("\r"), flags=re.IGNORECASE)
    if hint:  # Excel writes "sep=;" as a first line to name the separator
        sep = hint.group(1)
        text, first = rest, rest.partition("\n")[0]
        notes.append(f"The first line of {filename!r}, 'sep={sep}', names the separator; it was used and skipped.")
    else:
        sep = next((s for s in (",", ";", "\t") if s in first), ",")
    try:
        header = next(csv.reader([first.rstrip("\r")], delimiter=sep))
    except (csv.Error, StopIteration):
        header = first.split(sep)
    # Bounds before parsing: columns from the header, rows from the line count (an upper bound).
    lines = max(text.count("\n"), text.count("\r"), 1)  # old Mac files end lines with \r alone
    _check_shape(filename, lines, len(header), max_cells, max_columns, about="about ")
    _check_unique_names(header, filename)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep)
        if frame.shape[1] == 1 and not hint:  # maybe another separator after all
            for other in (";", "\t"):
                if other != sep and other in first:
                    frame = pd.read_csv(io.StringIO(text), sep=other)
                    break
    except pd.errors.EmptyDataError:
        raise DataError(f"{filename!r} is empty: expected a header row and at least one data row.") from None
    except Exception as exc:  # the CSV parser raises many types for malformed input
        quote = re.search(r"EOF inside string starting at row (\d+)", str(exc))
        if quote:
            raise DataError(f"{filename!r} could not be parsed as CSV: a quote (\") opened on line {int(quote.group(1)) + 1} is "
                            "never closed, so the rest of the file would be one value. Close or remove that quote and "
                            "upload again.") from None
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if found:
            want, line, saw = found.groups()
            raise DataError(f"{filename!r} could not be parsed as CSV: line {line} has {saw} fields but the header has "
                            f"{want}. Give every row as many fields as the header (put quotes around values that "
                            f"contain the separator {sep!r}) and upload again.") from None
        raise DataError(f"{filename!r} could not be parsed as CSV ({_plain(exc)}). Expected a comma-, semicolon- or "
                        "tab-separated text table with one header row.") from None
    return frame, notes


def _parse_parquet(content: bytes, filename: str, max_cells: int, max_columns: int,
                   max_bytes: int) -> tuple[pd.DataFrame, list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not content.startswith(b"PAR1"):
        raise DataError(f"{filename!r} is not a Parquet file (Parquet files start with 'PAR1'). If it is a CSV file, "
                        "rename it so that it ends in .csv.")
    redo = "Export the table again (e.g. with pandas' DataFrame.to_parquet) or upload it as CSV."
    notes: list[str] = []
    try:
        pf = pq.ParquetFile(io.BytesIO(content))
        meta, schema = pf.metadata, pf.schema_arrow
        names = [str(n) for n in schema.names]
        # Everything below comes from the footer: nothing has been decoded yet.
        _check_unique_names(names, filename)
        groups = [meta.row_group(g) for g in range(meta.num_row_groups)]
        rows = max(int(meta.num_rows), sum(int(g.num_rows) for g in groups))
        _check_shape(filename, rows, len(names), max_cells, max_columns)
        # Row-group totals only: pyarrow 26 aborts the whole process (an uncaught C++ exception) when
        # RowGroupMetaData.column(i) meets some damaged footers, while reading raises a clean error.
        unpacked = sum(int(g.total_byte_size) for g in groups)
        if unpacked > max_bytes:
            raise DataError(f"{filename!r} unpacks to {unpacked:,} bytes; at most {max_bytes:,} are accepted. "
                            "Upload a sample of the rows.")
        # Columns of lists or records are not read at all: their values are not bounded by the row count.
        nested = [f.name for f in schema if pa.types.is_nested(f.type)]
        if nested:
            notes.append(f"Skipped {len(nested)} column(s) that hold lists or records, e.g. {nested[0]!r}.")
        flat = [f.name for f in schema if not pa.types.is_nested(f.type)]
        text_like = [f.name for f in schema if f.name in flat and (
            pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_binary(f.type)
            or pa.types.is_large_binary(f.type))]
        # Text stays dictionary-encoded (pandas categories): a file that repeats one long string
        # millions of times then costs one copy of it, not millions.
        table = pq.read_table(io.BytesIO(content), columns=flat, read_dictionary=text_like)
        for name, column in zip(table.column_names, table.columns):
            try:
                column.validate(full=True)  # e.g. invalid UTF-8 in a text column, which would fail later
            except pa.ArrowInvalid as exc:
                raise DataError(f"The column {name!r} of {filename!r} is damaged ({_plain(exc)}). {redo}") from None
        for i, field in enumerate(table.schema):
            if pa.types.is_decimal(field.type):  # Decimal objects cost ~100 bytes per cell in pandas
                table = table.set_column(i, field.name, table.column(i).cast(pa.float64()))
        frame = table.to_pandas(date_as_object=False)
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError(f"{filename!r} has a column name (or other metadata) that is not UTF-8 text, so its columns "
                        f"cannot be named. Rename the columns with plain text names. {redo}") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for malformed input
        raise DataError(f"{filename!r} could not be read as Parquet: the file is damaged or uses a feature this reader "
                        f"does not support ({_plain(exc)}). {redo}") from None
    for col in frame.columns:
        s = frame[col]
        if isinstance(s.dtype, pd.CategoricalDtype) and any(isinstance(v, bytes) for v in s.cat.categories[:1]):
            # Binary columns: show bytes as text; bytes that are not UTF-8 appear as \xNN escapes.
            text = [v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v) for v in s.cat.categories]
            if len(set(text)) != len(text):
                raise DataError(f"The column {col!r} of {filename!r} holds raw bytes that cannot be shown as distinct "
                                f"text. Store it as text or numbers. {redo}")
            frame[col] = s.cat.rename_categories(text)
            if any("\\x" in t for t in text):
                notes.append(f"The column {col!r} holds bytes that are not UTF-8 text; they are shown as \\x escapes.")
    return frame, notes


def _parse_table(content: bytes, filename: str, ext: str, max_cells: int = MAX_TABLE_CELLS,
                 max_columns: int = MAX_TABLE_COLUMNS, max_bytes: int = MAX_TABLE_BYTES) -> tuple[pd.DataFrame, list[str]]:
    """Parse a CSV/Parquet upload after bounding its columns and cells from the header/footer; (frame, notes)."""
    if ext == ".csv":
        frame, notes = _parse_csv(content, filename, max_cells, max_columns)
    else:
        frame, notes = _parse_parquet(content, filename, max_cells, max_columns, max_bytes)
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{filename!r} did not parse into a table.")
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    _check_shape(filename, frame.shape[0], frame.shape[1], max_cells, max_columns)
    _check_unique_names(list(frame.columns), filename)
    return frame, notes


def _label_codes(values: pd.Series, label: str, filename: str = "the table") -> tuple[np.ndarray, list[str]]:
    """Map a label column (no missing values) to codes 0..K-1 and sorted class names."""
    if pd.api.types.is_bool_dtype(values):
        values = values.astype(bool)
    elif pd.api.types.is_numeric_dtype(values):
        num = values.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(num)):
            raise DataError(f"The label column {label!r} of {filename!r} contains infinite values; fix or remove those rows.")
        if np.all(num == np.round(num)) and np.all(np.abs(num) < 2**53):
            values = pd.Series(num.astype(np.int64))
    else:
        values = values.astype(str)
    uniques = pd.unique(values.to_numpy())
    try:
        ordered = sorted(uniques)
    except TypeError:
        ordered = sorted(uniques, key=str)
    names = [str(v) for v in ordered]
    if len(set(names)) != len(names):  # e.g. 1 and "1" in one object column
        raise DataError(f"The label column {label!r} of {filename!r} has distinct values that print the same: {names}. "
                        "Write every label the same way (all text or all numbers).")
    lookup = {v: k for k, v in enumerate(ordered)}
    codes = np.array([lookup[v] for v in values.to_numpy()], np.int64)
    return codes, names


def load_table(data, filename: str = "table.csv", label: str | None = None, unlabelled: bool = False,
               min_classes: int = 2, *, max_cells: int = MAX_TABLE_CELLS, max_columns: int = MAX_TABLE_COLUMNS) -> Dataset:
    """A CSV or Parquet table (chosen by extension) with a class label column.

    ``label`` must name a column with 2 to 50 distinct values; when it is None the error lists the
    candidates (see :func:`table_label_candidates`). Rows with a missing label are dropped. The
    other columns become float features: numeric and boolean columns as they are (missing and
    infinite values imputed with the column median), text/categorical columns with at most 20 values
    one-hot encoded as ``column=value``, other columns dropped. What was done is recorded in
    ``params`` (``dropped_columns``, ``one_hot_columns``, ``imputed`` {column: median},
    ``dropped_rows``, ``notes``). The returned frame holds the features plus the label column,
    which stores the class codes 0..K-1; ``class_names`` are the sorted original values as text.

    ``unlabelled=True`` with ``label=None`` reads a table without a label column (an OOD set): every
    row gets the label -1 and there are no class names. ``min_classes=1`` accepts a label column with
    a single class (an evaluation set, e.g. deployment data of one class; training needs 2).

    Before parsing, the table's size is bounded from the CSV header and line count or from the
    Parquet footer: at most ``max_columns`` columns and ``max_cells`` rows × columns.
    """
    ext = _extension(filename)
    if ext in PICKLE_EXTENSIONS:
        raise _refuse_pickle(filename)
    if ext not in TABLE_EXTENSIONS:
        raise DataError(f"Tables must be .csv or .parquet files; got {filename!r}.")
    content = _read_bytes(data)
    if looks_like_pickle(content):
        raise _refuse_pickle(filename)
    frame, notes = _parse_table(content, filename, ".csv" if ext == ".csv" else ".parquet", max_cells, max_columns)
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(f"{filename!r} is empty: it has {frame.shape[0]} rows and {frame.shape[1]} columns.")
    candidates = table_label_candidates(frame)
    if unlabelled and label is None:  # e.g. an OOD set: every row is "no class" (-1)
        codes, class_names = np.full(len(frame), -1, np.int64), []
        missing = np.zeros(len(frame), bool)
    else:
        if label is None:
            hint = (f"Candidates (2 to {MAX_CLASSES} distinct values): {', '.join(repr(c) for c in candidates[:20])}."
                    if candidates else f"No column looks like a class label (2 to {MAX_CLASSES} distinct values, not all "
                    "rows different, no fractional numbers); pass label= to choose one anyway.")
            raise DataError(f"Choose the label column of {filename!r}. {hint}")
        label = str(label)
        if label not in frame.columns:
            cols = ", ".join(repr(c) for c in list(frame.columns)[:30])
            raise DataError(f"The label column {label!r} is not in {filename!r}. Columns: {cols}.")
        if frame.shape[1] < 2:
            raise DataError(f"{filename!r} has only the label column {label!r}; at least one feature column is needed.")

        y_raw = frame[label]
        try:
            missing = y_raw.isna().to_numpy()
        except (TypeError, ValueError):
            missing = np.zeros(len(frame), bool)
        if missing.all():
            raise DataError(f"The label column {label!r} of {filename!r} is empty (every value is missing); choose another column.")
        if missing.any():
            notes.append(f"Dropped {int(missing.sum())} row(s) whose label is missing.")
            frame = frame.loc[~missing].reset_index(drop=True)
            y_raw = frame[label]
        try:
            k = y_raw.nunique(dropna=True)
        except TypeError:
            raise DataError(f"The label column {label!r} of {filename!r} holds values that cannot be compared (lists or objects); "
                            "choose another column.") from None
        if k < min_classes:
            raise DataError(f"The label column {label!r} of {filename!r} has a single class ({y_raw.iloc[0]!r}); at least 2 are "
                            "needed. Choose another column or upload rows of more classes.")
        if k > MAX_CLASSES:
            ok = ", ".join(repr(c) for c in candidates[:10]) or "none"
            raise DataError(f"The label column {label!r} of {filename!r} has {k} distinct values; a class label may have at most "
                            f"{MAX_CLASSES} (is it a continuous target or an identifier?). Columns that fit: {ok}.")
        codes, class_names = _label_codes(y_raw, label, filename)

    features: dict[str, np.ndarray] = {}
    dropped: list[str] = []
    one_hot: list[str] = []
    imputed: dict[str, float] = {}
    dtypes = dict(zip(frame.columns, frame.dtypes))  # one lookup, not a pandas column access per column
    numeric = _numeric_blocks(frame, [c for c in frame.columns if c != label and (
        pd.api.types.is_bool_dtype(dtypes[c]) or pd.api.types.is_numeric_dtype(dtypes[c])
        and not pd.api.types.is_complex_dtype(dtypes[c]))])
    for col in frame.columns:
        if col == label:
            continue
        if col in numeric:
            x = numeric[col]
            if x is None:
                dropped.append(col)
                notes.append(f"Dropped {col!r}: its values could not be read as numbers.")
                continue
            bad = ~np.isfinite(x)
            if bad.all():
                dropped.append(col)
                notes.append(f"Dropped {col!r}: it has no finite values.")
                continue
            if bad.any():
                median = float(np.median(x[~bad]))
                x = np.where(bad, median, x)
                imputed[col] = median
                notes.append(f"Imputed {int(bad.sum())} missing/infinite value(s) of {col!r} with its median {median:g}.")
            features[col] = x
            continue
        s = frame[col]
        if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
            dropped.append(col)
            notes.append(f"Dropped {col!r}: date/time columns are not used as features.")
            continue
        try:
            text = s.astype(object).map(lambda v: None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
                                        else str(v))
            values = sorted({v for v in text if v is not None})
        except Exception:  # cells pandas/arrow cannot turn into text: drop the column, keep the upload
            dropped.append(col)
            notes.append(f"Dropped {col!r}: its values could not be read.")
            continue
        if 1 <= len(values) <= MAX_ONE_HOT:
            one_hot.append(col)
            for v in values:
                name = f"{col}={v}"
                while name in features or name in frame.columns:
                    name += "#"
                features[name] = (text == v).to_numpy(dtype=np.float64)
        else:
            dropped.append(col)
            why = "no values" if not values else f"{len(values)} distinct text values (more than {MAX_ONE_HOT})"
            notes.append(f"Dropped {col!r}: {why}.")
    if not features:
        raise DataError(f"{filename!r} has no numeric feature columns" + (f" (besides the label {label!r})" if label else "") + "; "
                        f"dropped: {', '.join(repr(c) for c in dropped) or 'none'}.")
    label_name = label
    out = pd.DataFrame(features)
    if label_name is not None:
        out[label_name] = codes
    return Dataset(
        name=_stem(filename, "table"), kind="table", labels=codes, class_names=class_names, frame=out, label=label_name,
        params={"source": str(filename), "label": label, "dropped_columns": dropped, "one_hot_columns": one_hot,
                "imputed": imputed, "dropped_rows": int(missing.sum()), "notes": notes},
    )


# ---------------------------------------------------------------------------------------------
# model outputs in a .npz

NPZ_KEYS = ("logits", "features", "labels", "head_weight", "head_bias", "class_names")
_RESAVE_NPZ = "Save the arrays again with numpy.savez('outputs.npz', logits=logits, ...) and upload that file."
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError, zlib.error)


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, filename: str) -> np.ndarray:
    """One .npy member, its header checked before numpy allocates anything (never with pickle)."""
    where = f"{filename!r}: the array {key!r}"
    try:
        with zf.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy version {version}")
    except _ZIP_ERRORS as exc:
        raise _member_read_error(filename, info.filename, exc) from None
    except Exception:  # numpy raises ValueError, SyntaxError, ... for headers it did not write
        raise DataError(f"{where} is not a valid .npy array: its header is damaged or was not written by numpy. "
                        + _RESAVE_NPZ) from None
    if dtype.hasobject:
        raise DataError(f"{where} holds Python objects; pickled objects are not accepted (they could run code). "
                        "Save plain numeric (or string) arrays.")
    if dtype.itemsize == 0:
        raise DataError(f"{where} has elements of zero bytes (dtype {dtype}). Save plain numeric (or string) arrays.")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > info.file_size:
        raise DataError(f"{where} declares {nbytes:,} bytes of data but the file holds {info.file_size:,}; the .npz is "
                        "corrupt. " + _RESAVE_NPZ)
    try:
        with zf.open(info) as fh:
            return np.lib.format.read_array(fh, allow_pickle=False)
    except _ZIP_ERRORS as exc:
        raise _member_read_error(filename, info.filename, exc) from None
    except Exception as exc:
        raise DataError(f"{where} is truncated or damaged ({_plain(exc)}). " + _RESAVE_NPZ) from None


def _read_npz(content: bytes, filename: str, max_bytes: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """The recognised arrays of a .npz and the names of the others (which are not read at all).

    The zip directory and every recognised member's .npy header are checked before any data is
    read: numpy allocates the declared shape up front, so a tiny archive could claim terabytes,
    and object arrays would need pickle.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(content))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError):
        raise DataError(f"{filename!r} is not a .npz archive (np.savez output). Expected arrays such as "
                        "'logits' saved with numpy.savez('outputs.npz', logits=logits, ...).") from None
    with zf:
        members: dict[str, zipfile.ZipInfo] = {}
        ignored: list[str] = []
        seen: set[str] = set()
        for info in infos:
            name = info.filename
            if _unsafe_member_name(name):
                raise DataError(f"Refusing the archive {filename!r}: the entry {name!r} is not a plain name. " + _RESAVE_NPZ)
            if name in seen:
                raise DataError(f"{filename!r} holds two entries named {name!r}. " + _RESAVE_NPZ)
            seen.add(name)
            if info.is_dir():
                continue
            key = name[:-4] if name.endswith(".npy") else name
            if key not in NPZ_KEYS:
                ignored.append(key)
            elif not name.endswith(".npy"):
                raise DataError(f"{filename!r}: the entry {key!r} is a plain file, not a numpy array (.npy). " + _RESAVE_NPZ)
            else:
                members[key] = info
        declared = sum(i.file_size for i in members.values())
        if declared > max_bytes:
            raise DataError(f"The arrays in {filename!r} unpack to {declared:,} bytes; at most {max_bytes:,} are accepted. "
                            "Save float32 rather than float64 arrays, or the outputs of fewer samples.")
        arrays = {key: _read_npy(zf, info, key, filename) for key, info in members.items()}
    return arrays, sorted(set(ignored))


def _numeric(name: str, arr: np.ndarray, ndim: int, filename: str = "the .npz") -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{filename!r}: {name!r} must be a numeric array, got dtype {arr.dtype}. Save it as float32 "
                        "(integers for 'labels').")
    if arr.ndim != ndim:
        want = "[N, C]" if name == "logits" else {1: "1-D", 2: "2-D"}[ndim]
        raise DataError(f"{filename!r}: {name!r} must be {want}, got shape {arr.shape}.")
    return arr


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _finite(name: str, arr: np.ndarray, filename: str = "the .npz") -> None:
    """Refuse NaN/inf, and values that are finite in a wider float type but overflow float32 (1e300)."""
    if arr.dtype.kind != "f" or not arr.size:
        return
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        n_nan = int(np.count_nonzero(np.isnan(arr)))
        raise DataError(f"{filename!r}: {name!r} contains {bad:,} non-finite value(s) ({n_nan:,} NaN, {bad - n_nan:,} inf) "
                        f"out of {arr.size:,}. Remove or fix those samples before uploading.")
    if arr.dtype.itemsize > 4:  # every analysis works in float32, where these would become inf
        big = np.abs(arr) > _FLOAT32_MAX
        n_big = int(np.count_nonzero(big))
        if n_big:
            peak = np.abs(arr).max()
            raise DataError(f"{filename!r}: {name!r} holds {n_big:,} value(s) too large for float32 (up to {peak:.3g}; "
                            "float32 holds at most 3.4e+38), the precision every analysis uses, so they would become "
                            "infinite. Rescale the values, or save them as float32.")


def load_outputs_npz(data, filename: str = "outputs.npz", max_bytes: int = MAX_NPZ_BYTES) -> Dataset:
    """Precomputed model outputs saved with ``numpy.savez``.

    Required: ``logits [N, C]``. Optional: ``features [N, D]``, ``labels [N]`` (integers 0..C-1,
    -1 for a sample outside the classes), ``head_weight [C, D]``, ``head_bias [C]`` and
    ``class_names [C]`` (a string array). Arrays are read with ``allow_pickle=False`` after their
    headers are checked (at most ``max_bytes`` in all); object arrays, members that are not .npy
    arrays, NaN/inf in logits, features or head, values beyond float32's range, labels outside
    -1..C-1 and inconsistent shapes are refused.
    """
    from core.extract import ExtractError, ModelOutputs

    max_bytes = _check_int("max_bytes", max_bytes, 1)
    content = _read_bytes(data)
    if looks_like_pickle(content):
        raise _refuse_pickle(filename)
    arrays, ignored = _read_npz(content, filename, max_bytes)

    if "logits" not in arrays:
        raise DataError(f"{filename!r} must contain an array named 'logits' [N, C]; found: "
                        f"{', '.join(sorted(arrays) + ignored) or 'nothing'}. " + _RESAVE_NPZ)
    logits = _numeric("logits", arrays["logits"], 2, filename)
    n, c = logits.shape
    if n == 0 or c == 0:
        raise DataError(f"{filename!r}: 'logits' must have at least one sample and one class, got shape {logits.shape}.")
    _finite("logits", logits, filename)
    features = arrays.get("features")
    if features is not None:
        features = _numeric("features", features, 2, filename)
        if features.shape[0] != n:
            raise DataError(f"{filename!r}: 'features' must have one row per sample: logits have N = {n}, features have "
                            f"{features.shape[0]} rows (shape {features.shape}).")
        _finite("features", features, filename)
    head_weight, head_bias = arrays.get("head_weight"), arrays.get("head_bias")
    if head_bias is not None and head_weight is None:
        raise DataError(f"{filename!r}: 'head_bias' was given without 'head_weight'; include both (or neither).")
    if head_weight is not None:
        head_weight = _numeric("head_weight", head_weight, 2, filename)
        if head_weight.shape[0] != c:
            raise DataError(f"{filename!r}: 'head_weight' must be [C, D] with C = {c} (the number of logits), "
                            f"got {head_weight.shape}.")
        if features is not None and head_weight.shape[1] != features.shape[1]:
            raise DataError(f"{filename!r}: 'head_weight' must be [C, D] = [{c}, {features.shape[1]}] to match 'features' "
                            f"(D = {features.shape[1]}), got {head_weight.shape}.")
        _finite("head_weight", head_weight, filename)
    if head_bias is not None:
        head_bias = _numeric("head_bias", head_bias, 1, filename)
        if head_bias.shape != (c,):
            raise DataError(f"{filename!r}: 'head_bias' must be [C] with C = {c}, got shape {head_bias.shape}.")
        _finite("head_bias", head_bias, filename)
    labels = arrays.get("labels")
    if labels is not None:
        labels = _numeric("labels", labels, 1, filename)
        if labels.shape != (n,):
            raise DataError(f"{filename!r}: 'labels' must be [N] with N = {n} (the number of logits), got shape {labels.shape}.")
        if labels.dtype.kind == "f":
            if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
                raise DataError(f"{filename!r}: 'labels' must be whole numbers (class indices, -1 for none).")
        if labels.size:
            # Compared in the array's own type: uint64 2**64-1 must not wrap to -1 on the way to int64.
            outside = (labels < -1) | (labels > c - 1)
            n_out = int(np.count_nonzero(outside))
            if n_out:
                first = labels[np.flatnonzero(outside)[0]]
                shown = int(first) if labels.dtype.kind in "iub" else f"{first:g}"
                raise DataError(f"{filename!r}: 'labels' must be class indices 0..{c - 1} (one per logit) or -1 for no class; "
                                f"found {shown} ({n_out:,} sample(s) outside that range). Give samples of classes the model "
                                "does not have the label -1.")
        labels = labels.astype(np.int64)
    names = arrays.get("class_names")
    if names is not None:
        if names.dtype.kind not in "US" or names.ndim != 1:
            raise DataError(f"{filename!r}: 'class_names' must be a 1-D string array, got dtype {names.dtype} and shape "
                            f"{names.shape}. Save it as numpy.array(['cat', 'dog', ...]).")
        if len(names) != c:
            raise DataError(f"{filename!r}: 'class_names' must have C = {c} entries (one per logit), got {len(names)}.")
        class_names = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in names.tolist()]
    else:
        class_names = [str(k) for k in range(c)]
    try:
        outputs = ModelOutputs(
            logits=logits, features=features, labels=labels, preds=np.asarray(logits).argmax(1),
            head_weight=head_weight, head_bias=head_bias, class_names=class_names,
            meta={"model": "uploaded outputs", "data": str(filename)},
        )
    except ExtractError as exc:
        raise DataError(f"{filename!r}: {exc}") from None
    notes = [f"Ignored array(s) {', '.join(repr(k) for k in ignored[:10])}{' …' if len(ignored) > 10 else ''}; "
             f"recognised: {', '.join(NPZ_KEYS)}."] if ignored else []
    return Dataset(
        name=_stem(filename, "outputs"), kind="outputs",
        labels=labels.copy() if labels is not None else np.full(n, -1, np.int64), class_names=class_names,
        outputs=outputs,
        params={"source": str(filename), "keys": sorted([*arrays, *ignored]), "ignored_keys": ignored, "notes": notes},
    )


# ---------------------------------------------------------------------------------------------
# single entry point

_OPTIONS = {
    ".zip": {"image_size", "max_files", "max_uncompressed", "max_pixels", "max_total_pixels"},
    ".csv": {"label", "unlabelled", "min_classes"},
    ".npz": {"max_bytes"},
}


def load_upload(data, filename: str, **options) -> Dataset:
    """Load any supported upload, chosen by the file extension.

    ``.zip`` -> :func:`load_image_zip`, ``.csv``/``.parquet``/``.pq`` -> :func:`load_table`,
    ``.npz`` -> :func:`load_outputs_npz`. Options meant for another kind of file are ignored (so a
    UI can pass one set of options); unknown option names are an error. Pickle files are refused.
    """
    known = set().union(*_OPTIONS.values())
    unknown = sorted(set(options) - known)
    if unknown:
        raise DataError(f"Unknown upload option(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}.")
    filename = str(filename)
    ext = _extension(filename)
    if ext in PICKLE_EXTENSIONS:
        raise _refuse_pickle(filename)
    content = _read_bytes(data)
    if looks_like_pickle(content):
        raise _refuse_pickle(filename)
    if not content:
        raise DataError(f"{filename!r} is empty (0 bytes).")
    key = ".csv" if ext in TABLE_EXTENSIONS else ext
    if key not in _OPTIONS:
        raise DataError(f"Unsupported file type {ext or '(no extension)'!r} for {filename!r}. Accepted: "
                        ".zip (a folder of images per class), .csv or .parquet (a table), .npz (model outputs).")
    opts = {k: v for k, v in options.items() if k in _OPTIONS[key]}
    if key == ".zip":
        return load_image_zip(content, filename=filename, **opts)
    if key == ".csv":
        return load_table(content, filename, **opts)
    return load_outputs_npz(content, filename=filename, **opts)
