#!/usr/bin/env python3
"""Fails when a source file or function outgrows what one reader keeps in mind.

- A file in src/ holds at most MAX_FILE_LINES lines before its `#[cfg(test)]` tests.
- A function holds at most MAX_FN_LINES lines, unless the comment just above it says why
  (a line starting `/// Long:` or `// Long:`).
"""
import pathlib
import re
import sys

MAX_FILE_LINES = 600
MAX_FN_LINES = 100
ROOT = pathlib.Path(__file__).resolve().parent.parent / "src"
FN = re.compile(r"^\s*(pub(\([\w:]+\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)")


def strip_strings(line):
    line = re.sub(r"'(\\.|[^\\'])'", "' '", line)  # char literals such as '{'
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    return line.split("//")[0]


def functions(lines):
    """(name, first line, line count) of each function with a body."""
    out = []
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        depth, started = 0, False
        for j in range(i, len(lines)):
            text = strip_strings(lines[j])
            if not started and ";" in text and "{" not in text:
                break  # a declaration without a body
            depth += text.count("{") - text.count("}")
            started = started or "{" in text
            if started and depth <= 0:
                out.append((m.group(6), i, j - i + 1))
                break
    return out


def main():
    failures = []
    for path in sorted(ROOT.rglob("*.rs")):
        lines = path.read_text().split("\n")
        test = next((i for i, l in enumerate(lines) if l.startswith("#[cfg(test)]")), len(lines))
        rel = path.relative_to(ROOT.parent)
        if test > MAX_FILE_LINES:
            failures.append(f"{rel}: {test} lines before its tests (at most {MAX_FILE_LINES})")
        for name, first, count in functions(lines[:test]):
            above = lines[first - 1].strip() if first else ""
            j = first - 1
            reason = False
            while j >= 0 and (lines[j].strip().startswith("//") or lines[j].strip().startswith("#[")):
                reason = reason or re.match(r"//[/!]? ?Long:", lines[j].strip()) is not None
                j -= 1
            if count > MAX_FN_LINES and not reason:
                failures.append(f"{rel}:{first + 1}: fn {name} has {count} lines (at most {MAX_FN_LINES} without a `/// Long:` reason)")
    for f in failures:
        print(f)
    if failures:
        sys.exit(1)
    print(f"every file and function within bounds ({MAX_FILE_LINES} lines a file, {MAX_FN_LINES} a function)")


if __name__ == "__main__":
    main()
