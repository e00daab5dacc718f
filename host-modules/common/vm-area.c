/*
 * vmaugment host side: one VM's own area of a module store (see
 * vm-area.h).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "vm-area.h"

/* Bytes of a name kept in an area's id. */
#define VM_AREA_NAME_MAX        40
/* Largest configuration file read: 256 keys of 4 KiB values, base64. */
#define VM_AREA_CONFIG_FILE_MAX (4 * 1024 * 1024)

struct _VmaugVmArea {
    gint ref;
    VmaugStore *store;
    gchar *id;
    gchar *dir;
    gchar *image;                   /* NULL: the connection's own area */
    gchar *device_name;             /* for the audit */
    VmaugVmQuota quota;
    /* State usage, measured when stale, then counted as files appear. */
    gboolean state_known;
    guint64 state_bytes;
    GHashTable *state_files;        /* module -> guint count */
    /* Spool usage: the helper is its only writer. */
    gboolean spool_known;
    guint64 spool_bytes;
};

static gboolean vm_area_io_error(GError **error, const gchar *what,
                                 const gchar *path)
{
    int saved = errno;

    g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO, "%s %s: %s",
                what, path, g_strerror(saved));
    return FALSE;
}

/* A name fit for a directory: what is not [A-Za-z0-9._-] becomes '_'. */
static gchar *vm_area_safe_name(const gchar *name)
{
    gchar *s = g_strndup(name != NULL && *name != '\0' ? name : "vm",
                         VM_AREA_NAME_MAX);

    g_strcanon(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
               "0123456789._-", '_');
    /* Never "." or "..", never a hidden file. */
    if (s[0] == '.') {
        s[0] = '_';
    }
    return s;
}

gchar *vmaug_vm_area_id_for_image(const gchar *image)
{
    g_autofree gchar *base = g_path_get_basename(image);
    g_autofree gchar *safe = vm_area_safe_name(base);
    g_autofree gchar *hash = g_compute_checksum_for_string(G_CHECKSUM_SHA256,
                                                           image, -1);

    return g_strdup_printf("image-%s-%.16s", safe, hash);
}

static void vm_area_free(VmaugVmArea *area)
{
    g_hash_table_unref(area->state_files);
    g_free(area->id);
    g_free(area->dir);
    g_free(area->image);
    g_free(area->device_name);
    g_free(area);
}

VmaugVmArea *vmaug_vm_area_new(VmaugStore *store, const gchar *image,
                               const gchar *device_name,
                               const VmaugVmQuota *quota)
{
    VmaugVmArea *area = g_new0(VmaugVmArea, 1);

    area->ref = 1;
    area->store = store;
    area->quota = *quota;
    area->device_name = g_strdup(device_name);
    area->state_files = g_hash_table_new_full(g_str_hash, g_str_equal,
                                              g_free, NULL);
    if (image != NULL) {
        area->image = g_strdup(image);
        area->id = vmaug_vm_area_id_for_image(image);
    } else {
        g_autofree gchar *safe = vm_area_safe_name(device_name);

        /* Nobody can ask for this area again, nor guess it. */
        area->id = g_strdup_printf(VMAUG_STORE_EPHEMERAL_VM "%s-%08x%08x",
                                   safe, g_random_int(), g_random_int());
    }
    area->dir = g_build_filename(vmaug_store_get_dir(store),
                                 VMAUG_STORE_VMS_DIR, area->id, NULL);
    return area;
}

/*
 * The area's directory is made when something is first kept there: a VM
 * that keeps nothing leaves nothing behind, and what a refused request
 * would have changed stays as it was.
 */
static gboolean vm_area_ensure(VmaugVmArea *area, GError **error)
{
    g_autofree gchar *info = NULL;
    g_autofree gchar *want = NULL;
    g_autofree gchar *have = NULL;

    if (g_mkdir_with_parents(area->dir, 0750) < 0) {
        return vm_area_io_error(error, "cannot create", area->dir);
    }
    if (area->image == NULL) {
        return TRUE;
    }
    /* For the host owner, who sees only a hash in the name. */
    info = g_build_filename(area->dir, "image", NULL);
    want = g_strconcat(area->image, "\n", NULL);
    if (g_file_get_contents(info, &have, NULL, NULL) &&
        g_strcmp0(have, want) == 0) {
        return TRUE;
    }
    return vmaug_store_write_file(info, want, strlen(want), error);
}

