#!/usr/bin/env python3
# image-sectors.py encode RAW OUT | decode IN OUT: converts a raw disk
# into the input of fuzz-image-ext and fuzz-image-ntfs (a .sectors file)
# and back.  The format (fuzz-image.c's fuzz_image_decode() states it in
# full): the disk's size in bytes (4 bytes, little endian, at most 8 MiB),
# then records, each a 4-byte little-endian word: top bit clear, the index
# of a 512-byte sector followed by its 512 bytes; top bit set, a fill, the
# first sector's index in the low 30 bits, then a count of sectors (2
# bytes, little endian) and a byte B: the sectors hold B, or with bit 30
# set 16-bit little-endian numbers counting up by one from B * 256 (a
# ramp, as most of an NTFS $UpCase table).  Sectors not named are zero.
#
# encode writes a data record for each sector that is neither zero, nor
# one byte repeated, nor part of a ramp; a fill for each run of sectors of
# one non-zero byte; a ramp for each run of sectors that continue one
# another's count from a multiple of 256; all in the disk's order.  A
# last partial sector is a data record padded with zeros (the decoder
# keeps only the disk's bytes).  decode is the check that a file holds the
# disk it was made from: decode, then cmp.
import struct
import sys

SECTOR = 512
MAX_SIZE = 8 << 20
FILL = 0x80000000
RAMP = 0x40000000
MAX_COUNT = 0xffff
MAX_FILL = 4 * MAX_SIZE


def ramp(first, length):
    """length bytes of 16-bit little-endian numbers from first up."""
    words = (length + 1) // 2
    return b"".join(struct.pack("<H", (first + k) & 0xffff)
                    for k in range(words))[:length]


def ramp_start(s):
    """The first number of sector s if it is a ramp from a multiple of
    256, else None."""
    first = int.from_bytes(s[:2], "little")
    if first & 0xff or s != ramp(first, SECTOR):
        return None
    return first


def encode(disk):
    if len(disk) > MAX_SIZE:
        sys.exit("image-sectors: %d bytes, more than %d" %
                 (len(disk), MAX_SIZE))
    out = [struct.pack("<I", len(disk))]
    sectors = (len(disk) + SECTOR - 1) // SECTOR
    i = 0
    while i < sectors:
        s = disk[i * SECTOR:(i + 1) * SECTOR].ljust(SECTOR, b"\0")
        if s.count(s[0]) == SECTOR:
            # Zero sectors are left out; a run of one other byte is a fill.
            n = 1
            while (i + n < sectors and n < MAX_COUNT and
                   disk[(i + n) * SECTOR:(i + n + 1) * SECTOR]
                   .ljust(SECTOR, b"\0") == s):
                n += 1
            if s[0]:
                out.append(struct.pack("<IHB", FILL | i, n, s[0]))
            i += n
            continue
        first = ramp_start(s)
        if first is not None:
            n = 1
            while (i + n < sectors and n < MAX_COUNT and
                   disk[(i + n) * SECTOR:(i + n + 1) * SECTOR]
                   .ljust(SECTOR, b"\0") ==
                   ramp(first + 256 * n, SECTOR)):
                n += 1
            out.append(struct.pack("<IHB", FILL | RAMP | i, n, first >> 8))
            i += n
            continue
        out.append(struct.pack("<I", i) + s)
        i += 1
    return b"".join(out)


def decode(data):
    # As fuzz-image.c does it, truncated records included.
    size = min(int.from_bytes(data[:4], "little"), MAX_SIZE)
    disk = bytearray(size)
    fill_budget = MAX_FILL
    pos = 4
    while pos + 4 <= len(data):
        (word,) = struct.unpack_from("<I", data, pos)
        pos += 4
        index = word & ~FILL
        if word & FILL:
            if pos + 3 > len(data):
                break
            index &= ~RAMP
            count, value = struct.unpack_from("<HB", data, pos)
            pos += 3
            start = index * SECTOR
            if start < size:
                n = min(count * SECTOR, size - start, fill_budget)
                if word & RAMP:
                    disk[start:start + n] = ramp(value << 8, n)
                else:
                    disk[start:start + n] = bytes([value]) * n
                fill_budget -= n
            continue
        chunk = data[pos:pos + SECTOR].ljust(SECTOR, b"\0")
        pos += SECTOR
        start = index * SECTOR
        if start < size:
            end = min(size, start + SECTOR)
            disk[start:end] = chunk[:end - start]
    return bytes(disk)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("encode", "decode"):
        sys.exit("usage: image-sectors.py encode RAW OUT | decode IN OUT")
    with open(sys.argv[2], "rb") as f:
        data = f.read()
    out = encode(data) if sys.argv[1] == "encode" else decode(data)
    with open(sys.argv[3], "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main()
