/*
 * vmaugment host side: the store's audit log (see store.h).
 *
 * One JSON object per line, appended with one write() on an O_APPEND
 * descriptor.  Guests cause most records (every refusal is one), so each
 * actor has a budget per action and window: beyond it, records are
 * counted per action and decision, and the count is written as one record
 * when the window ends or the actor leaves.  Nothing is dropped without
 * being counted, and a flood costs the disk one line per action and
 * window beyond the budget.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "store-private.h"

/* Records of one action and decision held back in a window. */
typedef struct {
    gchar *action;
    gboolean refused;
    guint64 count;
    gchar *name;                    /* of the last one */
    gchar *version;
    gchar *reason;
} AuditHeld;

typedef struct {
    gint64 window_start;
    GHashTable *written;            /* action -> records in this window */
    GPtrArray *held;                /* of AuditHeld */
} AuditSource;

static void audit_held_free(AuditHeld *h)
{
    g_free(h->action);
    g_free(h->name);
    g_free(h->version);
    g_free(h->reason);
    g_free(h);
}

static void audit_source_free(AuditSource *src)
{
    g_hash_table_unref(src->written);
    g_ptr_array_unref(src->held);
    g_free(src);
}

void store_audit_init(VmaugStore *store)
{
    store->audit_fd = -1;
    store->audit_sources = g_hash_table_new_full(
        g_str_hash, g_str_equal, g_free, (GDestroyNotify)audit_source_free);
    /* Unlimited until told otherwise: the host owner's own tools are
     * not the flood this is against; the helper sets its limits. */
    store->audit_limits.burst = G_MAXUINT;
    store->audit_limits.window_us = (gint64)VMAUG_STORE_AUDIT_WINDOW_S *
                                    G_USEC_PER_SEC;
}

void vmaug_store_set_audit_limits(VmaugStore *store,
                                  const VmaugAuditLimits *limits)
{
    store->audit_limits = *limits;
}

static void audit_write(VmaugStore *store, const gchar *actor,
                        const gchar *action, const gchar *name,
                        const gchar *version, const gchar *sha256,
                        const gchar *signer, gboolean refused,
                        const gchar *reason, guint64 count)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree gchar *ts = g_date_time_format_iso8601(now);
    g_autofree gchar *line = NULL;
    gsize len;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "time");
    json_builder_add_string_value(b, ts);
    json_builder_set_member_name(b, "actor");
    json_builder_add_string_value(b, actor != NULL ? actor : "");
    json_builder_set_member_name(b, "action");
    json_builder_add_string_value(b, action);
    json_builder_set_member_name(b, "module");
    json_builder_add_string_value(b, name != NULL ? name : "");
    json_builder_set_member_name(b, "version");
    json_builder_add_string_value(b, version != NULL ? version : "");
    json_builder_set_member_name(b, "sha256");
    json_builder_add_string_value(b, sha256 != NULL ? sha256 : "");
    json_builder_set_member_name(b, "signer");
    json_builder_add_string_value(b, signer != NULL ? signer : "");
    json_builder_set_member_name(b, "decision");
    json_builder_add_string_value(b, refused ? "refuse" : "accept");
    json_builder_set_member_name(b, "reason");
    json_builder_add_string_value(b, reason != NULL ? reason : "");
    if (count > 0) {
        json_builder_set_member_name(b, "count");
        json_builder_add_int_value(b, (gint64)count);
    }
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    line = json_generator_to_data(gen, &len);
    line = g_realloc(line, len + 2);
    line[len++] = '\n';
    line[len] = '\0';

    if (refused) {
        g_message("refused %s %s %s: %s", action, name != NULL ? name : "",
                  version != NULL ? version : "", reason);
    } else {
        g_info("accepted %s %s %s", action, name != NULL ? name : "",
               version != NULL ? version : "");
    }
    /*
     * One write() with O_APPEND: records never interleave or overwrite.
     * Decisions that change the store or refuse something are synced;
     * routine loads are not, to keep them fast (a crash loses at most the
     * record of loads that left no trace).
     */
    if (store->audit_fd < 0 ||
        write(store->audit_fd, line, len) != (ssize_t)len ||
        ((refused || g_strcmp0(action, "load") != 0) &&
         fdatasync(store->audit_fd) < 0)) {
        g_warning("audit log write failed: %s", g_strerror(errno));
    }
}

/* Write what @src held back, and start a new window at @now. */
static void audit_source_flush(VmaugStore *store, const gchar *actor,
                               AuditSource *src, gint64 now)
{
    for (guint i = 0; i < src->held->len; i++) {
        AuditHeld *h = g_ptr_array_index(src->held, i);
        g_autofree gchar *reason = NULL;

        reason = h->refused ?
            g_strdup_printf("%" G_GUINT64_FORMAT " more refusals of %s "
                            "not written one by one; the last: %s",
                            h->count, h->action, h->reason) :
            g_strdup_printf("%" G_GUINT64_FORMAT " more of %s not written "
                            "one by one", h->count, h->action);
        audit_write(store, actor, h->action, h->name, h->version, NULL, NULL,
                    h->refused, reason, h->count);
    }
    g_ptr_array_set_size(src->held, 0);
    g_hash_table_remove_all(src->written);
    src->window_start = now;
}

