"""`serve` under load, over real HTTP on 127.0.0.1: batching gives single calls' detections,
/healthz answers while the model is busy, a full queue refuses at once (503), a request
waiting past --request-timeout gets 504, /metrics counts what happened, and SIGTERM
finishes the request in flight and exits 0.

The model is the SavedModel of tests/export_model.py. "Slow" requests are real: the
test-only SlowPredictor sleeps inside the model call of the real predictor it wraps.
"""
import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.export_model import EXTRA, NAMES, shared_saved_model, smooth_images
from tests.parity import compare
from tests.ports import free_port
from tests.test_serve import ROOT, encode

# Latency bounds (/healthz within 100 ms, 503 at once, 504 after 0.5 s): run with the
# machine to itself.
pytestmark = pytest.mark.alone

PNG = {"Content-Type": "image/png"}


def call(url, data=None, headers=None, timeout=120):
    """(status, headers, parsed JSON or text, seconds) of one HTTP request."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, head, body = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, head, body = e.code, e.headers, e.read()
    seconds = time.perf_counter() - started
    text = body.decode()
    return status, head, json.loads(text) if "json" in head.get("content-type", "") \
        else text, seconds


def metric(text, name, **labels):
    """The value of one sample of a Prometheus text exposition (0.0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return shared_saved_model(tmp_path_factory)


@pytest.fixture(scope="module")
def predictor(exported):
    from fashion.serving.predictors import ExportPredictor
    return ExportPredictor(os.path.dirname(exported[1]))


@pytest.fixture(scope="module")
def photos():
    return smooth_images(11, [(120, 90), (120, 90), (200, 150), (64, 96), (120, 90)])


def slow(predictor, delay):
    """A Predictor that sleeps `delay` seconds inside every model call of `predictor`."""
    from fashion.serving.predictors import Predictor

    class SlowPredictor(Predictor):
        def __init__(self):
            super().__init__(predictor.labels, predictor.source)
            self.calls = []

        def _detect_batch(self, images):
            self.calls.append(len(images))
            time.sleep(delay)
            return predictor.detect_batch(images)
    return SlowPredictor()


@contextlib.contextmanager
def serving(app):
    """The app under uvicorn on a free loopback port, in a thread; yields its URL."""
    import uvicorn
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(400):
        if server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(60)


def in_background(fn, *args):
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(fn, *args)
    pool.shutdown(wait=False)
    return future


def wait_for(url, key, value, timeout=30):
    """Polls /healthz until its `key` reaches `value`."""
    end = time.time() + timeout
    while time.time() < end:
        if call(url + "/healthz")[2][key] >= value:
            return
        time.sleep(0.01)
    raise AssertionError(f"/healthz never showed {key} >= {value}")


def test_batches_give_the_detections_of_single_calls(predictor, exported, photos, tmp_path):
    # The SavedModel runs a batch image by image inside one call: bit-identical.
    batched = predictor.detect_batch(photos)
    for image, got in zip(photos, batched):
        ref = predictor.detect(image)
        assert sorted(got) == sorted(ref)
        for key in ref:
            np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    # A checkpoint runs a batch as one [B, S, S, 3] Keras call (serve builds the model
    # with IMAGES_PER_GPU = --max-batch).
    from fashion.cli_args import command_args
    from fashion.commands import serve
    from fashion.run import write_run_file
    from fashion.serving.predictors import make_predictor
    from mrcnn.weights.by_name import save_weights_by_name
    model = exported[0]
    run_dir = tmp_path / "logs" / "fashion20250101T0000"
    run_dir.mkdir(parents=True)
    save_weights_by_name(model.keras_model, str(run_dir / "mask_rcnn_fashion_0001.h5"))
    write_run_file(str(run_dir), model.config, dict(EXTRA, class_names=NAMES,
                                                     attribute_names=["a"] * 5))
    keras_predictor = make_predictor(command_args(
        serve, weights="last", logs=str(tmp_path / "logs"), max_batch=4,
        set=['MIXED_PRECISION="float32"']))
    assert keras_predictor.model.config.BATCH_SIZE == 4
    seen, predict = [], keras_predictor.model._predict

    def spy(molded, metas, anchors):       # records the batch each Keras call gets
        seen.append(len(molded))
        return predict(molded, metas, anchors)
    keras_predictor.model._predict = spy
    batched = keras_predictor.detect_batch(photos[:4])
    assert seen == [4]
    for image, got in zip(photos, batched):
        ref = keras_predictor.detect(image)
        # A [4, ...] convolution sums in another order than a [1, ...] one (oneDNN picks
        # kernels by shape): scores move by float32 rounding (2.8e-6 at most measured),
        # which leaves classes, the integer-pixel boxes and the masks as they are.
        np.testing.assert_array_equal(got["class_ids"], ref["class_ids"])
        np.testing.assert_array_equal(got["rois"], ref["rois"])
        np.testing.assert_allclose(got["scores"], ref["scores"], rtol=0, atol=1e-5)
        compare(ref, got, where="keras batch of 4")


def test_concurrent_requests_share_a_batch_and_metrics_count_them(predictor, photos):
    from fashion.inference.outputs import to_records
    from fashion.serving.app import create_app
    counting = slow(predictor, 0.0)
    app = create_app(counting, max_batch=4, batch_wait_ms=1500, max_queue=8)
    with serving(app) as url:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda p: call(url + "/v1/detect", encode(p), PNG),
                                    photos[:4]))
        assert call(url + "/v1/detect", b"not a photo", PNG)[0] == 400
        assert call(url + "/healthz")[0] == 200
        text = call(url + "/metrics")[2]
    assert counting.calls == [4]                   # four requests, one model call
    for image, (status, _, records, _) in zip(photos, answers):
        assert status == 200
        assert records == to_records(predictor.detect(image), "upload", "upload",
                                     predictor.labels, 1)
    assert metric(text, "fashion_serve_requests_total", endpoint="/v1/detect",
                  status="200") == 4
    assert metric(text, "fashion_serve_requests_total", endpoint="/v1/detect",
                  status="400") == 1
    assert metric(text, "fashion_serve_requests_total", endpoint="/healthz",
                  status="200") == 1
    assert metric(text, "fashion_serve_request_seconds_count", endpoint="/v1/detect") == 5
    assert metric(text, "fashion_serve_batch_size_count") == 1
    assert metric(text, "fashion_serve_batch_size_sum") == 4
    assert metric(text, "fashion_serve_model_seconds_count") == 1
    assert metric(text, "fashion_serve_queue_length") == 0
    assert metric(text, "process_resident_memory_bytes") > 0


