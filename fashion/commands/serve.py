"""`serve`: an HTTP server for a trained model or an export (SavedModel, ONNX, OpenVINO,
TFLite), with a page.

POST /v1/detect takes a photo (raw body or multipart field "image") and returns the
detect command's records as a JSON list; GET / is a page to upload a photo and see the
overlay; GET /healthz says the server is up; GET /metrics is for Prometheus. Requests
wait in a bounded queue (503 when full, 504 past --request-timeout) and run on the model
in batches of up to --max-batch. SIGTERM stops accepting, finishes what is in flight (up
to --grace-period) and exits 0. See fashion/serving/.
"""
import argparse
import signal

from fashion.cli_args import add_model_args
from fashion.run import add_precision_arg
from fashion.errors import CLIError

EXAMPLES = """examples:
  python fashion/fashion.py serve --weights last --port 8000      # then open http://127.0.0.1:8000/
  python fashion/fashion.py serve --export export/fashion --host 0.0.0.0 --port 8080
  python fashion/fashion.py serve --export export/openvino-int8     # OpenVINO Runtime
  python fashion/fashion.py serve --weights last --max-batch 8 --batch-wait-ms 10 --max-queue 32
  curl -F image=@photo.jpg http://127.0.0.1:8000/v1/detect
  curl -H "Content-Type: image/jpeg" --data-binary @photo.jpg http://127.0.0.1:8000/v1/detect
  curl http://127.0.0.1:8000/metrics
"""


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "serve", parents=parents, help="HTTP server with an upload page",
        description="Serves POST /v1/detect (JSON list of detection records), POST "
        "/v1/visualize (records + overlay PNG), GET /v1/labels, GET /healthz, GET /metrics "
        "(Prometheus) and an upload page at GET /.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    add_precision_arg(p)
    p.add_argument("--export", default=None, metavar="DIR",
                   help="serve an export written by `export` instead of --weights: a "
                   "SavedModel, model.onnx (onnxruntime), model.xml (OpenVINO) or "
                   "model.tflite, told apart by its files")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-bytes", type=int, default=20 * 1024 * 1024,
                   help="largest accepted upload in bytes (default 20 MB)")
    p.add_argument("--max-queue", type=int, default=None, metavar="N",
                   help="most requests admitted at once, from upload to the model; more "
                   "get 503 with Retry-After at once (default: 4 batches, at least 8)")
    p.add_argument("--request-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="a request still waiting for the model after this long gets 504 "
                   "and leaves the queue (default 30)")
    p.add_argument("--max-batch", type=int, default=4, metavar="B",
                   help="most images per model call (default 4; 1 turns batching off)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, metavar="T",
                   help="how long a queued image waits for others to share its model "
                   "call (default 5 ms)")
    p.add_argument("--grace-period", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM, how long in-flight requests may take to finish "
                   "(default 30)")
    p.set_defaults(func=run)
    return p


def check_args(args):
    checks = [("--max-bytes", args.max_bytes, args.max_bytes > 0, "positive"),
              ("--max-queue", args.max_queue, args.max_queue is None or args.max_queue >= 1,
               "at least 1"),
              ("--request-timeout", args.request_timeout, args.request_timeout > 0,
               "positive"),
              ("--max-batch", args.max_batch, args.max_batch >= 1, "at least 1"),
              ("--batch-wait-ms", args.batch_wait_ms, args.batch_wait_ms >= 0,
               "zero or more"),
              ("--grace-period", args.grace_period, args.grace_period >= 0, "zero or more")]
    for flag, value, ok, what in checks:
        if not ok:
            raise CLIError(f"{flag} {value} must be {what}.")


def run(args):
    import uvicorn
    from fashion.serving.app import create_app, default_max_queue, warm_up
    from fashion.serving.predictors import make_predictor
    check_args(args)
    predictor = make_predictor(args)
    max_queue = args.max_queue or default_max_queue(args.max_batch)
    print(f"Loaded {predictor.source} on {predictor.runtime}; warming up (batches of 1 "
          f"and {args.max_batch}).", flush=True)
    warm_up(predictor, args.max_batch)
    app = create_app(predictor, args.max_bytes, max_queue, args.max_batch,
                     args.batch_wait_ms, args.request_timeout)
    server = uvicorn.Server(uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning",
        timeout_graceful_shutdown=args.grace_period))
    print(f"Serving {predictor.source} on http://{args.host}:{args.port}/ (batches of up "
          f"to {args.max_batch} within {args.batch_wait_ms:g} ms, queue {max_queue}, "
          f"timeout {args.request_timeout:g} s)", flush=True)
    stopped_by = []
    # uvicorn finishes in-flight requests on SIGTERM/SIGINT, then raises the signal
    # again against the handlers found before it started: these note it, so the
    # command returns (exit 0) instead of dying by the signal.
    previous = {sig: signal.signal(sig, lambda s, frame: stopped_by.append(s))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopped_by:
        print(f"Stopped by {signal.Signals(stopped_by[0]).name}.", flush=True)
    return {"served": predictor.source, "stopped_by": [signal.Signals(s).name
                                                       for s in stopped_by]}
