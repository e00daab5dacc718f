/*
 * LVM2 physical volumes read without device-mapper.
 *
 * Written here because no library reads LVM metadata in userspace: LVM's
 * own liblvm2app was removed upstream, and the lvm tools need
 * device-mapper to map a volume (the hosts we run on have none).  Only
 * the subset needed to find where a volume's bytes are is read:
 *
 *   - the label (one of the first four sectors: "LABELONE", "LVM2 001")
 *     and its pv_header: the PV's UUID and its first metadata area;
 *   - that area's header (magic " LVM2 x[5A%r0N*>", version 1) and the
 *     location of the current metadata text in its circular buffer;
 *   - the text itself, LVM's configuration syntax (sections, "key =
 *     value", strings, integers, arrays), and of it the volume group's
 *     extent_size, its physical_volumes (id, pe_start, pe_count) and its
 *     logical_volumes' segments.
 *
 * Checksums are LVM's CRC-32 (zlib's, seeded with LVM's initial value and
 * without zlib's inversions).  Every offset, count and size comes from
 * the guest and is checked before use.  A volume is mapped when all its
 * segments are "striped" with one stripe on this very PV, one after the
 * other (a linear volume, in one or more segments that happen to lie
 * contiguously); thin, snapshot, RAID, mirror and cache volumes, volumes
 * of several stripes, scattered extents or other disks are refused.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>
#include <zlib.h>

#include "vo-lvm.h"

#define VO_LVM_SECTOR 512u
#define VO_LVM_LABEL_SECTORS 4u
#define VO_LVM_MDA_HEADER 512u
/* LVM's default metadata area is 1 MiB; the text is a few KiB. */
#define VO_LVM_MAX_TEXT (4u * 1024 * 1024)
#define VO_LVM_MAX_NODES 65536u
/* VG { logical_volumes { LV { segmentN { stripes [ ] } } } } */
#define VO_LVM_MAX_DEPTH 8
#define VO_LVM_MAX_STRING 65536
#define VO_LVM_MAX_SEGMENTS 1024
#define VO_LVM_INITIAL_CRC 0xf597a6cfu

static const char vo_lvm_mda_magic[16] = " LVM2 x[5A%r0N*>";

/* ---- LVM's configuration syntax ---- */

typedef enum {
    VO_LVM_SECTION,
    VO_LVM_NUMBER,
    VO_LVM_STRING,
    VO_LVM_ARRAY,
} VoLvmKind;

typedef struct {
    VoLvmKind kind;
    char *key;              /* NULL for array items */
    gint64 number;
    char *string;
    GPtrArray *items;       /* members of a section, items of an array */
} VoLvmNode;

typedef struct {
    const char *p;
    const char *end;
    guint nodes;
} VoLvmLexer;

static void vo_lvm_node_free(VoLvmNode *n)
{
    if (!n) {
        return;
    }
    g_free(n->key);
    g_free(n->string);
    if (n->items) {
        g_ptr_array_unref(n->items);
    }
    g_free(n);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoLvmNode, vo_lvm_node_free)

static gboolean vo_lvm_bad(GError **error, const char *what)
{
    g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT, "LVM metadata: %s", what);
    return FALSE;
}

static VoLvmNode *vo_lvm_node_new(VoLvmLexer *lx, VoLvmKind kind,
                                  GError **error)
{
    VoLvmNode *n;

    if (++lx->nodes > VO_LVM_MAX_NODES) {
        vo_lvm_bad(error, "too many entries");
        return NULL;
    }
    n = g_new0(VoLvmNode, 1);
    n->kind = kind;
    if (kind == VO_LVM_SECTION || kind == VO_LVM_ARRAY) {
        n->items = g_ptr_array_new_with_free_func(
            (GDestroyNotify)vo_lvm_node_free);
    }
    return n;
}

