"""Incremental upload of a source tree (``sync``) and resumable download (``fetch``).

Both directions write to ``NAME.part`` first and rename only after the size checks out,
so a broken connection never leaves a half-written file under its final name; a rerun
finishes the job (``fetch`` resumes a ``.part`` from its size).
"""
import dataclasses
import os
import posixpath
import stat
import sys

import paramiko
from tqdm import tqdm

from fashion.remote.connection import io_error, remote_path
from fashion.remote.ignore import IgnoreRules
from fashion.remote.settings import RemoteError
from mrcnn import fileio

CHUNK = 1 << 20
PART = fileio.PART_SUFFIX
TRANSFER_ERRORS = (OSError, EOFError, paramiko.SSHException)


@dataclasses.dataclass
class TransferReport:
    files: int = 0
    bytes: int = 0
    unchanged: int = 0
    excluded: int = 0
    resumed: int = 0
    skipped_links: list = dataclasses.field(default_factory=list)


def _inside(path, root):
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def scan_tree(src, rules, report):
    """Walk ``src`` without following links out of it.

    Returns (dirs, files): relative posix dirs (parents first) and a list of
    (rel, abs_path, os.stat_result). In-tree file links are sent as files; directory
    links and links leaving the tree are skipped and listed in ``report.skipped_links``.
    """
    root = os.path.realpath(src)
    dirs, files = [""], []
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        rel_dir = os.path.relpath(dirpath, src).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir
        kept = []
        for name in sorted(dirnames):
            rel = posixpath.join(rel_dir, name)
            if os.path.islink(os.path.join(dirpath, name)):
                report.skipped_links.append(rel)
            elif rules.excluded(rel, is_dir=True):
                report.excluded += 1
            else:
                kept.append(name)
                dirs.append(rel)
        dirnames[:] = kept
        for name in sorted(filenames):
            full, rel = os.path.join(dirpath, name), posixpath.join(rel_dir, name)
            if rules.excluded(rel, is_dir=False):
                report.excluded += 1
                continue
            if os.path.islink(full):
                target = os.path.realpath(full)
                if not _inside(target, root) or not os.path.isfile(target):
                    report.skipped_links.append(rel)
                    continue
            st = os.stat(full)
            if stat.S_ISREG(st.st_mode):
                files.append((rel, full, st))
    return dirs, files


def _listing(sftp, rdir):
    """{name: SFTPAttributes} of a remote dir, creating it when missing."""
    try:
        return {a.filename: a for a in sftp.listdir_attr(rdir)}
    except FileNotFoundError:
        sftp.mkdir(rdir)
        return {}


def makedirs(sftp, path):
    """``mkdir -p`` over SFTP."""
    parts, current = path.split("/"), ""
    for i, part in enumerate(parts):
        current = part if i == 0 else posixpath.join(current, part)
        if current in ("", ".", "/"):
            current = current or "/"
            continue
        try:
            if not stat.S_ISDIR(sftp.stat(current).st_mode):
                raise RemoteError(f"remote path {current} exists but is not a directory; "
                                  f"choose another destination.")
        except FileNotFoundError:
            sftp.mkdir(current)


# Remote writes. Local files go through mrcnn.fileio; files on the host live on another
# machine's file system, reached over SFTP or a remote shell, so the host side has its
# own two helpers below. Every remote writer (sync uploads, the run files written by
# jobs, the wrapper script's pid and exit files, stop) finishes through one of them.

def remote_commit(sftp, part, final):
    """Rename the finished remote file ``part`` onto ``final`` (atomic on the host).

    Uses the posix-rename extension (replaces ``final`` in one step); servers without it
    get remove-then-rename, which can leave no file under ``final`` if the link drops in
    between, never a truncated one.
    """
    try:
        sftp.posix_rename(part, final)
    except OSError:
        try:
            sftp.remove(final)
        except FileNotFoundError:
            pass
        sftp.rename(part, final)


def remote_commit_shell(part, final):
    """The remote ``sh`` command that renames ``part`` onto ``final`` (both already
    shell words: quoted with ``connection.sh`` or a double-quoted ``"$var.part"``)."""
    return f"mv -f {part} {final}"


def _upload(client, sftp, full, rpath, st, bar):
    """Upload to ``rpath.part``, set mode and mtime, then rename onto ``rpath``."""
    part = rpath + PART
    try:
        sftp.put(full, part, callback=_bar_callback(bar), confirm=True)
        sftp.chmod(part, stat.S_IMODE(st.st_mode))
        sftp.utime(part, (st.st_atime, st.st_mtime))
        remote_commit(sftp, part, rpath)
    except TRANSFER_ERRORS as exc:
        raise io_error(exc, f"{rpath} on the host", client, posixpath.dirname(rpath) or ".",
                       st.st_size) from None


def _bar_callback(bar):
    state = {"done": 0}

    def callback(done, _total):
        bar.update(done - state["done"])
        state["done"] = done
    return callback


