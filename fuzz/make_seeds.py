#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# make_seeds.py — writes the seed corpus fuzz/corpus/TARGET/* (checked in; rerun after a
# harness changes its input format). Each seed is a small well-formed program for its harness
# so that the fuzzer starts past the magic numbers and header checks.
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def op(code, length, *extra):
    return bytes([code]) + struct.pack("<H", length) + b"".join(extra)


# ring: flags=0 (fresh ring), writes, reads with wrap-around, a peek, a hostile tail store
cut = struct.pack("<HH", 3, 5)
put("ring", "stream", b"\0" + op(2, 3000, cut) + op(0, 2000, cut) + op(2, 3000, cut) +
    op(1, 100, cut) + op(0, 5000, cut) + op(4, 0))
put("ring", "hostile", b"\0" + op(2, 100, cut) + op(6, 1, struct.pack("<Q", 1 << 40)) +
    op(0, 50, cut) + op(7, 0) + op(3, 200, cut) + op(8, 0, struct.pack("<I", 7)) + op(5, 0))
put("ring", "shared", b"\1" + struct.pack("<Q", 5000) + bytes(56) + struct.pack("<Q", 1000) +
    bytes(184) + op(0, 4096, cut))

# ctl: honest (mode 0) and hostile (mode 1) receivers
put("ctl", "honest", b"\0" + struct.pack("<I", 5000) + b"\0" + struct.pack("<H", 1000) +
    b"\4" + struct.pack("<H", 3000) + b"\3" + b"\0" + struct.pack("<H", 4000))
put("ctl", "hostile", b"\1" + struct.pack("<I", 100) + b"\0" + struct.pack("<H", 50) +
    b"\3\1\0" + struct.pack("<hI", -20, 2) + b"\0" + struct.pack("<H", 10))

# registry: a valid header (mode 1) with 4 slots, two valid entries
def entry(state, family, port, addr, netns, pid, rv):
    e = struct.pack("<IIHHI16sQIIQQQQ40sQ", state, 0, family, port, 0, addr, netns, pid, 0,
                    1234, 0, 0, 0, rv, 0)
    assert len(e) == 128
    return e

lo = bytes([127, 0, 0, 1]) + bytes(12)
put("registry", "valid", b"\1\3" + entry(2, 2, 8080, lo, 7, 100, b"rv-100-1") +
    entry(6, 10, 8080, bytes(16), 7, 101, b"rv-101-2") + entry(3, 2, 80, lo, 7, 1, b"x" * 40))
hdr = struct.pack("<IIII", 0x47534b4e, 1, 2, 128) + bytes(48)
put("registry", "raw", b"\0" + hdr + entry(2, 2, 9, lo, 7, 5, b"rv") + bytes(128))

# attach: segment size index 0 (12 KiB), well-formed header (0x10), sealed (0x20),
# well-formed offer (0x40); then ring operations
hdr = struct.pack("<IIQQII", 0x43534b4e, 1, 0x1122334455667788, 12288, 1, 256)
hdr += struct.pack("<QQQQ", 0, 1, 0, 0) + bytes(64)
hdr = hdr.ljust(128 + 64 * 2 + 256 * 2, b"\0")
offer = struct.pack("<IIQQHHHH16s16sII", 0x4f534b4e, 1, 0, 0, 0, 1000, 2000, 0, lo, lo, 1, 0)
ops = b"\1" + struct.pack("<H", 300) + b"\0" + struct.pack("<H", 200) + b"\2" + \
    struct.pack("<HQ", 8, 1 << 50) + b"\0" + struct.pack("<H", 10) + b"\3\0\0"
put("attach", "valid", bytes([0x70]) + hdr + offer + ops)
put("attach", "unsealed", bytes([0x50]) + hdr + offer)
put("attach", "raw", bytes([0x22]) + hdr + offer + b"\x20")


# region: flags (1 recompute the header sum, 2 populate), patches, then API calls
def rop(code, *extra):
    return bytes([code]) + b"".join(extra)

calls = (rop(0) + rop(1) + rop(3, b"\1") + rop(6, struct.pack("<I", 0x101), b"\0\1") +
         rop(7) + rop(8) + rop(9) + rop(2, struct.pack("<I", 100000)) + rop(13, b"\0") + rop(14))
put("region", "clean", b"\2\0" + calls)
put("region", "scribbled", b"\3\2" + struct.pack("<IB", 4096, 7) + b"\xff" * 8 +
    struct.pack("<IB", 40, 3) + b"\x05\x00\x00\x00" + calls + rop(2, struct.pack("<I", 10**6)) +
    rop(10, b"\1") + rop(12, struct.pack("<I", 0x101)))
