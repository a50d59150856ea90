"""Nothing a user does breaks a run: runs never share a directory (and resume into
their own), unusable data stops at once with one sentence, and a full disk is one
sentence naming the file, with no partial file left behind."""
import datetime
import errno
import json
import os
import subprocess

import numpy as np
import pytest

from tests.conftest import TinyConfig


class MicroConfig(TinyConfig):
    """The smallest model that trains: ResNet18 at 64 px, one image, one step."""
    NAME = "micro"
    BACKBONE = "resnet18"
    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    TRAIN_ROIS_PER_IMAGE = 16
    POST_NMS_ROIS_TRAINING = 100
    STEPS_PER_EPOCH = 1
    VALIDATION_STEPS = 1


@pytest.fixture(scope="module")
def shapes64():
    from samples.shapes.shapes import ShapesDataset
    ds = ShapesDataset()
    ds.load_shapes(4, 64, 64, seed=3)
    ds.prepare()
    return ds


class _FrozenNow(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2030, 1, 2, 3, 4, 5)


@pytest.fixture
def same_second(monkeypatch):
    """Every run created in this test starts at 2030-01-02 03:04:05."""
    import mrcnn.model
    monkeypatch.setattr(mrcnn.model.datetime, "datetime", _FrozenNow)


# ---------------------------------------------------------------------- run dirs
def test_find_last_picks_the_newest_run_by_time_stamp_not_by_string(tmp_path):
    from mrcnn.model import find_last
    runs = ["micro20300102T0304",        # matterport's minute name (oldest)
            "micro20300102T0304_2",      # sorts after ..T030406 as a string
            "micro20300102T030405",
            "micro20300102T030405_2",
            "micro20300102T030405_10",   # sorts before _2 as a string
            "micro20300102T030406"]
    for i, run in enumerate(runs):
        (tmp_path / run).mkdir()
        (tmp_path / run / "mask_rcnn_micro_0001.h5").write_bytes(b"x")
    assert find_last(str(tmp_path), "micro").endswith("micro20300102T030406/"
                                                      "mask_rcnn_micro_0001.h5")
    (tmp_path / "micro20300102T030406" / "mask_rcnn_micro_0001.h5").unlink()
    assert "micro20300102T030405_10" in find_last(str(tmp_path), "micro")


def test_runs_started_in_the_same_second_never_share_a_directory(
        tmp_path, shapes64, same_second):
    from mrcnn.model import MaskRCNN
    config = MicroConfig()
    first = MaskRCNN("training", config, str(tmp_path))
    second = MaskRCNN("training", config, str(tmp_path))
    umask = os.umask(0o022)
    try:
        for model in (first, second):
            model.train(shapes64, None, 0.001, 1, "heads", verbose=0)
    finally:
        os.umask(umask)
    ckpt = os.path.join(first.log_dir, "mask_rcnn_micro_0001.h5")
    assert os.stat(ckpt).st_mode & 0o777 == 0o644   # the umask's mode, not mkstemp's 0600
    dirs = sorted(os.listdir(tmp_path))
    assert dirs == ["micro20300102T030405", "micro20300102T030405_2"]
    assert first.log_dir != second.log_dir
    for model in (first, second):
        assert os.listdir(model.log_dir).count("mask_rcnn_micro_0001.h5") == 1
        assert os.path.dirname(model.find_last()) in (first.log_dir, second.log_dir)
    assert second.find_last() == os.path.join(second.log_dir, "mask_rcnn_micro_0001.h5")
    # resuming from a checkpoint continues in that run's own directory
    resumed = MaskRCNN("training", config, str(tmp_path))
    resumed.load_weights(os.path.join(first.log_dir, "mask_rcnn_micro_0001.h5"))
    assert resumed.log_dir == first.log_dir and resumed.epoch == 1
    resumed.train(shapes64, None, 0.001, 2, "heads", verbose=0)
    assert os.path.exists(os.path.join(first.log_dir, "mask_rcnn_micro_0002.h5"))
    assert sorted(os.listdir(tmp_path)) == dirs


def test_create_log_dir_never_reuses_an_existing_directory(tmp_path, same_second):
    from mrcnn.model import MaskRCNN
    model = MaskRCNN.__new__(MaskRCNN)           # the directory logic needs no graph
    model.config, model.model_dir = MicroConfig(), str(tmp_path)
    model.set_log_dir()
    planned = model.log_dir
    os.makedirs(planned)                         # another process took the name
    made = model.create_log_dir()
    assert made == planned + "_2" and model.checkpoint_path.startswith(made + os.sep)
    assert model.create_log_dir() == made        # the same run keeps its directory


