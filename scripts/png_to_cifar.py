#!/usr/bin/env python3
"""Packs foolbox's cifar10_NN_L.png samples into one batch in the official CIFAR-10 binary format.

Pure Python (zlib only) because PIL is not installed here and the fetch script must run on a
clean machine. Used by scripts/fetch-data.sh:

    png_to_cifar.py SRC_DIR OUT.bin

Each record is 1 label byte then 3072 pixel bytes: the 1024 red values, the 1024 green, the
1024 blue, each plane row-major 32x32 -- the layout of CIFAR-10's data_batch_N.bin.
"""

import os
import re
import struct
import sys
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Colour type -> channels, for the 8-bit, non-interlaced images we accept.
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
COLOUR_NAMES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}
SIDE = 32
NAME = re.compile(r"^cifar10_(\d\d)_(\d)\.png$")


class PNGError(Exception):
    pass


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(path):
    """Returns (width, height, channels, rows) with rows a list of bytearrays of width*channels."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(PNG_SIGNATURE):
        raise PNGError(f"{path}: not a PNG (bad signature)")
    pos, header, idat = len(PNG_SIGNATURE), None, bytearray()
    while True:
        if pos + 8 > len(data):
            raise PNGError(f"{path}: truncated before IEND")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc_bytes = data[pos + 8 + length:pos + 12 + length]
        if len(body) != length or len(crc_bytes) != 4:
            raise PNGError(f"{path}: truncated {kind!r} chunk")
        # A CRC check catches a corrupted file that zlib might still happen to inflate.
        if zlib.crc32(kind + body) != struct.unpack(">I", crc_bytes)[0]:
            raise PNGError(f"{path}: CRC mismatch in {kind!r} chunk")
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if header is None:
        raise PNGError(f"{path}: no IHDR chunk")
    width, height, depth, colour, compression, filtering, interlace = header
    if depth != 8 or colour not in CHANNELS:
        raise PNGError(f"{path}: unsupported PNG: bit depth {depth}, colour type {colour} "
                       f"({COLOUR_NAMES.get(colour, 'unknown')}); only 8-bit greyscale, "
                       "greyscale+alpha, RGB and RGBA are supported")
    if compression != 0 or filtering != 0 or interlace != 0:
        raise PNGError(f"{path}: unsupported PNG: compression {compression}, filter method "
                       f"{filtering}, interlace {interlace}; only non-interlaced PNGs are supported")
    channels = CHANNELS[colour]
    stride = width * channels
    raw = zlib.decompress(bytes(idat))
    if len(raw) != height * (stride + 1):
        raise PNGError(f"{path}: image data has {len(raw)} bytes, expected {height * (stride + 1)}")
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        # Unfiltering per the PNG spec, section 9: 'left' is the same channel one pixel back.
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            upper_left = previous[i - channels] if i >= channels else 0
            if kind == 0:
                continue
            elif kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                line[i] = (line[i] + paeth(left, up, upper_left)) & 0xFF
            else:
                raise PNGError(f"{path}: row {y} has unknown filter type {kind}")
        rows.append(line)
        previous = line
    return width, height, channels, rows


def cifar_record(path, label):
    width, height, channels, rows = decode_png(path)
    if (width, height) != (SIDE, SIDE):
        raise PNGError(f"{path}: image is {width}x{height}, CIFAR-10 needs {SIDE}x{SIDE}")
    planes = [bytearray(), bytearray(), bytearray()]
    for line in rows:
        for x in range(SIDE):
            pixel = line[x * channels:(x + 1) * channels]
            # Greyscale (with or without alpha) repeats its one value; alpha is dropped.
            rgb = (pixel[0],) * 3 if channels <= 2 else pixel[:3]
            for c in range(3):
                planes[c].append(rgb[c])
    return bytes([label]) + bytes(planes[0] + planes[1] + planes[2])


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: png_to_cifar.py SRC_DIR OUT.bin")
    source, output = argv[1], argv[2]
    found = {}
    for name in os.listdir(source):
        match = NAME.match(name)
        if match:
            found[int(match.group(1))] = (os.path.join(source, name), int(match.group(2)))
    if sorted(found) != list(range(len(found))) or not found:
        sys.exit(f"png_to_cifar.py: expected cifar10_00_L.png ... cifar10_NN_L.png without gaps "
                 f"in {source}, found indices {sorted(found)}")
    try:
        records = [cifar_record(*found[i]) for i in range(len(found))]
    except PNGError as error:
        sys.exit(f"png_to_cifar.py: {error}")
    partial = output + ".partial"
    with open(partial, "wb") as f:
        for record in records:
            f.write(record)
    os.replace(partial, output)
    print(f"wrote {len(records)} CIFAR-10 records to {output}")


if __name__ == "__main__":
    main(sys.argv)
