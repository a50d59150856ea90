"""Crash-safe file writes: the one place that writes to a temporary name and renames.

Every writer in the project (checkpoints, caches, JSON, CSV, PNG, predictions, shards,
exports, downloads) goes through this module, so a crash, a kill or a full disk never
leaves a half-written file under the final name, and every file gets the permissions
the user's umask gives ordinary files.

    with atomic_path("run/metrics.json") as tmp:      # any writer that takes a path
        write_something(tmp)
    with atomic_open("run/epochs.csv", "w") as f:     # a file object
        f.write("epoch,loss\\n")
    atomic_write_text("notes.txt", "hello")
    write_json("run/fashion_run.json", {"epoch": 3})
    with atomic_directory("export/saved_model") as tmp_dir:   # a directory of files
        save_everything_into(tmp_dir)

Resumable transfers keep their partial file under a stable name (``NAME.part``) and
call :func:`commit` once it is complete. Heavy modules are never imported here: the SSH
helper and the CLI's ``--help`` use this module without TensorFlow.
"""
import contextlib
import errno
import json
import os
import re
import shutil
import tempfile

PART_SUFFIX = ".part"


def umask_mode(base=0o666):
    """The mode a new file (base 0o666) or directory (0o777) gets under the umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return base & ~umask


def commit(tmp, path):
    """Moves a finished temporary file or directory onto `path` (atomic on one file
    system) with the umask's permissions; returns `path`."""
    tmp, path = os.fspath(tmp), os.fspath(path)
    os.chmod(tmp, umask_mode(0o777 if os.path.isdir(tmp) else 0o666))
    if os.path.isdir(tmp) and os.path.isdir(path):
        parent, name = os.path.split(os.path.abspath(path))
        old = os.path.join(parent, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.old")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return path


def _temp_name(path, suffix=".tmp"):
    parent, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=parent)
    os.close(fd)
    return tmp


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def _committed(tmp, path):
    """Yields tmp; commits it onto path when the block succeeds, removes it otherwise."""
    try:
        yield tmp
        commit(tmp, path)
    except OSError as e:
        _name_path(e, path, tmp)
        raise
    finally:
        if os.path.lexists(tmp):
            _remove(tmp)


def _name_path(error, path, tmp):
    """A write error that names no file (h5py, f.write) or the temporary one names
    the file being written instead (for describe_os_error)."""
    if getattr(error, "filename", None) in (None, tmp):
        error.filename = path


def _parent_of(path):
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    return parent


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yields a temporary path beside `path`; renamed onto `path` when the block ends
    without an exception, removed otherwise. `suffix` keeps an extension that some
    writers need (".png", ".h5"); it defaults to `path`'s own extension."""
    path = os.fspath(path)
    _parent_of(path)
    suffix = os.path.splitext(path)[1] if suffix is None else suffix
    with _committed(_temp_name(path, ".tmp" + suffix), path) as tmp:
        yield tmp


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding=None, newline=None):
    """A file object on a temporary file that becomes `path` when the block succeeds."""
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_directory(path):
    """Yields a temporary directory beside `path` that replaces `path` as a whole when
    the block succeeds (an existing directory is swapped out, then removed)."""
    path = os.fspath(path).rstrip("/\\") or os.fspath(path)
    parent = _parent_of(path)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    with _committed(tmp, path) as tmp_dir:
        yield tmp_dir


def atomic_write_bytes(path, data):
    """Writes bytes to `path` atomically; returns `path`."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return os.fspath(path)


def atomic_write_text(path, text):
    """Writes UTF-8 text to `path` atomically; returns `path`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _plain(value):
    """JSON fallback for numpy scalars and arrays (numpy imported only when needed)."""
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json(path, data, indent=2):
    """Writes `data` as JSON (numpy values allowed) to `path` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=indent, default=_plain) + "\n")


_CAUSES = {
    errno.ENOSPC: ("no space left on the device (disk full)",
                   "free some space or write somewhere else"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space or write somewhere else"),
    errno.EACCES: ("permission denied", "choose a directory you can write to"),
    errno.EPERM: ("the operation is not permitted", "choose a directory you can write to"),
    errno.EROFS: ("the file system is read-only", "write somewhere else"),
    errno.ENOENT: ("a directory on the way does not exist", "check the path"),
    errno.ENOTDIR: ("a part of the path is a file, not a directory", "check the path"),
    errno.EISDIR: ("it is a directory", "give a file name"),
}


def os_error_number(error):
    """The errno of an OSError; h5py sometimes leaves it unset and only writes
    "errno = 28" into its message."""
    number = getattr(error, "errno", None)
    if number is None:
        m = re.search(r"errno = (\d+)", " ".join(map(str, error.args)))
        number = int(m.group(1)) if m else None
    return number


def describe_os_error(error, path=None, action="write"):
    """One sentence for an OSError: what failed, on which path, why, and the fix."""
    path = path or getattr(error, "filename", None) or "a file"
    text = getattr(error, "strerror", None) or (error.args[0] if error.args else error)
    detail = " ".join(str(text).split())
    cause, fix = _CAUSES.get(os_error_number(error), (detail, "check the path and the disk"))
    return f"Could not {action} {path}: {cause}; {fix}."