/* Blanks and "# comments"; a NUL ends the text (LVM writes one). */
static void vo_lvm_skip(VoLvmLexer *lx)
{
    while (lx->p < lx->end && *lx->p) {
        if (*lx->p == '#') {
            while (lx->p < lx->end && *lx->p && *lx->p != '\n') {
                lx->p++;
            }
        } else if (g_ascii_isspace(*lx->p)) {
            lx->p++;
        } else {
            return;
        }
    }
}

static gboolean vo_lvm_at(VoLvmLexer *lx, char c)
{
    vo_lvm_skip(lx);
    return lx->p < lx->end && *lx->p == c;
}

static gboolean vo_lvm_at_end(VoLvmLexer *lx)
{
    vo_lvm_skip(lx);
    return lx->p >= lx->end || *lx->p == '\0';
}

static gboolean vo_lvm_ident_char(char c)
{
    return g_ascii_isalnum(c) || c == '_' || c == '.' || c == '+' ||
           c == '-';
}

static char *vo_lvm_ident(VoLvmLexer *lx, GError **error)
{
    const char *start;

    vo_lvm_skip(lx);
    start = lx->p;
    while (lx->p < lx->end && vo_lvm_ident_char(*lx->p)) {
        lx->p++;
    }
    if (lx->p == start || lx->p - start > 128) {
        vo_lvm_bad(error, "expected a name");
        return NULL;
    }
    return g_strndup(start, lx->p - start);
}

static char *vo_lvm_string(VoLvmLexer *lx, GError **error)
{
    g_autoptr(GString) s = g_string_new(NULL);

    lx->p++;                /* the opening quote */
    while (lx->p < lx->end && *lx->p != '"') {
        if (*lx->p == '\0') {
            break;
        }
        if (*lx->p == '\\' && lx->p + 1 < lx->end) {
            lx->p++;
        }
        g_string_append_c(s, *lx->p++);
        if (s->len > VO_LVM_MAX_STRING) {
            vo_lvm_bad(error, "string too long");
            return NULL;
        }
    }
    if (lx->p >= lx->end || *lx->p != '"') {
        vo_lvm_bad(error, "unterminated string");
        return NULL;
    }
    lx->p++;
    return g_string_free(g_steal_pointer(&s), FALSE);
}

static gboolean vo_lvm_number(VoLvmLexer *lx, gint64 *out, GError **error)
{
    const char *start = lx->p;
    char buf[32];

    if (lx->p < lx->end && *lx->p == '-') {
        lx->p++;
    }
    while (lx->p < lx->end && g_ascii_isdigit(*lx->p)) {
        lx->p++;
    }
    /* LVM writes a few values as decimals ("1.0"); none of ours. */
    if (lx->p < lx->end && *lx->p == '.') {
        lx->p++;
        while (lx->p < lx->end && g_ascii_isdigit(*lx->p)) {
            lx->p++;
        }
    }
    if (lx->p == start || (gsize)(lx->p - start) >= sizeof(buf)) {
        return vo_lvm_bad(error, "malformed number");
    }
    memcpy(buf, start, lx->p - start);
    buf[lx->p - start] = '\0';
    if (!g_ascii_string_to_signed(buf, 10, G_MININT64, G_MAXINT64, out,
                                  NULL)) {
        *out = 0;           /* a decimal: kept, never used */
        if (!strchr(buf, '.')) {
            return vo_lvm_bad(error, "malformed number");
        }
    }
    return TRUE;
}

