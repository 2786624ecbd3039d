"""Loaders for user uploads: an image-folder .zip, a CSV/Parquet table, or a .npz of model outputs.

Every loader takes the upload's bytes (or a file-like object such as Streamlit's ``UploadedFile``)
and validates strictly; every failure is a :class:`DataError` whose message says what was expected
and what was found. Nothing is ever unpickled: pickle files are refused outright, ``.npz`` files are
read with ``allow_pickle=False``, and archives are read in memory (nothing is written to disk, so
path tricks cannot escape; they are refused anyway because they signal a hostile archive).
"""
from __future__ import annotations

import io
import re
import stat
import struct
import warnings
import zipfile
import zlib
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from .dataset import DataError, Dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TABLE_EXTENSIONS = (".csv", ".parquet", ".pq")
PICKLE_EXTENSIONS = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt")
PIL_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
ACCEPTED_EXTENSIONS = (".zip",) + TABLE_EXTENSIONS + (".npz",)

MB = 1024 * 1024
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


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
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
                    raise DataError(f"{info.filename!r} holds more data than its header declares "
                                    f"({info.file_size} bytes) or than the upload limit allows; refusing the archive.")
                chunks.append(chunk)
    except DataError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError, zlib.error) as exc:
        raise DataError(f"Could not read {info.filename!r} from the archive: {exc}") from None
    return b"".join(chunks)


def _decode_image(content: bytes, member: str, image_size: int, max_pixels: int) -> np.ndarray:
    """Decode one image file to RGB uint8 [S, S, 3], refusing corrupt files and decompression bombs."""
    from PIL import Image, UnidentifiedImageError

    bomb = (f"{member!r} has too many pixels (a possible decompression bomb): at most {max_pixels:,} pixels "
            "per image are accepted")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Only plain raster formats: some Pillow plugins (EPS) would call external programs.
            with Image.open(io.BytesIO(content), formats=PIL_FORMATS) as im:
                w, h = im.size
                if w <= 0 or h <= 0:
                    raise DataError(f"{member!r} has an empty size {w}x{h}.")
                if w * h > max_pixels:
                    raise DataError(f"{bomb}; it declares {w}x{h} = {w * h:,}.")
                im.verify()  # checksums and structure (PNG chunk CRCs) without decoding pixels
            with Image.open(io.BytesIO(content), formats=PIL_FORMATS) as im:
                # JPEG can decode at a reduced scale, which is much faster for large photos.
                im.draft("RGB", (image_size, image_size))
                im.load()
                rgb = im.convert("RGB")
                small = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
                return np.asarray(small, dtype=np.uint8).copy()
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(bomb + ".") from None
    except UnidentifiedImageError:
        raise DataError(f"{member!r} has an image file extension but is not a readable image. "
                        "Fix or remove it and upload again.") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError, struct.error,
            MemoryError, zlib.error, RuntimeError) as exc:
        raise DataError(f"{member!r} is corrupt or truncated and could not be decoded ({exc}). "
                        "Fix or remove it and upload again.") from None


