/*
 * Fuzz targets fuzz-image-ext and fuzz-image-ntfs: a whole guest disk,
 * read as the offline worker reads one for inspect.  The disk is the
 * guest's, which it wrote and may have crafted against its reader; it
 * reaches the real readers through the in-memory block layer
 * (vo_disk_new_from_memory(): the worker's page cache, without qemu-nbd):
 * the partition table and superblocks (libblkid), the filesystems
 * (libext2fs, libntfs-3g), the guest's map (fstab, or the drive letters
 * of the SYSTEM hive) and the inventory (os-release and the dpkg status,
 * or the SOFTWARE hive through hivex): vo_mounts_open() and
 * vo_inventory_read(), the code path of the worker's inspect job.
 *
 * The input is not the raw disk but a list of its sectors that are not
 * zero (a .sectors file, whose format fuzz_image_decode() states;
 * image-sectors.py converts a raw disk both ways).  A raw disk of 160 KiB
 * to 1 MiB is mostly zero sectors, where most random mutations landed,
 * wasted, and libFuzzer's own work per input (copies, fresh memory, a
 * hash, all in proportion to its length) was nine tenths of the time; a
 * seed's list is about a tenth of its disk.  No library decodes such a
 * thing (disk image formats, qcow2 and the like, have headers and tables
 * that mutations would mostly break), hence the decoder below.
 *
 * The two targets share this code and differ by their seed corpus
 * (corpus-image-ext, corpus-image-ntfs), so that each campaign mutates
 * one kind of guest.  The seeds are tiny disks made by
 * corpus-image-seeds.sh, which says how; the libraries themselves are
 * Debian's, not instrumented, so coverage steers by our code only and a
 * library's memory error shows as the signal it raises.
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <sanitizer/asan_interface.h>
#include <stdint.h>
#include <string.h>

#include "vo-inventory.h"
#include "vo-mounts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_IMAGE_SECTOR 512
#define FUZZ_IMAGE_MAX_SIZE (8u << 20)
#define FUZZ_IMAGE_FILL 0x80000000u
#define FUZZ_IMAGE_RAMP 0x40000000u
/* What the fills of one input write at most: no input costs seconds. */
#define FUZZ_IMAGE_MAX_FILL (4 * (gsize)FUZZ_IMAGE_MAX_SIZE)

/*
 * The decoder is the target's own plumbing, not code under test: its
 * branches must not steer the fuzzer, and instrumenting its loops cost a
 * tenth of an NTFS input (a comparison hook per byte of a ramp).
 */
#if defined(__clang__)
/* Kept out of line: inlined, its body would be instrumented as its
 * caller's. */
#define FUZZ_IMAGE_PLUMBING __attribute__((no_sanitize("coverage"), noinline))
#else
#define FUZZ_IMAGE_PLUMBING
#endif

FUZZ_IMAGE_PLUMBING
static guint32 fuzz_image_le(const uint8_t *p, size_t n)
{
    guint32 v = 0;

    for (size_t i = 0; i < n; i++) {
        v |= (guint32)p[i] << (8 * i);
    }
    return v;
}

/* @len bytes of 16-bit little-endian numbers from @first up, at @p. */
FUZZ_IMAGE_PLUMBING
static void fuzz_image_ramp(guint8 *p, gsize len, guint16 first)
{
    for (gsize i = 0; i < len; i++) {
        p[i] = (guint8)((guint16)(first + i / 2) >> (8 * (i & 1)));
    }
}

/*
 * The disk of an input.  All numbers are little endian:
 *
 *   size     4 bytes: the disk's size in bytes, at most 8 MiB (larger is
 *            taken as 8 MiB); any size, a multiple of 512 or not
 *   records  each a 4-byte word, then
 *            top bit clear: 512 bytes, the sector whose index the word is
 *            top bit set: a fill, from the sector whose index is in the
 *            low 30 bits: a count of sectors (2 bytes) and a byte B;
 *            the sectors hold B, or with bit 30 set a ramp: 16-bit
 *            numbers counting up by one from B * 256 (wrapping at
 *            65536), as most of an NTFS $UpCase table (128 KiB in which
 *            only the cased letters' sectors differ) does
 *
 * Sectors no record names are zero; a later record overwrites an earlier
 * one; what a record puts past the disk's end is dropped, and so is what
 * fills write beyond 32 MiB in all (four largest disks: a few mutated
 * counts must not make an input cost seconds).  An input cut short is
 * still a disk: missing bytes of the size and of a sector's data are
 * zero, and a record word or fill cut short is ignored.  So every disk up
 * to the bound has an input (image-sectors.py names each sector once),
 * and every input is a disk.  Sectors have a fixed size rather than a
 * length each, so that one mutated byte changes one sector, not the place
 * of every record after it.
 *
 * The disk is decoded into one buffer for all inputs: fresh memory for
 * each was what the format is meant to save.  Only the disk's bytes are
 * addressable, so that a reader that runs past its end still meets
 * AddressSanitizer, as it did at the end of the raw input.
 */