static VoLvmNode *vo_lvm_value(VoLvmLexer *lx, gboolean in_array,
                               GError **error)
{
    g_autoptr(VoLvmNode) n = NULL;

    vo_lvm_skip(lx);
    if (lx->p >= lx->end) {
        vo_lvm_bad(error, "value missing at the end");
        return NULL;
    }
    if (*lx->p == '"') {
        n = vo_lvm_node_new(lx, VO_LVM_STRING, error);
        if (!n || !(n->string = vo_lvm_string(lx, error))) {
            return NULL;
        }
    } else if (*lx->p == '[' && !in_array) {
        n = vo_lvm_node_new(lx, VO_LVM_ARRAY, error);
        if (!n) {
            return NULL;
        }
        lx->p++;
        while (!vo_lvm_at(lx, ']')) {
            VoLvmNode *item;

            if (n->items->len) {
                if (!vo_lvm_at(lx, ',')) {
                    vo_lvm_bad(error, "expected ',' in an array");
                    return NULL;
                }
                lx->p++;
            }
            item = vo_lvm_value(lx, TRUE, error);
            if (!item) {
                return NULL;
            }
            g_ptr_array_add(n->items, item);
        }
        lx->p++;
    } else if (*lx->p == '-' || g_ascii_isdigit(*lx->p)) {
        n = vo_lvm_node_new(lx, VO_LVM_NUMBER, error);
        if (!n || !vo_lvm_number(lx, &n->number, error)) {
            return NULL;
        }
    } else {
        vo_lvm_bad(error, "expected a value");
        return NULL;
    }
    return g_steal_pointer(&n);
}

/* Members of @section until '}' (nested) or the end of the text (top). */
static gboolean vo_lvm_members(VoLvmLexer *lx, VoLvmNode *section, int depth,
                               GError **error)
{
    if (depth > VO_LVM_MAX_DEPTH) {
        return vo_lvm_bad(error, "sections nested too deep");
    }
    for (;;) {
        g_autofree char *key = NULL;
        VoLvmNode *n;

        if (depth > 0 ? vo_lvm_at(lx, '}') : vo_lvm_at_end(lx)) {
            if (depth > 0) {
                lx->p++;
            }
            return TRUE;
        }
        if (vo_lvm_at_end(lx)) {
            return vo_lvm_bad(error, "section not closed");
        }
        key = vo_lvm_ident(lx, error);
        if (!key) {
            return FALSE;
        }
        if (vo_lvm_at(lx, '{')) {
            lx->p++;
            n = vo_lvm_node_new(lx, VO_LVM_SECTION, error);
            if (!n) {
                return FALSE;
            }
            n->key = g_steal_pointer(&key);
            g_ptr_array_add(section->items, n);
            if (!vo_lvm_members(lx, n, depth + 1, error)) {
                return FALSE;
            }
        } else if (vo_lvm_at(lx, '=')) {
            lx->p++;
            n = vo_lvm_value(lx, FALSE, error);
            if (!n) {
                return FALSE;
            }
            n->key = g_steal_pointer(&key);
            g_ptr_array_add(section->items, n);
        } else {
            return vo_lvm_bad(error, "expected '=' or '{'");
        }
    }
}

static VoLvmNode *vo_lvm_parse(const char *text, gsize len, GError **error)
{
    VoLvmLexer lx = { text, text + len, 0 };
    g_autoptr(VoLvmNode) top = vo_lvm_node_new(&lx, VO_LVM_SECTION, error);

    if (!vo_lvm_members(&lx, top, 0, error)) {
        return NULL;
    }
    return g_steal_pointer(&top);
}

static VoLvmNode *vo_lvm_get(const VoLvmNode *section, const char *key,
                             VoLvmKind kind)
{
    for (guint i = 0; i < section->items->len; i++) {
        VoLvmNode *n = section->items->pdata[i];

        if (g_str_equal(n->key, key)) {
            return n->kind == kind ? n : NULL;
        }
    }
    return NULL;
}

/* A number in [min, max], or an error naming @what and @key. */
static gboolean vo_lvm_get_number(const VoLvmNode *section, const char *key,
                                  gint64 min, gint64 max, const char *what,
                                  gint64 *out, GError **error)
{
    VoLvmNode *n = vo_lvm_get(section, key, VO_LVM_NUMBER);

    if (!n || n->number < min || n->number > max) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "LVM metadata: %s: %s missing or out of range", what,
                    key);
        return FALSE;
    }
    *out = n->number;
    return TRUE;
}

