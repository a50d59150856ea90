"""An H5 cache of records: resized images, masks, classes, attributes and image meta.

Built once (several worker processes run ``build_record``; the parent writes) and then
read by the training pipeline instead of decoding JPEGs and RLE/polygons every epoch.
Workers exit on their own when the building process dies, even from kill -9 (Linux:
PR_SET_PDEATHSIG; elsewhere a once-a-second check of the parent pid).

Layout (one row per record, variable instance counts):
    pixels        uint8 [sum of H*W*3]        images, flattened (uncompressed, 1 MB chunks)
    mask_bits     uint8 [sum of ceil(H*W*N/8)] masks [H, W, N] as packed bits, lzf
    class_ids     int32 [total instances]
    attributes    uint8 [total instances, A]  (absent when A == 0)
    image_meta    float32 [records, META]
    image_ids     int64 [records]             the dataset's image ids
    image_shapes, mask_shapes int64 [records, 3]; *_offsets int64 [records + 1]
File attributes: ``fingerprint`` (JSON: source files with sizes and mtimes, image count,
the config fields that change records), ``skipped`` and ``complete`` (set last).

Example:
    path = build_h5_cache(train_dataset, config, "cache/train.h5", num_workers=2)
    source = H5RecordSource(path, config)
    record = source.get(0)      # same dict as build_record(train_dataset, config, id)
"""
import itertools
import json
import logging
import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor

import h5py
import numpy as np
from tqdm import tqdm

from mrcnn.data.records import BadSample, build_record
from mrcnn.fileio import commit

log = logging.getLogger("mrcnn")

FORMAT_VERSION = 1
PARTIAL_SUFFIX = ".partial"  # a build in progress (or killed) writes here
CONFIG_FIELDS = ("IMAGE_RESIZE_MODE", "IMAGE_MIN_DIM", "IMAGE_MAX_DIM", "IMAGE_MIN_SCALE",
                 "NUM_CLASSES", "NUM_ATTRIBUTES")
SKIPPABLE = (BadSample, ValueError, FileNotFoundError)
_PIXEL_CHUNK = 1 << 20
_MASK_CHUNK = 1 << 16


class StaleCacheError(ValueError):
    """A cache that does not match its sources or config, or is incomplete."""


def config_fingerprint(config):
    """The config fields that change records, as JSON-friendly values."""
    out = {}
    for name in CONFIG_FIELDS:
        v = getattr(config, name, None)
        out[name] = v.item() if isinstance(v, np.generic) else v
    return out


def _file_stat(path):
    try:
        st = os.stat(path)
        return [str(path), int(st.st_size), int(st.st_mtime_ns)]
    except OSError:
        return [str(path), None, None]


def dataset_fingerprint(dataset, config):
    """What a cache is built from: source files (sizes, mtimes), image count, config."""
    if hasattr(dataset, "source_files"):
        files = list(dataset.source_files())
    else:
        files = [info.get("path") for info in dataset.image_info if info.get("path")]
    return {"format_version": FORMAT_VERSION, "image_count": int(len(dataset.image_ids)),
            "sources": [_file_stat(f) for f in files],
            "config": config_fingerprint(config)}


# ---------------------------------------------------------------------- building
_WORKER = {}
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _exit_with_parent(parent_pid):
    """Makes this worker exit when the building process dies, even by SIGKILL (which
    runs no cleanup): Linux sends SIGTERM on the parent's death (PR_SET_PDEATHSIG; it
    fires when the thread that forked us ends, here the main thread), and a daemon
    thread checks os.getppid() every second as a fallback (other systems, or a parent
    that died before prctl ran)."""
    import ctypes
    import signal
    import threading
    import time
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the check below still works
        pass

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(dataset, config, parent_pid=None):
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    _WORKER["dataset"], _WORKER["config"] = dataset, config


def _build_one(image_id):
    try:
        return image_id, build_record(_WORKER["dataset"], _WORKER["config"], image_id), None
    except SKIPPABLE as e:
        return image_id, None, f"{type(e).__name__}: {e}"