def load_image_zip(data, image_size: int = 64, max_files: int = 5000, max_uncompressed: int = 200 * MB,
                   max_pixels: int = 40_000_000, *, filename: str = "images.zip") -> Dataset:
    """A .zip of an image folder: one sub-folder per class (optionally inside one wrapper folder).

    ``cats/001.png, dogs/002.jpg`` or ``pets/cats/001.png, pets/dogs/002.jpg`` give the classes
    ``["cats", "dogs"]`` (sorted folder names). Images are converted to RGB and resized to
    ``image_size x image_size`` (bilinear). Files that are not images are skipped and counted in
    ``params["skipped_files"]``. The upload is refused when an entry has an absolute path or
    ``..``, when there are more than ``max_files`` files or more than ``max_uncompressed`` bytes
    (headers are checked first and actual reads are capped too), when an image declares more than
    ``max_pixels`` pixels, or when an image is corrupt (the message names the file).
    """
    image_size = _check_int("image_size", image_size, 8, 512)
    max_files = _check_int("max_files", max_files, 1)
    max_uncompressed = _check_int("max_uncompressed", max_uncompressed, 1)
    max_pixels = _check_int("max_pixels", max_pixels, 1)
    content = _read_bytes(data)
    if looks_like_pickle(content):
        raise _refuse_pickle(filename)
    try:
        zf = zipfile.ZipFile(io.BytesIO(content))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise DataError(f"{filename!r} is not a readable .zip archive ({exc}).") from None

    with zf:
        for info in infos:
            why = _unsafe_member_name(info.filename)
            if why:
                raise DataError(f"Refusing the archive: the entry {info.filename!r} {why}. "
                                "Entries must be relative paths such as 'cats/001.png'.")
        files = [i for i in infos if not i.is_dir() and not _JUNK.search(i.filename.replace("\\", "/"))]
        if len(files) > max_files:
            raise DataError(f"The archive holds {len(files):,} files; at most {max_files:,} are accepted.")
        declared = sum(i.file_size for i in files)
        if declared > max_uncompressed:
            raise DataError(f"The archive unpacks to {declared:,} bytes; at most {max_uncompressed:,} are accepted.")
        for info in files:
            if info.flag_bits & 0x1:
                raise DataError(f"{info.filename!r} is encrypted; upload an archive without a password.")
            if _is_symlink(info):
                raise DataError(f"{info.filename!r} is a symbolic link; links are not accepted in uploads.")

        images = [i for i in files if _extension(i.filename) in IMAGE_EXTENSIONS]
        skipped = sorted(i.filename for i in files if _extension(i.filename) not in IMAGE_EXTENSIONS)
        if not images:
            found = f" (found {len(files)} other file(s), e.g. {skipped[0]!r})" if skipped else " (the archive is empty)"
            raise DataError("No images found in the archive" + found + ". Expected one folder per class holding "
                            f"{', '.join(IMAGE_EXTENSIONS)} files, e.g. 'cats/001.png'.")

        parts = {i.filename: [p for p in i.filename.replace("\\", "/").split("/") if p not in ("", ".")] for i in images}
        firsts = {p[0] for p in parts.values()}
        wrapper = None
        if len(firsts) == 1 and all(len(p) >= 3 for p in parts.values()):
            wrapper = next(iter(firsts))
            parts = {k: p[1:] for k, p in parts.items()}
        top = sorted(k for k, p in parts.items() if len(p) < 2)
        if top:
            raise DataError(f"Images must sit in one sub-folder per class (e.g. 'cats/001.png'), but {top[0]!r} "
                            f"is not in a class folder ({len(top)} such file(s)).")
        class_names = sorted({p[0] for p in parts.values()})
        if len(class_names) < 1:
            raise DataError("Expected at least one class folder in the archive.")
        class_index = {c: k for k, c in enumerate(class_names)}

        images.sort(key=lambda i: (parts[i.filename][0], i.filename))
        out = np.empty((len(images), image_size, image_size, 3), np.uint8)
        labels = np.empty(len(images), np.int64)
        budget = max_uncompressed
        for k, info in enumerate(images):
            raw = _read_member(zf, info, budget)
            budget -= len(raw)
            out[k] = _decode_image(raw, info.filename, image_size, max_pixels)
            labels[k] = class_index[parts[info.filename][0]]

    counts = np.bincount(labels, minlength=len(class_names))
    notes = []
    if skipped:
        notes.append(f"Skipped {len(skipped)} file(s) that are not images, e.g. {skipped[0]!r}.")
    if len(class_names) == 1:
        notes.append(f"Only one class folder ({class_names[0]!r}); every image gets that label.")
    return Dataset(
        name=_stem(filename, "images"), kind="image", labels=labels, class_names=class_names, images=out,
        params={"source": str(filename), "image_size": image_size, "wrapper_folder": wrapper,
                "class_counts": {c: int(m) for c, m in zip(class_names, counts)},
                "skipped_files": len(skipped), "skipped_examples": skipped[:10], "notes": notes},
    )


# ---------------------------------------------------------------------------------------------
# tables


