/*
 * OVF descriptors: the disk files a virtual appliance is made of.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Paths of the files the descriptor's References section names, next to
 * the descriptor.  Only plain file names are accepted. */
GPtrArray *vo_ovf_disks(const char *ovf, GError **error);
/* The same on @len bytes of @text already read from @ovf. */
GPtrArray *vo_ovf_parse(const char *ovf, const char *text, gsize len,
                        GError **error);

/* @path itself, or the single disk of an OVF descriptor. */
char *vo_ovf_resolve_image(const char *path, GError **error);

G_END_DECLS
