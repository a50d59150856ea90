"""Pretrained weight files: a registry and a resumable, checksummed downloader.

Usage::

    from mrcnn.weights.download import get_weights
    path = get_weights("coco")   # ~/.keras/fashion_mrcnn/weights/mask_rcnn_coco.h5
    model.load_weights(path, by_name=True)

Where files live (``weights_path``): ``cache_dir`` if given; else ``$MRCNN_WEIGHTS_DIR``
if set; else, when running from a checkout, a file already present in
``<checkout>/weights/`` is used where it is; else the per-user cache
``$FASHION_MRCNN_HOME/weights`` (``FASHION_MRCNN_HOME`` defaults to
``~/.keras/fashion_mrcnn``), never the installed package's directory. A download streams
into ``<file>.part`` (resumed with an HTTP Range request after an interruption), is
checked against the published checksum, then committed into place with
``mrcnn.fileio.commit``, so a half-written file never carries the final name.
``weights/download.py`` is the command-line front end.
"""
import dataclasses
import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from mrcnn.fileio import PART_SUFFIX, commit

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKOUT_DIR = REPO_ROOT / "weights"  # <checkout>/weights: files already there are used
ENV_DIR = "MRCNN_WEIGHTS_DIR"         # an explicit cache directory
ENV_HOME = "FASHION_MRCNN_HOME"       # per-user data home; weights go to <home>/weights
DEFAULT_HOME = Path("~/.keras/fashion_mrcnn")
CHUNK = 1 << 20  # bytes read per network / disk step


class WeightsUnavailable(RuntimeError):
    """The file is not in the cache and could not be downloaded (offline, HTTP error)."""


class WeightsChecksumError(RuntimeError):
    """A downloaded or cached file does not match the published checksum or size."""


@dataclasses.dataclass(frozen=True)
class WeightsEntry:
    """One downloadable file.

    Args:
        name: registry key, e.g. "coco".
        filename: file name inside the cache directory.
        url: public download address.
        hash: (algorithm, hex digest) as published, algorithm "md5" or "sha256";
            None when no checksum is published (then only the size is checked).
        size: size in bytes, or None when unknown.
        description: what the file is for.
        hash_source: where the checksum was published.
    """
    name: str
    filename: str
    url: str
    hash: tuple | None
    size: int | None
    description: str = ""
    hash_source: str = ""


_KERAS_APPS = "https://storage.googleapis.com/keras-applications/"
_KERAS_RESNET = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
_KERAS_SRC = "keras.applications source (keras/src/applications/{}.py, WEIGHTS_HASHES)"

# EfficientNet B0..B7 ImageNet "notop" files: (md5 from keras' WEIGHTS_HASHES, bytes).
_EFFICIENTNET = {
    "b0": ("50bc09e76180e00e4465e1a485ddc09d", 16705208),
    "b1": ("74c4e6b3e1f6a1eea24c589628592432", 27018416),
    "b2": ("111f8e2ac8aa800a7a99e3239f7bfb39", 31790344),
    "b3": ("af6d107764bb5b1abb91932881670226", 43941136),
    "b4": ("ebc24e6d6c33eaebbd558eafbeedf1ba", 71686520),
    "b5": ("38879255a25d3c92d5e44e04ae6cec6f", 115263384),
    "b6": ("9ecce42647a20130c1f39a5d4cb75743", 165234480),
    "b7": ("cbcfe4450ddf6f3ad90b1b398090fe4a", 258076736),
}

REGISTRY = {}


