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

Bad requests get a 4xx status and {"error": "<one sentence>"}; bodies larger than
max_bytes are refused (413) while they stream in. Model calls are serialized.
"""
import base64
import io
import os

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
MAX_PIXELS = 64_000_000
IMAGE_FIELDS = ("image", "file")


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


def create_app(predictor, max_bytes=20 * 1024 * 1024):
    """The FastAPI app around a predictor (fashion.serving.predictors)."""
    from fashion.detections import to_records
    app = FastAPI(title="fashion-mrcnn", docs_url=None, redoc_url=None)

    async def detect(request):
        data, filename = await upload_bytes(request, max_bytes)
        image = decode_image(data)
        result = await run_in_threadpool(predictor.detect, image)
        records = to_records(result, os.path.splitext(filename)[0], filename,
                             predictor.labels, 1)
        return image, result, records

    @app.exception_handler(BadRequest)
    async def bad_request(request, exc):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        return JSONResponse({"error": f"{exc.detail} ({request.method} {request.url.path})."},
                            status_code=exc.status_code)

    @app.post("/v1/detect")
    async def detect_json(request: Request):
        return (await detect(request))[2]

    @app.post("/v1/visualize")
    async def visualize(request: Request):
        image, result, records = await detect(request)
        overlay = await run_in_threadpool(overlay_data_url, image, result, predictor.labels)
        return {"detections": records, "overlay": overlay,
                "image": {"height": int(image.shape[0]), "width": int(image.shape[1])}}

    @app.get("/v1/labels")
    def labels():
        keys = ("class_names", "category_ids", "attribute_names", "attribute_index_to_id")
        return {k: predictor.labels.get(k) for k in keys}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "model": predictor.source,
                "classes": len(predictor.labels["class_names"])}

    @app.get("/")
    def page():
        return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html")

    return app
