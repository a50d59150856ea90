"""`serve`: an HTTP server for a trained model or a SavedModel export, with a page.

POST /v1/detect takes a photo (raw body or multipart field "image") and returns the
detect command's records as a JSON list; GET / is a page to upload a photo and see the
overlay; GET /healthz says the server is up. See fashion/serving/app.py.
"""
import argparse

from fashion.cli_args import add_model_args
from fashion.errors import CLIError

EXAMPLES = """examples:
  python fashion/fashion.py serve --weights last --port 8000      # then open http://127.0.0.1:8000/
  python fashion/fashion.py serve --export export/fashion --host 0.0.0.0 --port 8080
  curl -F image=@photo.jpg http://127.0.0.1:8000/v1/detect
  curl -H "Content-Type: image/jpeg" --data-binary @photo.jpg http://127.0.0.1:8000/v1/detect
"""


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "serve", parents=parents, help="HTTP server with an upload page",
        description="Serves POST /v1/detect (JSON list of detection records), POST "
        "/v1/visualize (records + overlay PNG), GET /v1/labels, GET /healthz and an upload "
        "page at GET /.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--export", default=None, metavar="DIR",
                   help="serve a SavedModel written by `export` instead of --weights")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-bytes", type=int, default=20 * 1024 * 1024,
                   help="largest accepted upload in bytes (default 20 MB)")
    p.set_defaults(func=run)
    return p


def run(args):
    import uvicorn
    from fashion.serving.app import create_app
    from fashion.serving.predictors import make_predictor
    if args.max_bytes <= 0:
        raise CLIError(f"--max-bytes {args.max_bytes} must be positive.")
    predictor = make_predictor(args)
    app = create_app(predictor, args.max_bytes)
    print(f"Serving {predictor.source} on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return {"served": predictor.source}
