/*
 * vmaugment-helper: the connection to one QEMU vmaugment device
 * (device.c), the top layer of the helper.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_DEVICE_H
#define VMAUGMENT_DEVICE_H

#include "lifecycle.h"
#include "session.h"
#include "upload-area.h"

typedef struct _DeviceWrite DeviceWrite;

typedef struct {
    Helper *helper;
    VmaugLink *link;
    /* The request channel offered with our HELLO, until the device's
     * HELLO says whether it takes it (docs/protocol.rst); guest requests
     * and their answers travel on it when use_channel. */
    VmaugLink *channel;
    gboolean use_channel;
    /* Shared with the device when it asked (UPLOAD_AREA): upload chunks'
     * data comes in its slots. */
    UploadArea *area;
    gchar *name;                    /* from the device's HELLO */
    gboolean hello;
    VmaugStore *store;
    gchar *image;                   /* the disk image (real directory), or
                                     * NULL */
    Session *session;               /* from HELLO on: the VM's modules */
    LifecycleEngine *lifecycle;     /* from HELLO on */
    GHashTable *pending;            /* deferred tags (guint64 *) */
    GHashTable *cancelled;          /* tags the device gave up on */
    GPtrArray *commits;             /* DeviceCommit: uploads committing */
    GPtrArray *writes;              /* DeviceWrite: waiting or running */
    /* The IMAGE_ACCESS awaiting its answer (one at a time): its op, the
     * start's tag it was sent with, who waits. */
    guint32 access_op;
    guint64 access_tag;
    ModuleImageAccessFunc access_done;
    gpointer access_data;
    guint access_idle;              /* answers a refused one */
    gboolean closed;
} Device;

Device *device_new(Helper *helper, int fd);
void device_free(Device *dev);

/* The VMs' durable writes (device.c): on threads of their own, or, with
 * @threads FALSE (the device fuzzer), where they come, in order. */
void device_writes_init(Helper *helper, gboolean threads);
/* Waits for those running (the main loop turning meanwhile), then ends
 * the threads; before the stores are freed. */
void device_writes_end(Helper *helper);

#endif /* VMAUGMENT_DEVICE_H */
