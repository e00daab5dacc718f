/*
 * vmaugment-helper: what a module's spool and UI requests write into its
 * VM's area (<area>/spool, <area>/ui), and hand to CUPS.  Titles,
 * documents and UI JSON are a module's words: hostile, bounded and
 * checked before anything is written; docs/modules.rst describes the
 * files.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "module-brokers.h"

gint32 module_brokers_spool(Module *m, const gchar *title,
                            const guint8 *data, gsize len, gchar **job_out)
{
    Helper *h = m->helper;
    g_autoptr(GError) error = NULL;
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree gchar *job = g_strdup_printf("%" G_GINT64_FORMAT "-%d-%"
                                            G_GUINT64_FORMAT,
                                            g_get_real_time() / 1000,
                                            (int)getpid(), ++h->jobs);
    g_autofree gchar *dir = NULL;
    g_autofree gchar *doc = NULL;
    g_autofree gchar *meta = NULL;
    g_autofree gchar *ts = g_date_time_format_iso8601(now);
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree gchar *json = NULL;
    g_autofree gchar *safe_title = g_utf8_make_valid(title, -1);

    /* The description is small; the document counts against the VM's
     * spool quota before a byte of it is written. */
    if (!vmaug_vm_area_spool_admit(m->area, len, &error)) {
        g_message("module %s: spool: %s", m->name, error->message);
        return -EDQUOT;
    }
    dir = vmaug_vm_area_subdir(m->area, "spool", &error);
    if (dir == NULL) {
        g_warning("spool: %s", error->message);
        return -EIO;
    }
    doc = g_strconcat(dir, "/", job, ".data", NULL);
    meta = g_strconcat(dir, "/", job, ".json", NULL);
    /* The document first, its description last: a spool reader that sees
     * the .json finds the whole document. */
    if (!g_file_set_contents_full(doc, (const gchar *)data, len,
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0640,
                                  &error)) {
        g_warning("spool: %s", error->message);
        return -EIO;
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "job");
    json_builder_add_string_value(b, job);
    json_builder_set_member_name(b, "title");
    json_builder_add_string_value(b, safe_title);
    json_builder_set_member_name(b, "module");
    json_builder_add_string_value(b, m->name);
    json_builder_set_member_name(b, "image");
    json_builder_add_string_value(b, m->vm_name);
    json_builder_set_member_name(b, "vm");
    json_builder_add_string_value(b, vmaug_vm_area_get_id(m->area));
    json_builder_set_member_name(b, "size");
    json_builder_add_int_value(b, (gint64)len);
    json_builder_set_member_name(b, "time");
    json_builder_add_string_value(b, ts);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json = json_generator_to_data(gen, NULL);
    if (!g_file_set_contents_full(meta, json, -1,
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0640,
                                  &error)) {
        g_warning("spool: %s", error->message);
        return -EIO;
    }
    vmaug_vm_area_spool_added(m->area, len + strlen(json));
    if (h->cups_queue != NULL) {
        /* lp gets the document as an argument, never through a shell. */
        const gchar *argv[] = { "lp", "-d", h->cups_queue, "-t", safe_title,
                                "--", doc, NULL };

        if (!g_spawn_async(NULL, (gchar **)argv, NULL,
                           G_SPAWN_SEARCH_PATH |
                           G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL,
                           &error)) {
            g_warning("spool: lp: %s", error->message);
        }
    }
    g_message("module %s spooled job %s (%" G_GSIZE_FORMAT " bytes)",
              m->name, job, len);
    *job_out = g_steal_pointer(&job);
    return 0;
}

/* Elements one module may show at once. */
#define MODULE_BROKERS_MAX_UI   32

gint32 module_brokers_post_ui(Module *m, const gchar *json, gsize len)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(JsonParser) old = json_parser_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) all = NULL;
    g_autofree gchar *dir = g_build_filename(vmaug_vm_area_get_dir(m->area),
                                             "ui", NULL);
    g_autofree gchar *name = g_strconcat(m->name, ".json", NULL);
    g_autofree gchar *path = g_build_filename(dir, name, NULL);
    g_autofree gchar *out = NULL;
    g_autoptr(GError) error = NULL;
    JsonNode *root, *id;
    JsonObject *elements;

    /* Hostile JSON: no NUL, bounded, an object at the root with a string
     * "id" naming the element it adds or replaces. */
    if (len == 0 || memchr(json, 0, len) != NULL ||
        !json_parser_load_from_data(parser, json, len, NULL)) {
        return -EINVAL;
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root) ||
        (id = json_object_get_member(json_node_get_object(root),
                                     "id")) == NULL ||
        !JSON_NODE_HOLDS_VALUE(id) ||
        json_node_get_value_type(id) != G_TYPE_STRING ||
        strlen(json_node_get_string(id)) == 0 ||
        strlen(json_node_get_string(id)) > 64) {
        return -EINVAL;
    }
    g_clear_pointer(&dir, g_free);
    dir = vmaug_vm_area_subdir(m->area, "ui", &error);
    if (dir == NULL) {
        g_warning("ui: %s", error->message);
        return -EIO;
    }
    /* The admin interface reads every module's current elements here. */
    if (json_parser_load_from_file(old, path, NULL) &&
        json_parser_get_root(old) != NULL &&
        JSON_NODE_HOLDS_OBJECT(json_parser_get_root(old))) {
        all = json_node_copy(json_parser_get_root(old));
    } else {
        all = json_node_new(JSON_NODE_OBJECT);
        json_node_take_object(all, json_object_new());
    }
    elements = json_node_get_object(all);
    if (!json_object_has_member(elements, json_node_get_string(id)) &&
        json_object_get_size(elements) >= MODULE_BROKERS_MAX_UI) {
        return -ENOSPC;
    }
    json_object_set_member(elements, json_node_get_string(id),
                           json_node_copy(root));
    json_generator_set_root(gen, all);
    json_generator_set_pretty(gen, TRUE);
    out = json_generator_to_data(gen, NULL);
    if (!vmaug_store_write_file(path, out, strlen(out), &error)) {
        return -EIO;
    }
    g_message("module %s shows UI element %s", m->name,
              json_node_get_string(id));
    return 0;
}
