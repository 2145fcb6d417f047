#!/usr/bin/env python3
"""check-doc-snippets.py: owns the rule that every snippet in the docs pages
(README.md and docs/*.md) is copied from a test that runs.

A fenced code block in any language but shell (rust, python, js, ts, c, java,
nginx, json, ..., and untagged blocks that are not commands, such as config
files) must be preceded (blank lines allowed) by

    <!-- snippet: <repo-relative path> -->

and its non-blank lines, each stripped of leading and trailing whitespace, must
appear in that file as a contiguous run of its non-blank stripped lines, in
order. Shell blocks (sh, bash, console, shell, or untagged blocks whose lines
are commands) may carry a marker and are then checked the same way; unmarked
shell blocks are allowed.

The source must be a file that the test command (scripts/test.sh) runs: a file
under one of the directories of RUNNERS that either runs by itself there (a
test file) or is named by one of the files that run it (an example, a config
file or a header that a test reads, executes or includes).

Standard library only. Exit 0 when every snippet matches, 1 with one line per
problem (doc file:line) otherwise. `--root DIR` checks another checkout (the
suite's own negative test uses a temporary copy).
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import sys
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

SHELL_LANGS = {"sh", "bash", "console", "shell", "shell-session", "zsh"}

# Commands that make an untagged block a shell block (its first command line
# starts with one of these, or with "$ " or "./").
SHELL_COMMANDS = {
    "apt-get", "cargo", "cc", "cd", "curl", "docker", "export", "gcc", "git",
    "java", "kill", "make", "maturin", "mvn", "node", "npm", "npx", "pip",
    "pip3", "pytest", "python", "python3", "redis-server", "rustup", "sudo",
    "switchboard", "systemctl", "uvicorn", "wget",
}

# Where a snippet's source may live: (directory, glob of the files that run by
# themselves there, places that must name any other file of that directory).
# "Named" means its file name appears in one of those files (or, for a Python
# module or a Java class, its quoted module name or its class name does).
RUNNERS: List[Tuple[str, Optional[str], Tuple[str, ...]]] = [
    # cargo test: every top-level file is a test binary; fixtures are read by them.
    ("core/tests/", "*.rs", ("core/tests",)),
    ("core/examples/", None, ("scripts", "core/tests", "tests/parity")),
    # pytest: test_*.py (conftest.py is loaded by pytest itself).
    ("python/tests/", "**/test_*.py", ("python/tests",)),
    ("python/examples/", None, ("python/tests",)),
    # node --test: *.test.mjs.
    ("node/test/", "**/*.test.mjs", ("node/test",)),
    ("node/examples/", None, ("node/test",)),
    ("browser/test/", "**/*.test.mjs", ("browser/test",)),
    # Maven Surefire: *Test.java.
    ("java/src/test/", "**/*Test.java", ("java/src/test",)),
    ("java/spring/src/test/", "**/*Test.java", ("java/spring/src/test",)),
    # scripts/test-cjava.sh compiles and runs tests/c/test_*.c and names the rest.
    ("tests/c/", "test_*.c", ("scripts/test-cjava.sh", "tests/c")),
    # Deployment configs (nginx, coturn) that the Rust tests read and run.
    ("tests/deploy/", None, ("core/tests",)),
    ("tests/parity/", None, ("scripts/test-parity.sh", "tests/parity")),
    ("scripts/", "test*.sh", ("scripts/test.sh",)),
]

FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([^`\s]*)")
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(\S+)\s*-->\s*$")


class Block(NamedTuple):
    doc: str  # repo-relative doc path
    line: int  # 1-based line of the opening fence
    lang: str
    lines: List[str]
    marker: Optional[str]  # the marker's path, if any


def doc_files(root: Path) -> List[Path]:
    docs = [root / "README.md"] if (root / "README.md").is_file() else []
    return docs + sorted((root / "docs").glob("*.md"))


def blocks(root: Path, doc: Path, problems: List[str]) -> Iterator[Block]:
    """The fenced code blocks of `doc`, each with the marker before it."""
    rel = doc.relative_to(root).as_posix()
    text = doc.read_text(encoding="utf-8").splitlines()
    marker: Optional[Tuple[str, int]] = None
    i = 0
    while i < len(text):
        line = text[i]
        m = MARKER.match(line)
        if m:
            if marker:
                problems.append(f"{rel}:{marker[1]}: snippet marker not followed by a code block")
            marker = (m.group(1), i + 1)
            i += 1
            continue
        f = FENCE.match(line)
        if not f:
            if line.strip() and marker:
                problems.append(f"{rel}:{marker[1]}: snippet marker not followed by a code block")
                marker = None
            i += 1
            continue
        indent, fence, lang = len(f.group(1)), f.group(2), f.group(3).lower()
        start = i
        body: List[str] = []
        i += 1
        while i < len(text):
            close = text[i].strip()
            if close.startswith(fence[0] * len(fence)) and not close.strip(fence[0]):
                break
            body.append(text[i][indent:] if text[i][:indent].isspace() else text[i])
            i += 1
        else:
            problems.append(f"{rel}:{start + 1}: code block is never closed")
        yield Block(rel, start + 1, lang, body, marker[0] if marker else None)
        marker = None
        i += 1
    if marker:
        problems.append(f"{rel}:{marker[1]}: snippet marker not followed by a code block")


def is_shell(block: Block) -> bool:
    if block.lang in SHELL_LANGS:
        return True
    if block.lang:
        return False
    # Untagged: shell when its first line that is not a comment is a command.
    for line in block.lines:
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith(("$ ", "./")):
            return True
        return s.split()[0] in SHELL_COMMANDS
    return False


def stripped(lines: List[str]) -> List[str]:
    return [s for s in (line.strip() for line in lines) if s]


def find_run(needle: List[str], haystack: List[str]) -> int:
    """Index in `haystack` where `needle` starts as a contiguous run, or -1."""
    n = len(needle)
    for i in range(len(haystack) - n + 1):
        if haystack[i : i + n] == needle:
            return i
    return -1


def longest_prefix(needle: List[str], haystack: List[str]) -> int:
    """How many leading lines of `needle` match somewhere in `haystack` (for the message)."""
    best = 0
    for i in range(len(haystack)):
        k = 0
        while k < len(needle) and i + k < len(haystack) and haystack[i + k] == needle[k]:
            k += 1
        best = max(best, k)
    return best


def names_file(referrer_text: str, source: Path) -> bool:
    if source.name in referrer_text:
        return True
    stem = re.escape(source.stem)
    if re.search(rf"[\"']{stem}[\"']", referrer_text):
        return True  # a module loaded by name: load("fastapi_route")
    if source.suffix == ".java" and re.search(rf"\b{stem}\b", referrer_text):
        return True  # a class used by a test
    return False


def runs_in_tests(root: Path, rel: str, cache: Dict[Path, str]) -> Optional[str]:
    """None when `rel` is a file the test command runs, else why not."""
    for directory, self_running, referrers in RUNNERS:
        if not rel.startswith(directory):
            continue
        source = root / rel
        inside = rel[len(directory) :]
        if self_running:
            # "**/x": anywhere below the directory; "x": at its top level only.
            deep = self_running.startswith("**/")
            pattern = self_running[3:] if deep else self_running
            if (deep or "/" not in inside) and fnmatch.fnmatch(source.name, pattern):
                return None
        for ref in referrers:
            base = root / ref
            files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
            for f in files:
                if f == source:
                    continue
                if f not in cache:
                    try:
                        cache[f] = f.read_text(encoding="utf-8", errors="replace")
                    except OSError:
                        cache[f] = ""
                if names_file(cache[f], source):
                    return None
        return f"{rel} is not run by the tests: no file of {', '.join(referrers)} names it"
    accepted = ", ".join(d for d, _, _ in RUNNERS)
    return f"{rel} is not in a directory whose files the tests run ({accepted})"


def check(root: Path) -> List[str]:
    problems: List[str] = []
    cache: Dict[Path, str] = {}
    sources: Dict[str, List[str]] = {}
    for doc in doc_files(root):
        for block in blocks(root, doc, problems):
            where = f"{block.doc}:{block.line}"
            kind = f"```{block.lang}" if block.lang else "untagged ``` block"
            if block.marker is None:
                if not is_shell(block):
                    problems.append(
                        f"{where}: {kind} has no <!-- snippet: <path> --> marker; "
                        "copy it from a test (or an example a test runs) and name that file"
                    )
                continue
            rel = block.marker
            path = root / rel
            if not path.is_file():
                problems.append(f"{where}: snippet source {rel} does not exist")
                continue
            why = runs_in_tests(root, rel, cache)
            if why:
                problems.append(f"{where}: {why}")
                continue
            if rel not in sources:
                sources[rel] = stripped(path.read_text(encoding="utf-8").splitlines())
            needle = stripped(block.lines)
            if not needle:
                problems.append(f"{where}: {kind} is empty")
                continue
            if find_run(needle, sources[rel]) < 0:
                k = longest_prefix(needle, sources[rel])
                problems.append(
                    f"{where}: {kind} is not a contiguous copy of {rel}; "
                    f"snippet line {k + 1} differs: {needle[min(k, len(needle) - 1)]!r}"
                )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    root = args.root.resolve()
    problems = check(root)
    for p in problems:
        print(f"check-doc-snippets: {p}", file=sys.stderr)
    if problems:
        print(f"check-doc-snippets: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    count = sum(1 for doc in doc_files(root) for b in blocks(root, doc, []) if b.marker)
    print(f"check-doc-snippets: {count} marked snippet(s) match their sources")
    return 0


if __name__ == "__main__":
    sys.exit(main())
