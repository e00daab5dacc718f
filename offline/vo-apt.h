/*
 * apt in a private world: apt-get and apt-cache run with a configuration
 * of our own (status, lists, cache, sources, keyring, preferences in one
 * private directory; nothing of the host's apt state read or written),
 * as an unprivileged user of their own, without network where none is
 * needed.  apt decides what to upgrade and verifies the repositories'
 * signed InRelease files and the .deb files' hashes itself.
 * docs/offline.rst ("Planning updates with apt") is normative.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-dpkg-status.h"

G_BEGIN_DECLS

typedef struct {
    char *text;             /* as the operator wrote it */
    char *uri;              /* as apt gets it: file: becomes copy: */
    char *suite;
    GStrv components;
    gboolean security;      /* the suite ends in "-security" */
} VoAptSource;

/* "URI SUITE [COMPONENT...]", e.g. "http://deb.debian.org/debian-security
 * bookworm-security main". */
VoAptSource *vo_apt_source_parse(const char *text, GError **error);
void vo_apt_source_free(VoAptSource *src);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoAptSource, vo_apt_source_free)

typedef struct {
    char *package;
    char *architecture;     /* the new version's; "all" for arch-all */
    char *old_version;      /* NULL: a new install */
    char *new_version;
    gboolean security;      /* the new version is in a security source */
    char *deb;              /* the downloaded file (vo_apt_download()) */
} VoAptChange;

void vo_apt_change_free(VoAptChange *c);

typedef struct _VoApt VoApt;

/*
 * A private world for one package set: @status (checked, ours) as the
 * dpkg status, @sources signed by @keyring.  @security_only: versions of
 * other sources are installed only where nothing installed has the
 * package (new dependencies), never as upgrades.
 */
VoApt *vo_apt_new(GPtrArray *sources, const char *keyring,
                  const VoDpkgStatus *status, gboolean security_only,
                  GError **error);
void vo_apt_free(VoApt *apt);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoApt, vo_apt_free)

/* apt-get update: fails on any error, a bad signature among them. */
gboolean vo_apt_update(VoApt *apt, GError **error);
/* The upgrade (apt-get upgrade --with-new-pkgs, simulated, offline), in
 * apt's order: VoAptChange*. */
GPtrArray *vo_apt_plan(VoApt *apt, GError **error);
/* Downloads the .deb files of @changes (apt checks their hashes) and
 * sets each change's ->deb. */
gboolean vo_apt_download(VoApt *apt, GPtrArray *changes, GError **error);

G_END_DECLS
