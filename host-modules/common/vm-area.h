/*
 * vmaugment host side: one VM's own area of a module store.
 *
 * Packages in a store are shared by every VM it serves; what a VM and its
 * modules write is not.  Each VM has a directory of its own,
 * <store>/vms/<id>/, holding
 *
 *   config/<module>.json        the module's own configuration keys
 *   config/<module>.guest.json  what the guest set for the module
 *   state/<module>/             the module's files
 *   spool/<job>.data, .json     documents its modules printed
 *   ui/<module>.json            the UI elements its modules show
 *   registrations.json          its registrations, when it names no image
 *   image                       the image it belongs to, for the host owner
 *
 * A VM that names a disk image has the area of that image, <id> being
 * "image-<name>-<16 hex digits of the SHA-256 of the image's path>"; it
 * outlives the connection, so that the next start of the image finds its
 * configuration and state.  A VM that names none has an area of its own
 * connection, "device-<name>-<16 random hex digits>", which nobody can
 * name again: it is removed when the connection and its modules are gone,
 * but for what its modules printed.  Areas are never shared: the helper
 * serves one image to one device at a time.
 *
 * Every area has quotas (VmaugVmQuota) on what it may hold.  Nothing here
 * trusts its caller's strings: names and keys are checked before they
 * touch a path.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_VM_AREA_H
#define VMAUGMENT_VM_AREA_H

#include "registrations.h"
#include "store.h"

G_BEGIN_DECLS

/* Defaults of VmaugVmQuota (the helper's options override them). */
#define VMAUG_VM_CONFIG_BYTES       (1024 * 1024)
#define VMAUG_VM_STATE_BYTES        (256 * 1024 * 1024)
#define VMAUG_VM_SPOOL_BYTES        (256 * 1024 * 1024)
/* Keys one namespace of one module's configuration may hold. */
#define VMAUG_VM_CONFIG_MAX_KEYS    256
/* Files one module's state directory may hold. */
#define VMAUG_VM_STATE_MAX_FILES    1024
/* A module reads what the guest set for it under this prefix (the host
 * owner's value instead where there is one), and only the host owner's
 * under the next. */
#define VMAUG_VM_GUEST_PREFIX       "guest."
#define VMAUG_VM_HOST_PREFIX        "host."

typedef struct _VmaugVmArea VmaugVmArea;

/* Bytes one VM may keep, all its modules together. */
typedef struct {
    guint64 config_bytes;           /* both namespaces, as stored */
    guint64 state_bytes;            /* sizes of the files in state/ */
    guint64 spool_bytes;            /* documents and their descriptions */
} VmaugVmQuota;

/*
 * A module's configuration has three namespaces: the module's own keys,
 * which only the module writes (the host application may rely on what it
 * validated, e.g. the config module's "applied.*"); the guest's, which
 * only the guest writes (VMAUG_OP_CONFIG_SET); and the host owner's,
 * which only the host owner writes, with the module's pinned registration
 * in the image's sidecar (registrations.h), and which nothing here
 * writes.  Where the host owner set a key, the guest cannot (DENIED) and
 * the module reads the host's value for the guest's key.
 */
typedef enum {
    VMAUG_CONFIG_MODULE,
    VMAUG_CONFIG_GUEST,
    VMAUG_CONFIG_HOST,
} VmaugConfigSpace;

/*
 * The area of the VM running disk image @image (its real path), or with
 * @image NULL a new area of the connection of device @device_name.  Its
 * directory is made when something is first kept there.  The store must
 * outlive the area.
 */
VmaugVmArea *vmaug_vm_area_new(VmaugStore *store, const gchar *image,
                               const gchar *device_name,
                               const VmaugVmQuota *quota);
VmaugVmArea *vmaug_vm_area_ref(VmaugVmArea *area);
/* The last reference of a connection's area removes it (but its spool)
 * and the unfinished uploads it owns. */
void vmaug_vm_area_unref(VmaugVmArea *area);
/* "image-disk.qcow2-0123456789abcdef" for @image (a real path). */
gchar *vmaug_vm_area_id_for_image(const gchar *image);

const gchar *vmaug_vm_area_get_id(VmaugVmArea *area);
const gchar *vmaug_vm_area_get_dir(VmaugVmArea *area);
/* The image's real path, or NULL for a connection's area. */
const gchar *vmaug_vm_area_get_image(VmaugVmArea *area);
VmaugStore *vmaug_vm_area_get_store(VmaugVmArea *area);
/* <area>/<sub>, created if missing. */
gchar *vmaug_vm_area_subdir(VmaugVmArea *area, const gchar *sub,
                            GError **error);

/* Configuration.  NOT_FOUND for a key not set, INVALID for a bad module
 * name, key (UTF-8, 1..VMAUG_CONFIG_KEY_MAX-1 bytes) or value, TOO_BIG
 * beyond VMAUG_VM_CONFIG_MAX_KEYS or the quota.  Reading VMAUG_CONFIG_HOST
 * reads the VM's registrations (their errors if they cannot be used);
 * setting it is INVALID, and setting a VMAUG_CONFIG_GUEST key the host
 * owner set is DENIED. */
gboolean vmaug_vm_area_config_get(VmaugVmArea *area, const gchar *module,
                                  VmaugConfigSpace space, const gchar *key,
                                  GBytes **value, GError **error);
gboolean vmaug_vm_area_config_set(VmaugVmArea *area, const gchar *module,
                                  VmaugConfigSpace space, const gchar *key,
                                  const void *value, gsize len,
                                  GError **error);
/* What vmaug_vm_area_config_set() refuses whatever the files hold: a
 * name or key that is not valid (INVALID), a value of more than
 * VMAUG_MAX_CONFIG_VALUE bytes (TOO_BIG).  For a set that waits its turn
 * to be written, so that such a request is answered when it comes. */
gboolean vmaug_vm_area_config_set_ok(const gchar *module, const gchar *key,
                                     gsize len, GError **error);

/*
 * State.  The helper opens every state file for its module (module-api.c);
 * before it opens one for writing it asks here: TOO_BIG when the VM's
 * state holds its quota already, or when @create would make the module's
 * directory hold more than VMAUG_VM_STATE_MAX_FILES.  What a module
 * writes through descriptors it holds cannot be seen until it is on disk,
 * so usage is measured again after each call (vmaug_vm_area_state_stale).
 */
gboolean vmaug_vm_area_state_admit(VmaugVmArea *area, const gchar *module,
                                   gboolean create, GError **error);
void vmaug_vm_area_state_created(VmaugVmArea *area, const gchar *module);
void vmaug_vm_area_state_stale(VmaugVmArea *area);

/* The spool may take @len more bytes (TOO_BIG otherwise); then record
 * that it did. */
gboolean vmaug_vm_area_spool_admit(VmaugVmArea *area, guint64 len,
                                   GError **error);
void vmaug_vm_area_spool_added(VmaugVmArea *area, guint64 len);

/* The VM's registrations: its image's sidecar, or the area's own. */
VmaugRegSet *vmaug_vm_area_regs_load(VmaugVmArea *area, GError **error);
/* The same, for a change (vmaug_reg_set_load_for_update(), never
 * waiting). */
VmaugRegSet *vmaug_vm_area_regs_load_for_update(VmaugVmArea *area,
                                                GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugVmArea, vmaug_vm_area_unref)

G_END_DECLS

#endif /* VMAUGMENT_VM_AREA_H */
