/*
 * Partition tables and filesystem signatures, found with libblkid.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-disk.h"

G_BEGIN_DECLS

typedef struct VoPartition VoPartition;

struct VoPartition {
    int number;             /* 1-based; 0 for a filesystem on the whole disk */
    guint64 offset;         /* bytes */
    guint64 size;           /* bytes */
    char *type;             /* partition type GUID or MBR type, may be NULL */
    char *part_uuid;
    char *part_label;
    char *fstype;           /* libblkid's TYPE, NULL when unrecognised */
    char *fs_uuid;
    char *fs_label;
    char *volume;           /* an LVM logical volume's "VG/LV", or NULL */
    guint disk;             /* which of the guest's disks, from 0 */
    /*
     * On a LUKS volume the parent opened (docs/offline.rst, "LUKS"): the
     * container it was decrypted from (borrowed; @disk is then the
     * decrypted volume's, after the guest's own disks).  On the
     * container itself, @opened says its contents are read that way.
     */
    VoPartition *container;
    gboolean opened;
};

typedef struct {
    char *table;            /* "gpt", "dos" or NULL (no table) */
    char *table_id;         /* GPT disk GUID or MBR signature (hex) */
    GPtrArray *partitions;  /* VoPartition* */
} VoLayout;

VoLayout *vo_layout_scan(VoDisk *disk, GError **error);
/* An empty layout, whose partitions the caller adds (g_new0'd, owned). */
VoLayout *vo_layout_new(void);
void vo_layout_free(VoLayout *layout);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoLayout, vo_layout_free)

/* Why a filesystem type cannot be serviced, or NULL when it can be. */
const char *vo_layout_unsupported_reason(const char *fstype);
/* "partition 2", "logical volume vg/root" or "the whole disk" (on a
 * guest's later disks: "partition 1 of disk 2"; inside a LUKS volume:
 * "the LUKS volume on partition 2", "logical volume vg/root in ..."). */
char *vo_layout_describe(const VoPartition *part);
/* The guest's disk (from 1) that holds @part, through its container. */
guint vo_layout_disk_number(const VoPartition *part);
/* What would service @fstype (the explicit routes), or NULL. */
const char *vo_layout_route_hint(const char *fstype);

G_END_DECLS
