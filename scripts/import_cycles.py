#!/usr/bin/env python3
"""Fails when source files of a crate import each other in a cycle.

A file's imports are the `crate::a::b` and `super::x` paths it names outside
its `#[cfg(test)] mod tests` block, resolved to the longest module path that is
a file of the same crate. Declaring a child module (`mod x;`) is not an import.
Usage: scripts/import_cycles.py CRATE_SRC_DIR...   (prints the cycles found)
"""
import re
import sys
from pathlib import Path

PATH_RE = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)")


def modules(src: Path):
    mods = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] in ("mod", "lib", "main"):
            parts = parts[:-1]
        if f.parent == src and f.stem not in ("lib", "mod"):
            parts = [f.stem]
        if "bin" in rel.parts:
            continue
        mods[tuple(parts)] = f
    return mods


def code_of(f: Path) -> str:
    text = f.read_text()
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
    text = text[: cut.start()] if cut else text
    # Doc and line comments do not import.
    return re.sub(r"//[^\n]*", "", text)


def resolve(mods, base, names):
    for n in range(len(names), -1, -1):
        cand = tuple(base) + tuple(names[:n])
        if cand in mods:
            return cand
    return None


def edges(mods):
    out = {m: set() for m in mods}
    for m, f in mods.items():
        is_dir_mod = f.name == "mod.rs"
        for kind, rest in PATH_RE.findall(code_of(f)):
            names = [x for x in rest.split("::") if x and x != "{"]
            if kind == "crate":
                base = []
            else:
                # `super` of a/b.rs is a; of a/b/mod.rs is a as well.
                base = list(m[:-1]) if not is_dir_mod or m else []
                while names and names[0] == "super":
                    names = names[1:]
                    base = base[:-1]
            target = resolve(mods, base, names)
            if target is not None and target != m:
                out[m].add(target)
    return out


def cycles(graph):
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
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
                found.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            strong(v)
    return found


def main():
    bad = 0
    for src in sys.argv[1:]:
        mods = modules(Path(src))
        for comp in cycles(edges(mods)):
            bad += 1
            names = sorted(str(mods[m].relative_to(Path(src).parent)) for m in comp)
            print(f"import cycle: {' <-> '.join(names)}")
    if bad:
        sys.exit(1)
    print(f"no import cycles in {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