/*
 * Accepted records of what changes the store are bounded by the signed
 * packages there are, and those of lifecycle handlers by the handlers'
 * own work; refusals, and everything else, a guest can repeat at will.
 */
static gboolean audit_is_limited(const gchar *action, const GError *error)
{
    return error != NULL ||
           (g_strcmp0(action, "install") != 0 &&
            g_strcmp0(action, "upload-commit") != 0 &&
            g_strcmp0(action, "repair") != 0 &&
            !g_str_has_prefix(action, "lifecycle-"));
}

void store_audit_accept_note(VmaugStore *store, const gchar *actor,
                             const gchar *action, const gchar *name,
                             const gchar *version, const gchar *sha256,
                             const gchar *signer, const gchar *note)
{
    /* Only for actions never held back (audit_is_limited()). */
    g_return_if_fail(!audit_is_limited(action, NULL));
    audit_write(store, actor, action, name, version, sha256, signer, FALSE,
                note, 0);
}

void vmaug_store_audit(VmaugStore *store, const gchar *actor,
                       const gchar *action, const gchar *name,
                       const gchar *version, const gchar *sha256,
                       const gchar *signer, const GError *error)
{
    const gchar *key = actor != NULL ? actor : "";
    gint64 now = store_now(store);
    AuditSource *src;
    AuditHeld *held = NULL;
    guint written;

    if (!audit_is_limited(action, error) ||
        store->audit_limits.burst == G_MAXUINT) {
        audit_write(store, actor, action, name, version, sha256, signer,
                    error != NULL, error != NULL ? error->message : NULL, 0);
        return;
    }
    src = g_hash_table_lookup(store->audit_sources, key);
    if (src == NULL) {
        src = g_new0(AuditSource, 1);
        src->written = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                             NULL);
        src->held = g_ptr_array_new_with_free_func(
            (GDestroyNotify)audit_held_free);
        src->window_start = now;
        g_hash_table_insert(store->audit_sources, g_strdup(key), src);
    } else if (now - src->window_start >= store->audit_limits.window_us) {
        audit_source_flush(store, actor, src, now);
    }
    /* A budget per action: a flood of one kind hides no other. */
    written = GPOINTER_TO_UINT(g_hash_table_lookup(src->written, action));
    if (written < store->audit_limits.burst) {
        g_hash_table_insert(src->written, g_strdup(action),
                            GUINT_TO_POINTER(written + 1));
        audit_write(store, actor, action, name, version, sha256, signer,
                    error != NULL, error != NULL ? error->message : NULL, 0);
        return;
    }
    for (guint i = 0; i < src->held->len && held == NULL; i++) {
        AuditHeld *h = g_ptr_array_index(src->held, i);

        if (g_strcmp0(h->action, action) == 0 &&
            h->refused == (error != NULL)) {
            held = h;
        }
    }
    if (held == NULL) {
        held = g_new0(AuditHeld, 1);
        held->action = g_strdup(action);
        held->refused = error != NULL;
        g_ptr_array_add(src->held, held);
    }
    held->count++;
    g_free(held->name);
    held->name = g_strdup(name);
    g_free(held->version);
    held->version = g_strdup(version);
    g_free(held->reason);
    held->reason = g_strdup(error != NULL ? error->message : NULL);
}

void vmaug_store_audit_flush(VmaugStore *store, const gchar *actor)
{
    gint64 now = store_now(store);
    GHashTableIter it;
    const gchar *key;
    AuditSource *src;

    g_hash_table_iter_init(&it, store->audit_sources);
    while (g_hash_table_iter_next(&it, (gpointer *)&key, (gpointer *)&src)) {
        if (actor != NULL ? g_strcmp0(actor, key) != 0 :
            now - src->window_start < store->audit_limits.window_us) {
            continue;
        }
        audit_source_flush(store, key, src, now);
        /* An actor that went quiet (or away) needs no budget kept. */
        g_hash_table_iter_remove(&it);
    }
}

gboolean store_audit_open(VmaugStore *store, GError **error)
{
    g_autofree gchar *path = g_build_filename(store->dir, "audit.log", NULL);
    int flags = 0;

    store->audit_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
                           O_NOFOLLOW, 0640);
    if (store->audit_fd < 0) {
        return store_io_error(error, "cannot open", path);
    }
    /* Where the file system and our privileges allow, make the log
     * append-only for everyone, us included (chattr +a). */
    if (ioctl(store->audit_fd, FS_IOC_GETFLAGS, &flags) == 0 &&
        !(flags & FS_APPEND_FL)) {
        flags |= FS_APPEND_FL;
        if (ioctl(store->audit_fd, FS_IOC_SETFLAGS, &flags) < 0) {
            g_debug("audit log stays without FS_APPEND_FL: %s",
                    g_strerror(errno));
        }
    }
    return TRUE;
}

void store_audit_close(VmaugStore *store)
{
    GHashTableIter it;
    const gchar *key;
    AuditSource *src;

    /* Every count held back is written before the log closes. */
    g_hash_table_iter_init(&it, store->audit_sources);
    while (g_hash_table_iter_next(&it, (gpointer *)&key, (gpointer *)&src)) {
        audit_source_flush(store, key, src, store_now(store));
    }
    g_hash_table_unref(store->audit_sources);
    if (store->audit_fd >= 0) {
        close(store->audit_fd);
    }
}