static gboolean vo_lvm_has_flag(const VoLvmNode *section, const char *key,
                                const char *flag)
{
    VoLvmNode *arr = vo_lvm_get(section, key, VO_LVM_ARRAY);

    for (guint i = 0; arr && i < arr->items->len; i++) {
        VoLvmNode *item = arr->items->pdata[i];

        if (item->kind == VO_LVM_STRING && g_str_equal(item->string, flag)) {
            return TRUE;
        }
    }
    return FALSE;
}

/* ---- On-disk structures ---- */

static guint32 vo_lvm_crc(guint32 crc, const void *buf, gsize len)
{
    /* zlib inverts before and after; LVM's CRC-32 does neither. */
    return ~(guint32)crc32_z(~crc & 0xffffffffu, buf, len);
}

static guint32 vo_lvm_le32(const guint8 *p)
{
    guint32 v;

    memcpy(&v, p, sizeof(v));
    return GUINT32_FROM_LE(v);
}

static guint64 vo_lvm_le64(const guint8 *p)
{
    guint64 v;

    memcpy(&v, p, sizeof(v));
    return GUINT64_FROM_LE(v);
}

/* The physical volume: where it is on the disk. */
typedef struct {
    guint64 offset;
    guint64 size;
} VoLvmPv;

static gboolean vo_lvm_read(VoDisk *disk, const VoLvmPv *pv, void *buf,
                            gsize len, guint64 offset, GError **error)
{
    if (offset > pv->size || len > pv->size - offset) {
        return vo_lvm_bad(error, "a structure lies outside the volume");
    }
    return vo_disk_pread(disk, buf, len, pv->offset + offset, error);
}

/* The PV's UUID (32 characters) and its first metadata area. */
static gboolean vo_lvm_label(VoDisk *disk, const VoLvmPv *pv,
                             char uuid[33], guint64 *mda_offset,
                             guint64 *mda_size, GError **error)
{
    guint8 sec[VO_LVM_SECTOR];

    for (guint s = 0; s < VO_LVM_LABEL_SECTORS; s++) {
        guint32 off;
        const guint8 *p;
        gboolean data_done = FALSE;

        if (!vo_lvm_read(disk, pv, sec, sizeof(sec), s * VO_LVM_SECTOR,
                         error)) {
            return FALSE;
        }
        if (memcmp(sec, "LABELONE", 8) != 0) {
            continue;
        }
        if (vo_lvm_le64(sec + 8) != s ||
            vo_lvm_crc(VO_LVM_INITIAL_CRC, sec + 20, sizeof(sec) - 20) !=
                vo_lvm_le32(sec + 16)) {
            return vo_lvm_bad(error, "label checksum or sector mismatch");
        }
        if (memcmp(sec + 24, "LVM2 001", 8) != 0) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "LVM label of an unknown type");
            return FALSE;
        }
        off = vo_lvm_le32(sec + 20);
        /* pv_header: UUID, device size, then two zero-ended lists. */
        if (off < 32 || off > sizeof(sec) - 40 - 16) {
            return vo_lvm_bad(error, "pv_header outside the label sector");
        }
        memcpy(uuid, sec + off, 32);
        uuid[32] = '\0';
        for (p = sec + off + 40; p + 16 <= sec + sizeof(sec); p += 16) {
            guint64 o = vo_lvm_le64(p), n = vo_lvm_le64(p + 8);

            if (!data_done) {
                data_done = o == 0 && n == 0;
                continue;
            }
            if (o == 0 && n == 0) {
                break;
            }
            *mda_offset = o;
            *mda_size = n;
            return TRUE;
        }
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "LVM physical volume without a metadata area");
        return FALSE;
    }
    return vo_lvm_bad(error, "no LVM2 label in the first four sectors");
}

