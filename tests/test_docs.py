"""The README is a front door and the manual in docs/ holds together: every relative link
(and every #anchor into a page) resolves, the README stays short, and no internal issue
numbers reach users in docs, docstrings or benchmarks.
"""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
OTHER_PAGES = [REPO / "weights" / "README.md", REPO / "docker" / "README.md"]
README_MAX_LINES = 200
# What a reader meets: the pages, the library, the application, the benchmarks, the
# samples and notebooks, the weights' and the image's pages.
SOURCES = ["README.md", "docs", "benchmarks", "mrcnn", "fashion", "samples", "weights",
           "docker", "setup.py"]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
# "issue 3", "issues 5, 9", "issue #12", "(before issue 7)": this project's own tracker.
ISSUE = re.compile(r"\bissues?\s*#?\d+", re.I)
# A number in someone else's tracker, named as such on the same line, is a citation.
EXTERNAL = re.compile(r"Mask_RCNN|matterport|github\.com|keras-team|tensorflow/|pytorch/",
                      re.I)


def prose(text):
    """Markdown without fenced code blocks and inline code (links there do not render)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(text):
    """Every link target of a markdown text: inline [x](target) and [x]: target."""
    body = prose(text)
    return LINK.findall(body) + REFERENCE.findall(body)


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    text = FENCE.sub("", path.read_text())
    found, seen = set(HTML_ANCHOR.findall(text)), {}
    for heading in HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(page, root=REPO):
    """['target: why'] for each relative link of `page` that does not resolve to a file
    or directory under `root` (and, into a page, to one of its headings)."""
    bad = []
    for target in links(page.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):   # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file or directory")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading or anchor #{anchor} in {dest.name}")
        elif root not in dest.parents and dest != root:
            bad.append(f"{target}: outside the repository")
    return bad


def issue_references(text):
    """The internal issue references of a text: ['line N: ...']."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in ISSUE.finditer(line):
            if not EXTERNAL.search(line[:match.start()]):
                out.append(f"line {number}: {line.strip()}")
    return out


def source_files():
    for name in SOURCES:
        path = REPO / name
        files = [path] if path.is_file() else sorted(path.rglob("*"))
        for f in files:
            if f.suffix in (".py", ".md", ".ipynb") and "__pycache__" not in f.parts:
                yield f


@pytest.mark.parametrize("page", PAGES + OTHER_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    assert not broken_links(page), broken_links(page)


def test_readme_is_a_front_door():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "## Quick start" in text
    pages = {Path(t.partition("#")[0]).name for t in links(text) if t.startswith("docs/")}
    missing = {p.name for p in PAGES[1:]} - pages
    assert not missing, f"docs pages the README does not link: {sorted(missing)}"


def test_no_internal_issue_numbers_reach_users():
    found = {str(f.relative_to(REPO)): refs for f in source_files()
             if (refs := issue_references(f.read_text(errors="replace")))}
    assert not found, found


def test_the_checks_catch_what_they_are_for(tmp_path):
    """A broken link, a missing anchor and an issue number are found; an external
    tracker's number and a link inside a code block are not."""
    (tmp_path / "other.md").write_text("# Other page\n\n## Some part\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#some-part) [gone](nothing.md) [bad](other.md#none)\n"
                    "```\n[in code](nowhere.md)\n```\n[site](https://example.org/x)\n")
    assert broken_links(page, root=tmp_path) == ["nothing.md: no such file or directory",
                                  "other.md#none: no heading or anchor #none in other.md"]
    assert slug("From Python (matterport's API)") == "from-python-matterports-api"
    assert issue_references("Targets (issue 3): fast.\nbefore issue #12\n") == [
        "line 1: Targets (issue 3): fast.", "line 2: before issue #12"]
    assert issue_references("see matterport's Mask_RCNN issues 501 and 1250\n") == []
