"""The web app of `fashion.py serve` (FastAPI, run by uvicorn).

    POST /v1/detect      an image (body with an image/* or application/octet-stream
                         content type, or a multipart upload field "image" or "file")
                         -> JSON list of the detect command's records (COCO RLE masks,
                         attribute ids and probabilities)
    POST /v1/visualize   the same upload -> {"detections": [...], "overlay":
                         "data:image/png;base64,...", "image": {...}} for the page
    GET  /v1/labels      class names, category ids and attribute names
    GET  /healthz        {"status": "ok", ...}
    GET  /               a page to upload a photo and see the overlay and a table

    GET  /metrics        Prometheus text format (fashion/serving/metrics.py)

Bad requests get a 4xx status and {"error": "<one sentence>"}; bodies larger than
max_bytes are refused (413) while they stream in. Requests pass through a bounded queue
with batching (fashion/serving/batching.py): 503 with Retry-After when it is full, 504
when a request waited past its timeout. Decoding, records, JSON and overlays run in
worker threads and the model in its own thread, never on the event loop.
"""
import asyncio
import base64
import contextlib
import io
import os

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
MAX_PIXELS = 64_000_000
IMAGE_FIELDS = ("image", "file")
ROUTES = ("/v1/detect", "/v1/visualize", "/v1/labels", "/healthz", "/metrics", "/")


class BadRequest(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body(request, max_bytes):
    """The request body, refusing more than max_bytes (413) as it streams in."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise BadRequest(413, f"The upload is {int(length)} bytes, more than the "
                         f"server's limit of {max_bytes} bytes.")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise BadRequest(413, f"The upload exceeds the server's limit of {max_bytes} "
                             "bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def upload_bytes(request, max_bytes):
    """(image bytes, file name) of a raw-body or multipart upload."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await read_body(request, max_bytes)
    if ctype == "multipart/form-data":
        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}
        try:
            form = await Request(request.scope, replay).form()
        except Exception:  # malformed multipart bodies raise several exception types
            raise BadRequest(400, "The multipart body cannot be parsed; send the photo as "
                             "a form field named 'image'.") from None
        upload = next((form[k] for k in IMAGE_FIELDS if k in form), None)
        if upload is None or not hasattr(upload, "read"):
            raise BadRequest(400, "The multipart upload has no file field named 'image' "
                             "or 'file'.")
        return await upload.read(), upload.filename or "upload"
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        return body, "upload"
    raise BadRequest(415, f"Content type {ctype or 'none'!r} is not accepted; send "
                     "image/jpeg, image/png, application/octet-stream or multipart/form-data.")


def decode_image(data):
    """Image bytes -> uint8 RGB [H, W, 3], as the detect command reads files (PIL)."""
    from PIL import Image
    if not data:
        raise BadRequest(400, "The upload is empty; send a JPEG or PNG photo.")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise BadRequest(413, f"The image has {im.width}x{im.height} pixels, more "
                                 f"than the server's limit of {MAX_PIXELS}.")
            return np.asarray(im.convert("RGB"))
    except BadRequest:
        raise
    except Exception:  # PIL raises many exception types for non-images
        raise BadRequest(400, "The upload is not an image PIL can read; send a JPEG or "
                         "PNG photo.") from None


def overlay_data_url(image, result, labels):
    from PIL import Image
    from mrcnn.visualize import draw_instances_on_image
    drawn = draw_instances_on_image(image, result["rois"], result["masks"],
                                    result["class_ids"], labels["class_names"],
                                    result["scores"])
    buf = io.BytesIO()
    Image.fromarray(drawn).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def warm_up(predictor, max_batch):
    """Runs the model once alone and once on a full batch of a fixed noise image, so
    the first requests do not pay for tracing."""
    image = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    for n in sorted({1, int(max_batch)}):
        predictor.detect_batch([image] * n)


