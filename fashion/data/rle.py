"""Run-length encoding of masks in the Kaggle iMaterialist convention, and COCO RLE.

Kaggle RLE (the ``EncodedPixels`` column of the iMaterialist 2019/2020 ``train.csv``):
a string of "start length" pairs separated by spaces. Pixels are numbered column-major
(top to bottom, then left to right) and starts are 1-indexed, so pixel (y, x) of an
image of height H has number ``x * H + y + 1``.

COCO RLE (pycocotools): ``{"size": [h, w], "counts": str}``, also column-major, where
``counts`` is pycocotools' compressed string of alternating background/foreground run
lengths. ``to_coco`` and ``from_coco`` convert between the two.

Example:
    rle = encode(mask)                      # mask [H, W] bool -> "5 3 20 4"
    mask2 = decode(rle, H, W)               # -> [H, W] bool, equal to mask
    coco = to_coco(rle, H, W)               # -> {"size": [H, W], "counts": "..."}
    assert from_coco(coco) == rle
"""
import numpy as np
from pycocotools import mask as coco_mask

from mrcnn.data.annotations import coco_rle_to_mask as coco_to_mask  # noqa: F401 (public name)


def encode(mask):
    """Kaggle RLE of a mask [H, W] (bool or 0/1) -> "start length ..." (1-indexed starts,
    column-major). An empty mask gives ""."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode expects one mask of shape [height, width], got shape "
                         f"{mask.shape}; encode each instance separately.")
    flat = mask.astype(bool).ravel(order="F")                     # [H*W] column-major
    padded = np.concatenate([[False], flat, [False]])              # [H*W + 2]
    changes = np.flatnonzero(padded[1:] != padded[:-1])           # run starts and ends
    starts, ends = changes[0::2], changes[1::2]                    # 0-indexed, end exclusive
    pairs = np.stack([starts + 1, ends - starts], axis=1).ravel()  # [2 * runs]
    return " ".join(map(str, pairs.tolist()))


def parse(rle, height, width, where="EncodedPixels"):
    """Checks a Kaggle RLE string against its image size -> (starts, lengths) int64,
    starts 0-indexed. Raises ValueError naming the problem (``where`` names the row)."""
    if rle is None or (isinstance(rle, float) and np.isnan(rle)):
        rle = ""
    if not isinstance(rle, str):
        raise ValueError(f"{where}: RLE must be a string of 'start length' pairs, got "
                         f"{type(rle).__name__}.")
    height, width = int(height), int(width)
    if height <= 0 or width <= 0:
        raise ValueError(f"{where}: image size {height}x{width} is not positive; fix the "
                         "Height/Width columns.")
    tokens = rle.split()
    try:
        values = np.array(tokens, dtype=np.int64)                  # [2 * runs]
    except (ValueError, OverflowError):
        bad = next((t for t in tokens if not t.lstrip("-").isdigit()), tokens[0])
        raise ValueError(f"{where}: RLE token {bad!r} is not an integer; EncodedPixels "
                         "must hold whole numbers only.") from None
    if len(values) % 2:
        raise ValueError(f"{where}: RLE has an odd number of tokens ({len(values)}); it "
                         "must hold 'start length' pairs.")
    if np.any(values < 0):
        raise ValueError(f"{where}: RLE has a negative token ({values[values < 0][0]}); "
                         "starts and lengths must be >= 0.")
    starts, lengths = values[0::2] - 1, values[1::2]               # [runs] 0-indexed
    if np.any(starts < 0):
        raise ValueError(f"{where}: RLE has a start of 0, but starts are 1-indexed "
                         "(the first pixel is 1); the file may use 0-indexed starts.")
    ends = starts + lengths                                        # [runs] exclusive
    total = height * width
    if len(ends) and ends.max() > total:
        i = int(np.argmax(ends))
        raise ValueError(f"{where}: RLE run '{starts[i] + 1} {lengths[i]}' ends at pixel "
                         f"{ends[i]}, past the image end ({height}x{width} = {total} "
                         "pixels); Height/Width or EncodedPixels is wrong.")
    return starts, lengths


def decode(rle, height, width, where="EncodedPixels"):
    """Kaggle RLE -> mask [height, width] bool. Raises ValueError on a malformed RLE
    (odd token count, negative or non-numeric token, a run past the image end)."""
    starts, lengths = parse(rle, height, width, where)
    total = int(height) * int(width)
    # +1 at each run start, -1 at each run end; a running sum > 0 marks mask pixels.
    delta = (np.bincount(starts, minlength=total + 1)
             - np.bincount(starts + lengths, minlength=total + 1))  # [H*W + 1]
    flat = np.cumsum(delta[:total]) > 0                            # [H*W] column-major
    return flat.reshape(int(width), int(height)).T                 # [H, W]


def area(rle):
    """Pixel count of a Kaggle RLE without decoding it (runs assumed not to overlap)."""
    values = np.array(str(rle).split(), dtype=np.int64)
    return int(values[1::2].sum())


def to_coco(kaggle_rle, h, w):
    """Kaggle RLE -> COCO compressed RLE ``{"size": [h, w], "counts": str}``."""
    mask = decode(kaggle_rle, h, w)
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(h), int(w)], "counts": rle["counts"].decode("ascii")}


def from_coco(coco_rle):
    """COCO RLE (compressed or uncompressed) -> Kaggle RLE string."""
    return encode(coco_to_mask(coco_rle))