def register(entry, overwrite=False):
    """Add a WeightsEntry to REGISTRY (tests and users may add their own files)."""
    if entry.hash is not None:
        algo, digest = entry.hash
        if algo not in ("md5", "sha256"):
            raise ValueError(f"Weights entry '{entry.name}': hash algorithm '{algo}' is "
                             "not supported; use 'md5' or 'sha256'.")
        if len(digest) != {"md5": 32, "sha256": 64}[algo]:
            raise ValueError(f"Weights entry '{entry.name}': '{digest}' is not a {algo} "
                             "hex digest; check the published checksum.")
    if entry.name in REGISTRY and not overwrite:
        raise ValueError(f"Weights '{entry.name}' are already registered; pass "
                         "overwrite=True to replace the entry.")
    REGISTRY[entry.name] = entry
    return entry


def unregister(name):
    """Remove an entry from REGISTRY (no error if it is absent)."""
    REGISTRY.pop(name, None)


def _register_defaults():
    register(WeightsEntry(
        "coco", "mask_rcnn_coco.h5",
        "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5",
        ("sha256", "ab8f779d74d790abe4fcf3f60ab368129df5ee866262c439c6bae5af13afaf56"),
        257557808,
        "matterport's ResNet101-FPN Mask R-CNN trained on MS COCO (81 classes); "
        "load with by_name=True and exclude the class-sized head layers",
        "guildai/packages matterport/mask-rcnn/guild.yml (matterport publishes no "
        "checksum; alibaba/ai-matrix lists md5 e98aaff6f99e307b5e2a8a3ff741a518)"))
    register(WeightsEntry(
        "resnet50-imagenet", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://github.com/fchollet/deep-learning-models/releases/download/v0.2/"
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ("md5", "a268eb855778b3df3c7506639542a6af"), 94653016,
        "ResNet50 ImageNet backbone without the classifier, matterport's layer names "
        "(conv1, res2a_branch2a, bn2a_branch2a, ...); what matterport's "
        "get_imagenet_weights() loads",
        "matterport Mask_RCNN mrcnn/model.py get_imagenet_weights() and Keras 2 "
        "applications/resnet50.py (md5_hash)"))
    register(WeightsEntry(
        "resnet101-imagenet", "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _KERAS_RESNET + "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ("md5", "88cf7a10940856eca736dc7b7e228a21"), 171446536,
        "ResNet101 ImageNet backbone without the classifier, keras.applications layer "
        "names (conv1_conv, conv2_block1_1_conv, ...), not matterport's",
        _KERAS_SRC.format("resnet")))
    for variant, (md5, size) in _EFFICIENTNET.items():
        register(WeightsEntry(
            f"efficientnet-{variant}-imagenet", f"efficientnet{variant}_notop.h5",
            f"{_KERAS_APPS}efficientnet{variant}_notop.h5", ("md5", md5), size,
            f"EfficientNet-{variant.upper()} ImageNet backbone without the classifier, "
            "keras.applications layer names",
            _KERAS_SRC.format("efficientnet")))


_register_defaults()


def default_cache_dir():
    """Where downloads go: $MRCNN_WEIGHTS_DIR if set, else $FASHION_MRCNN_HOME/weights,
    else ~/.keras/fashion_mrcnn/weights."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser() / "weights"


def _entry(name):
    if name not in REGISTRY:
        raise KeyError(f"Unknown weights '{name}'; choose one of: "
                       f"{', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name]


def weights_path(name, cache_dir=None):
    """Where get_weights(name, cache_dir) puts (or expects) the file: in cache_dir if
    given; else a copy already in <checkout>/weights (unless $MRCNN_WEIGHTS_DIR is set);
    else in default_cache_dir()."""
    filename = _entry(name).filename
    if cache_dir:
        return Path(cache_dir) / filename
    if not os.environ.get(ENV_DIR) and (CHECKOUT_DIR / filename).is_file():
        return CHECKOUT_DIR / filename
    return default_cache_dir() / filename


def file_digest(path, algorithm):
    """Hex digest of a file with hashlib's `algorithm` ("md5" or "sha256")."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            hasher.update(block)
    return hasher.hexdigest()