def test_healthz_answers_within_100ms_while_the_model_and_a_decode_are_busy(predictor):
    from fashion.serving.app import create_app
    app = create_app(slow(predictor, 3.0), max_batch=1, max_queue=8)
    big = encode(smooth_images(2, [(1500, 2000)])[0])      # about 0.2 s to decode
    with serving(app) as url:
        first = in_background(call, url + "/v1/detect", encode(
            smooth_images(1, [(96, 96)])[0]), PNG)
        wait_for(url, "in_model", 1)
        second = in_background(call, url + "/v1/detect", big, PNG)
        times = []
        for _ in range(10):
            status, _, body, seconds = call(url + "/healthz")
            assert status == 200 and body["in_model"] == 1
            times.append(seconds)
            time.sleep(0.02)
        assert first.result()[0] == 200 and second.result()[0] == 200
    # Each answer is a few ms on the event loop; the margin is for other processes
    # on a shared CPU, not for waiting on the model or the decode (3 s and 0.2 s).
    assert max(times) < 0.1, times


def test_full_queue_gives_503_at_once_with_retry_after(predictor, photos):
    from fashion.serving.app import create_app
    app = create_app(slow(predictor, 2.0), max_batch=1, max_queue=1)
    with serving(app) as url:
        running = in_background(call, url + "/v1/detect", encode(photos[0]), PNG)
        wait_for(url, "in_model", 1)
        queued = in_background(call, url + "/v1/detect", encode(photos[1]), PNG)
        wait_for(url, "queue", 1)
        status, head, body, seconds = call(url + "/v1/detect", encode(photos[2]), PNG)
        assert status == 503 and seconds < 1.0, (status, seconds)  # not after the model
        assert int(head["Retry-After"]) >= 1
        assert body["error"].count(". ") == 0 and "queue is full" in body["error"], body
        assert running.result()[0] == 200 and queued.result()[0] == 200


def test_request_waiting_past_timeout_gets_504_and_leaves_the_queue(predictor, photos):
    from fashion.serving.app import create_app
    counting = slow(predictor, 2.0)
    app = create_app(counting, max_batch=1, max_queue=4, request_timeout=0.5)
    with serving(app) as url:
        running = in_background(call, url + "/v1/detect", encode(photos[0]), PNG)
        wait_for(url, "in_model", 1)
        status, _, body, seconds = call(url + "/v1/detect", encode(photos[1]), PNG)
        assert status == 504 and 0.4 < seconds < 1.5, (status, seconds)
        assert body["error"].count(". ") == 0 and "--request-timeout" in body["error"]
        assert call(url + "/healthz")[2]["queue"] == 0
        assert running.result()[0] == 200
        text = call(url + "/metrics")[2]
    assert counting.calls == [1]                     # the dropped request never ran
    assert metric(text, "fashion_serve_requests_total", endpoint="/v1/detect",
                  status="504") == 1


def test_bad_serving_flags_are_one_sentence_errors(capsys):
    from fashion.fashion import main
    for flag, value in (("--max-batch", "0"), ("--max-queue", "0"),
                        ("--request-timeout", "0"), ("--batch-wait-ms", "-1")):
        assert main(["serve", "--export", "nowhere", flag, value]) == 2
        err = capsys.readouterr().err
        assert flag in err and err.count(". ") == 0, err


def test_sigterm_finishes_the_request_in_flight_and_exits_0(exported, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "fashion", "fashion.py"), "serve", "--export",
         os.path.dirname(exported[1]), "--port", str(port), "--max-batch", "1"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                call(url + "/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        # A 2400x3200 photo: decoding, the model and the records take about 2 s here.
        big = encode(smooth_images(4, [(2400, 3200)])[0])
        answer = in_background(call, url + "/v1/detect", big, PNG)
        wait_for(url, "in_model", 1)
        proc.send_signal(signal.SIGTERM)
        assert not answer.done()                     # the request is in flight
        time.sleep(0.3)
        with pytest.raises(OSError):                 # no longer accepting connections
            call(url + "/healthz", timeout=2)
        status, _, records, _ = answer.result(timeout=120)
        assert status == 200 and records and records[0]["filename"] == "upload"
        assert proc.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert "Stopped by SIGTERM" in (tmp_path / "serve.log").read_text()
