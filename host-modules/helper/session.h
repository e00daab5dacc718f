/*
 * vmaugment-helper: the modules of one VM (session.c), between the
 * device connection and the module processes.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_SESSION_H
#define VMAUGMENT_SESSION_H

#include "module.h"

typedef struct {
    Helper *helper;
    /* How the VM is answered and told things; handed to its modules. */
    const ModuleOps *ops;
    gpointer owner;
    VmaugStore *store;              /* lives as long as the helper */
    gchar *name;                    /* the device's, from its HELLO */
    gchar *image;                   /* the disk image, or NULL */
    VmaugVmArea *area;              /* what this VM keeps (vm-area.h) */
    GHashTable *modules;            /* name -> Module */
    gboolean stop_seen;             /* IMAGE_STOP or HOST_STOP arrived */
} Session;

Session *session_new(Helper *helper, VmaugStore *store, const gchar *name,
                     const gchar *image, const ModuleOps *ops,
                     gpointer owner);
/* The VM is gone: modules of a VM that stopped in order finish their
 * stop handlers, the others stop at once. */
void session_free(Session *s);

/* Once per QUERY or LIST, before session_manifest(): what it remembers
 * is forgotten if the trust directory changed (one look at the directory
 * for a listing of many packages, not one per package). */
void session_manifests_refresh(Session *s);
/* What a stored package says about itself, verified once per content. */
const VmaugManifest *session_manifest(Session *s, const VmaugStoreEntry *e,
                                      GError **error);
/* What QUERY, LIST and LOAD say of @name @version. */
void session_fill_info(Session *s, struct vmaug_module_info *info,
                       const gchar *name, const gchar *version,
                       const VmaugManifest *m);
/* Load @name @version ("" for the newest) unless it runs already; the
 * module returned may still be starting.  Refusals are audited and sent
 * as VMAUG_EVENT_MODULE_REFUSED. */
Module *session_ensure_loaded(Session *s, const gchar *name,
                              const gchar *version, GError **error);
/* Tell the guest a module it needed was refused, and why. */
void session_event_refused(Session *s, const gchar *name,
                           const gchar *version, const gchar *why);
/* The VM loaded @module, or registered it with its image. */
gboolean session_has_module(Session *s, const gchar *module, GError **error);
/* Stop @name (of @version unless ""), returning what it was. */
gboolean session_unload(Session *s, const gchar *name, const gchar *version,
                        struct vmaug_module_ref *was, GError **error);

#endif /* VMAUGMENT_SESSION_H */
