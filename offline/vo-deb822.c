/*
 * deb822 paragraphs (vo-deb822.h).  The status file parsed here is the
 * guest's: every line is checked, nothing is assumed about its size
 * beyond what the caller bounded, and a malformed line is a refusal
 * rather than a guess (a guessed status would be written back).
 *
 * Written here because libdpkg's parser (parsedb()) cannot serve: it
 * reads a file by name, where the worker has the bytes in memory and may
 * open nothing; it fills libdpkg's one global package database; and it
 * reports malformed input through ohshit(), which ends the process unless
 * an error context was pushed.  libdpkg still judges what it is good at
 * here: names, architectures and versions (vo-version.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include "vo-deb822.h"
#include "vo-disk.h"

static void vo_field_free(VoField *f)
{
    g_free(f->name);
    g_free(f->value);
    g_free(f);
}

VoStanza *vo_stanza_new(void)
{
    VoStanza *st = g_new0(VoStanza, 1);

    st->fields = g_ptr_array_new_with_free_func((GDestroyNotify)vo_field_free);
    return st;
}

void vo_stanza_free(VoStanza *st)
{
    if (st) {
        g_ptr_array_unref(st->fields);
        g_free(st->raw);
        g_free(st);
    }
}

VoStanza *vo_stanza_copy(const VoStanza *st)
{
    VoStanza *copy = vo_stanza_new();

    for (guint i = 0; i < st->fields->len; i++) {
        VoField *f = st->fields->pdata[i];

        vo_stanza_set(copy, f->name, f->value);
    }
    copy->raw = g_strdup(st->raw);
    return copy;
}

static VoField *vo_stanza_find(const VoStanza *st, const char *name)
{
    for (guint i = 0; i < st->fields->len; i++) {
        VoField *f = st->fields->pdata[i];

        if (g_ascii_strcasecmp(f->name, name) == 0) {
            return f;
        }
    }
    return NULL;
}

const char *vo_stanza_get(const VoStanza *st, const char *name)
{
    VoField *f = vo_stanza_find(st, name);

    return f ? f->value : NULL;
}

void vo_stanza_set(VoStanza *st, const char *name, const char *value)
{
    VoField *f = vo_stanza_find(st, name);

    g_clear_pointer(&st->raw, g_free);
    if (f) {
        g_free(f->value);
        f->value = g_strdup(value);
        return;
    }
    f = g_new0(VoField, 1);
    f->name = g_strdup(name);
    f->value = g_strdup(value);
    g_ptr_array_add(st->fields, f);
}

void vo_stanza_remove(VoStanza *st, const char *name)
{
    VoField *f = vo_stanza_find(st, name);

    if (f) {
        g_clear_pointer(&st->raw, g_free);
        g_ptr_array_remove(st->fields, f);
    }
}

void vo_stanza_write(const VoStanza *st, GString *out)
{
    if (st->raw) {
        g_string_append(out, st->raw);
        return;
    }
    for (guint i = 0; i < st->fields->len; i++) {
        VoField *f = st->fields->pdata[i];

        g_string_append_printf(out, "%s:%s%s\n", f->name,
                               f->value[0] == '\n' ? "" : " ", f->value);
    }
}

static gboolean vo_deb822_corrupt(GError **error, const char *what,
                                  guint line, const char *why)
{
    g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT, "%s, line %u: %s", what,
                line, why);
    return FALSE;
}

gboolean vo_deb822_parse(const char *text, gsize len, const char *what,
                         guint max_stanzas, GPtrArray *out, GError **error)
{
    g_autoptr(VoStanza) cur = NULL;
    const char *p = text, *end = text + len, *start = NULL;
    VoField *last = NULL;
    guint line = 0, count = 0;

    if (memchr(text, '\0', len)) {
        return vo_deb822_corrupt(error, what, 0, "holds a NUL byte");
    }
    while (p <= end) {
        const char *nl = p < end ? memchr(p, '\n', end - p) : NULL;
        const char *eol = nl ? nl : end;
        const char *colon;

        line++;
        if (eol == p) {
            /* A blank line (or the end) closes the paragraph. */
            if (cur) {
                cur->raw = g_strndup(start, p - start);
                g_ptr_array_add(out, g_steal_pointer(&cur));
                last = NULL;
            }
            if (!nl) {
                break;
            }
            p = nl + 1;
            continue;
        }
        if (*p == ' ' || *p == '\t') {
            if (!last) {
                return vo_deb822_corrupt(error, what, line,
                                         "continuation line without a "
                                         "field");
            }
            {
                g_autofree char *more = g_strndup(p, eol - p);
                char *value = g_strconcat(last->value, "\n", more, NULL);

                g_free(last->value);
                last->value = value;
            }
        } else {
            colon = memchr(p, ':', eol - p);
            if (!colon || colon == p) {
                return vo_deb822_corrupt(error, what, line,
                                         "not a \"Field: value\" line");
            }
            for (const char *c = p; c < colon; c++) {
                if (*c <= ' ' || *c > '~') {
                    return vo_deb822_corrupt(error, what, line,
                                             "bad field name");
                }
            }
            if (!cur) {
                if (++count > max_stanzas) {
                    return vo_deb822_corrupt(error, what, line,
                                             "too many paragraphs");
                }
                cur = vo_stanza_new();
                start = p;
            }
            {
                const char *v = colon + 1;
                g_autofree char *name = g_strndup(p, colon - p);

                while (v < eol && (*v == ' ' || *v == '\t')) {
                    v++;
                }
                if (vo_stanza_get(cur, name)) {
                    return vo_deb822_corrupt(error, what, line,
                                             "repeated field");
                }
                last = g_new0(VoField, 1);
                last->name = g_steal_pointer(&name);
                last->value = g_strchomp(g_strndup(v, eol - v));
                g_ptr_array_add(cur->fields, last);
            }
        }
        if (!nl) {
            /* No final newline: close the last paragraph next round. */
            p = end;
            if (cur) {
                cur->raw = g_strdup_printf("%.*s\n", (int)(end - start),
                                           start);
                g_ptr_array_add(out, g_steal_pointer(&cur));
            }
            break;
        }
        p = nl + 1;
    }
    return TRUE;
}
