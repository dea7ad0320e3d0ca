#!/usr/bin/env python3
"""Verify a Strata checkpoint outside Strata (h5py + numpy): every dataset's mix64 checksum and
the /train attribute checksum. Usage: verify_checkpoint.py CHECKPOINT_DIR. Exit 0 when it verifies.
The algorithm is specified in docs/checkpoints.md; this is its reference implementation."""
import os
import struct
import sys

M = (1 << 64) - 1
P1, P2 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M


def mix64(data: bytes) -> int:
    n = len(data)
    lanes = [((i + 1) * P1 & M) ^ n for i in range(4)]
    if n % 32:
        data = data + bytes(32 - n % 32)  # zero-pad the final block
    for off in range(0, len(data), 32):
        for k in range(4):
            w = int.from_bytes(data[off + 8 * k : off + 8 * k + 8], "little")
            lanes[k] = rotl((lanes[k] + w * P2) & M, 31) * P1 & M
    h = (rotl(lanes[0], 1) + rotl(lanes[1], 7) + rotl(lanes[2], 12) + rotl(lanes[3], 18)) & M
    h ^= n
    h ^= h >> 33
    h = h * P2 & M
    h ^= h >> 29
    h = h * P1 & M
    h ^= h >> 32
    return h


def attr_bytes(train) -> bytes:
    manifest = train.attrs["manifest"]
    out = manifest.encode()
    for line in manifest.splitlines():
        kind, key = line.split(" ", 1)
        if kind == "tensor":
            continue
        v = train.attrs[key]
        if kind == "int":
            text = str(int(v)).encode()
        elif kind == "double":
            text = str(struct.unpack("<Q", struct.pack("<d", float(v)))[0]).encode()
        else:
            b = v.encode() if isinstance(v, str) else bytes(v)
            text = str(len(b)).encode() + b":" + b
        out += b"\n" + key.encode() + b"=" + text
    return out


def main():
    import h5py

    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ckpt = sys.argv[1]
    if not os.path.isfile(os.path.join(ckpt, "DONE")):
        sys.exit(f"{ckpt}: no DONE marker")
    bad = 0
    with h5py.File(os.path.join(ckpt, "state.h5"), "r") as f:
        train = f["train"]
        print(f"format_version {int(train.attrs['format_version'])}, step {int(train.attrs['step'])}")
        names = [l.split(" ", 1)[1] for l in train.attrs["manifest"].splitlines() if l.startswith("tensor ")]
        for name in names + ["/train"]:
            ok = f"mix64:{mix64(f[name][()].tobytes()):016x}" == f[name].attrs["checksum"]
            bad += not ok
            print(f"{name}: {'ok' if ok else 'CHECKSUM MISMATCH'}")
        ok = f"mix64:{mix64(attr_bytes(train)):016x}" == train.attrs["attrs_checksum"]
        bad += not ok
        print(f"/train attributes: {'ok' if ok else 'CHECKSUM MISMATCH'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
