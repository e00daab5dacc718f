/*
 * Paragraphs of "Field: value" lines (deb822), as dpkg's status file and
 * a package's control file hold them: parsed with every bound checked,
 * written back as dpkg writes them.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
    char *name;             /* as written: "Package", "Conffiles" */
    /* After "Name:" without the blanks that start it; continuation lines
     * kept with their "\n " (a multi-line value may start with "\n"). */
    char *value;
} VoField;

typedef struct {
    GPtrArray *fields;      /* VoField*, in order */
    /* The paragraph's bytes as read (with its final newline), written
     * back unchanged while no field was changed; NULL once one was. */
    char *raw;
} VoStanza;

VoStanza *vo_stanza_new(void);
void vo_stanza_free(VoStanza *st);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoStanza, vo_stanza_free)
VoStanza *vo_stanza_copy(const VoStanza *st);

/* Field names compare case-insensitively, as dpkg's do. */
const char *vo_stanza_get(const VoStanza *st, const char *name);
/* Replaces the field's value in place, or appends the field. */
void vo_stanza_set(VoStanza *st, const char *name, const char *value);
void vo_stanza_remove(VoStanza *st, const char *name);
/* The paragraph's lines, each ending in "\n" (no blank line after). */
void vo_stanza_write(const VoStanza *st, GString *out);

/*
 * Splits @len bytes at @text into paragraphs (VoStanza*, appended to
 * @out).  A line that is neither "Name: value" nor a continuation, a NUL
 * byte, or more than @max_stanzas paragraphs fails with VO_ERROR_CORRUPT
 * naming @what and the line.
 */
gboolean vo_deb822_parse(const char *text, gsize len, const char *what,
                         guint max_stanzas, GPtrArray *out, GError **error);

G_END_DECLS