/* The current metadata text of the area at @mda_offset. */
static char *vo_lvm_text(VoDisk *disk, const VoLvmPv *pv,
                         guint64 mda_offset, guint64 mda_size, gsize *len,
                         GError **error)
{
    guint8 hdr[VO_LVM_MDA_HEADER];
    guint64 off, size, first;
    g_autofree char *text = NULL;

    if (mda_size <= VO_LVM_MDA_HEADER) {
        vo_lvm_bad(error, "metadata area too small");
        return NULL;
    }
    if (!vo_lvm_read(disk, pv, hdr, sizeof(hdr), mda_offset, error)) {
        return NULL;
    }
    if (memcmp(hdr + 4, vo_lvm_mda_magic, sizeof(vo_lvm_mda_magic)) != 0 ||
        vo_lvm_crc(VO_LVM_INITIAL_CRC, hdr + 4, sizeof(hdr) - 4) !=
            vo_lvm_le32(hdr)) {
        vo_lvm_bad(error, "metadata area header magic or checksum");
        return NULL;
    }
    if (vo_lvm_le32(hdr + 20) != 1 || vo_lvm_le64(hdr + 24) != mda_offset ||
        vo_lvm_le64(hdr + 32) != mda_size) {
        vo_lvm_bad(error, "metadata area header disagrees with the label");
        return NULL;
    }
    /* raw_locn[0]: where the current text lies in the circular buffer. */
    off = vo_lvm_le64(hdr + 40);
    size = vo_lvm_le64(hdr + 48);
    if (vo_lvm_le32(hdr + 60) & 1) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "LVM metadata area marked ignored");
        return NULL;
    }
    if (off < VO_LVM_MDA_HEADER || off >= mda_size || size == 0 ||
        size > VO_LVM_MAX_TEXT || size > mda_size - VO_LVM_MDA_HEADER) {
        vo_lvm_bad(error, "metadata text location");
        return NULL;
    }
    text = g_malloc(size + 1);
    first = MIN(size, mda_size - off);
    if (!vo_lvm_read(disk, pv, text, first, mda_offset + off, error) ||
        (first < size &&
         !vo_lvm_read(disk, pv, text + first, size - first,
                      mda_offset + VO_LVM_MDA_HEADER, error))) {
        return NULL;
    }
    if (vo_lvm_crc(VO_LVM_INITIAL_CRC, text, size) != vo_lvm_le32(hdr + 56)) {
        vo_lvm_bad(error, "metadata text checksum");
        return NULL;
    }
    text[size] = '\0';
    *len = size;
    return g_steal_pointer(&text);
}

/* ---- Volumes ---- */

/* "abcdef-ghij-..." and the label's 32 characters name the same PV. */
static gboolean vo_lvm_same_uuid(const char *dashed, const char *label)
{
    gsize n = 0;

    for (const char *c = dashed; *c; c++) {
        if (*c == '-') {
            continue;
        }
        if (n >= 32 || *c != label[n]) {
            return FALSE;
        }
        n++;
    }
    return n == 32;
}

static gboolean vo_lvm_unsupported(GError **error, const char *vg,
                                   const char *lv, const char *why)
{
    g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                "logical volume %s/%s: %s", vg, lv, why);
    return FALSE;
}

static gboolean vo_lvm_has_snapshot(const VoLvmNode *lv)
{
    for (guint i = 0; i < lv->items->len; i++) {
        VoLvmNode *seg = lv->items->pdata[i];
        VoLvmNode *type = seg->kind == VO_LVM_SECTION ?
                          vo_lvm_get(seg, "type", VO_LVM_STRING) : NULL;

        if (type && g_str_equal(type->string, "snapshot")) {
            return TRUE;
        }
    }
    return FALSE;
}

typedef struct {
    const char *vg;
    guint64 extent_bytes;
    const char *pv_name;    /* this PV's name in the metadata */
    guint64 pe_start_bytes;
    guint64 pe_count;
} VoLvmVg;