VmaugVmArea *vmaug_vm_area_ref(VmaugVmArea *area)
{
    area->ref++;
    return area;
}

void vmaug_vm_area_unref(VmaugVmArea *area)
{
    if (area == NULL || --area->ref > 0) {
        return;
    }
    if (area->image == NULL && area->id != NULL) {
        /* Nobody can name this VM again: what it began is void, what it
         * kept is gone, what it printed stays for the host owner. */
        vmaug_store_upload_release(area->store, area->id, area->device_name);
        vmaug_store_remove_tree(area->dir, "spool");
    }
    vm_area_free(area);
}

const gchar *vmaug_vm_area_get_id(VmaugVmArea *area)
{
    return area->id;
}

const gchar *vmaug_vm_area_get_dir(VmaugVmArea *area)
{
    return area->dir;
}

const gchar *vmaug_vm_area_get_image(VmaugVmArea *area)
{
    return area->image;
}

VmaugStore *vmaug_vm_area_get_store(VmaugVmArea *area)
{
    return area->store;
}

gchar *vmaug_vm_area_subdir(VmaugVmArea *area, const gchar *sub,
                            GError **error)
{
    g_autofree gchar *path = g_build_filename(area->dir, sub, NULL);

    if (!vm_area_ensure(area, error)) {
        return NULL;
    }
    if (g_mkdir_with_parents(path, 0750) < 0) {
        vm_area_io_error(error, "cannot create", path);
        return NULL;
    }
    return g_steal_pointer(&path);
}

/* Bytes of the regular files directly in @dir (and, with @depth 2, in its
 * subdirectories); with @files, how many entries each subdirectory has. */
static guint64 vm_area_usage(const gchar *dir, guint depth,
                             GHashTable *files)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const gchar *n;
    guint64 total = 0;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        g_autofree gchar *p = g_build_filename(dir, n, NULL);
        GStatBuf st;

        if (g_lstat(p, &st) < 0) {
            continue;
        }
        if (S_ISREG(st.st_mode)) {
            total += st.st_size;
        } else if (S_ISDIR(st.st_mode) && depth > 1) {
            g_autoptr(GDir) sd = g_dir_open(p, 0, NULL);
            guint count = 0;

            while (sd != NULL && g_dir_read_name(sd) != NULL) {
                count++;
            }
            if (files != NULL) {
                g_hash_table_insert(files, g_strdup(n),
                                    GUINT_TO_POINTER(count));
            }
            total += vm_area_usage(p, depth - 1, NULL);
        }
    }
    return total;
}

/* ---- Configuration ---- */

static gboolean vm_area_config_args_ok(const gchar *module, const gchar *key,
                                       GError **error)
{
    if (!vmaug_name_is_valid(module) || !vmaug_config_key_is_valid(key)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid module or key");
        return FALSE;
    }
    return TRUE;
}

static gchar *vm_area_config_path(VmaugVmArea *area, const gchar *module,
                                  VmaugConfigSpace space)
{
    /* Module names have no '.': the two files cannot be confused. */
    g_autofree gchar *name = g_strconcat(module,
                                         space == VMAUG_CONFIG_GUEST ?
                                         ".guest.json" : ".json", NULL);

    return g_build_filename(area->dir, "config", name, NULL);
}

/* The namespace's keys; an unreadable file counts as empty (it is ours,
 * and rewritten whole at the next set). */
static JsonObject *vm_area_config_load(VmaugVmArea *area, const gchar *module,
                                       VmaugConfigSpace space)
{
    g_autofree gchar *path = vm_area_config_path(area, module, space);
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GBytes) blob = NULL;
    JsonNode *root;

    blob = vmaug_trust_read_file(path, VM_AREA_CONFIG_FILE_MAX, NULL);
    if (blob == NULL ||
        !vmaug_json_depth_ok(g_bytes_get_data(blob, NULL),
                             g_bytes_get_size(blob), 2) ||
        !json_parser_load_from_data(parser, g_bytes_get_data(blob, NULL),
                                    g_bytes_get_size(blob), NULL) ||
        (root = json_parser_get_root(parser)) == NULL ||
        !JSON_NODE_HOLDS_OBJECT(root)) {
        return json_object_new();
    }
    return json_object_ref(json_node_get_object(root));
}

