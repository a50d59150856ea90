"""Kaggle RLE encode/decode and the COCO RLE converters."""
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from fashion.data import rle


def random_masks(seed=0):
    rng = np.random.default_rng(seed)
    for h, w in [(1, 1), (3, 2), (17, 31), (64, 48), (128, 97)]:
        yield (rng.random((h, w)) < rng.uniform(0.05, 0.95))
    yield np.zeros((20, 10), bool)
    yield np.ones((20, 10), bool)
    edge = np.zeros((15, 12), bool)
    edge[0, 0] = edge[-1, -1] = edge[:, 5] = True  # first and last pixels, a full column
    yield edge


def test_known_example_is_one_indexed_column_major():
    mask = np.array([[1, 0],
                     [1, 1],
                     [0, 1]], bool)
    # Column-major pixel numbers: col 0 = 1,2,3 and col 1 = 4,5,6.
    assert rle.encode(mask) == "1 2 5 2"
    np.testing.assert_array_equal(rle.decode("1 2 5 2", 3, 2), mask)
    # The first pixel is start 1, the last is start H*W.
    only_last = np.zeros((3, 2), bool)
    only_last[2, 1] = True
    assert rle.encode(only_last) == "6 1"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_random_masks(seed):
    for mask in random_masks(seed):
        encoded = rle.encode(mask)
        decoded = rle.decode(encoded, *mask.shape)
        assert decoded.dtype == bool and decoded.shape == mask.shape
        np.testing.assert_array_equal(decoded, mask)
        assert rle.area(encoded) == mask.sum()


def test_matches_pycocotools_areas_and_masks():
    for mask in random_masks(3):
        h, w = mask.shape
        kaggle = rle.encode(mask)
        coco = rle.to_coco(kaggle, h, w)
        assert coco["size"] == [h, w] and isinstance(coco["counts"], str)
        as_bytes = dict(coco, counts=coco["counts"].encode())
        assert coco_mask.area(as_bytes) == mask.sum()
        np.testing.assert_array_equal(coco_mask.decode(as_bytes).astype(bool), mask)
        # pycocotools' own encoding (bytes counts) converts back to the same Kaggle RLE.
        reference = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle.from_coco(reference) == kaggle
        assert rle.from_coco(coco) == kaggle


def test_from_uncompressed_coco_rle():
    mask = np.zeros((4, 3), bool)
    mask[1:3, 1] = True          # column-major pixels 6 and 7 (1-indexed)
    uncompressed = {"size": [4, 3], "counts": [5, 2, 5]}
    assert rle.from_coco(uncompressed) == "6 2"
    np.testing.assert_array_equal(rle.coco_to_mask(uncompressed), mask)
    with pytest.raises(ValueError, match="sum to 11"):
        rle.coco_to_mask({"size": [4, 3], "counts": [5, 2, 4]})


@pytest.mark.parametrize("bad, message", [
    ("1 2 3", "odd number of tokens"),
    ("1 -2", "negative token"),
    ("-1 2", "negative token"),
    ("1 two", "'two' is not an integer"),
    ("1.5 2", "'1.5' is not an integer"),
    ("0 3", "1-indexed"),
    ("5 2 11 3", "past the image end"),
    ("13 1", "past the image end"),
])
def test_bad_rle_raises_clear_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        rle.decode(bad, 3, 4)


def test_error_names_the_row():
    with pytest.raises(ValueError, match="train.csv line 7"):
        rle.decode("1 99", 3, 4, where="train.csv line 7")


def test_empty_rle_is_empty_mask_and_last_pixel_fits():
    assert not rle.decode("", 5, 5).any()
    assert rle.decode("25 1", 5, 5)[4, 4]


def test_decode_is_vectorised_fast():
    import time
    mask = np.random.default_rng(0).random((1024, 1024)) < 0.5   # ~260k runs
    encoded = rle.encode(mask)
    start = time.perf_counter()
    decoded = rle.decode(encoded, 1024, 1024)
    assert time.perf_counter() - start < 1.0
    np.testing.assert_array_equal(decoded, mask)