static gboolean vo_lvm_volume(const VoLvmVg *vg, const VoLvmPv *pv,
                              const VoLvmNode *lv, VoLvmVolumeFunc func,
                              gpointer data, GError **error)
{
    gint64 count, next = 0, first_pe = -1;
    g_autofree char *name = NULL;

    if (!vo_lvm_has_flag(lv, "status", "VISIBLE")) {
        return TRUE;        /* a pool's or a mirror's internal volume */
    }
    if (!vo_lvm_get_number(lv, "segment_count", 1, VO_LVM_MAX_SEGMENTS,
                           lv->key, &count, error)) {
        return FALSE;
    }
    for (gint64 i = 1; i <= count; i++) {
        g_autofree char *name = g_strdup_printf("segment%" G_GINT64_FORMAT,
                                                i);
        VoLvmNode *seg = vo_lvm_get(lv, name, VO_LVM_SECTION);
        VoLvmNode *type, *stripes;
        gint64 start, extents, nstripes, pe;

        if (!seg) {
            return vo_lvm_bad(error, "a segment is missing");
        }
        type = vo_lvm_get(seg, "type", VO_LVM_STRING);
        if (!type) {
            return vo_lvm_bad(error, "a segment has no type");
        }
        if (!g_str_equal(type->string, "striped")) {
            g_autofree char *why = g_strdup_printf(
                "%s volumes are not supported (linear volumes are)",
                type->string);
            return vo_lvm_unsupported(error, vg->vg, lv->key, why);
        }
        if (!vo_lvm_get_number(seg, "start_extent", 0, G_MAXINT64, name,
                               &start, error) ||
            !vo_lvm_get_number(seg, "extent_count", 1, G_MAXINT64, name,
                               &extents, error) ||
            !vo_lvm_get_number(seg, "stripe_count", 1, 128, name,
                               &nstripes, error)) {
            return FALSE;
        }
        if (nstripes != 1) {
            return vo_lvm_unsupported(error, vg->vg, lv->key,
                                      "volumes striped over several "
                                      "devices are not supported");
        }
        stripes = vo_lvm_get(seg, "stripes", VO_LVM_ARRAY);
        if (!stripes || stripes->items->len != 2 ||
            ((VoLvmNode *)stripes->items->pdata[0])->kind != VO_LVM_STRING ||
            ((VoLvmNode *)stripes->items->pdata[1])->kind != VO_LVM_NUMBER) {
            return vo_lvm_bad(error, "malformed stripes");
        }
        if (!g_str_equal(((VoLvmNode *)stripes->items->pdata[0])->string,
                         vg->pv_name)) {
            return vo_lvm_unsupported(error, vg->vg, lv->key,
                                      "it uses another physical volume "
                                      "(only volume groups of one are "
                                      "read)");
        }
        pe = ((VoLvmNode *)stripes->items->pdata[1])->number;
        if (start != next) {
            return vo_lvm_bad(error, "segments out of order");
        }
        if (first_pe < 0) {
            first_pe = pe;
        }
        if (pe != first_pe + start) {
            return vo_lvm_unsupported(error, vg->vg, lv->key,
                                      "its extents are not contiguous on "
                                      "the physical volume");
        }
        if (pe < 0 || (guint64)pe > vg->pe_count ||
            (guint64)extents > vg->pe_count - pe) {
            return vo_lvm_bad(error, "a segment lies outside the "
                              "physical volume");
        }
        next = start + extents;
    }
    /* Bounded by pe_count, itself bounded by the PV's size below. */
    name = g_strdup_printf("%s/%s", vg->vg, lv->key);
    func(name, pv->offset + vg->pe_start_bytes +
               (guint64)first_pe * vg->extent_bytes,
         (guint64)next * vg->extent_bytes, data);
    return TRUE;
}

