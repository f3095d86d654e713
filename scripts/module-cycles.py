#!/usr/bin/env python3
"""Fails when the crate's module graph has a cycle at any level.

At each level of the module tree the nodes are the child modules of one module plus that
module's own file ("self"); an edge A -> B means some file under A names something under B
(`use crate::..`, `super::..`, `crate::..` paths, child modules by name). Any cycle among
them is reported: leaves import nothing back, and a parent's children do not use the
parent's own items while it uses theirs. Inline `#[cfg(test)] mod tests` blocks are left out.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "src"


def module_of(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(parts)


def strip(text):
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests\s*\{", text)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def expand(tree):
    """`a::{b, c::{d}}` -> [a::b, a::c::d]."""
    tree = re.sub(r"\s+", "", tree)
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                prefix, inner, rest = tree[:start], tree[start + 1 : i], tree[i + 1 :]
                out, d, cur = [], 0, ""
                for c in inner + ",":
                    if c == "," and d == 0:
                        if cur:
                            out.extend(prefix + p + rest for p in expand(cur))
                        cur = ""
                        continue
                    d += c == "{"
                    d -= c == "}"
                    cur += c
                return out
    return [tree]


def main():
    files = {module_of(p): p for p in ROOT.rglob("*.rs") if p.name != "main.rs"}
    modules = set(files)
    edges = {}  # (from module, to module)
    for module, path in files.items():
        text = strip(path.read_text())
        refs = []
        for use in re.findall(r"\buse\s+([^;]+);", text):
            refs.extend(expand(use))
        refs.extend(re.findall(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", text))
        children = {m[-1] for m in modules if m[:-1] == module and len(m) == len(module) + 1}
        for name in children:
            if re.search(rf"(?<![\w:]){name}::", text):
                refs.append(f"self::{name}")
        for ref in refs:
            parts = [p for p in ref.split("::") if p]
            if not parts or parts[0] not in ("crate", "super", "self"):
                continue
            base = list(module)
            while parts and parts[0] in ("crate", "super", "self"):
                head = parts.pop(0)
                if head == "crate":
                    base = []
                elif head == "super":
                    base = base[:-1]
            target = tuple(base)
            for p in parts:
                if target + (p,) in modules:
                    target = target + (p,)
                else:
                    break
            if target != module:
                edges.setdefault(module, set()).add(target)
    # Per level: nodes are a module's children and "self".
    failures = []
    parents = {m[:-1] for m in modules if m} | {()}
    for parent in sorted(parents):
        graph = {}
        for src, targets in edges.items():
            if src[: len(parent)] != parent:
                continue
            a = src[len(parent)] if len(src) > len(parent) else "self"
            for dst in targets:
                if dst[: len(parent)] != parent:
                    continue
                b = dst[len(parent)] if len(dst) > len(parent) else "self"
                if a != b:
                    graph.setdefault(a, set()).add(b)
        for cycle in cycles(graph):
            name = "::".join(parent) or "crate"
            failures.append(f"{name}: {' -> '.join(cycle)}")
    for f in failures:
        print("module cycle in", f)
    if failures:
        sys.exit(1)
    print(f"no module cycle ({len(modules)} modules)")


def cycles(graph):
    """One cycle per strongly connected component with more than one node."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    main()
