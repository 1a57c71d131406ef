#!/usr/bin/env python3
"""Worst-case stack of functions in a Cortex-M ELF built with `-Z emit-stack-sizes`.

Usage: bench/stack.py ELF ENTRY...   prints "ENTRY BYTES DEEPEST-PATH" per entry.

Each function's own frame comes from the `.stack_sizes` section (`llvm-readobj
--stack-sizes`), or, for the precompiled `compiler_builtins` routines that have no entry, from
its prologue (`push`, `vpush`, `sub sp`). The call graph comes from the disassembly
(`llvm-objdump -d`): `bl`/`blx` to a symbol, and branches into another function (tail
calls); function extents from `llvm-nm -S`. The worst case of a function is its frame plus the worst case of its deepest
callee. Exits 3 when the graph has an indirect call or recursion on the path of an entry
(the bound would not hold), 2 when a tool is missing.
"""
import bisect
import re
import shutil
import subprocess
import sys


def tool(*names):
    for n in names:
        if shutil.which(n):
            return n
    sys.exit(f"stack.py: one of {', '.join(names)} is needed")


def frames(elf):
    out = subprocess.run(
        [tool("llvm-readobj"), "--stack-sizes", elf], capture_output=True, text=True, check=True
    ).stdout
    sizes = {}
    for fns, size in re.findall(r"Functions: \[([^\]]*)\]\s*Size: (0x[0-9A-Fa-f]+)", out):
        for f in fns.split(","):
            sizes[f.strip()] = int(size, 16)
    return sizes


def regs(lst):
    n = 0
    for part in lst.split(","):
        part = part.strip()
        m = re.fullmatch(r"([rds])(\d+)-\1(\d+)", part)
        n += (int(m.group(3)) - int(m.group(2)) + 1) if m else 1
    return n


def disassemble(elf):
    out = subprocess.run(
        [tool("llvm-objdump"), "-d", "--no-show-raw-insn", elf],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Function extents from the symbol table (`llvm-nm -S`): padding after a function's end
    # disassembles as junk branches, and `$t`/`$d` are ARM mapping symbols, not functions.
    nm = subprocess.run(
        [tool("llvm-nm"), "-S", "--defined-only", elf], capture_output=True, text=True, check=True
    ).stdout
    extent = {}
    for line in nm.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwW":
            extent[p[3]] = (int(p[0], 16) & ~1, int(p[1], 16))
    starts = sorted((a, n) for n, (a, _) in extent.items())
    addrs = [a for a, _ in starts]

    def owner(addr):
        i = bisect.bisect_right(addrs, addr) - 1
        if i < 0:
            return None
        a, n = starts[i]
        return n if addr < a + extent[n][1] else None

    calls, prologue, indirect, cur, seen = {}, {}, {}, None, 0
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <([^>]+)>:$", line)
        if m:
            if not m.group(1).startswith("$"):
                cur, seen = m.group(1), 0
                calls[cur], prologue[cur], indirect[cur] = set(), 0, False
            continue
        if cur is None or not line.strip():
            continue
        ins = line.split("\t")
        if len(ins) < 3 or owner(int(ins[0].strip().rstrip(":"), 16)) != cur:
            continue
        op, args = ins[1].strip(), ins[2].strip()
        seen += 1
        if seen <= 8:  # the prologue, for functions without a .stack_sizes entry
            if op in ("push", "push.w", "stmdb", "stmdb.w") and "{" in args:
                prologue[cur] += 4 * regs(args[args.index("{") + 1 : args.index("}")])
            elif op in ("vpush", "vpush.w") and "{" in args:
                prologue[cur] += 8 * regs(args[args.index("{") + 1 : args.index("}")])
            elif op in ("sub", "sub.w", "subw") and args.startswith("sp"):
                imm = re.search(r"#(0x[0-9a-f]+|\d+)", args)
                if imm:
                    prologue[cur] += int(imm.group(1), 0)
        if re.fullmatch(r"(bl|blx|b|b\.w|b[a-z]{2}|b[a-z]{2}\.w|cbn?z)", op):
            t = re.search(r"\b0x([0-9a-f]+)\b", " ".join(ins[2:]))
            if t:
                callee = owner(int(t.group(1), 16))
                if callee is not None and callee != cur:
                    calls[cur].add(callee)
        elif op == "blx":
            # A call through a register: its callee is unknown. (`bx rN` and `mov pc, rN`
            # are the jump tables of `match`, inside the function; returns are `bx lr` and
            # `pop {.., pc}`. The core has no function pointers on these paths.)
            indirect[cur] = True
    return calls, prologue, indirect


def demangle(name):
    """A short readable name: demangled when llvm-cxxfilt knows the scheme, generics and
    crate hashes dropped."""
    if shutil.which("llvm-cxxfilt"):
        name = subprocess.run(
            ["llvm-cxxfilt", name], capture_output=True, text=True, check=False
        ).stdout.strip() or name
    while re.search(r"<[^<>]*>", name):
        name = re.sub(r"<[^<>]*>", "", name)
    return re.sub(r"\[[0-9a-f]+\]", "", name)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    elf, entries = sys.argv[1], sys.argv[2:]
    sizes = frames(elf)
    if not sizes:
        print(f"stack.py: {elf} has no .stack_sizes (build with -Z emit-stack-sizes)", file=sys.stderr)
        sys.exit(3)
    calls, prologue, indirect = disassemble(elf)
    memo, problems = {}, []

    def worst(f, stack):
        if f in stack:
            problems.append("recursion: " + " -> ".join(stack + [f]))
            return 0, [f]
        if f in memo:
            return memo[f]
        if indirect.get(f):
            problems.append(f"indirect call in {f}")
        own = sizes.get(f, prologue.get(f, 0))
        best = (0, [])
        for c in sorted(calls.get(f, ())):
            best = max(best, worst(c, stack + [f]), key=lambda x: x[0])
        memo[f] = (own + best[0], [f] + best[1])
        return memo[f]

    status = 0
    for e in entries:
        if e not in calls:
            print(f"stack.py: no function {e} in {elf}", file=sys.stderr)
            status = 3
            continue
        total, path = worst(e, [])
        shown = " > ".join(f"{demangle(p)} ({sizes.get(p, prologue.get(p, 0))})" for p in path)
        print(f"{e} {total} {shown}")
    for p in sorted(set(problems)):
        print(f"stack.py: {p}: the bound does not hold", file=sys.stderr)
        status = 3
    sys.exit(status)


main()
