"""Limits on what an upload may unpack to, checked *before* anything is decoded.

An upload is small on the wire but may describe far more work or memory than its size suggests
(a 13 MB zip of 400 images of 6000×6000 pixels, a 277 kB Parquet file of 20 million rows, a
379 kB .npz that decodes to a gigabyte). Every loader reads the declared sizes first (image
headers, Parquet metadata, .npy headers, zip directories, JSON nesting) and refuses the upload
with a message that names the limit when the declared work is over it. The numbers suit one
2-core server shared by a class (see issue 13): each limit keeps a single upload to a few seconds
of decoding and a few hundred MB of memory, while leaving room for the data the app is meant for.
"""
from __future__ import annotations

MB = 1024 * 1024

#: Pixels per image (width × height as the header declares it): the decompression-bomb guard.
MAX_IMAGE_PIXELS = 40_000_000
#: Pixels decoded across all images of one .zip (after JPEG's reduced-scale decoding). PNG decodes
#: and resizes at about 50 Mpixel/s on one core, so this is about 5 s of work; it holds 5,000
#: images of 224×224 (the file-count limit) or 1,000 of 500×500.
MAX_TOTAL_PIXELS = 256_000_000
#: Columns of an uploaded table. Choosing the label column looks at every column, which costs
#: about 0.15 ms per column; 10,000 columns stay within a couple of seconds.
MAX_TABLE_COLUMNS = 10_000
#: Cells (rows × columns) of an uploaded table, read from the CSV's line count and header or
#: from the Parquet metadata before parsing: 10 M cells are 80 MB as float64 features.
MAX_TABLE_CELLS = 10_000_000
#: Bytes of text a Parquet table's string columns decode to (dictionary encoding lets a small
#: file repeat a long string millions of times), and bytes its pages decompress to.
MAX_TABLE_BYTES = 256 * MB
#: Bytes the arrays of an uploaded .npz decode to, from the .npy headers. ImageNet's 50,000
#: validation images with 1,000 logits and 768 features are 354 MB as float32.
MAX_NPZ_BYTES = 512 * MB
#: Bytes a checkpoint decodes to (a torch.save archive may compress its tensors). ViT-B/16 is
#: 346 MB as float32; a larger model does not suit a 2-core server anyway.
MAX_CHECKPOINT_BYTES = 1024 * MB
#: A model card is a few hundred bytes of JSON; these bounds refuse anything that is not one
#: before parsing it (Python's JSON parser recurses once per nesting level).
MAX_CARD_BYTES = 1 * MB
MAX_CARD_DEPTH = 32
#: Outputs of a model built by name (ImageNet-21k has 21,843 classes); the head of a model with a
#: billion classes would not fit in memory, so the number is checked before anything is built.
MAX_MODEL_CLASSES = 50_000
#: Side of a model's input in pixels: a ViT's position embeddings grow with its square.
MAX_INPUT_SIDE = 1024

__all__ = [
    "MAX_CARD_BYTES", "MAX_CARD_DEPTH", "MAX_CHECKPOINT_BYTES", "MAX_IMAGE_PIXELS", "MAX_INPUT_SIDE", "MAX_MODEL_CLASSES",
    "MAX_NPZ_BYTES", "MAX_TABLE_BYTES", "MAX_TABLE_CELLS", "MAX_TABLE_COLUMNS", "MAX_TOTAL_PIXELS", "MB",
]
