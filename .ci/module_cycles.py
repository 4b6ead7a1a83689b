#!/usr/bin/env python3
"""Finds import circles between the modules (files) of each library crate.

A module is a source file: `lib.rs` is the crate root, `a.rs` and `a/mod.rs`
are `crate::a`, `a/b.rs` is `crate::a::b`. Module A depends on module B when
A names B's items: a `use` of `crate::`, `super::` or `self::` paths, or such
a path written inline. `pub use` re-exports are a facade, not a dependency:
a path through one is followed to the module that defines the item. Test
code (`tests.rs` files and what follows `#[cfg(test)]`) is left out.

A circle is a strongly connected set of more than one module. Exits 1 and
lists them when there is one; prints the module count otherwise.

    .ci/module_cycles.py wal/src lockmgr/src engine/src ...
"""
import os
import re
import sys


KNOWN = set()


def module_files(src):
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel == ["lib"] or rel == ["main"]:
                parts = []
            elif rel[-1] == "mod":
                parts = rel[:-1]
            else:
                parts = rel
            if rel[0] == "bin" or parts[-1:] == ["tests"]:
                continue
            mods[tuple(parts)] = path
    return mods


def strip(text):
    """Drops comments, string literals and test code."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    cut = re.search(r"#\[cfg\(test\)\]", text)
    if cut:
        text = text[: cut.start()]
    return text


def expand(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)
    i = tree.find("{")
    if i < 0:
        return [re.sub(r"\bas\w+$", "", tree.split(" as ")[0])]
    depth, j = 0, i
    while j < len(tree):
        if tree[j] == "{":
            depth += 1
        elif tree[j] == "}":
            depth -= 1
            if depth == 0:
                break
        j += 1
    prefix, inner = tree[:i], tree[i + 1 : j]
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:k])
            start = k + 1
    parts.append(inner[start:])
    out = []
    for p in parts:
        if not p:
            continue
        for e in expand(p):
            out.append(prefix + e if e != "self" else prefix.rstrip(":"))
    return out


def absolute(path, here):
    segs = [s for s in path.split("::") if s]
    segs = [re.sub(r"as\w+$", "", s) if False else s for s in segs]
    if not segs:
        return None
    out = list(here)
    if segs[0] == "crate":
        out, segs = [], segs[1:]
    elif segs[0] == "self":
        segs = segs[1:]
    elif segs[0] == "super":
        while segs and segs[0] == "super":
            out = out[:-1]
            segs = segs[1:]
    elif here + (segs[0],) in KNOWN:
        pass  # a path relative to this module, through a child module
    else:
        return None
    return tuple(out) + tuple(segs)


def analyse(src):
    mods = module_files(src)
    KNOWN.clear()
    KNOWN.update(mods)
    texts = {m: strip(open(p).read()) for m, p in mods.items()}
    # Re-exports: (module, name) -> absolute path of the item.
    reexports = {}
    uses = {m: [] for m in mods}
    for m, text in texts.items():
        for vis, tree in re.findall(r"(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text):
            for p in expand(tree):
                alias = None
                if " as " in p:
                    p, alias = p.split(" as ")
                p = re.sub(r"as(\w+)$", "", p) if False else p
                a = absolute(p, m)
                if a is None:
                    continue
                if vis:
                    reexports[(m, alias or a[-1])] = a
                else:
                    uses[m].append(a)
        for p in re.findall(r"(?<![\w:])(\w+(?:::\w+)+)", re.sub(r"use\s+[^;]+;", "", text)):
            a = absolute(p, m)
            if a is not None:
                uses[m].append(a)

    def resolve(path, depth=0):
        """The module that defines what `path` names."""
        best = ()
        for k in range(len(path), -1, -1):
            if path[:k] in mods:
                best = path[:k]
                break
        rest = path[len(best):]
        if rest and (best, rest[0]) in reexports and depth < 20:
            return resolve(reexports[(best, rest[0])] + rest[1:], depth + 1)
        return best

    graph = {m: set() for m in mods}
    for m, paths in uses.items():
        for p in paths:
            t = resolve(p)
            if t != m:
                graph[m].add(t)
    return mods, graph


def sccs(graph):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def name(m):
    return "crate" + "".join("::" + s for s in m)


def main(srcs):
    bad = 0
    total = 0
    for src in srcs:
        mods, graph = analyse(src)
        total += len(mods)
        for comp in sccs(graph):
            bad += 1
            members = sorted(comp)
            print(f"{src}: circle among {', '.join(name(m) for m in members)}")
            for m in members:
                for t in sorted(graph[m] & set(comp)):
                    print(f"    {name(m)} -> {name(t)}")
    if bad:
        return 1
    print(f"no import circles among {total} modules in {len(srcs)} source trees")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
