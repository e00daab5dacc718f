/*
 * vmaugment-admin: modules registered with an image (registrations,
 * register, unregister), through the sidecar next to the disk image
 * (registrations.h).  Only this tool pins a registration, sets the host
 * owner's configuration of a pinned module, or removes a pin: the helper
 * refuses all three to the guest and to QEMU.  A VM that names no image
 * keeps its registrations only while it is connected, in its own area of
 * the store: there is nothing of it for the host owner to edit offline.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <string.h>

#include "admin.h"
#include "registrations.h"

typedef struct {
    gchar *image;
    gchar *store;
    gboolean json;
} AdminRegs;

static void admin_regs_clear(AdminRegs *r)
{
    g_free(r->image);
    g_free(r->store);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(AdminRegs, admin_regs_clear)

/* Parse the options every registration command shares, and @extra. */
static gboolean admin_regs_parse(AdminRegs *r, const gchar *usage,
                                 const GOptionEntry *extra, gboolean json,
                                 int *argc, char ***argv)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new(usage);
    const GOptionEntry entries[] = {
        { "image", 'i', 0, G_OPTION_ARG_FILENAME, &r->image,
          "Disk image whose sidecar (<image>" VMAUG_REGS_SIDECAR_SUFFIX
          ") holds the registrations", "IMG" },
        { "store", 's', G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_FILENAME,
          &r->store, "Refused: a VM without an image keeps its "
          "registrations only while connected", "DIR" },
        { NULL }
    };

    g_option_context_add_main_entries(ctx, entries, NULL);
    /* admin_parse() sees @extra: register has a --version of its own. */
    if (!admin_parse(ctx, extra, json ? &r->json : NULL, argc, argv)) {
        return FALSE;
    }
    if (r->store != NULL) {
        /* Older helpers kept them in the store, shared by every VM that
         * named no image; nothing reads that file any more. */
        admin_parse_exit = admin_fail(ADMIN_EXIT_USAGE, "registrations are "
                                      "kept next to a disk image (--image "
                                      "IMG); a VM that names no image "
                                      "keeps its own only while it is "
                                      "connected");
        return FALSE;
    }
    if (r->image == NULL) {
        admin_parse_exit = admin_fail(ADMIN_EXIT_USAGE, "give --image IMG");
        return FALSE;
    }
    return TRUE;
}

static gchar *admin_regs_file(const AdminRegs *r)
{
    return vmaug_reg_sidecar_path(r->image);
}

/* The set, or an error that names the file it comes from; locked for
 * @update until it is freed. */
static VmaugRegSet *admin_regs_load(const AdminRegs *r, gboolean update,
                                    GError **error)
{
    g_autofree gchar *file = admin_regs_file(r);
    VmaugRegSet *set;

    /*
     * An image that is not there is a typo: its sidecar would
     * sit next to nothing, and listing it would show a reassuring nothing.
     */
    if (!g_file_test(r->image, G_FILE_TEST_EXISTS)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                    "no disk image %s", r->image);
        return NULL;
    }
    /* The helper never waits for the lock: holding it is brief. */
    if (update) {
        set = vmaug_reg_set_load_for_update(r->image, NULL,
                                            VMAUG_REGS_ADMIN_WAIT_MS, error);
    } else {
        set = vmaug_reg_set_load(r->image, NULL, error);
    }
    if (set == NULL && error != NULL && *error != NULL &&
        strstr((*error)->message, file) == NULL) {
        g_prefix_error(error, "%s: ", file);
    }
    return set;
}

static void admin_regs_json(const VmaugRegSet *set)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) root = NULL;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "file");
    json_builder_add_string_value(b, set->path);
    json_builder_set_member_name(b, "image");
    if (set->image != NULL) {
        json_builder_add_string_value(b, set->image);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "image_id");
    if (set->image_id != NULL) {
        json_builder_add_string_value(b, set->image_id);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "registrations");
    json_builder_begin_array(b);
    for (guint i = 0; i < set->regs->len; i++) {
        const VmaugRegistration *reg = g_ptr_array_index(set->regs, i);
        g_autofree gchar *events = vmaug_reg_events_to_string(reg->events);
        g_auto(GStrv) names = g_strsplit(events, ",", -1);

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, reg->name);
        json_builder_set_member_name(b, "version");
        if (reg->version != NULL && reg->version[0] != '\0') {
            json_builder_add_string_value(b, reg->version);
        } else {
            json_builder_add_null_value(b);
        }
        json_builder_set_member_name(b, "events");
        json_builder_begin_array(b);
        for (guint j = 0; names[j] != NULL; j++) {
            if (names[j][0] != '\0') {
                json_builder_add_string_value(b, names[j]);
            }
        }
        json_builder_end_array(b);
        json_builder_set_member_name(b, "required");
        json_builder_add_boolean_value(b,
                                       reg->flags & VMAUG_REG_F_REQUIRED);
        json_builder_set_member_name(b, "pinned");
        json_builder_add_boolean_value(b, reg->pinned);
        json_builder_set_member_name(b, "config");
        json_builder_begin_object(b);
        if (reg->config != NULL) {
            GHashTableIter it;
            gpointer key, value;

            g_hash_table_iter_init(&it, reg->config);
            while (g_hash_table_iter_next(&it, &key, &value)) {
                json_builder_set_member_name(b, key);
                json_builder_add_string_value(b, value);
            }
        }
        json_builder_end_object(b);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    admin_print_json(root);
}

