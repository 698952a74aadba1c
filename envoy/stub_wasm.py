#!/usr/bin/env python3
"""Write a minimal Proxy-Wasm module, for validating Envoy configs only.

`envoy --mode validate` instantiates every Wasm plugin, so a config can only be checked
against a module that speaks the Proxy-Wasm ABI. When the real filter
(target/wasm32-wasip1/release/alfred_filter.wasm) has not been built yet, this stub
stands in: it declares ABI 0.2.1, accepts its configuration and does nothing else.
It must never be served traffic. Python standard library only.

    python3 envoy/stub_wasm.py OUT.wasm
"""

import sys


def uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def vec(items) -> bytes:
    items = list(items)
    return uleb(len(items)) + b"".join(items)


def section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + uleb(len(payload)) + payload


def name(text: str) -> bytes:
    raw = text.encode()
    return uleb(len(raw)) + raw


I32 = 0x7F
TYPES = [
    ((), ()),  # 0: () -> ()
    ((I32,), (I32,)),  # 1: (i32) -> i32
    ((I32, I32), (I32,)),  # 2: (i32, i32) -> i32
    ((I32, I32), ()),  # 3: (i32, i32) -> ()
]


def functype(params, results) -> bytes:
    return b"\x60" + vec(bytes([p]) for p in params) + vec(bytes([r]) for r in results)


def body(instructions: bytes) -> bytes:
    code = vec([]) + instructions + b"\x0b"  # no locals, ..., end
    return uleb(len(code)) + code


def i32_const(n: int) -> bytes:
    return b"\x41" + sleb(n)


# (export name, type index, instructions)
FUNCTIONS = [
    ("proxy_abi_version_0_2_1", 0, b""),
    ("proxy_on_memory_allocate", 1, i32_const(1024)),
    ("proxy_on_vm_start", 2, i32_const(1)),
    ("proxy_on_configure", 2, i32_const(1)),
    ("proxy_on_context_create", 3, b""),
]


def module() -> bytes:
    out = b"\x00asm" + (1).to_bytes(4, "little")
    out += section(1, vec(functype(p, r) for p, r in TYPES))
    out += section(3, vec(uleb(t) for _, t, _ in FUNCTIONS))
    out += section(5, vec([b"\x00" + uleb(1)]))  # one memory, min 1 page
    exports = [name("memory") + b"\x02" + uleb(0)]
    exports += [name(n) + b"\x00" + uleb(i) for i, (n, _, _) in enumerate(FUNCTIONS)]
    out += section(7, vec(exports))
    out += section(10, vec(body(code) for _, _, code in FUNCTIONS))
    return out


def main(argv) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], "wb") as out:
        out.write(module())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
