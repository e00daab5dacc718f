/*
 * A guest's dpkg database (/var/lib/dpkg): the status file, the
 * diversions, the file lists of every package and the file trigger
 * interests, read through the guest's filesystems for vo-unpack.c, and
 * the status file written back the way dpkg writes it.  dpkg(1) and
 * dpkg-divert(1) describe the files.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-deb822.h"
#include "vo-guest.h"

G_BEGIN_DECLS

#define VO_DPKG_ADMINDIR "/var/lib/dpkg"
/* Larger guest files are refused before they are read. */
#define VO_DPKG_MAX_STATUS (256u * 1024 * 1024)
#define VO_DPKG_MAX_PACKAGES 200000
#define VO_DPKG_MAX_LIST (64u * 1024 * 1024)
#define VO_DPKG_MAX_LISTS_TOTAL (256ull * 1024 * 1024)

typedef struct {
    char *to;               /* the diverted name */
    char *by;               /* the package, or ":" for a local diversion */
} VoDiversion;

/* A trigger interest: a file trigger's "PATH PACKAGE[/noawait]" line, or
 * a line "PACKAGE[/noawait]" of triggers/NAME for a named one. */
typedef struct {
    char *path;             /* the trigger's name: the path, or NAME */
    char *package;          /* "pkg" or "pkg:arch" */
    gboolean noawait;
} VoFileTrigger;

void vo_file_trigger_free(VoFileTrigger *t);

/* A line of statoverride: "USER GROUP MODE PATH". */
typedef struct {
    char *user;             /* a name, or "#UID" */
    char *group;
    guint32 mode;
} VoStatOverride;

typedef struct {
    GPtrArray *stanzas;     /* VoStanza*, in the status file's order */
    GHashTable *diversions; /* path -> VoDiversion* */
    /* Info name ("pkg" or "pkg:arch") -> GPtrArray* of its .list paths. */
    GHashTable *lists;
    /* Path -> GPtrArray* of the info names whose .list holds it. */
    GHashTable *owners;
    GPtrArray *file_triggers;   /* VoFileTrigger* */
    GHashTable *overrides;      /* path -> VoStatOverride* */
} VoDpkgDb;

/*
 * Reads the database.  Everything in it is the guest's: the directories
 * of /var/lib/dpkg must be real directories and its files regular files
 * (not links), sizes are bounded before reading, and a list or diversion
 * naming a path that is not absolute and clean is refused as corrupt.
 */
VoDpkgDb *vo_dpkg_db_read(VoGuest *guest, GError **error);
void vo_dpkg_db_free(VoDpkgDb *db);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoDpkgDb, vo_dpkg_db_free)

/* The stanza of @name for @arch (installed or not), or NULL. */
VoStanza *vo_dpkg_db_find(VoDpkgDb *db, const char *name, const char *arch);
/* The stanza of "pkg" or "pkg:arch" (an info or trigger name), or NULL. */
VoStanza *vo_dpkg_db_find_info(VoDpkgDb *db, const char *info);
/* The name of a package's files in info/: "pkg:arch" for Multi-Arch: same
 * packages, else "pkg", as dpkg names them. */
char *vo_dpkg_info_name(const VoStanza *st);
/* The status word of a stanza's Status ("installed", "unpacked", ...),
 * or NULL when the field is not three words. */
const char *vo_dpkg_status_word(const VoStanza *st, char **owned);

/* Replaces (or, keeping the file sorted by name, inserts) @stanza, taken,
 * for its Package and Architecture. */
void vo_dpkg_db_put(VoDpkgDb *db, VoStanza *stanza);
/* Replaces the list of @info (NULL @paths: removes it), taken. */
void vo_dpkg_db_set_list(VoDpkgDb *db, const char *info, GPtrArray *paths);
/* Whether a package other than @info_a/@info_b lists @path; @who gets
 * its name. */
gboolean vo_dpkg_db_owned_by_other(VoDpkgDb *db, const char *path,
                                   const char *info_a, const char *info_b,
                                   const char **who);
/* The status file's new content. */
GBytes *vo_dpkg_db_status_bytes(VoDpkgDb *db);

/* Reads a file of the database, refusing links, anything but a regular
 * file and files larger than @max; NULL with VO_ERROR_NOT_FOUND when it
 * does not exist. */
GBytes *vo_dpkg_read_file(VoGuest *guest, const char *path, guint64 max,
                          GError **error);
/* The packages interested in the named trigger @name (triggers/NAME),
 * appended to @out (VoFileTrigger*). */
gboolean vo_dpkg_read_interests(VoGuest *guest, const char *name,
                                GPtrArray *out, GError **error);
/* Checks that /var/lib/dpkg and info/ are directories, not links. */
gboolean vo_dpkg_check_admindir(VoGuest *guest, GError **error);

G_END_DECLS