static void admin_regs_print(const VmaugRegSet *set)
{
    g_autofree gchar *file = admin_printable(set->path, -1);

    g_print("%s", file);
    if (set->image_id != NULL) {
        g_autofree gchar *id = admin_printable(set->image_id, -1);

        g_print(" (image id %s)", id);
    }
    g_print(": %u registration%s\n", set->regs->len,
            set->regs->len == 1 ? "" : "s");
    if (set->regs->len == 0) {
        return;
    }
    g_print("%-16s %-10s %-9s %-7s %s\n", "NAME", "VERSION", "REQUIRED",
            "PINNED", "EVENTS");
    for (guint i = 0; i < set->regs->len; i++) {
        const VmaugRegistration *reg = g_ptr_array_index(set->regs, i);
        g_autofree gchar *events = vmaug_reg_events_to_string(reg->events);
        g_autoptr(GList) keys = NULL;

        g_print("%-16s %-10s %-9s %-7s %s\n", reg->name,
                reg->version != NULL && reg->version[0] != '\0' ?
                reg->version : "newest",
                reg->flags & VMAUG_REG_F_REQUIRED ? "yes" : "no",
                reg->pinned ? "yes" : "no", events);
        if (reg->config == NULL) {
            continue;
        }
        keys = g_list_sort(g_hash_table_get_keys(reg->config),
                           (GCompareFunc)strcmp);
        for (GList *l = keys; l != NULL; l = l->next) {
            /* The sidecar may come from anywhere: no control characters
             * reach the terminal. */
            g_autofree gchar *k = admin_printable(l->data, -1);
            g_autofree gchar *v = admin_printable(
                g_hash_table_lookup(reg->config, l->data), -1);

            g_print("  host config %s = %s\n", k, v);
        }
    }
}

int admin_cmd_registrations(int argc, char **argv)
{
    g_auto(AdminRegs) r = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = NULL;

    if (!admin_regs_parse(&r, "[list] - the modules registered with an "
                          "image", NULL, TRUE, &argc, &argv)) {
        return admin_parse_exit;
    }
    if (argc > 2 || (argc == 2 && g_strcmp0(argv[1], "list") != 0)) {
        return admin_fail(ADMIN_EXIT_USAGE, "registrations takes only "
                          "\"list\"");
    }
    set = admin_regs_load(&r, FALSE, &error);
    if (set == NULL) {
        return admin_fail_error(error);
    }
    if (r.json) {
        admin_regs_json(set);
    } else {
        admin_regs_print(set);
    }
    return ADMIN_EXIT_OK;
}

/* The host owner's KEY=VALUE and KEY of register --set, --unset. */
static gboolean admin_regs_config(VmaugRegSet *set, const gchar *name,
                                  GStrv sets, GStrv unsets, GError **error)
{
    for (guint i = 0; sets != NULL && sets[i] != NULL; i++) {
        /* KEY=VALUE, checked by the caller. */
        g_auto(GStrv) kv = g_strsplit(sets[i], "=", 2);

        if (!vmaug_reg_set_config(set, name, kv[0], kv[1], error)) {
            return FALSE;
        }
    }
    for (guint i = 0; unsets != NULL && unsets[i] != NULL; i++) {
        if (!vmaug_reg_set_config(set, name, unsets[i], NULL, error)) {
            return FALSE;
        }
    }
    return TRUE;
}

