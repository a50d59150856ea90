"""mrcnn.fileio: writes land whole or not at all, with the umask's permissions."""
import errno
import json
import os
import stat

import pytest

from mrcnn import fileio


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_text_json_and_bytes_land_whole_with_umask_permissions(tmp_path, umask_022):
    fileio.atomic_write_text(tmp_path / "a.txt", "hello")
    fileio.write_json(tmp_path / "sub" / "b.json", {"x": 1})
    fileio.atomic_write_bytes(tmp_path / "c.bin", b"\x00\x01")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert json.loads((tmp_path / "sub" / "b.json").read_text()) == {"x": 1}
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01"
    assert {_mode(tmp_path / n) for n in ("a.txt", "c.bin")} == {0o644}
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "c.bin", "sub"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_open(target) as f:
            f.write("half of the new")
            raise RuntimeError("crash in the middle")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_atomic_path_keeps_the_extension_writers_need(tmp_path):
    with fileio.atomic_path(tmp_path / "curve.png") as tmp:
        assert tmp.endswith(".png") and os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "wb") as f:
            f.write(b"png")
    assert (tmp_path / "curve.png").read_bytes() == b"png"


def test_directory_is_replaced_as_a_whole(tmp_path, umask_022):
    out = tmp_path / "export"
    with fileio.atomic_directory(out) as tmp:
        (open(os.path.join(tmp, "v1"), "w")).close()
    with fileio.atomic_directory(out) as tmp:
        (open(os.path.join(tmp, "v2"), "w")).close()
    with pytest.raises(ValueError):
        with fileio.atomic_directory(out) as tmp:
            (open(os.path.join(tmp, "v3"), "w")).close()
            raise ValueError("export failed")
    assert os.listdir(out) == ["v2"]
    assert os.listdir(tmp_path) == ["export"]
    assert _mode(out) == 0o755


def test_commit_moves_a_finished_part_file(tmp_path, umask_022):
    part = tmp_path / "weights.h5.part"
    part.write_bytes(b"w")
    os.chmod(part, 0o600)
    fileio.commit(part, tmp_path / "weights.h5")
    assert os.listdir(tmp_path) == ["weights.h5"]
    assert _mode(tmp_path / "weights.h5") == 0o644


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk full"),
                                         (errno.EACCES, "permission denied"),
                                         (errno.EROFS, "read-only")])
def test_os_errors_become_one_sentence_naming_the_path(code, words):
    text = fileio.describe_os_error(OSError(code, os.strerror(code)), "/runs/ckpt.h5")
    assert text.startswith("Could not write /runs/ckpt.h5: ") and words in text
    assert text.endswith(".") and "\n" not in text
