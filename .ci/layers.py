#!/usr/bin/env python3
"""The layer rule of perfmon-runtime: a module may import only from layers at or before its own,
and only by module path (never through the crate root's re-exports).

Usage: layers.py CRATE_SRC_DIR. Reads `crate::<layer>` paths as text (comments and `mod tests`
blocks skipped, as module-cycles.py does). Exits 1 and names each import that points up.
The order is the one written at the top of perfmon-runtime/src/lib.rs.
"""
import os, re, sys

ORDER = ["core", "pipeline", "read", "ops", "store", "export", "http", "runtime"]

def main():
    src = sys.argv[1]
    bad = []
    for d, _, fs in os.walk(src):
        for f in fs:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(d, f)
            rel = os.path.relpath(path, src).split(os.sep)
            if rel[0] not in ORDER:
                continue  # lib.rs: the façade re-exports every layer
            mine = ORDER.index(rel[0])
            text = open(path, encoding="utf-8").read().split("mod tests {")[0]
            text = re.sub(r"//[^\n]*", "", text)
            for m in re.finditer(r"\bcrate::(\w+)", text):
                layer = m.group(1)
                if layer not in ORDER:
                    line = text[: m.start()].count("\n") + 1
                    bad.append(f"{'/'.join(rel)}:{line}: crate::{layer} goes through the crate root; import by module path")
                elif ORDER.index(layer) > mine:
                    line = text[: m.start()].count("\n") + 1
                    bad.append(f"{'/'.join(rel)}:{line}: {rel[0]} imports {layer}, a layer after it")
    for b in bad:
        print(b)
    print(f"layer rule ({' -> '.join(ORDER)}): {'broken' if bad else 'kept'}")
    sys.exit(1 if bad else 0)

main()