def verify_file(path, entry):
    """Raise WeightsChecksumError unless `path` has the entry's size and checksum."""
    size = os.path.getsize(path)
    if entry.size is not None and size != entry.size:
        raise WeightsChecksumError(
            f"{path} has {size} bytes but '{entry.name}' should have {entry.size}.")
    if entry.hash is not None:
        algo, expected = entry.hash
        actual = file_digest(path, algo)
        if actual != expected.lower():
            raise WeightsChecksumError(
                f"{path} has {algo} {actual} but '{entry.name}' should have {expected}.")


def _unavailable(entry, final, reason, part):
    kept = (f" The partial file {part} is kept; run again to resume."
            if part.exists() and part.stat().st_size else "")
    return WeightsUnavailable(
        f"Could not download '{entry.name}' from {entry.url} ({reason}); download it "
        f"by hand and place it at {final}.{kept}")


def _open(url, start, timeout):
    """Open `url`, asking for bytes from `start` on. Returns (response, resumed)."""
    request = urllib.request.Request(url, headers={"User-Agent": "mrcnn-weights/1.0"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # nothing left to send: the part is complete
            return None, True
        raise
    return response, response.status == 206


def _stream(entry, part, timeout, progress):
    """Append the missing bytes of entry.url to `part` (restarting if no Range support)."""
    start = part.stat().st_size if part.exists() else 0
    if entry.size is not None and start > entry.size:
        part.unlink()  # longer than the real file: it cannot be a prefix of it
        start = 0
    if entry.size is not None and start == entry.size:
        return
    response, resumed = _open(entry.url, start, timeout)
    if response is None:
        return
    with response:
        if not resumed:
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length else entry.size
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=total, initial=start, unit="B", unit_scale=True,
                       unit_divisor=1024, desc=entry.filename)
        try:
            with open(part, "ab" if resumed else "wb") as out:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    if bar is not None:
                        bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
    if length and part.stat().st_size != total:
        raise http.client.IncompleteRead(b"", total - part.stat().st_size)


def get_weights(name, cache_dir=None, force=False, timeout=30.0, progress=True):
    """Return the path of the weight file `name`, downloading it if needed.

    Args:
        name: a REGISTRY key ("coco", "resnet50-imagenet", ...).
        cache_dir: directory for the files (default: see weights_path).
        force: download again even if a verified file is present.
        timeout: seconds to wait on the network before giving up.
        progress: show a tqdm progress bar.

    Raises:
        KeyError: unknown name.
        WeightsUnavailable: not cached and the download failed (the message names the
            URL and the path where a manually downloaded file must go).
        WeightsChecksumError: the downloaded or cached file has the wrong checksum.
    """
    entry = _entry(name)
    final = weights_path(name, cache_dir)
    part = final.with_name(final.name + PART_SUFFIX)
    if final.exists() and not force:
        try:
            verify_file(final, entry)
        except WeightsChecksumError as err:
            raise WeightsChecksumError(
                f"{err} Delete {final} (or pass force=True / --force) to download it "
                "again.") from None
        return str(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        _stream(entry, part, timeout, progress)
    except (urllib.error.URLError, http.client.HTTPException, socket.timeout,
            ConnectionError, TimeoutError) as err:
        reason = getattr(err, "reason", None) or err
        raise _unavailable(entry, final, reason, part) from None
    try:
        verify_file(part, entry)
    except WeightsChecksumError as err:
        part.unlink()
        raise WeightsChecksumError(
            f"Download of '{name}' from {entry.url} is corrupt: {err} The partial "
            f"file was deleted; run again, or place a good copy at {final}.") from None
    commit(part, final)
    return str(final)


def describe(name):
    """One line for listings: name, size, file, checksum status."""
    entry = _entry(name)
    size = f"{entry.size / 2**20:.0f} MiB" if entry.size else "size unknown"
    check = f"{entry.hash[0]}" if entry.hash else "no published checksum"
    return f"{name:26s} {size:>9s}  {entry.filename}  ({check})"
