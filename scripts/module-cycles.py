#!/usr/bin/env python3
"""Fails (exit 1) when two top-level modules of src/ import each other, directly or through
others (issue #10: no import cycle). A module's imports are the `crate::NAME` paths in its
files, comments left out. Standard library only; run from the repository root."""
import os
import re
import sys


def imports():
    edges = {}
    for root, _, files in os.walk("src"):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            top = os.path.relpath(path, "src").split(os.sep)[0].removesuffix(".rs")
            if top in ("lib", "main"):
                continue
            with open(path, encoding="utf-8") as f:
                code = "\n".join(l for l in f if not l.lstrip().startswith("//"))
            for used in re.findall(r"crate::([a-z_][a-z0-9_]*)", code):
                if used != top:
                    edges.setdefault(top, set()).add(used)
    return edges


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                found.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def main():
    edges = imports()
    found = cycles(edges)
    for comp in found:
        print("import cycle between top-level modules: " + ", ".join(comp), file=sys.stderr)
        for m in comp:
            print(f"  {m} uses {', '.join(sorted(edges[m] & set(comp)))}", file=sys.stderr)
    if found:
        print("move what both need into a module of its own (see lib.rs's data flow)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