/* The host owner's @key of @module, from the VM's registrations. */
static gboolean vm_area_config_host(VmaugVmArea *area, const gchar *module,
                                    const gchar *key, GBytes **value,
                                    GError **error)
{
    g_autoptr(VmaugRegSet) set = NULL;
    const gchar *text;

    /* A VM without an image has only the registrations its guest made. */
    if (area->image != NULL) {
        set = vmaug_reg_set_load(area->image, NULL, error);
        if (set == NULL) {
            return FALSE;
        }
        text = vmaug_reg_set_host_config(set, module, key);
        if (text != NULL) {
            *value = g_bytes_new(text, strlen(text));
            return TRUE;
        }
    }
    g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                "no host configuration %s for %s", key, module);
    return FALSE;
}

gboolean vmaug_vm_area_config_get(VmaugVmArea *area, const gchar *module,
                                  VmaugConfigSpace space, const gchar *key,
                                  GBytes **value, GError **error)
{
    g_autoptr(JsonObject) o = NULL;
    const gchar *text;
    guchar *raw;
    gsize len;

    if (!vm_area_config_args_ok(module, key, error)) {
        return FALSE;
    }
    if (space == VMAUG_CONFIG_HOST) {
        return vm_area_config_host(area, module, key, value, error);
    }
    o = vm_area_config_load(area, module, space);
    text = vmaug_json_string(o, key);
    if (text == NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "no configuration %s for %s", key, module);
        return FALSE;
    }
    raw = g_base64_decode(text, &len);
    if (len > VMAUG_MAX_CONFIG_VALUE) {
        g_free(raw);
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "stored value too big");
        return FALSE;
    }
    *value = g_bytes_new_take(raw, len);
    return TRUE;
}

gboolean vmaug_vm_area_config_set_ok(const gchar *module, const gchar *key,
                                     gsize len, GError **error)
{
    if (!vm_area_config_args_ok(module, key, error)) {
        return FALSE;
    }
    if (len > VMAUG_MAX_CONFIG_VALUE) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "value of %" G_GSIZE_FORMAT " bytes, at most %u", len,
                    VMAUG_MAX_CONFIG_VALUE);
        return FALSE;
    }
    return TRUE;
}

gboolean vmaug_vm_area_config_set(VmaugVmArea *area, const gchar *module,
                                  VmaugConfigSpace space, const gchar *key,
                                  const void *value, gsize len,
                                  GError **error)
{
    g_autoptr(JsonObject) o = NULL;
    g_autoptr(JsonNode) root = json_node_new(JSON_NODE_OBJECT);
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree gchar *dir = NULL;
    g_autofree gchar *path = NULL;
    g_autofree gchar *json = NULL;
    g_autofree gchar *b64 = NULL;
    GStatBuf st;
    guint64 total, old = 0;

    if (!vmaug_vm_area_config_set_ok(module, key, len, error)) {
        return FALSE;
    }
    if (space == VMAUG_CONFIG_HOST) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "the host owner's configuration is kept with the "
                    "registration");
        return FALSE;
    }
    if (space == VMAUG_CONFIG_GUEST) {
        g_autoptr(GBytes) host = NULL;
        g_autoptr(GError) local = NULL;

        /* What the host owner set is not the guest's to change, and the
         * module would not read it anyway: say so. */
        if (vm_area_config_host(area, module, key, &host, &local)) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                        "%s of %s is set by the host owner", key, module);
            return FALSE;
        }
        if (!g_error_matches(local, VMAUG_HOST_ERROR,
                             VMAUG_HOST_ERROR_NOT_FOUND)) {
            g_propagate_error(error, g_steal_pointer(&local));
            return FALSE;
        }
    }
    dir = vmaug_vm_area_subdir(area, "config", error);
    if (dir == NULL) {
        return FALSE;
    }
    o = vm_area_config_load(area, module, space);
    if (!json_object_has_member(o, key) &&
        json_object_get_size(o) >= VMAUG_VM_CONFIG_MAX_KEYS) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "too many configuration keys for %s", module);
        return FALSE;
    }
    b64 = g_base64_encode(value, len);
    json_object_set_string_member(o, key, b64);
    json_node_set_object(root, o);
    json_generator_set_root(gen, root);
    json = json_generator_to_data(gen, NULL);
    path = vm_area_config_path(area, module, space);
    /* The quota counts what is on disk, this file as it would be. */
    if (g_lstat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        old = st.st_size;
    }
    total = vm_area_usage(dir, 1, NULL) - old + strlen(json);
    if (total > area->quota.config_bytes) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "this VM's configuration would take %" G_GUINT64_FORMAT
                    " bytes, more than the %" G_GUINT64_FORMAT " allowed",
                    total, area->quota.config_bytes);
        return FALSE;
    }
    return vmaug_store_write_file(path, json, strlen(json), error);
}

