"""A small ``.gitignore``-style matcher: ``*``, ``?``, ``[...]``, ``**``, ``!`` and ``/``.

Rules are tried in order and the last match wins. A pattern without a slash (other than
a trailing one) matches a name at any depth; one with a slash is anchored at the root;
a trailing slash matches directories only. An excluded directory is not descended into.
"""
import re
from pathlib import Path

ALWAYS_EXCLUDED = (".git/", "*.part")


def glob_regex(glob):
    """Regex text for a gitignore glob body (no anchors). `*` and `?` stop at a slash,
    `**/` spans directories: the same globs as Docker's .dockerignore."""
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and glob.find("]", i + 2) != -1:
            end = glob.index("]", i + 2)
            body = glob[i + 1:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif glob[i] == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


class IgnoreRules:
    """Compiled gitignore-style rules; ``excluded(rel_posix_path, is_dir)``."""

    def __init__(self, patterns=()):
        self.rules = []  # (regex, negate, dir_only)
        for pattern in list(ALWAYS_EXCLUDED) + list(patterns):
            self.add(pattern)

    def add(self, pattern):
        pattern = pattern.rstrip("\n")
        if not pattern.strip() or pattern.startswith("#"):
            return
        if not pattern.endswith("\\ "):
            pattern = pattern.rstrip()
        negate = pattern.startswith("!")
        if negate:
            pattern = pattern[1:]
        if pattern.startswith("\\"):  # escaped leading ! or #
            pattern = pattern[1:]
        dir_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        anchored = "/" in pattern
        body = glob_regex(pattern.lstrip("/"))
        prefix = "^" if anchored else "^(?:.*/)?"
        self.rules.append((re.compile(prefix + body + "$"), negate, dir_only))

    def excluded(self, rel, is_dir=False):
        result = False
        for regex, negate, dir_only in self.rules:
            if dir_only and not is_dir:
                continue
            if regex.match(rel):
                result = not negate
        return result

    @classmethod
    def for_tree(cls, root, extra=()):
        """Rules from ``root/.gitignore`` (if any) followed by ``extra`` patterns."""
        path = Path(root) / ".gitignore"
        lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
        return cls(lines + list(extra))