# ---------------------------------------------------------------------- no endless waits
def _no_instances():
    """Shapes whose masks are all empty: every sample is skipped."""
    from samples.shapes.shapes import ShapesDataset

    class Empty(ShapesDataset):
        def load_mask(self, image_id):
            masks, class_ids = super().load_mask(image_id)
            return masks[..., :0], class_ids[:0]
    ds = Empty()
    ds.load_shapes(3, 64, 64, seed=4)
    ds.prepare()
    return ds


def test_training_on_unusable_samples_stops_with_one_sentence(tmp_path):
    import time

    from mrcnn.data.pipeline import NoUsableSamples
    from mrcnn.model import MaskRCNN
    model = MaskRCNN("training", MicroConfig(), str(tmp_path))
    t0 = time.time()
    with pytest.raises(NoUsableSamples) as info:
        model.train(_no_instances(), None, 0.001, 1, "heads", verbose=0)
    message = str(info.value)
    assert "\n" not in message and "has no instances" in message
    assert message.startswith("No usable training sample after 200 skipped in a row")
    assert time.time() - t0 < 120


# ---------------------------------------------------------------------- full disk
@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (skipped where mounting is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    if subprocess.run(["umount", str(mount)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(mount)], check=False)  # a writer still open


def test_checkpoint_on_a_full_disk_names_the_file_and_leaves_no_partial_file(
        tiny_disk, shapes64):
    from mrcnn.fileio import describe_os_error
    from mrcnn.model import MaskRCNN
    model = MaskRCNN("training", MicroConfig(), str(tiny_disk))
    with pytest.raises(OSError) as info:
        model.train(shapes64, None, 0.001, 1, "heads", verbose=0)
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == model.checkpoint_path.format(epoch=1)
    sentence = describe_os_error(info.value)
    assert sentence.startswith(f"Could not write {model.checkpoint_path.format(epoch=1)}: "
                               "no space left on the device (disk full)")
    assert not [f for f in os.listdir(model.log_dir) if f.endswith(".h5")]


def test_cli_train_on_a_full_disk_is_one_sentence(tiny_disk, tmp_path):
    from tests.test_fashion_cli import TINY, assert_bad_input, run
    logs = str(tiny_disk / "logs")
    result = run(["train", "--dataset", "demo", "--demo-dir", str(tmp_path / "demo"),
                  "--demo-images", "6", "--image-size", "64", "--logs", logs,
                  "--weights", "none", "--backbone", "resnet18", "--schedule", "heads:1",
                  "--steps-per-epoch", "1", "--images-per-gpu", "1"] + TINY)
    assert_bad_input(result, "Could not write", "mask_rcnn_fashion_0001.h5",
                     "no space left on the device (disk full)")


def _fill(disk):
    with open(disk / "filler", "wb") as f:
        try:
            f.write(b"\0" * (2 << 20))
        except OSError:
            pass


def test_submit_to_a_full_disk_is_one_sentence(tiny_disk, tmp_path):
    from mrcnn.evaluation.predictions import encode_mask
    from tests.test_fashion_cli import assert_bad_input, run
    mask = np.zeros((20, 30), bool)
    mask[2:9, 3:12] = True
    record = {"image_id": "a", "filename": "a.jpg", "category_id": 1, "score": 0.9,
              "segmentation": encode_mask(mask)}
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps(record) + "\n")
    _fill(tiny_disk)
    out = tiny_disk / "submission.csv"
    assert_bad_input(run(["submit", "--predictions", str(pred), "--format", "imat2019",
                          "--out", str(out)]),
                     f"Could not write {out}: no space left on the device (disk full)")
    assert os.listdir(tiny_disk) == ["filler"]


def test_h5py_write_error_without_errno_is_one_sentence():
    from fashion.fashion import _os_error_line
    error = OSError("Can't synchronously write data (file write failed: time = now\n, "
                    "filename = 'x', errno = 28, error message = 'No space left on device')")
    error.filename = "logs/run/mask_rcnn_fashion_0001.h5"
    assert _os_error_line(error) == (
        "Could not write logs/run/mask_rcnn_fashion_0001.h5: no space left on the device "
        "(disk full); free some space or write somewhere else.")