/* ---- State ---- */

void vmaug_vm_area_state_stale(VmaugVmArea *area)
{
    area->state_known = FALSE;
}

gboolean vmaug_vm_area_state_admit(VmaugVmArea *area, const gchar *module,
                                   gboolean create, GError **error)
{
    guint files;

    if (!area->state_known) {
        g_autofree gchar *dir = g_build_filename(area->dir, "state", NULL);

        g_hash_table_remove_all(area->state_files);
        area->state_bytes = vm_area_usage(dir, 2, area->state_files);
        area->state_known = TRUE;
    }
    if (area->state_bytes >= area->quota.state_bytes) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "this VM's state holds %" G_GUINT64_FORMAT " bytes, "
                    "its quota is %" G_GUINT64_FORMAT, area->state_bytes,
                    area->quota.state_bytes);
        return FALSE;
    }
    files = GPOINTER_TO_UINT(g_hash_table_lookup(area->state_files, module));
    if (create && files >= VMAUG_VM_STATE_MAX_FILES) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "%s keeps %u files, the most it may", module, files);
        return FALSE;
    }
    return TRUE;
}

void vmaug_vm_area_state_created(VmaugVmArea *area, const gchar *module)
{
    guint files;

    if (!area->state_known) {
        return;
    }
    files = GPOINTER_TO_UINT(g_hash_table_lookup(area->state_files, module));
    g_hash_table_insert(area->state_files, g_strdup(module),
                        GUINT_TO_POINTER(files + 1));
}

/* ---- Spool ---- */

gboolean vmaug_vm_area_spool_admit(VmaugVmArea *area, guint64 len,
                                   GError **error)
{
    /* Measured once, and again before refusing: the host owner may have
     * taken documents away since. */
    for (guint pass = 0; pass < 2; pass++) {
        if (!area->spool_known || pass > 0) {
            g_autofree gchar *dir = g_build_filename(area->dir, "spool",
                                                     NULL);

            area->spool_bytes = vm_area_usage(dir, 1, NULL);
            area->spool_known = TRUE;
        }
        if (area->spool_bytes + len <= area->quota.spool_bytes) {
            return TRUE;
        }
    }
    g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                "this VM's spool would hold %" G_GUINT64_FORMAT " bytes, "
                "more than the %" G_GUINT64_FORMAT " allowed",
                area->spool_bytes + len, area->quota.spool_bytes);
    return FALSE;
}

void vmaug_vm_area_spool_added(VmaugVmArea *area, guint64 len)
{
    area->spool_bytes += len;
}

/* ---- Registrations ---- */

VmaugRegSet *vmaug_vm_area_regs_load(VmaugVmArea *area, GError **error)
{
    /* A VM without an image keeps them here: the set may be saved. */
    if (area->image == NULL && !vm_area_ensure(area, error)) {
        return NULL;
    }
    return vmaug_reg_set_load(area->image, area->dir, error);
}

VmaugRegSet *vmaug_vm_area_regs_load_for_update(VmaugVmArea *area,
                                                GError **error)
{
    if (area->image == NULL && !vm_area_ensure(area, error)) {
        return NULL;
    }
    return vmaug_reg_set_load_for_update(area->image, area->dir, 0,
                                         error);
}