FUZZ_IMAGE_PLUMBING
static const guint8 *fuzz_image_decode(const uint8_t *data, size_t size,
                                       gsize *disk_size)
{
    static guint8 *disk;
    static gsize addressable;
    /* Past it, every byte is zero: what the last input wrote ends there. */
    static gsize dirty;
    gsize len = MIN(fuzz_image_le(data, MIN(size, 4)), FUZZ_IMAGE_MAX_SIZE);
    gsize fill_budget = FUZZ_IMAGE_MAX_FILL;
    size_t pos = 4;

    if (!disk) {
        disk = g_malloc0(FUZZ_IMAGE_MAX_SIZE);
        ASAN_POISON_MEMORY_REGION(disk, FUZZ_IMAGE_MAX_SIZE);
    }
    /* Only what the last input wrote is zeroed again (it wrote inside its
     * disk, still addressable): a disk of 8 MiB with a few sectors must
     * not cost 8 MiB of writes. */
    memset(disk, 0, dirty);
    dirty = 0;
    if (addressable > len) {
        ASAN_POISON_MEMORY_REGION(disk + len, addressable - len);
    }
    ASAN_UNPOISON_MEMORY_REGION(disk, len);
    addressable = len;
    while (pos + 4 <= size) {
        guint32 word = fuzz_image_le(data + pos, 4);
        /* A fill's index has 30 bits: bit 30 says whether it ramps. */
        guint32 index = word & ~(word & FUZZ_IMAGE_FILL
                                     ? FUZZ_IMAGE_FILL | FUZZ_IMAGE_RAMP
                                     : FUZZ_IMAGE_FILL);
        guint64 start = (guint64)index * FUZZ_IMAGE_SECTOR;
        size_t n;

        pos += 4;
        if (word & FUZZ_IMAGE_FILL) {
            gsize count;

            if (size - pos < 3) {
                break;
            }
            count = fuzz_image_le(data + pos, 2) * FUZZ_IMAGE_SECTOR;
            if (start < len) {
                count = MIN(MIN(count, len - start), fill_budget);
                if (word & FUZZ_IMAGE_RAMP) {
                    fuzz_image_ramp(disk + start, count,
                                    (guint16)(data[pos + 2] << 8));
                } else {
                    memset(disk + start, data[pos + 2], count);
                }
                fill_budget -= count;
                dirty = MAX(dirty, start + count);
            }
            pos += 3;
            continue;
        }
        n = MIN(size - pos, FUZZ_IMAGE_SECTOR);
        if (start < len) {
            gsize room = MIN(len - start, FUZZ_IMAGE_SECTOR);

            /* A sector cut short by the input's end: the rest is zero. */
            memcpy(disk + start, data + pos, MIN(n, room));
            if (n < room) {
                memset(disk + start + n, 0, room - n);
            }
            dirty = MAX(dirty, start + room);
        }
        pos += n;
    }
    *disk_size = len;
    return disk;
}

static void fuzz_quiet(const gchar *domain, GLogLevelFlags level,
                       const gchar *message, gpointer user_data)
{
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gboolean quiet;
    gsize disk_size;
    const guint8 *disk = fuzz_image_decode(data, size, &disk_size);
    g_autoptr(GBytes) bytes = g_bytes_new_static(disk, disk_size);
    g_autoptr(VoGuest) guest = NULL;
    g_autoptr(VoInventory) inv = NULL;
    g_autoptr(JsonNode) node = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *text = NULL;
    VoMount *root;

    if (!quiet) {
        g_log_set_default_handler(fuzz_quiet, NULL);
        quiet = TRUE;
    }
    /* Read-only, as inspect opens it: nothing may be written. */
    guest = vo_mounts_open(vo_disk_new_from_memory(bytes, FALSE),
                         "fuzz.img", &error);
    if (!guest) {
        g_assert(error != NULL);
        return 0;
    }
    g_assert(g_str_equal(guest->family, "linux") ||
             g_str_equal(guest->family, "windows"));
    g_assert(guest->mounts->len >= 1);
    root = guest->mounts->pdata[0];
    g_assert_cmpstr(root->mountpoint, ==, "/");
    g_assert(root->fs != NULL && !root->fs->writable);
    for (guint i = 0; i < guest->layout->partitions->len; i++) {
        VoPartition *p = guest->layout->partitions->pdata[i];

        /* Every partition lies inside the disk. */
        g_assert(p->offset <= disk_size &&
                 p->size <= disk_size - p->offset);
    }
    inv = vo_inventory_read(guest, &error);
    if (!inv) {
        g_assert(error != NULL);
        return 0;
    }
    g_assert_no_error(error);
    /* What the worker reports: valid JSON, as its parent will check. */
    node = vo_inventory_to_json(guest, inv);
    text = json_to_string(node, FALSE);
    g_assert(text != NULL && g_utf8_validate(text, -1, NULL));
    return 0;
}
