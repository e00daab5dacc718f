/*
 * A guest's dpkg status as apt needs it, handed from the confined worker
 * to the parent: the worker extracts the fields apt decides with from the
 * guest's /var/lib/dpkg/status, the parent checks every one of them with
 * libdpkg's rules and writes a fresh status file of its own for apt, so
 * that apt never reads a byte the guest wrote (docs/offline.rst,
 * "Planning updates with apt", is normative).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

#include "vo-guest.h"

G_BEGIN_DECLS

/* Bounds of what the worker hands over: a Debian system has a few
 * thousand packages, and the longest relationship fields a few KiB. */
#define VO_DPKG_STATUS_MAX_PACKAGES 50000
#define VO_DPKG_STATUS_MAX_FIELD    (16 * 1024)
#define VO_DPKG_STATUS_MAX_ARCHS    16

/* ---- Worker ---- */

/*
 * The guest's native and foreign architectures, its os-release names and
 * one object per package of its dpkg status, holding only the fields
 * apt needs (the member "dpkg" of the worker's report).
 */
JsonNode *vo_dpkg_status_extract(VoGuest *guest, GError **error);
/* The same from @inv's os-release names and the bytes of the status file
 * and of /var/lib/dpkg/arch (may be NULL): the step after reading,
 * taken apart for the fuzz target. */
JsonNode *vo_dpkg_status_extract_bytes(GHashTable *os, GBytes *status,
                                       GBytes *arch, GError **error);

/* ---- Parent ---- */

typedef struct {
    char *architecture;         /* native */
    GPtrArray *architectures;   /* char*: native first, then foreign */
    char *os_id;                /* os-release ID, VERSION_ID, */
    char *os_version_id;        /* VERSION_CODENAME; may be NULL */
    char *release;
    char *text;                 /* the status file written for apt */
    char *sha256;               /* of text and architectures: the group */
    guint n_packages;
} VoDpkgStatus;

/* Checks the worker's "dpkg" member field by field (names, versions and
 * relationships with libdpkg) and re-serialises it. */
VoDpkgStatus *vo_dpkg_status_from_report(JsonNode *node, GError **error);
void vo_dpkg_status_free(VoDpkgStatus *st);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoDpkgStatus, vo_dpkg_status_free)

G_END_DECLS