def table_label_candidates(frame: pd.DataFrame) -> list[str]:
    """Columns that could be a class label: between 2 and 50 distinct non-missing values.

    Columns whose values are all distinct (identifiers) and float columns with fractional values
    (measurements) are left out. Ordered with the most likely first: columns named like a label, then fewer distinct values.
    """
    hint = re.compile(r"^(label|labels|target|class|y|outcome|category)$", re.IGNORECASE)
    out = []
    for col in frame.columns:
        s = frame[col]
        try:
            present = s.dropna()
            k = present.nunique()
        except TypeError:  # unhashable cells
            continue
        if not 2 <= k <= MAX_CLASSES or k == len(present):  # all-distinct columns are identifiers, not labels
            continue
        if pd.api.types.is_float_dtype(s) and not np.all(present.to_numpy() == np.round(present.to_numpy())):
            continue  # fractional measurements are not class labels
        out.append((0 if hint.match(str(col)) else 1, k, str(col)))
    return [c for _, _, c in sorted(out)]


def read_table_columns(data, filename: str) -> tuple[list[str], list[str]]:
    """(all columns, likely label columns) of an uploaded CSV/Parquet table, for choosing the label."""
    content = _read_bytes(data)
    ext = _extension(filename)
    if ext not in (".csv", ".parquet", ".pq"):
        raise DataError(f"{filename!r} is not a table: expected a .csv or .parquet file.")
    frame = _parse_table(content, filename, ".csv" if ext == ".csv" else ".parquet")
    if frame.shape[1] < 2:
        raise DataError(f"{filename!r} has {frame.shape[1]} column(s); a table needs a label column and at least one feature.")
    return list(frame.columns), table_label_candidates(frame)


def _parse_table(content: bytes, filename: str, ext: str) -> pd.DataFrame:
    if ext == ".csv":
        if b"\x00" in content[:4096]:
            raise DataError(f"{filename!r} does not look like a text CSV file (it contains binary data).")
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = content.decode("latin-1")
        try:
            frame = pd.read_csv(io.StringIO(text))
            if frame.shape[1] == 1:  # maybe ';' or tab separated
                header = text.split("\n", 1)[0]
                for sep in (";", "\t"):
                    if sep in header:
                        frame = pd.read_csv(io.StringIO(text), sep=sep)
                        break
        except pd.errors.EmptyDataError:
            raise DataError(f"{filename!r} is empty: expected a header row and at least one data row.") from None
        except Exception as exc:  # the CSV parser raises many types for malformed input
            raise DataError(f"{filename!r} could not be parsed as CSV ({type(exc).__name__}: {exc}).") from None
    else:
        if not content.startswith(b"PAR1"):
            raise DataError(f"{filename!r} is not a Parquet file (Parquet files start with 'PAR1').")
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(content))
            table.validate(full=True)  # e.g. invalid UTF-8 in a text column, which would fail later
            frame = table.to_pandas()
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for malformed input
            raise DataError(f"{filename!r} could not be read as Parquet ({type(exc).__name__}: {exc}).") from None
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{filename!r} did not parse into a table.")
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    dupes = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if dupes:
        raise DataError(f"Column names must be unique; {', '.join(repr(c) for c in dupes)} appear more than once.")
    return frame


def _label_codes(values: pd.Series, label: str) -> tuple[np.ndarray, list[str]]:
    """Map a label column (no missing values) to codes 0..K-1 and sorted class names."""
    if pd.api.types.is_bool_dtype(values):
        values = values.astype(bool)
    elif pd.api.types.is_numeric_dtype(values):
        num = values.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(num)):
            raise DataError(f"The label column {label!r} contains infinite values.")
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
        raise DataError(f"The label column {label!r} has distinct values that print the same: {names}.")
    lookup = {v: k for k, v in enumerate(ordered)}
    codes = np.array([lookup[v] for v in values.to_numpy()], np.int64)
    return codes, names


