/*
 * vmaugment host side: the modules registered with a VM image.
 *
 * A registration names a module, optionally a version, the lifecycle
 * events it runs on and whether the image may start without it.  The set
 * for one image is kept in a sidecar file next to the disk image,
 * "<image>.vmaugment.json", so that copying the image together with its
 * sidecar carries the registrations to another host (docs/registrations.rst
 * gives the format and the reasons).  A VM without an "image" property keeps
 * its set in its store, "<store>/registrations.json", in the same format.
 *
 * The sidecar is not signed: a registration grants nothing.  The modules it
 * names are verified against the trust store and rollback state of the
 * host that loads them, at every load, exactly like a guest's request.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_REGISTRATIONS_H
#define VMAUGMENT_REGISTRATIONS_H

#include "host-common.h"

G_BEGIN_DECLS

#define VMAUG_REGS_FORMAT           "vmaugment-registrations"
/*
 * Version 2 added pinned registrations and their host configuration.  A
 * set without pins is written as version 1, which every helper reads; one
 * with pins as version 2, which a helper that knows no pins refuses whole
 * (and so refuses the start) instead of reading it without them.
 */
#define VMAUG_REGS_FORMAT_VERSION   2
#define VMAUG_REGS_FORMAT_VERSION_MIN 1
#define VMAUG_REGS_SIDECAR_SUFFIX   ".vmaugment.json"
#define VMAUG_REGS_STORE_FILE       "registrations.json"
/* Registrations one image may hold, and the largest file read. */
#define VMAUG_REGS_MAX              256
#define VMAUG_REGS_MAX_FILE         (1024 * 1024)
/* Host configuration keys one pinned registration may hold. */
#define VMAUG_REGS_MAX_CONFIG       64
/* How long vmaugment-admin waits for the lock of a change. */
#define VMAUG_REGS_ADMIN_WAIT_MS    (10 * 1000)

/*
 * A pinned registration is the host owner's (vmaugment-admin register
 * --pinned): the guest, and QEMU on its behalf, can neither remove nor
 * replace it (VMAUG_HOST_ERROR_DENIED), and only a pinned registration
 * carries configuration of the host owner's (@config), which the module
 * reads in place of what the guest set (vm-area.h, VMAUG_CONFIG_HOST).
 */
typedef struct {
    gchar *name;
    gchar *version;                 /* "" for the newest the host has */
    guint32 events;                 /* VMAUG_EVENT_MASK() of lifecycle events */
    guint32 flags;                  /* VMAUG_REG_F_* */
    gboolean pinned;
    GHashTable *config;             /* key -> UTF-8 value; pinned only */
} VmaugRegistration;

typedef struct {
    gchar *path;                    /* the file the set is kept in */
    gchar *image;                   /* the image's file name, or NULL */
    gchar *image_id;                /* UUID given when the file was made */
    GPtrArray *regs;                /* of VmaugRegistration, by name */
    int lock_fd;                    /* held until freed, or -1 */
    gpointer dir_lock;              /* this process's turn, with lock_fd */
} VmaugRegSet;

void vmaug_registration_free(VmaugRegistration *r);
void vmaug_reg_set_free(VmaugRegSet *set);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugRegSet, vmaug_reg_set_free)

/* "<image>.vmaugment.json" */
gchar *vmaug_reg_sidecar_path(const gchar *image);

/*
 * Read the set kept for disk image @image (its sidecar), or, with @image
 * NULL, the one in @store_dir.  A missing file is an empty set.  A file
 * that is not a well-formed set (unknown format or version, a sidecar of
 * another image, bad names, versions, events or flags, too many entries,
 * too large) is an error (VMAUG_HOST_ERROR_INVALID) naming the file and
 * the reason: nothing in it is used.
 */
VmaugRegSet *vmaug_reg_set_load(const gchar *image, const gchar *store_dir,
                                GError **error);