gboolean vo_lvm_scan(VoDisk *disk, guint64 pv_offset, guint64 pv_size,
                     VoLvmVolumeFunc func, gpointer data, GError **error)
{
    const VoLvmPv pv_place = { pv_offset, pv_size };
    const VoLvmPv *pv = &pv_place;
    char uuid[33];
    guint64 mda_offset = 0, mda_size = 0;
    g_autofree char *text = NULL;
    gsize len = 0;
    g_autoptr(VoLvmNode) top = NULL;
    VoLvmNode *vgn = NULL, *pvs, *lvs;
    VoLvmVg vg = { 0 };
    gint64 extent, pe_start, pe_count;

    if (!vo_lvm_label(disk, pv, uuid, &mda_offset, &mda_size, error)) {
        return FALSE;
    }
    text = vo_lvm_text(disk, pv, mda_offset, mda_size, &len, error);
    if (!text || !(top = vo_lvm_parse(text, len, error))) {
        return FALSE;
    }
    for (guint i = 0; i < top->items->len; i++) {
        VoLvmNode *n = top->items->pdata[i];

        if (n->kind != VO_LVM_SECTION) {
            continue;
        }
        if (vgn) {
            return vo_lvm_bad(error, "more than one volume group");
        }
        vgn = n;
    }
    if (!vgn || !(pvs = vo_lvm_get(vgn, "physical_volumes", VO_LVM_SECTION))) {
        return vo_lvm_bad(error, "no volume group");
    }
    vg.vg = vgn->key;
    if (!vo_lvm_get_number(vgn, "extent_size", 1, G_MAXUINT32, vg.vg,
                           &extent, error)) {
        return FALSE;
    }
    vg.extent_bytes = (guint64)extent * VO_LVM_SECTOR;
    for (guint i = 0; i < pvs->items->len; i++) {
        VoLvmNode *n = pvs->items->pdata[i];
        VoLvmNode *id = n->kind == VO_LVM_SECTION ?
                        vo_lvm_get(n, "id", VO_LVM_STRING) : NULL;

        if (id && vo_lvm_same_uuid(id->string, uuid)) {
            if (!vo_lvm_get_number(n, "pe_start", 0, G_MAXUINT32, n->key,
                                   &pe_start, error) ||
                !vo_lvm_get_number(n, "pe_count", 0, G_MAXUINT32, n->key,
                                   &pe_count, error)) {
                return FALSE;
            }
            vg.pv_name = n->key;
            break;
        }
    }
    if (!vg.pv_name) {
        return vo_lvm_bad(error, "the volume group does not list this "
                          "physical volume");
    }
    vg.pe_start_bytes = (guint64)pe_start * VO_LVM_SECTOR;
    vg.pe_count = pe_count;
    /* 2^32 extents of at most 2^41 bytes: check in a division. */
    if (vg.pe_start_bytes > pv->size ||
        vg.pe_count > (pv->size - vg.pe_start_bytes) / vg.extent_bytes) {
        return vo_lvm_bad(error, "the extents lie outside the physical "
                          "volume");
    }
    lvs = vo_lvm_get(vgn, "logical_volumes", VO_LVM_SECTION);
    for (guint i = 0; lvs && i < lvs->items->len; i++) {
        VoLvmNode *lv = lvs->items->pdata[i];

        if (lv->kind != VO_LVM_SECTION) {
            return vo_lvm_bad(error, "malformed logical_volumes");
        }
        /*
         * A snapshot is a hidden volume of type "snapshot" beside a visible
         * linear copy-on-write store: writing the origin behind its back
         * would change what the snapshot shows.
         */
        if (vo_lvm_has_snapshot(lv)) {
            return vo_lvm_unsupported(error, vg.vg, lv->key,
                                      "volume groups with snapshots are "
                                      "not supported");
        }
    }
    for (guint i = 0; lvs && i < lvs->items->len; i++) {
        VoLvmNode *lv = lvs->items->pdata[i];

        if (!vo_lvm_volume(&vg, pv, lv, func, data, error)) {
            return FALSE;
        }
    }
    return TRUE;
}
