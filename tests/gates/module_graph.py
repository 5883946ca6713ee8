#!/usr/bin/env python3
"""Gate: the agent's source files form a one-way graph, and functions stay short.

1. Inside the given module folders no two files import each other (no cycle of any
   length). A file imports another when it names an item or module defined there
   through `super::`, `self::`, `crate::<path>` or a child module path. Test files
   (`tests.rs`, `*_tests.rs`, `tests/`) and `#[cfg(test)]` blocks are left out.
2. No production function is longer than MAX_FN_LINES lines (from its `fn` line to its
   closing brace), tests left out.

Prints every cycle and every long function; exits 1 if there is any.
Usage: module_graph.py SRC_ROOT DIR... (DIR relative to SRC_ROOT, e.g. image planner)
"""
import os
import re
import sys

MAX_FN_LINES = 120


def is_test_file(rel):
    base = os.path.basename(rel)
    return base == "tests.rs" or base.endswith("_tests.rs") or "/tests/" in "/" + rel


def strip_tests_and_comments(text):
    """Source without comments, string contents and #[cfg(test)] items."""
    out = re.sub(r"//[^\n]*", "", text)
    out = re.sub(r"/\*.*?\*/", "", out, flags=re.S)
    out = re.sub(r'"(?:\\.|[^"\\])*"', '""', out)
    # Drop #[cfg(test)] items: the attribute, then up to the matching brace or `;`.
    while True:
        m = re.search(r"#\[cfg\(test\)\]", out)
        if not m:
            return out
        i = m.end()
        depth = 0
        while i < len(out):
            c = out[i]
            if c == ";" and depth == 0:
                i += 1
                break
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    i += 1
                    break
            i += 1
        out = out[: m.start()] + out[i:]


class Tree:
    """Module path (tuple) ↔ file, and the names each file defines."""

    def __init__(self, src):
        self.src = src
        self.file_of = {}  # module path -> file (relative)
        self.module_of = {}  # file -> module path
        for dirpath, _, files in os.walk(src):
            for f in files:
                if not f.endswith(".rs"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), src)
                parts = rel[:-3].split(os.sep)
                if parts[-1] in ("mod", "lib", "main"):
                    parts = parts[:-1]
                path = tuple(parts)
                self.file_of[path] = rel
                self.module_of[rel] = path
        self.defs = {}
        self.reexports = {}
        for rel in self.module_of:
            text = strip_tests_and_comments(open(os.path.join(src, rel)).read())
            self.defs[rel] = set(
                re.findall(r"\b(?:fn|struct|enum|trait|type|const|static|mod|macro_rules!)\s+([A-Za-z_]\w*)", text)
            )
            # `pub use child::Name;` / `pub use child::{A, B}` : the name lives in child.
            rx = {}
            for m in re.finditer(r"pub(?:\([^)]*\))?\s+use\s+([\w:]+)::(\{[^}]*\}|\w+)", text):
                base, names = m.group(1), m.group(2)
                for n in re.findall(r"\w+", names):
                    rx[n] = base
            self.reexports[rel] = rx

    def resolve(self, rel, path):
        """The file that defines the first item of `path` (a list of segments) as
        written in file `rel`, or None when it is outside the crate or unknown."""
        mod = list(self.module_of[rel])
        segs = list(path)
        if segs[0] == "crate":
            mod, segs = [], segs[1:]
        elif segs[0] == "self":
            segs = segs[1:]
        elif segs[0] == "super":
            while segs and segs[0] == "super":
                mod = mod[:-1]
                segs = segs[1:]
        else:
            # A child module of this file's module, or nothing we track.
            if tuple(mod + [segs[0]]) not in self.file_of:
                return None
        # Walk down module files as far as the path names them.
        while segs and tuple(mod + [segs[0]]) in self.file_of:
            mod.append(segs.pop(0))
        target = self.file_of.get(tuple(mod))
        if target is None:
            return None
        if segs and segs[0] in self.reexports.get(target, {}):
            again = self.resolve(target, self.reexports[target][segs[0]].split("::") + segs)
            return again or target
        return target


def import_paths(text):
    """Every `a::b::c` path used in `use` items and expressions, as segment lists."""
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        paths.extend(expand_use(m.group(1).strip()))
    body = re.sub(r"\buse\s+[^;]+;", "", text)
    for m in re.finditer(r"\b((?:crate|super|self)(?:::\w+)+)", body):
        paths.append(m.group(1).split("::"))
    return paths


def expand_use(tree):
    """`a::{b, c::d}` -> [[a, b], [a, c, d]]."""
    tree = tree.replace(" ", "").replace("\n", "")
    m = re.match(r"^(.*?)::\{(.*)\}$", tree, re.S)
    if not m:
        return [re.sub(r"as\w+$", "", tree).split("::")]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for c in inner:
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += c == "{"
        depth -= c == "}"
        cur += c
    if cur:
        parts.append(cur)
    out = []
    for p in parts:
        if p in ("self", ""):
            out.append(prefix.split("::"))
        else:
            out.extend(expand_use(prefix + "::" + p))
    return out


def cycles(tree, dirs):
    inside = [r for r in tree.module_of if any(r == d + ".rs" or r.startswith(d + "/") for d in dirs)]
    inside = [r for r in inside if not is_test_file(r)]
    edges = {r: set() for r in inside}
    for rel in inside:
        text = strip_tests_and_comments(open(os.path.join(tree.src, rel)).read())
        for p in import_paths(text):
            target = tree.resolve(rel, p)
            if target and target != rel and target in edges:
                edges[rel].add(target)
    # Tarjan's strongly connected components.
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out, edges


def long_functions(src):
    found = []
    for dirpath, _, files in os.walk(src):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            if not f.endswith(".rs") or is_test_file(rel):
                continue
            lines = open(os.path.join(dirpath, f)).read().split("\n")
            in_test_from = None
            for i, line in enumerate(lines):
                if re.match(r"\s*#\[cfg\(test\)\]", line):
                    in_test_from = i
                m = re.match(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:unsafe\s+)?(?:extern\s+\"C\"\s+)?fn\s+(\w+)", line)
                if not m or in_test_from is not None:
                    continue
                indent = m.group(1)
                for j in range(i + 1, len(lines)):
                    if lines[j] == indent + "}":
                        if j - i + 1 > MAX_FN_LINES:
                            found.append((rel, i + 1, m.group(2), j - i + 1))
                        break
                    if lines[j].rstrip().endswith(";") and j == i:
                        break
    return found


def main():
    src, dirs = sys.argv[1], sys.argv[2:]
    tree = Tree(src)
    bad = 0
    comps, _ = cycles(tree, dirs)
    for comp in comps:
        print("module cycle: " + " <-> ".join(comp))
        bad += 1
    for rel, line, name, n in long_functions(src):
        print(f"long function: {rel}:{line} {name} is {n} lines (limit {MAX_FN_LINES})")
        bad += 1
    if bad:
        sys.exit(1)
    print(f"module graph: no cycles in {', '.join(dirs)}; no function over {MAX_FN_LINES} lines")


if __name__ == "__main__":
    main()
