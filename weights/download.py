#!/usr/bin/env python3
"""Download pretrained weight files into the weights cache, with checksums.

    python weights/download.py --list
    python weights/download.py coco resnet50-imagenet [--dir DIR] [--force]

The cache directory is --dir, else $MRCNN_WEIGHTS_DIR, else this folder. Interrupted
downloads resume from NAME.part. See weights/README.md for the files and manual steps.
"""
import argparse
import sys
from pathlib import Path

try:
    from mrcnn.weights import download as registry
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mrcnn.weights import download as registry


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Download pretrained Mask R-CNN / backbone weights with checksums.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="weights to fetch (see --list), e.g. coco resnet50-imagenet")
    parser.add_argument("--list", action="store_true", help="list the known weights")
    parser.add_argument("--dir", default=None,
                        help="cache directory (default: $MRCNN_WEIGHTS_DIR or weights/)")
    parser.add_argument("--force", action="store_true",
                        help="download again even if a verified file is present")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="network timeout in seconds (default 30)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.list or not args.names:
        cache = Path(args.dir) if args.dir else registry.default_cache_dir()
        print(f"cache directory: {cache}")
        for name in sorted(registry.REGISTRY):
            present = "[present]" if registry.weights_path(name, cache).exists() else ""
            print(registry.describe(name), present)
        return 0
    unknown = [n for n in args.names if n not in registry.REGISTRY]
    if unknown:
        print(f"error: unknown weights {', '.join(unknown)}; run with --list to see the "
              "names.", file=sys.stderr)
        return 2
    failed = 0
    for name in args.names:
        try:
            path = registry.get_weights(name, args.dir, force=args.force,
                                        timeout=args.timeout,
                                        progress=not args.no_progress)
            print(f"{name}: {path}")
        except (registry.WeightsUnavailable, registry.WeightsChecksumError) as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