int admin_cmd_register(int argc, char **argv)
{
    g_auto(AdminRegs) r = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = NULL;
    g_autofree gchar *version = NULL;
    g_autofree gchar *events_text = NULL;
    g_autofree gchar *shown = NULL;
    g_auto(GStrv) sets = NULL;
    g_auto(GStrv) unsets = NULL;
    gboolean required = FALSE;
    gboolean pinned = FALSE;
    guint32 events = 0;
    const GOptionEntry extra[] = {
        { "version", 'V', 0, G_OPTION_ARG_STRING, &version,
          "Version to load (default: the newest the host has)", "V" },
        { "events", 'e', 0, G_OPTION_ARG_STRING, &events_text,
          "Lifecycle events it runs on: host-start, image-start, "
          "image-stop, host-stop, pause, resume (comma-separated)",
          "LIST" },
        { "required", 0, 0, G_OPTION_ARG_NONE, &required,
          "The image does not start without it", NULL },
        { "pinned", 0, 0, G_OPTION_ARG_NONE, &pinned,
          "The host owner's: the guest can neither remove nor change it",
          NULL },
        { "set", 0, 0, G_OPTION_ARG_STRING_ARRAY, &sets,
          "With --pinned: the module's KEY is VALUE, whatever the guest "
          "sets (repeatable)", "KEY=VALUE" },
        { "unset", 0, 0, G_OPTION_ARG_STRING_ARRAY, &unsets,
          "With --pinned: remove the host owner's KEY (repeatable)", "KEY" },
        { NULL }
    };

    if (!admin_regs_parse(&r, "NAME - register a module with an image",
                          extra, FALSE, &argc, &argv)) {
        return admin_parse_exit;
    }
    if (argc != 2) {
        return admin_fail(ADMIN_EXIT_USAGE, "register takes one module "
                          "NAME");
    }
    if (events_text == NULL) {
        return admin_fail(ADMIN_EXIT_USAGE, "--events is required "
                          "(for example --events image-start,image-stop)");
    }
    if (!vmaug_reg_events_from_string(events_text, &events, &error)) {
        return admin_fail(ADMIN_EXIT_USAGE, "--events: %s", error->message);
    }
    if (!pinned && (sets != NULL || unsets != NULL)) {
        return admin_fail(ADMIN_EXIT_USAGE, "--set and --unset need "
                          "--pinned: the guest could drop the configuration "
                          "of a registration it may remove");
    }
    for (guint i = 0; sets != NULL && sets[i] != NULL; i++) {
        if (strchr(sets[i], '=') == NULL) {
            return admin_fail(ADMIN_EXIT_USAGE, "--set %s: not KEY=VALUE",
                              sets[i]);
        }
    }
    set = admin_regs_load(&r, TRUE, &error);
    if (set == NULL) {
        return admin_fail_error(error);
    }
    /* A pin is removed on purpose (unregister), never by a typo. */
    if (!pinned && vmaug_reg_set_find(set, argv[1]) != NULL &&
        vmaug_reg_set_find(set, argv[1])->pinned) {
        return admin_fail(ADMIN_EXIT_REFUSED, "%s is pinned: register it "
                          "with --pinned, or unregister it first", argv[1]);
    }
    if (!(pinned ? vmaug_reg_set_pin : vmaug_reg_set_put)(
            set, argv[1], version, events,
            required ? VMAUG_REG_F_REQUIRED : 0, &error) ||
        !admin_regs_config(set, argv[1], sets, unsets, &error) ||
        !vmaug_reg_set_save(set, &error)) {
        return admin_fail_error(error);
    }
    shown = vmaug_reg_events_to_string(events);
    g_print("registered %s %s for %s%s%s in %s\n", argv[1],
            version != NULL && version[0] != '\0' ? version : "(newest)",
            shown, required ? " (required)" : "",
            pinned ? " (pinned)" : "", set->path);
    return ADMIN_EXIT_OK;
}

int admin_cmd_unregister(int argc, char **argv)
{
    g_auto(AdminRegs) r = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRegSet) set = NULL;

    if (!admin_regs_parse(&r, "NAME - remove a module's registration",
                          NULL, FALSE, &argc, &argv)) {
        return admin_parse_exit;
    }
    if (argc != 2) {
        return admin_fail(ADMIN_EXIT_USAGE, "unregister takes one module "
                          "NAME");
    }
    /* The host owner's tool removes a pin too. */
    set = admin_regs_load(&r, TRUE, &error);
    if (set == NULL || !vmaug_reg_set_remove_any(set, argv[1], &error) ||
        !vmaug_reg_set_save(set, &error)) {
        return admin_fail_error(error);
    }
    g_print("unregistered %s from %s\n", argv[1], set->path);
    return ADMIN_EXIT_OK;
}