def load_table(data, filename: str = "table.csv", label: str | None = None, unlabelled: bool = False,
               min_classes: int = 2) -> Dataset:
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
    """
    ext = _extension(filename)
    if ext in PICKLE_EXTENSIONS:
        raise _refuse_pickle(filename)
    if ext not in TABLE_EXTENSIONS:
        raise DataError(f"Tables must be .csv or .parquet files; got {filename!r}.")
    content = _read_bytes(data)
    if looks_like_pickle(content):
        raise _refuse_pickle(filename)
    frame = _parse_table(content, filename, ".csv" if ext == ".csv" else ".parquet")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(f"{filename!r} is empty: it has {frame.shape[0]} rows and {frame.shape[1]} columns.")
    candidates = table_label_candidates(frame)
    notes: list[str] = []
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
            raise DataError(f"The label column {label!r} is empty (every value is missing).")
        if missing.any():
            notes.append(f"Dropped {int(missing.sum())} row(s) whose label is missing.")
            frame = frame.loc[~missing].reset_index(drop=True)
            y_raw = frame[label]
        try:
            k = y_raw.nunique(dropna=True)
        except TypeError:
            raise DataError(f"The label column {label!r} holds values that cannot be compared (lists or objects).") from None
        if k < min_classes:
            raise DataError(f"The label column {label!r} has a single class ({y_raw.iloc[0]!r}); at least 2 are needed.")
        if k > MAX_CLASSES:
            ok = ", ".join(repr(c) for c in candidates[:10]) or "none"
            raise DataError(f"The label column {label!r} has {k} distinct values; a class label may have at most "
                            f"{MAX_CLASSES} (is it a continuous target or an identifier?). Columns that fit: {ok}.")
        codes, class_names = _label_codes(y_raw, label)

    features: dict[str, np.ndarray] = {}
    dropped: list[str] = []
    one_hot: list[str] = []
    imputed: dict[str, float] = {}
    for col in frame.columns:
        if col == label:
            continue
        s = frame[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_complex_dtype(s):
            try:
                x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
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


def _inspect_npz(content: bytes, max_bytes: int) -> None:
    """Check every member's .npy header before numpy allocates anything.

    numpy allocates an array of the header's declared shape before reading, so a tiny archive
    could claim terabytes; object dtypes would need pickle. Both are refused here.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(content))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError):
        raise DataError("The file is not a .npz archive (np.savez output). Expected arrays such as "
                        "'logits' saved with numpy.savez.") from None
    with zf:
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise DataError(f"The .npz unpacks to {total:,} bytes; at most {max_bytes:,} are accepted.")
        for info in infos:
            if _unsafe_member_name(info.filename):
                raise DataError(f"Refusing the archive: the entry {info.filename!r} is not a plain name.")
            if not info.filename.endswith(".npy"):
                continue
            try:
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            except DataError:
                raise
            except Exception as exc:  # numpy raises ValueError, SyntaxError, ... for bad headers
                raise DataError(f"The array {info.filename[:-4]!r} in the .npz is malformed ({exc}).") from None
            if dtype.hasobject:
                raise DataError(f"The array {info.filename[:-4]!r} holds Python objects; pickled objects are not "
                                "accepted. Save plain numeric (or string) arrays.")
            nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if nbytes > info.file_size:
                raise DataError(f"The array {info.filename[:-4]!r} declares {nbytes:,} bytes of data but the file holds "
                                f"{info.file_size:,}; the .npz is corrupt.")


def _numeric(name: str, arr: np.ndarray, ndim: int) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{name!r} must be a numeric array, got dtype {arr.dtype}.")
    if arr.ndim != ndim:
        want = "[N, C]" if name == "logits" else {1: "1-D", 2: "2-D"}[ndim]
        raise DataError(f"{name!r} must be {want}, got shape {arr.shape}.")
    return arr


def _finite(name: str, arr: np.ndarray) -> None:
    bad = int(np.count_nonzero(~np.isfinite(arr))) if arr.dtype.kind == "f" else 0
    if bad:
        n_nan = int(np.count_nonzero(np.isnan(arr)))
        raise DataError(f"{name!r} contains {bad:,} non-finite value(s) ({n_nan:,} NaN, {bad - n_nan:,} inf) out of "
                        f"{arr.size:,}. Remove or fix those samples before uploading.")


