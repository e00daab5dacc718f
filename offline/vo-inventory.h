/*
 * What a guest has installed: its "registry" for deciding which updates
 * apply.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

#include "vo-guest.h"

G_BEGIN_DECLS

typedef struct {
    char *name;                 /* dpkg: Package; Windows: Uninstall key */
    char *version;
    char *architecture;         /* dpkg only ("" when absent) */
    char *status;               /* dpkg only: its Status; NULL on Windows */
    gboolean installed;
    char *display_name;         /* Windows only: DisplayName, or NULL */
    char *publisher;            /* Windows only */
    char *install_date;         /* Windows only: InstallDate as stored */
} VoPackage;

/* A Linux kernel installed in /boot, by its package or a vmlinuz link. */
typedef struct {
    char *version;              /* "6.1.0-28-amd64" (uname -r) */
    char *path;                 /* "/boot/vmlinuz-VERSION", NULL if absent */
    char *package;              /* "linux-image-VERSION", or NULL */
    char *package_version;
} VoKernel;

typedef struct {
    char *family;               /* "linux" or "windows" */
    GHashTable *os;             /* lower-case key -> value */
    /* name and name:arch (Linux), key and DisplayName (Windows) ->
     * VoPackage* */
    GHashTable *packages;
    GPtrArray *package_list;    /* VoPackage*, owned, in status order */
    GPtrArray *updates;         /* Windows: VoWinUpdate*, owned */
    GPtrArray *kernels;         /* Linux: VoKernel*, owned */
    char *package_format;       /* "deb", "rpm"; NULL: no package manager */
} VoInventory;

VoInventory *vo_inventory_read(VoGuest *guest, GError **error);
/* The Linux half of vo_inventory_read() on the bytes of os-release and of
 * the dpkg status file (either may be NULL: the guest has none). */
VoInventory *vo_inventory_parse_linux(const char *family, GBytes *os_release,
                                      GBytes *dpkg_status, GError **error);
/* Adds the package whose "package", "version", "status" and (optional)
 * "architecture" @fields hold; ignored unless they are UTF-8. */
void vo_inventory_add_package(VoInventory *inv, GHashTable *fields);
/* A VoRpmPackageFunc (vo-rpm.h) adding to the VoInventory @data. */
void vo_inventory_add_rpm(const char *name, const char *evr,
                          const char *arch, gpointer data);
/* Whether @p is installed (not only unpacked or half-configured). */
gboolean vo_package_installed(const VoPackage *p);
void vo_inventory_free(VoInventory *inv);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoInventory, vo_inventory_free)

/* The whole picture for 'inspect': layout, mounts, OS and packages. */
JsonNode *vo_inventory_to_json(VoGuest *guest, VoInventory *inv);

G_END_DECLS
