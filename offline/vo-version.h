/*
 * Debian versions, package names and architectures, judged by libdpkg
 * itself.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Returns <0, 0, >0 like strcmp; FALSE when either version is invalid. */
gboolean vo_version_compare(const char *a, const char *b, int *result,
                            GError **error);

/* Evaluates "@a @op @b" with dpkg's operators (<<, <=, =, >=, >>) and
 * the aliases <, >, != people tend to write. */
gboolean vo_version_relate(const char *a, const char *op, const char *b,
                           gboolean *result, GError **error);

/* *@result = "@cmp @op 0", @cmp a comparison's result (<0, 0, >0) and
 * @op one of vo_version_relate()'s operators: one reading of the
 * operators for every package system. */
gboolean vo_version_apply_op(int cmp, const char *op, gboolean *result,
                             GError **error);

/* Whether @v is a version dpkg accepts, written only with the characters
 * Debian policy allows (so it fits in a control field as it is). */
gboolean vo_version_check(const char *v, GError **error);
/* Whether @name is a package name, and @arch an architecture name, that
 * dpkg accepts. */
gboolean vo_version_check_package(const char *name, GError **error);
gboolean vo_version_check_arch(const char *arch, GError **error);

G_END_DECLS