def load_outputs_npz(data, filename: str = "outputs.npz", max_bytes: int = 2048 * MB) -> Dataset:
    """Precomputed model outputs saved with ``numpy.savez``.

    Required: ``logits [N, C]``. Optional: ``features [N, D]``, ``labels [N]`` (integers, -1 for a
    sample outside the classes), ``head_weight [C, D]``, ``head_bias [C]`` and ``class_names [C]``
    (a string array). Arrays are loaded with ``allow_pickle=False``; object arrays, NaN/inf in
    logits, features or head, and inconsistent shapes are refused.
    """
    from core.extract import ExtractError, ModelOutputs

    max_bytes = _check_int("max_bytes", max_bytes, 1)
    content = _read_bytes(data)
    if looks_like_pickle(content):
        raise _refuse_pickle(filename)
    _inspect_npz(content, max_bytes)
    try:
        with np.load(io.BytesIO(content), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise DataError("The .npz holds object arrays; pickled objects are not accepted. "
                            "Save plain numeric (or string) arrays.") from None
        raise DataError(f"The .npz could not be read ({exc}).") from None
    except AttributeError:
        raise DataError("Expected a .npz archive (numpy.savez), got a single .npy array.") from None
    except Exception as exc:  # zipfile/numpy raise several types for corrupt archives
        raise DataError(f"The .npz could not be read ({type(exc).__name__}: {exc}).") from None

    if "logits" not in arrays:
        raise DataError(f"The .npz must contain an array named 'logits' [N, C]; found: {', '.join(arrays) or 'nothing'}.")
    ignored = sorted(set(arrays) - set(NPZ_KEYS))
    logits = _numeric("logits", arrays["logits"], 2)
    n, c = logits.shape
    if n == 0 or c == 0:
        raise DataError(f"'logits' must have at least one sample and one class, got shape {logits.shape}.")
    _finite("logits", logits)
    features = arrays.get("features")
    if features is not None:
        features = _numeric("features", features, 2)
        if features.shape[0] != n:
            raise DataError(f"'features' must have one row per sample: logits have N = {n}, features have "
                            f"{features.shape[0]} rows (shape {features.shape}).")
        _finite("features", features)
    head_weight, head_bias = arrays.get("head_weight"), arrays.get("head_bias")
    if head_bias is not None and head_weight is None:
        raise DataError("'head_bias' was given without 'head_weight'; include both (or neither).")
    if head_weight is not None:
        head_weight = _numeric("head_weight", head_weight, 2)
        if head_weight.shape[0] != c:
            raise DataError(f"'head_weight' must be [C, D] with C = {c} (the number of logits), got {head_weight.shape}.")
        if features is not None and head_weight.shape[1] != features.shape[1]:
            raise DataError(f"'head_weight' must be [C, D] = [{c}, {features.shape[1]}] to match 'features' "
                            f"(D = {features.shape[1]}), got {head_weight.shape}.")
        _finite("head_weight", head_weight)
    if head_bias is not None:
        head_bias = _numeric("head_bias", head_bias, 1)
        if head_bias.shape != (c,):
            raise DataError(f"'head_bias' must be [C] with C = {c}, got shape {head_bias.shape}.")
        _finite("head_bias", head_bias)
    labels = arrays.get("labels")
    if labels is not None:
        labels = _numeric("labels", labels, 1)
        if labels.shape != (n,):
            raise DataError(f"'labels' must be [N] with N = {n} (the number of logits), got shape {labels.shape}.")
        if labels.dtype.kind == "f":
            if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
                raise DataError("'labels' must be whole numbers (class indices, -1 for none).")
        if labels.size and labels.min() < -1:
            raise DataError(f"'labels' must be class indices 0..{c - 1} or -1 for no class; found {labels.min()}.")
        labels = labels.astype(np.int64)
    names = arrays.get("class_names")
    if names is not None:
        if names.dtype.kind not in "US" or names.ndim != 1:
            raise DataError(f"'class_names' must be a 1-D string array, got dtype {names.dtype} and shape {names.shape}.")
        if len(names) != c:
            raise DataError(f"'class_names' must have C = {c} entries (one per logit), got {len(names)}.")
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
        raise DataError(str(exc)) from None
    notes = [f"Ignored array(s) {', '.join(repr(k) for k in ignored)}; recognised: {', '.join(NPZ_KEYS)}."] if ignored else []
    return Dataset(
        name=_stem(filename, "outputs"), kind="outputs",
        labels=labels.copy() if labels is not None else np.full(n, -1, np.int64), class_names=class_names,
        outputs=outputs,
        params={"source": str(filename), "keys": sorted(arrays), "ignored_keys": ignored, "notes": notes},
    )


# ---------------------------------------------------------------------------------------------
# single entry point

_OPTIONS = {
    ".zip": {"image_size", "max_files", "max_uncompressed", "max_pixels"},
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