/*
 * vmaug_reg_set_load() for a change that is saved: the set holds an
 * exclusive flock(2) on the directory the file is kept in until it is
 * freed, so that the helper and vmaugment-admin, which both read, change
 * and write the whole file, never lose each other's changes (a pin
 * among them).  The lock is waited for at most @wait_ms milliseconds,
 * then VMAUG_HOST_ERROR_BUSY: the helper, which serves every VM, waits
 * not at all, and no one waits for ever on a lock anyone who can open
 * the directory can hold.  Threads of one process take turns before
 * that (waiting for each other), so only another process makes a set
 * BUSY; free the set on the thread that loaded it.
 */
VmaugRegSet *vmaug_reg_set_load_for_update(const gchar *image,
                                           const gchar *store_dir,
                                           guint wait_ms, GError **error);

/*
 * The checks of vmaug_reg_set_load() on @len bytes of @json already read
 * from @path (which the set is saved to), for the set of disk image @image
 * (or of a store, NULL).  Its own caller is vmaug_reg_set_load(); the
 * sidecar fuzz target feeds it bytes directly.
 */
VmaugRegSet *vmaug_reg_set_parse(const gchar *image, const gchar *path,
                                 const gchar *json, gsize len,
                                 GError **error);

/*
 * Add or replace (by name) the registration of @name, as the guest or
 * QEMU asks.  @version may be "" or NULL; @events must be within
 * VMAUG_EVENT_LIFECYCLE_MASK and @flags within VMAUG_REG_F_*.  Errors are
 * VMAUG_HOST_ERROR_INVALID, VMAUG_HOST_ERROR_TOO_BIG, or
 * VMAUG_HOST_ERROR_DENIED when @name is pinned.
 */
gboolean vmaug_reg_set_put(VmaugRegSet *set, const gchar *name,
                           const gchar *version, guint32 events,
                           guint32 flags, GError **error);
/* Remove @name, as the guest or QEMU asks; VMAUG_HOST_ERROR_NOT_FOUND
 * when it is not registered, VMAUG_HOST_ERROR_DENIED when it is pinned. */
gboolean vmaug_reg_set_remove(VmaugRegSet *set, const gchar *name,
                              GError **error);

/*
 * The host owner's: add or replace @name as a pinned registration (the
 * checks of vmaug_reg_set_put()), keeping the host configuration a pin of
 * it had; remove @name, pinned or not; set @key of a pinned @name to
 * @value (UTF-8, at most VMAUG_MAX_CONFIG_VALUE bytes), or unset it with
 * @value NULL (NOT_FOUND when it was not set).  A key of a registration
 * that is not pinned is INVALID: the guest could drop it with the
 * registration.
 */
gboolean vmaug_reg_set_pin(VmaugRegSet *set, const gchar *name,
                           const gchar *version, guint32 events,
                           guint32 flags, GError **error);
gboolean vmaug_reg_set_remove_any(VmaugRegSet *set, const gchar *name,
                                  GError **error);
gboolean vmaug_reg_set_config(VmaugRegSet *set, const gchar *name,
                              const gchar *key, const gchar *value,
                              GError **error);
/* The host owner's @key for @name (pinned), or NULL. */
const gchar *vmaug_reg_set_host_config(const VmaugRegSet *set,
                                       const gchar *name, const gchar *key);
const VmaugRegistration *vmaug_reg_set_find(const VmaugRegSet *set,
                                            const gchar *name);

/* Write the set back: temporary file, fsync, rename, fsync the directory. */
gboolean vmaug_reg_set_save(VmaugRegSet *set, GError **error);

/* Lifecycle event names ("image-start,image-stop") <-> mask. */
gchar *vmaug_reg_events_to_string(guint32 events);
gboolean vmaug_reg_events_from_string(const gchar *text, guint32 *events,
                                      GError **error);

G_END_DECLS

#endif /* VMAUGMENT_REGISTRATIONS_H */
