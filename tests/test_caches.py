"""H5 cache and TFRecords hold the same records as build_record on the raw files."""
import logging
import os
import shutil

import h5py
import numpy as np
import pytest

from fashion.data.fashion_dataset import FashionDataset
from fashion.data.demo_data import generate_demo
from mrcnn.config import Config
from mrcnn.data.h5cache import H5RecordSource, StaleCacheError, build_h5_cache
from mrcnn.data.records import build_record


class CacheConfig(Config):
    NAME = "test"
    NUM_CLASSES = 47
    NUM_ATTRIBUTES = 92
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64


KEYS = ("image", "image_meta", "masks", "class_ids", "attributes")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("demo") / "set", num_images=10, size=96)


def load(root):
    ds = FashionDataset()
    ds.load_imat2019(root, subset="all")
    ds.prepare()
    return ds


def assert_same(record, expected):
    for key in KEYS:
        got = np.asarray(record[key])
        assert got.dtype == expected[key].dtype, key
        assert got.shape == expected[key].shape, key
        np.testing.assert_array_equal(got, expected[key], err_msg=key)


@pytest.fixture(scope="module")
def h5_path(demo_dir, tmp_path_factory):
    return build_h5_cache(load(demo_dir), CacheConfig(),
                          str(tmp_path_factory.mktemp("h5") / "all.h5"), num_workers=2)


def test_h5_records_equal_raw_records(demo_dir, h5_path):
    ds, config = load(demo_dir), CacheConfig()
    source = H5RecordSource(h5_path, config, dataset=ds)
    assert len(source) == ds.num_images and list(source.image_ids) == list(ds.image_ids)
    for i in range(len(source)):
        record = source.get(i)
        assert record["masks"].shape[:2] == (64, 64) and record["attributes"].shape[1] == 92
        assert_same(record, build_record(ds, config, int(source.image_ids[i])))
    assert not os.path.exists(h5_path + ".partial")


def test_h5_reused_when_current_and_refused_for_other_config(demo_dir, h5_path):
    stamp = os.stat(h5_path).st_mtime_ns
    assert build_h5_cache(load(demo_dir), CacheConfig(), h5_path) == h5_path
    assert os.stat(h5_path).st_mtime_ns == stamp

    class Bigger(CacheConfig):
        IMAGE_MAX_DIM = 128
    with pytest.raises(StaleCacheError, match="IMAGE_MAX_DIM=64 but the config has 128"):
        H5RecordSource(h5_path, Bigger())


def test_stale_cache_is_refused(demo_dir, tmp_path):
    root = shutil.copytree(demo_dir, tmp_path / "copy")
    ds = load(root)
    path = build_h5_cache(ds, CacheConfig(), str(tmp_path / "c.h5"), num_workers=1)
    H5RecordSource(path, CacheConfig())
    h, w = ds.image_info[0]["height"], ds.image_info[0]["width"]
    with open(root / "train.csv", "a") as f:
        f.write(f"{ds.image_info[0]['id']},1 3,{h},{w},23\n")   # one more shoe
    with pytest.raises(StaleCacheError, match=r"stale: source file .*train\.csv changed.*"
                                              r"rebuild it with"):
        H5RecordSource(path, CacheConfig())
    # Rebuilding picks up the change.
    build_h5_cache(load(root), CacheConfig(), path, num_workers=1)
    assert H5RecordSource(path, CacheConfig()).get(0)["class_ids"][-1] == 24  # shoe


def test_half_written_cache_is_refused(demo_dir, h5_path, tmp_path):
    half = str(tmp_path / "half.h5")
    shutil.copyfile(h5_path, half)
    with h5py.File(half, "r+") as f:
        del f.attrs["complete"]
    with pytest.raises(StaleCacheError, match="half-written"):
        H5RecordSource(half, CacheConfig())


class CrashingDataset(FashionDataset):
    def load_image(self, image_id):
        if image_id == 3:
            raise RuntimeError("simulated crash")
        return super().load_image(image_id)


def test_crash_while_building_leaves_no_complete_looking_file(demo_dir, tmp_path):
    ds = CrashingDataset()
    ds.load_imat2019(demo_dir, subset="all")
    ds.prepare()
    path = str(tmp_path / "crash.h5")
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_h5_cache(ds, CacheConfig(), path, num_workers=2)
    assert not os.path.exists(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        H5RecordSource(path, CacheConfig())


def test_unloadable_images_are_skipped_with_count(demo_dir, tmp_path, caplog):
    root = shutil.copytree(demo_dir, tmp_path / "copy")
    (root / "train" / "demo_00005.jpg").write_bytes(b"garbage")
    ds = load(root)
    (root / "train" / "demo_00002.jpg").unlink()   # gone after loading
    with caplog.at_level(logging.WARNING, logger="mrcnn"):
        path = build_h5_cache(ds, CacheConfig(), str(tmp_path / "s.h5"), num_workers=2)
    assert "skipped 2 of 10 images" in caplog.text and "demo_00002.jpg" in caplog.text
    source = H5RecordSource(path, CacheConfig())
    assert len(source) == 8 and source.skipped == 2
    assert 2 not in list(source.image_ids) and 5 not in list(source.image_ids)


def test_tfrecords_equal_raw_records(demo_dir, h5_path, tmp_path):
    from mrcnn.data.tfrecords import read_tfrecords, write_tfrecords
    ds, config = load(demo_dir), CacheConfig()
    expected = {int(i): build_record(ds, config, int(i)) for i in ds.image_ids}
    paths = write_tfrecords(ds, config, str(tmp_path / "tf" / "raw"), num_shards=3)
    assert [os.path.basename(p) for p in paths] == [
        f"raw-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert not [p for p in os.listdir(tmp_path / "tf") if ".tmp" in p]
    from_h5 = write_tfrecords(H5RecordSource(h5_path, config), config,
                              str(tmp_path / "tf" / "h5"), num_shards=2)
    for files in (str(tmp_path / "tf" / "raw-*.tfrecord"), from_h5):
        seen = []
        for record in read_tfrecords(files, config):
            image_id = int(record["image_meta"].numpy()[0])
            assert record["masks"].dtype.name == "bool"
            assert_same({k: record[k].numpy() for k in KEYS}, expected[image_id])
            seen.append(image_id)
        assert seen == sorted(expected)


def test_tfrecord_without_instances_and_missing_files(tmp_path):
    import tensorflow as tf
    from mrcnn.data.tfrecords import parse_record, read_tfrecords, serialize_record
    config = CacheConfig()
    record = {"image": np.zeros((64, 64, 3), np.uint8),
              "image_meta": np.arange(config.IMAGE_META_SIZE, dtype=np.float32),
              "masks": np.zeros((64, 64, 0), bool), "class_ids": np.zeros([0], np.int32),
              "attributes": np.zeros((0, 92), np.uint8)}
    parsed = parse_record(tf.constant(serialize_record(record)), config)
    assert_same({k: parsed[k].numpy() for k in KEYS}, record)
    with pytest.raises(FileNotFoundError, match="No TFRecord files match"):
        read_tfrecords(str(tmp_path / "none-*.tfrecord"), config)