class _Writer:
    """Appends records to growing H5 datasets."""

    def __init__(self, f, config):
        self.f, self.n_attr = f, int(getattr(config, "NUM_ATTRIBUTES", 0))
        meta = int(config.IMAGE_META_SIZE)

        def make(name, shape, dtype, chunks, compression=None):
            f.create_dataset(name, shape=(0,) + shape, maxshape=(None,) + shape,
                             dtype=dtype, chunks=(chunks,) + shape, compression=compression)
        make("pixels", (), np.uint8, _PIXEL_CHUNK)  # uncompressed: fastest to read
        make("mask_bits", (), np.uint8, _MASK_CHUNK, "lzf")
        make("class_ids", (), np.int32, 1024)
        if self.n_attr:
            make("attributes", (self.n_attr,), np.uint8, 1024, "lzf")
        make("image_meta", (meta,), np.float32, 256)
        make("image_ids", (), np.int64, 1024)
        make("image_shapes", (3,), np.int64, 1024)
        make("mask_shapes", (3,), np.int64, 1024)
        for name in ("pixel_offsets", "mask_offsets", "instance_offsets"):
            make(name, (), np.int64, 1024)
            self._append(name, np.zeros([1], np.int64))

    def _append(self, name, values):
        ds = self.f[name]
        n = ds.shape[0]
        ds.resize(n + len(values), axis=0)
        ds[n:] = values

    def add(self, image_id, record):
        image, masks = record["image"], record["masks"]                 # [H,W,3], [H,W,N]
        bits = np.packbits(masks.astype(bool).ravel())                   # [ceil(H*W*N/8)]
        self._append("pixels", image.ravel())
        self._append("mask_bits", bits)
        self._append("class_ids", record["class_ids"].astype(np.int32))
        if self.n_attr:
            self._append("attributes", record["attributes"].astype(np.uint8))
        self._append("image_meta", record["image_meta"][None].astype(np.float32))
        self._append("image_ids", np.array([image_id], np.int64))
        self._append("image_shapes", np.array([image.shape], np.int64))
        self._append("mask_shapes", np.array([masks.shape], np.int64))
        for name, size in (("pixel_offsets", image.size), ("mask_offsets", len(bits)),
                           ("instance_offsets", len(record["class_ids"]))):
            self._append(name, self.f[name][-1:] + size)


def _cache_is_current(path, fingerprint):
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete")) and \
                json.loads(f.attrs["fingerprint"]) == fingerprint
    except (OSError, KeyError, ValueError):
        return False


def _records(dataset, config, num_workers):
    """Yields (image_id, record or None, error) in dataset order."""
    ids = [int(i) for i in dataset.image_ids]
    if num_workers <= 1:
        _init_worker(dataset, config)
        for image_id in ids:
            yield _build_one(image_id)
        return
    # fork: workers inherit the dataset without pickling it. A bounded window of
    # futures keeps the order and the memory in check; on an error the pending work is
    # cancelled and the workers finish their current image and exit (no SIGTERM, which
    # can leave multiprocessing.Pool deadlocked). A killed parent cannot do that, so each
    # worker also exits by itself when its parent dies (_exit_with_parent).
    window = 4 * num_workers
    remaining = iter(ids)
    with ProcessPoolExecutor(num_workers, mp_context=multiprocessing.get_context("fork"),
                             initializer=_init_worker,
                             initargs=(dataset, config, os.getpid())) as ex:
        pending = deque(ex.submit(_build_one, i) for i in itertools.islice(remaining, window))
        try:
            while pending:
                result = pending.popleft().result()
                for image_id in itertools.islice(remaining, 1):
                    pending.append(ex.submit(_build_one, image_id))
                yield result
        finally:
            for future in pending:
                future.cancel()