def sync(client, src, dest, excludes=(), out=print):
    """Send new or changed files (by size and mtime) from ``src`` to ``dest``."""
    if not os.path.isdir(src):
        raise RemoteError(f"source directory {src} does not exist; fix --src.")
    report = TransferReport()
    dirs, files = scan_tree(src, IgnoreRules.for_tree(src, excludes), report)
    dest = remote_path(dest)
    by_dir = {}
    for rel, full, st in files:
        by_dir.setdefault(posixpath.dirname(rel), []).append((rel, full, st))
    try:
        sftp = client.open_sftp()
        makedirs(sftp, dest)
        todo = []
        for rel_dir in dirs:
            rdir = posixpath.join(dest, rel_dir) if rel_dir else dest
            existing = _listing(sftp, rdir)
            for rel, full, st in by_dir.get(rel_dir, []):
                attr = existing.get(posixpath.basename(rel))
                if (attr is not None and stat.S_ISREG(attr.st_mode)
                        and attr.st_size == st.st_size
                        and int(attr.st_mtime) == int(st.st_mtime)):
                    report.unchanged += 1
                else:
                    todo.append((rel, full, st))
    except RemoteError:
        raise
    except TRANSFER_ERRORS as exc:
        raise io_error(exc, f"directories under {dest}", client, ".") from None
    total = sum(st.st_size for _, _, st in todo)
    with tqdm(total=total, unit="B", unit_scale=True, disable=None, file=sys.stderr,
              desc="sync") as bar:
        for rel, full, st in todo:
            _upload(client, sftp, full, posixpath.join(dest, rel), st, bar)
            out(f"  sent {rel} ({st.st_size} bytes)")
            report.files += 1
            report.bytes += st.st_size
    for rel in report.skipped_links:
        out(f"  skipped link {rel} (directory link or target outside {src})")
    out(f"sync: {report.files} files sent, {report.bytes} bytes "
        f"({report.unchanged} unchanged, {report.excluded} excluded) to {dest}")
    return report


def _remote_files(sftp, rpath, rel=""):
    """Yield (remote path, relative posix path, attrs) for files under a remote dir."""
    for attr in sorted(sftp.listdir_attr(rpath), key=lambda a: a.filename):
        child, child_rel = posixpath.join(rpath, attr.filename), posixpath.join(
            rel, attr.filename)
        if stat.S_ISLNK(attr.st_mode):
            attr = sftp.stat(child)  # followed for files; directory links not walked
            attr.filename = child_rel.rsplit("/", 1)[-1]
            if stat.S_ISREG(attr.st_mode):
                yield child, child_rel, attr
        elif stat.S_ISDIR(attr.st_mode):
            yield from _remote_files(sftp, child, child_rel)
        elif stat.S_ISREG(attr.st_mode) and not attr.filename.endswith(PART):
            yield child, child_rel, attr


def _local(path, function, *args):
    """Call a local file operation; an OSError (disk full, permission, ...) becomes one
    RemoteError sentence naming ``path``."""
    try:
        return function(*args)
    except OSError as exc:
        raise RemoteError(fileio.describe_os_error(exc, path)) from None


def _finish_part(local):
    local.flush()
    os.fsync(local.fileno())


def _download(sftp, rpath, final, attr, bar, report):
    """Download ``rpath`` into ``final`` via ``final.part`` (resumed from its size)."""
    part = final + PART
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    if offset > attr.st_size:
        offset = 0
    if offset:
        report.resumed += 1
    bar.update(offset)
    with sftp.open(rpath, "rb") as remote:
        remote.seek(offset)
        remote.prefetch(attr.st_size)
        local = _local(part, open, part, "ab" if offset else "wb")
        try:
            while True:
                data = remote.read(CHUNK)
                if not data:
                    break
                _local(part, local.write, data)
                bar.update(len(data))
            _local(part, _finish_part, local)
        finally:
            try:
                local.close()
            except OSError:  # a write already failed; that error is the one reported
                pass
    size = os.path.getsize(part)
    if size != attr.st_size:
        raise RemoteError(f"{final}.part has {size} bytes but {rpath} has "
                          f"{attr.st_size}; the remote file changed or the link broke, "
                          f"rerun fetch to resume.")
    _local(part, os.utime, part, (attr.st_atime, attr.st_mtime))
    _local(final, fileio.commit, part, final)
    return offset


def fetch(client, remote, local_dir, out=print):
    """Download a remote file or directory into ``local_dir`` (resumable, size-checked)."""
    remote = remote_path(remote)
    report = TransferReport()
    try:
        sftp = client.open_sftp()
        try:
            top = sftp.stat(remote)
        except FileNotFoundError:
            raise RemoteError(f"remote path {remote} does not exist on the host; check "
                              f"--remote (relative paths start in the remote home).") from None
        name = posixpath.basename(remote.rstrip("/")) or "root"
        if stat.S_ISDIR(top.st_mode):
            items = [(r, posixpath.join(name, rel), a) for r, rel, a in
                     _remote_files(sftp, remote)]
        else:
            items = [(remote, name, top)]
    except RemoteError:
        raise
    except TRANSFER_ERRORS as exc:
        raise io_error(exc, f"the listing of {remote}") from None
    todo = []
    for rpath, rel, attr in items:
        final = os.path.join(local_dir, *rel.split("/"))
        if (os.path.isfile(final) and os.path.getsize(final) == attr.st_size
                and int(os.path.getmtime(final)) == int(attr.st_mtime)):
            report.unchanged += 1
        else:
            todo.append((rpath, rel, final, attr))
    with tqdm(total=sum(a.st_size for *_, a in todo), unit="B", unit_scale=True,
              disable=None, file=sys.stderr, desc="fetch") as bar:
        for rpath, rel, final, attr in todo:
            try:
                folder = os.path.dirname(final) or "."
                _local(folder, lambda: os.makedirs(folder, exist_ok=True))
                offset = _download(sftp, rpath, final, attr, bar, report)
            except RemoteError:
                raise
            except TRANSFER_ERRORS as exc:
                raise io_error(exc, f"{final}") from None
            note = f", resumed at byte {offset}" if offset else ""
            out(f"  fetched {rel} ({attr.st_size} bytes{note})")
            report.files += 1
            report.bytes += attr.st_size - offset
    out(f"fetch: {report.files} files, {report.bytes} bytes downloaded "
        f"({report.unchanged} unchanged, {report.resumed} resumed) into {local_dir}")
    return report

