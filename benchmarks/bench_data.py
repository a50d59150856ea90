"""Samples per second of three record sources at 512 px on this machine.

raw        FashionDataset (JPEG decode + Kaggle RLE decode + resize) via build_record
h5         H5RecordSource.get over a cache built once by build_h5_cache
tfrecords  read_tfrecords (in-graph PNG decode, tf.data parallel map)

The data is the synthetic demo set (fashion/data/demo_data.py) generated at 512 px.

Usage:
    python benchmarks/bench_data.py [--work-dir /tmp/fashion_bench] [--num-images 150]
"""
import argparse
import logging
import time
from pathlib import Path

from common import timed  # the repo root on sys.path too

from fashion.data.fashion_dataset import FashionDataset  # noqa: E402
from fashion.data.demo_data import generate_demo  # noqa: E402
from mrcnn.config import Config  # noqa: E402
from mrcnn.data.h5cache import H5RecordSource, build_h5_cache  # noqa: E402
from mrcnn.data.records import build_record  # noqa: E402


class BenchConfig(Config):
    NAME = "bench"
    NUM_CLASSES = 1 + 46
    NUM_ATTRIBUTES = 92
    IMAGE_MIN_DIM = 512
    IMAGE_MAX_DIM = 512


def rate(fn, count):
    """Items per second of one call of fn() that handles `count` items."""
    return count / timed(fn, 1, warmup=0).median


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default="/tmp/fashion_bench")
    parser.add_argument("--num-images", type=int, default=150)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.work_dir)
    config = BenchConfig()

    start = time.perf_counter()
    data_dir = generate_demo(work / f"demo_{args.size}", args.num_images, args.size)
    print(f"demo set: {args.num_images} images at {args.size} px "
          f"({time.perf_counter() - start:.1f} s, skipped if already there)")
    dataset = FashionDataset()
    dataset.load_imat2019(data_dir, subset="all")
    dataset.prepare()
    n = dataset.num_images

    raw_rate = rate(lambda: [build_record(dataset, config, i) for i in dataset.image_ids],
                    n)

    start = time.perf_counter()
    h5_path = build_h5_cache(dataset, config, str(work / "demo.h5"),
                             num_workers=args.workers, overwrite=True)
    h5_build = time.perf_counter() - start
    source = H5RecordSource(h5_path, config)
    h5_rate = rate(lambda: [source.get(i) for i in range(len(source))], len(source))

    import tensorflow as tf  # after the forked H5 build
    from mrcnn.data.tfrecords import read_tfrecords, write_tfrecords
    start = time.perf_counter()
    paths = write_tfrecords(source, config, str(work / "tfrecords" / "demo"), num_shards=4)
    tf_write = time.perf_counter() - start
    ds = read_tfrecords(paths, config).prefetch(tf.data.AUTOTUNE)
    for _ in ds.take(2):  # trace the graph and warm up
        pass
    tf_rate = rate(lambda: [None for _ in ds], len(source))

    size_mb = Path(h5_path).stat().st_size / 2 ** 20
    tf_mb = sum(Path(p).stat().st_size for p in paths) / 2 ** 20
    print(f"\n{n} images, records at {config.IMAGE_MAX_DIM} px, {args.workers} workers "
          "for building; reads single process (tf.data: parallel map)")
    print(f"{'source':<12}{'samples/s':>12}{'vs raw':>9}   notes")
    print(f"{'raw':<12}{raw_rate:>12.1f}{1:>8.1f}x   JPEG + RLE decode + resize")
    print(f"{'h5':<12}{h5_rate:>12.1f}{h5_rate / raw_rate:>8.1f}x   "
          f"built in {h5_build:.1f} s, {size_mb:.0f} MB")
    print(f"{'tfrecords':<12}{tf_rate:>12.1f}{tf_rate / raw_rate:>8.1f}x   "
          f"written in {tf_write:.1f} s, {tf_mb:.0f} MB in {len(paths)} shards")
    return {"raw": raw_rate, "h5": h5_rate, "tfrecords": tf_rate}


if __name__ == "__main__":
    main()
