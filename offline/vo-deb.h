/*
 * A Debian binary package (.deb) read from memory with libarchive: its
 * ar container, control.tar.* (control fields and the files dpkg keeps in
 * its database) and data.tar.* (what it installs).  deb(5) is normative.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-deb822.h"
#include "vo-fs.h"

G_BEGIN_DECLS

/* Uncompressed bounds: a package holding more is refused. */
#define VO_DEB_MAX_DATA (512ull * 1024 * 1024)
#define VO_DEB_MAX_CONTROL (16u * 1024 * 1024)
#define VO_DEB_MAX_MEMBERS 100000

typedef struct {
    char *path;             /* "/usr/bin/x"; the root is "/." as in .list */
    VoNodeType type;        /* regular, directory or symbolic link */
    guint32 mode;           /* permission bits */
    guint32 uid, gid;       /* as recorded; the names below win where the
                             * guest knows them, as with dpkg */
    char *uname, *gname;    /* NULL when not recorded */
    char *target;           /* symbolic link target */
    char *hardlink;         /* path of an earlier member this one links to */
    GBytes *data;           /* regular files */
} VoDebMember;

typedef struct {
    VoStanza *control;      /* the control file's fields */
    /* Every control.tar member but "control", by name: "md5sums",
     * "conffiles", "postinst", ... with its mode. */
    GHashTable *control_files;      /* name -> GBytes* */
    GHashTable *control_modes;      /* name -> GUINT_TO_POINTER(mode) */
    GPtrArray *members;     /* VoDebMember*, in archive order */
} VoDeb;

/* Reads the package @data, called @name in messages.  Anything outside
 * what dpkg-deb builds (paths leaving the root, device nodes, sizes
 * past the bounds above) is refused. */
VoDeb *vo_deb_read(GBytes *data, const char *name, GError **error);
void vo_deb_free(VoDeb *deb);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoDeb, vo_deb_free)

/* "./usr/bin/x", "/usr/bin/x", "usr/bin/x/" as "/usr/bin/x"; "./", "."
 * and "/." as "/."; NULL when a component is empty, "." or "..", or the
 * path is not UTF-8 or holds a newline: the one spelling of paths in
 * packages, .list files and diversions. */
char *vo_deb_clean_path(const char *path);

/* Whether the .deb file at @path has the control member @name
 * ("preinst"), read without its data: for the planner, on files apt
 * downloaded and verified against the operator's signed repository. */
gboolean vo_deb_has_control_member(const char *path, const char *name,
                                   gboolean *has, GError **error);

/* A control file's content, or NULL when the package has none. */
GBytes *vo_deb_control_file(VoDeb *deb, const char *name);

/* The paths of the "conffiles" control file ("/etc/x"), in order.  Flags
 * after a path (remove-on-upgrade) are refused: dpkg 1.21's semantics
 * for them are not reproduced here. */
GPtrArray *vo_deb_conffiles(VoDeb *deb, const char *name, GError **error);

G_END_DECLS
