/*
 * vmaugment-helper: the upload area shared with one QEMU device.
 *
 * A guest's upload chunk (up to 1 MiB) crossed the request channel: QEMU
 * copied it out of guest memory, into the socket, and the helper out of
 * the socket before writing it to the upload's file, copies and a socket
 * transfer more than its data needs (docs/performance.md, "Upload chunks
 * in a shared area").  The area is a memfd of two chunk-sized slots the
 * helper makes for each device that asks (docs/protocol.rst,
 * UPLOAD_AREA): QEMU copies a chunk's data from guest memory into a free
 * slot and sends only its header, and the helper (device.c) answers it,
 * writes the data to the upload's file from its read-only mapping of the
 * slot, and releases the slot; QEMU fills the other slot meanwhile.
 *
 * The size is sealed (F_SEAL_SHRINK, F_SEAL_GROW, then F_SEAL_SEAL) before
 * the descriptor leaves: a QEMU cannot shrink the file under our mapping
 * (no SIGBUS here) nor grow it into host memory.  It may write a slot at
 * any time, also while the helper writes it out; that changes only what
 * its own VM uploads, which the commit hashes and verifies from the
 * helper's own copy of the file, so the bytes are copied and never
 * looked at.  There is no library for this; it is a few system calls.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gio/gio.h>

#include "upload-area.h"
#include "vmaugment/host-link.h"

#define AREA_SIZE ((gsize)VMAUG_HOST_AREA_SLOTS * VMAUG_CHUNK_MAX_DATA)

struct _UploadArea {
    const guint8 *map;
};

UploadArea *upload_area_new(int *fd, GError **error)
{
    UploadArea *area;
    void *map;
    int mfd;

    mfd = memfd_create("vmaugment-upload-area",
                       MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (mfd < 0) {
        goto fail;
    }
    if (ftruncate(mfd, AREA_SIZE) < 0 ||
        fcntl(mfd, F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        goto fail;
    }
    map = mmap(NULL, AREA_SIZE, PROT_READ, MAP_SHARED, mfd, 0);
    if (map == MAP_FAILED) {
        goto fail;
    }
    area = g_new0(UploadArea, 1);
    area->map = map;
    *fd = mfd;
    return area;

fail:
    g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                "no upload area: %s", g_strerror(errno));
    if (mfd >= 0) {
        close(mfd);
    }
    return NULL;
}

void upload_area_free(UploadArea *area)
{
    if (area != NULL) {
        munmap((void *)area->map, AREA_SIZE);
        g_free(area);
    }
}

const guint8 *upload_area_slot(UploadArea *area, guint32 slot, gsize len)
{
    if (area == NULL || slot >= VMAUG_HOST_AREA_SLOTS ||
        len > VMAUG_CHUNK_MAX_DATA) {
        return NULL;
    }
    return area->map + (gsize)slot * VMAUG_CHUNK_MAX_DATA;
}