def build_h5_cache(dataset, config, path, num_workers=2, overwrite=False):
    """Builds the H5 cache of a prepared dataset at ``path`` and returns the path.

    An existing complete cache built from the same sources and config is reused unless
    ``overwrite``. Images that fail to load are skipped with a counted warning. The file
    is written to ``path + ".partial"`` (a stable name, so a killed build is recognised
    by H5RecordSource) and committed with mrcnn.fileio.commit when complete.
    """
    path = str(path)
    fingerprint = dataset_fingerprint(dataset, config)
    if not overwrite and os.path.exists(path) and _cache_is_current(path, fingerprint):
        log.info("H5 cache %s is up to date; reusing it.", path)
        return path
    if config.IMAGE_RESIZE_MODE == "crop":
        log.warning("H5 cache %s: IMAGE_RESIZE_MODE is 'crop', so each image's random crop "
                    "is frozen in the cache; use 'square' or 'pad64' for cached data.", path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = path + PARTIAL_SUFFIX
    skipped = []
    try:
        with h5py.File(partial, "w") as f:
            writer = _Writer(f, config)
            f.attrs["fingerprint"] = json.dumps(fingerprint)
            for image_id, record, error in tqdm(
                    _records(dataset, config, num_workers), total=len(dataset.image_ids),
                    desc=f"H5 cache {os.path.basename(path)}", unit="img"):
                if record is None:
                    skipped.append(f"{dataset.image_reference(image_id)}: {error}")
                else:
                    writer.add(image_id, record)
            f.attrs["skipped"] = len(skipped)
            f.attrs["num_records"] = f["image_ids"].shape[0]
            f.attrs["complete"] = True
        commit(partial, path)
    except BaseException as e:
        if os.path.exists(partial):
            os.remove(partial)
        if isinstance(e, OSError) and not getattr(e, "filename", None):
            e.filename = path  # h5py's write errors name no file
        raise
    if skipped:
        log.warning("H5 cache %s: skipped %d of %d images that failed to load; first: %s",
                    path, len(skipped), len(dataset.image_ids), " | ".join(skipped[:5]))
    return path


# ---------------------------------------------------------------------- reading
class H5RecordSource:
    """Reads records from a cache written by ``build_h5_cache``.

    Refuses an incomplete cache, one built with other config values, and one whose
    source files changed since (pass ``check_sources=False`` to skip the latter, e.g.
    on a machine where the sources live elsewhere). Missing source files only warn.
    """

    def __init__(self, path, config, dataset=None, check_sources=True):
        self.path = str(path)
        self.config = config
        self._file, self._pid = None, None
        rebuild = (f"rebuild it with mrcnn.data.h5cache.build_h5_cache(dataset, config, "
                   f"{self.path!r}, overwrite=True) or delete it")
        if not os.path.exists(self.path):
            extra = (" (only a half-written .partial file exists: the build was interrupted)"
                     if os.path.exists(self.path + PARTIAL_SUFFIX) else "")
            raise FileNotFoundError(f"H5 cache {self.path} does not exist{extra}; build it "
                                    "with build_h5_cache(dataset, config, path).")
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise StaleCacheError(f"H5 cache {self.path} cannot be opened ({e}); "
                                  f"{rebuild}.") from None
        with f:
            if not f.attrs.get("complete"):
                raise StaleCacheError(f"H5 cache {self.path} is half-written (its build "
                                      f"did not finish); {rebuild}.")
            fp = json.loads(f.attrs["fingerprint"])
            self._check(fp, config, dataset, check_sources, rebuild)
            self._index = {name: f[name][...] for name in (
                "image_ids", "image_shapes", "mask_shapes", "pixel_offsets",
                "mask_offsets", "instance_offsets", "class_ids", "image_meta")}
            self.skipped = int(f.attrs.get("skipped", 0))
        self.fingerprint = fp

    def _check(self, fp, config, dataset, check_sources, rebuild):
        if fp.get("format_version") != FORMAT_VERSION:
            raise StaleCacheError(f"H5 cache {self.path} has format version "
                                  f"{fp.get('format_version')}, this code reads "
                                  f"{FORMAT_VERSION}; {rebuild}.")
        now = config_fingerprint(config)
        for name in CONFIG_FIELDS:
            if fp["config"].get(name) != now[name]:
                raise StaleCacheError(f"H5 cache {self.path} was built with {name}="
                                      f"{fp['config'].get(name)!r} but the config has "
                                      f"{now[name]!r}; {rebuild}.")
        if dataset is not None:
            current = dataset_fingerprint(dataset, config)
            if current["image_count"] != fp["image_count"]:
                raise StaleCacheError(f"H5 cache {self.path} holds {fp['image_count']} "
                                      f"images but the dataset has "
                                      f"{current['image_count']}; {rebuild}.")
        if not check_sources:
            return
        for path, size, mtime in fp["sources"]:
            now_path, now_size, now_mtime = _file_stat(path)
            if now_size is None:
                if size is not None:
                    log.warning("H5 cache %s: source file %s is not on this machine; "
                                "cannot check the cache is current.", self.path, path)
            elif (now_size, now_mtime) != (size, mtime):
                raise StaleCacheError(f"H5 cache {self.path} is stale: source file {path} "
                                      f"changed since it was built (size {size} -> "
                                      f"{now_size}, mtime changed); {rebuild}.")

    def _h5(self):
        # One handle per process, so the source works in forked workers.
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r", rdcc_nbytes=16 << 20)
            self._pid = os.getpid()
        return self._file

    def __len__(self):
        return int(len(self._index["image_ids"]))

    @property
    def image_ids(self):
        """The dataset image id of each record."""
        return self._index["image_ids"]

    def get(self, index):
        """Record ``index`` -> dict (image, image_meta, masks, class_ids, attributes)."""
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} is out of range; {self.path} holds "
                             f"{len(self)} records.")
        f, ix = self._h5(), self._index
        p0, p1 = ix["pixel_offsets"][index:index + 2]
        image = f["pixels"][p0:p1].reshape(ix["image_shapes"][index])        # [H, W, 3]
        m0, m1 = ix["mask_offsets"][index:index + 2]
        shape = tuple(ix["mask_shapes"][index])
        bits = f["mask_bits"][m0:m1]
        masks = np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape)  # [H, W, N]
        i0, i1 = ix["instance_offsets"][index:index + 2]
        n_attr = int(getattr(self.config, "NUM_ATTRIBUTES", 0))
        attributes = (f["attributes"][i0:i1] if n_attr and i1 > i0
                      else np.zeros([i1 - i0, n_attr], np.uint8))            # [N, A]
        return {"image": image, "image_meta": ix["image_meta"][index].copy(),
                "masks": masks.view(bool), "class_ids": ix["class_ids"][i0:i1].copy(),
                "attributes": attributes}

    __getitem__ = get

    def __iter__(self):
        for i in range(len(self)):
            yield self.get(i)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None
        return state
