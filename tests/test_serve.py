"""`fashion.py serve` over real HTTP on 127.0.0.1, and its page in headless Chromium.

The server runs as a subprocess (`fashion.py serve --export DIR`) on the SavedModel of
tests/export_model.py; its answers are checked against detect() of the same weights.
"""
import concurrent.futures
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.export_model import shared_saved_model, smooth_images, EXTRA, NAMES
from tests.parity import compare
from tests.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def encode(image, fmt="PNG"):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def request(url, data=None, headers=None, method=None, timeout=120):
    """(status, parsed JSON or text) of one HTTP request."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, body, ctype = r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        status, body, ctype = e.code, e.read(), e.headers.get("content-type", "")
    return status, json.loads(body) if "json" in ctype else body.decode()


def multipart(field, filename, data, ctype="image/png"):
    boundary = "----fashionboundary7d3"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: {ctype}\r\n\r\n").encode() + data \
        + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return shared_saved_model(tmp_path_factory)


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    """The serve command in a subprocess; yields its base URL."""
    port = free_port()
    cwd = tmp_path_factory.mktemp("serve")
    log = open(cwd / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "fashion", "fashion.py"), "serve", "--export",
         os.path.dirname(exported[1]), "--port", str(port), "--max-bytes", "300000"],
        cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                break
            try:
                if request(url + "/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        assert proc.poll() is None, (cwd / "serve.log").read_text()[-2000:]
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def photos():
    return smooth_images(7, [(240, 180), (96, 160), (300, 300), (150, 90)])


def records_match(records, model, image, where):
    """Served records agree with detect() on the decoded image."""
    from mrcnn.evaluation.predictions import encode_mask
    ref = model.detect([image])[0]
    assert len(records) == len(ref["class_ids"]), where
    for r, i in zip(records, range(len(records))):
        assert r["category_id"] == EXTRA["category_ids"][ref["class_ids"][i]], where
        assert abs(r["score"] - float(ref["scores"][i])) <= 1e-4, where
        y1, x1, y2, x2 = (float(v) for v in ref["rois"][i])
        assert np.allclose(r["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=0.5), where
        assert r["segmentation"] == encode_mask(ref["masks"][..., i]), where
        assert set(r["attribute_ids"]) <= set(EXTRA["attribute_index_to_id"]), where


def test_healthz_and_page(server):
    status, body = request(server + "/healthz")
    assert status == 200 and body["status"] == "ok" and body["classes"] == 4
    assert body["runtime"].startswith("TensorFlow") and "SavedModel" in body["runtime"]
    status, page = request(server + "/")
    assert status == 200 and "<form" in page and "/v1/visualize" in page
    assert request(server + "/v1/labels")[1]["class_names"] == NAMES


def test_detect_raw_and_multipart_uploads_match_detect(server, exported, photos):
    model = exported[0]
    status, records = request(server + "/v1/detect", encode(photos[0]),
                              {"Content-Type": "image/png"})
    assert status == 200 and isinstance(records, list) and records
    records_match(records, model, photos[0], "raw png")
    jpeg = encode(photos[1], "JPEG")
    status, records = request(server + "/v1/detect", *multipart("image", "look.jpg", jpeg,
                                                                "image/jpeg"))
    assert status == 200 and records[0]["filename"] == "look.jpg"
    assert records[0]["image_id"] == "look"
    from PIL import Image
    records_match(records, model, np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")),
                  "multipart jpeg")


def test_bad_uploads_get_one_sentence_4xx_and_server_keeps_serving(server, photos):
    big = os.urandom(400_000)
    cases = [
        (b"this is not an image", {"Content-Type": "image/png"}, 400, "not an image"),
        (b"", {"Content-Type": "image/jpeg"}, 400, "empty"),
        (encode(photos[0]), {"Content-Type": "text/plain"}, 415, "Content type"),
        (big, {"Content-Type": "image/png"}, 413, "limit"),
        (*multipart("other", "x.png", encode(photos[0])), 400, "'image'"),
        (b"--x\r\nbroken", {"Content-Type": "multipart/form-data; boundary=zz"}, 400, None),
    ]
    for body, headers, code, words in cases:
        status, payload = request(server + "/v1/detect", body, headers)
        assert status == code, (code, payload)
        assert isinstance(payload, dict) and payload["error"].count(". ") == 0, payload
        assert words is None or words in payload["error"], payload
    assert request(server + "/v1/nothing")[0] == 404
    assert request(server + "/healthz")[0] == 200


def test_four_concurrent_clients_each_get_their_answer(server, exported, photos):
    bodies = [encode(p) for p in photos]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda b: request(server + "/v1/detect", b,
                                                  {"Content-Type": "image/png"}), bodies * 2))
    model = exported[0]
    for i, (status, records) in enumerate(answers):
        assert status == 200, records
        if i < len(photos):
            records_match(records, model, photos[i], f"client {i}")
        else:
            assert records == answers[i - len(photos)][1]


def test_weights_predictor_gives_the_records_of_the_export(exported, tmp_path, photos):
    """serve --weights (a checkpoint with fashion_run.json) answers like serve --export."""
    from fashion.inference.outputs import to_records
    from fashion.run import write_run_file
    from fashion.serving.predictors import ExportPredictor, make_predictor
    from fashion.cli_args import command_args
    from fashion.commands import serve
    from mrcnn.weights.by_name import save_weights_by_name
    model, path = exported
    run_dir = tmp_path / "logs" / "fashion20250101T0000"
    run_dir.mkdir(parents=True)
    save_weights_by_name(model.keras_model, str(run_dir / "mask_rcnn_fashion_0001.h5"))
    write_run_file(str(run_dir), model.config, dict(EXTRA, class_names=NAMES,
                                                     attribute_names=["a"] * 5))
    args = command_args(serve, weights="last", logs=str(tmp_path / "logs"), export=None,
                        set=['MIXED_PRECISION="float32"'])
    by_weights, by_export = make_predictor(args), ExportPredictor(os.path.dirname(path))
    for image in photos[:2]:
        a = to_records(by_weights.detect(image), "x", "x.png", by_weights.labels, 1)
        b = to_records(by_export.detect(image), "x", "x.png", by_export.labels, 1)
        assert [r["segmentation"] for r in a] == [r["segmentation"] for r in b]
        compare(by_weights.detect(image), by_export.detect(image), where="weights/export")


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                    reason="Debian chromium / chromium-driver are not installed")
def test_page_in_headless_chromium_shows_the_overlay(server, photos, tmp_path):
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(photos[2]))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", "--window-size=1200,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(server + "/")
        driver.find_element(By.ID, "file").send_keys(str(photo))
        driver.find_element(By.ID, "submit").click()
        WebDriverWait(driver, 120).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-done"))
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-done") == "1"
        rows = driver.find_elements(By.CSS_SELECTOR, "#table tbody tr")
        assert rows and any(name in rows[0].text for name in NAMES[1:])
        img = driver.find_element(By.ID, "overlay")
        assert driver.execute_script("return arguments[0].naturalWidth", img) == 300
        shot = tmp_path / "page.png"
        img.screenshot(str(shot))
    finally:
        driver.quit()
    # The page shows the server's overlay pixel for pixel, and the overlay has colored
    # mask pixels where the photo has none.
    import base64
    status, payload = request(server + "/v1/visualize", encode(photos[2]),
                              {"Content-Type": "image/png"})
    overlay = np.asarray(Image.open(io.BytesIO(base64.b64decode(
        payload["overlay"].split(",", 1)[1]))).convert("RGB")).astype(int)
    shown = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    border = (shown.shape[0] - overlay.shape[0]) // 2                # the img's CSS border
    shown = shown[border:shown.shape[0] - border, border:shown.shape[1] - border]
    assert shown.shape == overlay.shape == photos[2].shape
    assert np.abs(shown - overlay).mean() < 2
    changed = np.abs(shown - photos[2].astype(int)).max(-1) > 30
    assert changed.mean() > 0.05