def create_app(predictor, max_bytes=20 * 1024 * 1024, max_queue=None, max_batch=1,
               batch_wait_ms=0.0, request_timeout=30.0):
    """The FastAPI app around a predictor (fashion.serving.predictors).

    max_queue: requests admitted at once, uploading to waiting (default 4 batches, at
    least 8); max_batch / batch_wait_ms: batching (1: one image per model call);
    request_timeout: seconds a request may wait before 504.
    """
    from fashion.serving.batching import BatchQueue
    from fashion.serving.metrics import MetricsMiddleware, ServeMetrics
    metrics = ServeMetrics(ROUTES)
    queue = BatchQueue(predictor.detect_batch, max_queue or default_max_queue(max_batch),
                       max_batch, batch_wait_ms / 1000.0, request_timeout, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        queue.start()
        yield
        await queue.stop()

    app = FastAPI(title="fashion-mrcnn", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.queue, app.state.metrics = queue, metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    add_error_handlers(app)
    add_detect_routes(app, predictor, queue, max_bytes)
    add_info_routes(app, predictor, queue, metrics)
    return app


def add_error_handlers(app):
    """Every error answer is {"error": "<one sentence>"} with its status."""
    from fashion.serving.batching import Overloaded, TimedOut

    @app.exception_handler(BadRequest)
    async def bad_request(request, exc):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(Overloaded)
    async def overloaded(request, exc):
        return JSONResponse({"error": exc.message}, status_code=503,
                            headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(TimedOut)
    async def timed_out(request, exc):
        return JSONResponse({"error": exc.message}, status_code=504)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        return JSONResponse({"error": f"{exc.detail} ({request.method} {request.url.path})."},
                            status_code=exc.status_code)


def add_detect_routes(app, predictor, queue, max_bytes):
    """POST /v1/detect and /v1/visualize. Decoding, records, JSON and overlays run in
    worker threads and the model in the queue's thread: the event loop only moves
    bytes, so /healthz answers while images decode and the model runs."""
    from fashion.inference.outputs import to_records

    async def detect(request):
        """(image, detect() result, file name) of the request's upload, through the
        queue: 503 when it is full, 504 past the request's deadline."""
        ticket = queue.admit()
        try:
            try:
                async with asyncio.timeout_at(ticket.deadline):
                    data, filename = await upload_bytes(request, max_bytes)
                    image = await run_in_threadpool(decode_image, data)
            except TimeoutError:
                raise queue.timed_out() from None
            return image, await queue.run(ticket, image), filename
        finally:
            queue.release(ticket)

    def records_of(result, filename):
        return to_records(result, os.path.splitext(filename)[0], filename,
                          predictor.labels, 1)

    def visual_answer(image, result, filename):
        return JSONResponse({
            "detections": records_of(result, filename),
            "overlay": overlay_data_url(image, result, predictor.labels),
            "image": {"height": int(image.shape[0]), "width": int(image.shape[1])}})

    @app.post("/v1/detect")
    async def detect_json(request: Request):
        image, result, filename = await detect(request)
        return await run_in_threadpool(lambda: JSONResponse(records_of(result, filename)))

    @app.post("/v1/visualize")
    async def visualize(request: Request):
        return await run_in_threadpool(visual_answer, *await detect(request))


def add_info_routes(app, predictor, queue, metrics):
    """GET /v1/labels, /healthz, /metrics and the page, answered on the event loop."""

    @app.get("/v1/labels")
    async def labels():
        keys = ("class_names", "category_ids", "attribute_names", "attribute_index_to_id")
        return {k: predictor.labels.get(k) for k in keys}

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "model": predictor.source, "runtime": predictor.runtime,
                "classes": len(predictor.labels["class_names"]),
                "queue": queue.admitted, "in_model": queue.running}

    @app.get("/metrics")
    async def prometheus():
        body, ctype = metrics.exposition()
        return Response(body, media_type=ctype)

    @app.get("/")
    async def page():
        return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html")


def default_max_queue(max_batch):
    """--max-queue's default: four batches, at least 8 requests."""
    return max(8, 4 * int(max_batch))
