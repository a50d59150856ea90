"""The weights downloader against a real local HTTP server (with Range support)."""
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mrcnn.weights import download as W

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = os.urandom(300_000) + b"end-of-weights"  # spans several 1 MiB-less chunks


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /w.h5, honouring `Range: bytes=N-`; counts requests."""
    requests = []
    support_range = True

    def do_GET(self):
        rng = self.headers.get("Range")
        type(self).requests.append((self.path, rng))
        if self.path != "/w.h5":
            self.send_error(404)
            return
        start = 0
        if rng and self.support_range:
            start = int(rng.split("=")[1].rstrip("-"))
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range",
                             f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def user_home(tmp_path, monkeypatch):
    """Every test's per-user cache is a temporary directory, never ~."""
    home = tmp_path / "home"
    monkeypatch.setenv(W.ENV_HOME, str(home))
    monkeypatch.delenv(W.ENV_DIR, raising=False)
    return home


@pytest.fixture
def entry(server):
    RangeHandler.requests = []
    RangeHandler.support_range = True
    e = W.register(W.WeightsEntry(
        "test-local", "w.h5", server + "/w.h5",
        ("sha256", hashlib.sha256(PAYLOAD).hexdigest()), len(PAYLOAD), "test file"),
        overwrite=True)
    yield e
    W.unregister("test-local")


def test_registry_has_real_entries_with_published_hashes():
    coco = W.REGISTRY["coco"]
    assert coco.url == ("https://github.com/matterport/Mask_RCNN/releases/download/"
                        "v2.0/mask_rcnn_coco.h5")
    assert coco.hash[0] == "sha256" and len(coco.hash[1]) == 64
    r50 = W.REGISTRY["resnet50-imagenet"]
    assert "fchollet/deep-learning-models/releases/download/v0.2" in r50.url
    assert r50.hash == ("md5", "a268eb855778b3df3c7506639542a6af")
    for v in "01234567":
        assert W.REGISTRY[f"efficientnet-b{v}-imagenet"].hash[0] == "md5"
    assert W.REGISTRY["resnet101-imagenet"].size == 171446536


def test_download_verifies_and_renames(tmp_path, entry):
    path = W.get_weights("test-local", tmp_path, progress=False)
    assert path == str(tmp_path / "w.h5")
    assert Path(path).read_bytes() == PAYLOAD
    assert not (tmp_path / "w.h5.part").exists()
    # Second call uses the cached, verified file: no new request.
    n = len(RangeHandler.requests)
    assert W.get_weights("test-local", tmp_path, progress=False) == path
    assert len(RangeHandler.requests) == n


def test_env_var_sets_cache_dir(tmp_path, entry, monkeypatch):
    monkeypatch.setenv("MRCNN_WEIGHTS_DIR", str(tmp_path / "env"))
    path = W.get_weights("test-local", progress=False)
    assert Path(path) == tmp_path / "env" / "w.h5"


def test_default_cache_is_per_user_not_the_package(tmp_path, entry, user_home,
                                                   monkeypatch):
    monkeypatch.setattr(W, "CHECKOUT_DIR", tmp_path / "checkout" / "weights")
    path = W.get_weights("test-local", progress=False)
    assert Path(path) == user_home / "weights" / "w.h5"
    assert Path(path).read_bytes() == PAYLOAD
    monkeypatch.delenv(W.ENV_HOME)
    assert W.default_cache_dir() == Path("~/.keras/fashion_mrcnn/weights").expanduser()


def test_file_in_checkout_weights_is_found_first(tmp_path, entry, user_home, monkeypatch):
    checkout = tmp_path / "checkout" / "weights"
    checkout.mkdir(parents=True)
    (checkout / "w.h5").write_bytes(PAYLOAD)
    monkeypatch.setattr(W, "CHECKOUT_DIR", checkout)
    assert W.get_weights("test-local", progress=False) == str(checkout / "w.h5")
    assert not RangeHandler.requests and not (user_home / "weights").exists()


def test_resume_from_partial_file(tmp_path, entry):
    (tmp_path / "w.h5.part").write_bytes(PAYLOAD[:123_456])
    path = W.get_weights("test-local", tmp_path, progress=False)
    assert Path(path).read_bytes() == PAYLOAD
    assert RangeHandler.requests == [("/w.h5", "bytes=123456-")]


