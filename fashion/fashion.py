"""Mask R-CNN for clothes: train, evaluate, detect, submit, score, check and demo.

Run as a script from anywhere (it puts the repository root on sys.path), or as
`fashion-mrcnn` once the package is installed; relative paths (data/demo, logs/,
results/) are under the current directory:

    python fashion/fashion.py demo
    python fashion/fashion.py train --dataset demo --weights none --time-budget 10
    python fashion/fashion.py evaluate --dataset demo --weights last
    python fashion/fashion.py tune --dataset demo --weights last
    python fashion/fashion.py detect --weights last --images photos/ --out pred.jsonl
    python fashion/fashion.py submit --predictions pred.jsonl --format imat2019 --out sub.csv
    python fashion/fashion.py score --annotations gt.json --predictions pred.jsonl --json
    python fashion/fashion.py check --weights last --image img.jpg --expected masks/
    python fashion/fashion.py tfrecords --dataset demo --out records/train --num-shards 4

Every command has --help with examples; TensorFlow's C++ start-up lines are hidden
unless --verbose. Bad input (unknown values, missing or
malformed files, weights that do not fit the model) ends with one sentence on stderr
and exit code 2; a failed `check` exits with 1. Outputs are written to temporary files
and renamed, so an error never leaves a half-written file.
"""
import argparse
import errno
import logging
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if "--verbose" not in sys.argv:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fashion.cli_args import common_parser  # noqa: E402
from fashion.commands import (benchmark, demo, detect, evaluate, export,  # noqa: E402
                              score, serve, submit, tfrecords, train, tune)
from fashion.errors import CheckFailed, CLIError  # noqa: E402

log = logging.getLogger("fashion")

# The command modules, in --help order; each has add_parser(subparsers, parents).
COMMANDS = [train, evaluate, tune, detect, submit, score, tfrecords, demo, export, benchmark,
            serve]


class _Parser(argparse.ArgumentParser):
    """argparse with one-sentence errors (exit code 2) and no usage dump."""

    def error(self, message):
        raise CLIError(f"{self.prog}: {message}; see {self.prog} --help.")


def program_name():
    """The name the user typed: `fashion-mrcnn` for the console script, else fashion.py."""
    return ("fashion-mrcnn" if os.path.basename(sys.argv[0] or "") == "fashion-mrcnn"
            else "fashion.py")


def build_parser():
    prog = program_name()
    parser = _Parser(prog=prog, description=__doc__.split("\n\n")[0],
                     epilog=f"Run '{prog} COMMAND --help' for a command's flags and "
                     "examples.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = common_parser()
    for module in COMMANDS:
        module.add_parser(sub, [common])
    parser.command_names = list(sub.choices)
    return parser


def process_start_time():
    """When this process started (time.time() seconds, from /proc on Linux; None
    elsewhere): Python's and the imports' start-up count towards --time-budget."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def run_command(argv, started=None):
    """Parses argv and runs the command; returns its result dict (raises on errors).
    started: when the command started (default now); --time-budget counts from it."""
    started = started or time.time()
    parser = build_parser()
    args = parser.parse_args(argv, namespace=argparse.Namespace(started=started))
    if not getattr(args, "command", None):
        raise CLIError(f"{parser.prog}: no command given; use one of "
                       f"{', '.join(parser.command_names)} (see {parser.prog} --help).")
    return args.func(args)


def _setup_logging(argv):
    quiet = "--quiet" in argv
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(message)s")
    for name in ("fashion", "mrcnn"):
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.INFO)


# errno values that only writing causes: disk full, quota, read-only, file too large.
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _one_line(error):
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(str(text).split()) or type(error).__name__


def main(argv=None):
    """The command line: returns the exit code (0 ok, 1 failed check, 2 bad input).
    Run as the program (argv None), TensorFlow's C++ start-up lines are filtered out of
    stderr unless --verbose (fashion.quiet)."""
    # from the command line the process's own start counts; called with argv (tests,
    # notebooks), the call's
    started = process_start_time() if argv is None else None
    if argv is None:
        from fashion.quiet import quiet_native_logs
        quiet_native_logs(verbose="--verbose" in sys.argv[1:])
    argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging(argv)
    try:
        run_command(argv, started)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except CheckFailed as e:
        print(f"check failed: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except (CLIError, ValueError, KeyError, FileNotFoundError, IsADirectoryError,
            RuntimeError) as e:
        if isinstance(e, RuntimeError) and type(e).__module__ != "mrcnn.weights.download":
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permissions, read-only file systems (h5py too)
        print(f"error: {_os_error_line(e)}", file=sys.stderr)
        return 2
    return 0


def _os_error_line(error):
    """An OSError as one sentence naming the path and the cause (mrcnn.fileio)."""
    from mrcnn.fileio import describe_os_error, os_error_number
    number = os_error_number(error)
    if number is None and not getattr(error, "filename", None):
        return _one_line(error)  # already a sentence of ours
    action = "write" if number in _WRITE_ERRORS else "open"
    return describe_os_error(error, getattr(error, "filename", None), action)


if __name__ == "__main__":
    sys.exit(main())
