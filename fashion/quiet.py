"""Quiet TensorFlow start-up: its C++ log lines stay off the terminal unless --verbose.

On a CPU machine the `tensorflow` package prints a dozen lines before the first line of
ours: absl's "All log messages before absl::InitializeLog()", oneDNN and CPU-feature
notes, "Could not find cuda drivers" and "failed call to cuInit ... (303)". Some are
written while TensorFlow's libraries load, before TF_CPP_MIN_LOG_LEVEL is read, so it
alone cannot stop them. ``quiet_native_logs`` therefore also points file descriptor 2
at a pipe read by a small forked process, which drops those lines (TensorFlow's
glog-format INFO, WARNING and ERROR lines such as the CUDA probing and oneDNN notes,
and absl's pre-initialization notice) and copies everything else to the real stderr
at once: our warnings and errors, tracebacks (TensorFlow's errors reach Python as
exceptions), progress bars (which rewrite their line with \\r) and TensorFlow's
FATAL lines. The forked process outlives a crash of the main one, so nothing written
before it is lost.

Example (before TensorFlow is imported):
    quiet_native_logs(verbose="--verbose" in sys.argv)
"""
import atexit
import logging
import os
import re
import signal
import sys
import time

# glog/absl line prefix: severity, MMDD, time, thread id, file:line]
_GLOG = re.compile(rb"^([IWEF])\d{4} [\d:.]+ +\d+ [^\]\n]*\] ")
_NOTICES = (b"WARNING: All log messages before absl::InitializeLog() is called are "
            b"written to STDERR",
            b"To enable the following instructions:")   # the CPU-feature note's 2nd line
_EXIT_WAIT = 2.0   # seconds the filter may take to copy the last lines at exit


def is_noise(line):
    """True for a TensorFlow C++ start-up line (bytes, one line)."""
    m = _GLOG.match(line)
    if m:
        return m.group(1) != b"F"
    return line.startswith(_NOTICES)


def may_be_noise(head):
    """Whether a line starting with `head` (no newline yet) could still be noise."""
    if head[:1] and head[:1] in b"IWEF":
        digits = head[1:5]
        if (not digits or digits.isdigit()) and (len(head) <= 5 or head[5:6] == b" "):
            return True
    return any(n.startswith(head) or head.startswith(n) for n in _NOTICES)


class LineFilter:
    """Feeds bytes, returns the bytes to pass on: whole noise lines are dropped, other
    text is passed as soon as it cannot be noise (partial lines included)."""

    def __init__(self):
        self.buffer, self.passing = b"", False

    def feed(self, data):
        self.buffer += data
        out = []
        while self.buffer:
            end = self.buffer.find(b"\n")
            if self.passing:
                if end < 0:
                    out.append(self.buffer)
                    self.buffer = b""
                    break
                out.append(self.buffer[:end + 1])
                self.buffer, self.passing = self.buffer[end + 1:], False
            elif end < 0:
                if not may_be_noise(self.buffer):
                    self.passing = True
                    continue
                break                                   # wait for the rest of the line
            else:
                line, self.buffer = self.buffer[:end + 1], self.buffer[end + 1:]
                if not is_noise(line):
                    out.append(line)
        return b"".join(out)

    def flush(self):
        rest, self.buffer = self.buffer, b""
        return rest if rest and not is_noise(rest) else b""


def _copy_filtered(read_fd, write_fd):
    """The forked process: pipe -> filter -> the original stderr, until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)         # Ctrl+C is the parent's to handle
    lines = LineFilter()
    while True:
        try:
            data = os.read(read_fd, 65536)
        except InterruptedError:
            continue
        if not data:
            break
        _write_all(write_fd, lines.feed(data))
    _write_all(write_fd, lines.flush())


def _write_all(fd, data):
    while data:
        try:
            data = data[os.write(fd, data):]
        except InterruptedError:
            continue
        except OSError:                                  # stderr closed: nothing to do
            return


def quiet_native_logs(verbose=False):
    """Before TensorFlow is imported: TF_CPP_MIN_LOG_LEVEL=2, absl's Python logger at
    ERROR and (POSIX) the stderr filter. With verbose, nothing changes. Returns True
    when the filter is installed."""
    if verbose:
        return False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.ERROR)
    if os.name != "posix" or "tensorflow" in sys.modules or not hasattr(os, "fork"):
        return False
    try:
        sys.stderr.flush()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:                                          # the filter process
        try:
            os.close(write_fd)
            _copy_filtered(read_fd, 2)
        finally:
            os._exit(0)
    os.close(read_fd)
    original = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    atexit.register(_restore, original, pid)
    return True


def _restore(original, pid):
    """At exit: stderr back to the terminal, the pipe closed, the filter drained."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(original, 2)
    os.close(original)
    deadline = time.monotonic() + _EXIT_WAIT
    while time.monotonic() < deadline:                    # children may hold the pipe
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.01)