def test_server_without_range_restarts_download(tmp_path, entry):
    RangeHandler.support_range = False
    (tmp_path / "w.h5.part").write_bytes(PAYLOAD[:1000])
    path = W.get_weights("test-local", tmp_path, progress=False)
    assert Path(path).read_bytes() == PAYLOAD


def test_complete_part_file_gets_416_and_is_kept(tmp_path, entry):
    W.register(W.WeightsEntry("test-local", "w.h5", entry.url, entry.hash, None),
               overwrite=True)  # size unknown: must ask the server
    (tmp_path / "w.h5.part").write_bytes(PAYLOAD)
    path = W.get_weights("test-local", tmp_path, progress=False)
    assert Path(path).read_bytes() == PAYLOAD


def test_corrupt_download_is_refused_and_part_deleted(tmp_path, entry):
    W.register(W.WeightsEntry("test-local", "w.h5", entry.url, ("sha256", "0" * 64),
                              len(PAYLOAD)), overwrite=True)
    with pytest.raises(W.WeightsChecksumError, match="deleted") as err:
        W.get_weights("test-local", tmp_path, progress=False)
    assert entry.url in str(err.value)
    assert not (tmp_path / "w.h5").exists()
    assert not (tmp_path / "w.h5.part").exists()


def test_corrupt_partial_prefix_is_refused(tmp_path, entry):
    (tmp_path / "w.h5.part").write_bytes(b"x" * 5000)  # wrong prefix, resumed onto
    with pytest.raises(W.WeightsChecksumError):
        W.get_weights("test-local", tmp_path, progress=False)
    assert not (tmp_path / "w.h5").exists()
    assert not (tmp_path / "w.h5.part").exists()


def test_md5_entries_are_verified_with_md5(tmp_path, entry):
    W.register(W.WeightsEntry("test-local", "w.h5", entry.url,
                              ("md5", hashlib.md5(PAYLOAD).hexdigest()), None),
               overwrite=True)
    assert Path(W.get_weights("test-local", tmp_path, progress=False)).exists()


def test_cached_file_with_wrong_hash_is_reported(tmp_path, entry):
    (tmp_path / "w.h5").write_bytes(PAYLOAD[:-1] + b"X")
    with pytest.raises(W.WeightsChecksumError, match="Delete"):
        W.get_weights("test-local", tmp_path, progress=False)


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_message_names_url_and_path(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/missing.h5"
    W.register(W.WeightsEntry("test-offline", "missing.h5", url, None, 10), overwrite=True)
    try:
        with pytest.raises(W.WeightsUnavailable) as err:
            W.get_weights("test-offline", tmp_path, timeout=5, progress=False)
    finally:
        W.unregister("test-offline")
    message = str(err.value)
    assert url in message and str(tmp_path / "missing.h5") in message
    assert isinstance(err.value, RuntimeError)


def test_http_404_is_unavailable(tmp_path, server):
    W.register(W.WeightsEntry("test-404", "x.h5", server + "/nope.h5", None, 10),
               overwrite=True)
    try:
        with pytest.raises(W.WeightsUnavailable, match="404"):
            W.get_weights("test-404", tmp_path, progress=False)
    finally:
        W.unregister("test-404")


def test_unknown_name_lists_choices():
    with pytest.raises(KeyError, match="coco"):
        W.get_weights("no-such-weights")


def test_bad_hash_format_rejected():
    with pytest.raises(ValueError, match="md5"):
        W.register(W.WeightsEntry("bad", "b.h5", "http://x", ("md5", "abc"), None))


def test_cli_list_and_unknown_name(tmp_path):
    script = str(REPO / "weights" / "download.py")
    out = subprocess.run([sys.executable, script, "--list", "--dir", str(tmp_path)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0
    assert "coco" in out.stdout and "resnet50-imagenet" in out.stdout
    bad = subprocess.run([sys.executable, script, "nope"], capture_output=True,
                         text=True, cwd=tmp_path, timeout=60)
    assert bad.returncode == 2 and "--list" in bad.stderr
