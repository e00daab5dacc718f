/*
 * Registry hives.  hivex works on files, so a hive is copied out of the
 * guest into a private temporary file, read or edited there, and (after
 * edits) written back into the guest as the content of the hive file.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <hivex.h>

#include "vo-registry.h"

#define VO_MAX_KEY_DEPTH 64

typedef struct {
    hive_h *h;
    char *tmp;
    char *hive;
} VoHive;

void vo_reg_op_free(VoRegOp *op)
{
    g_free(op->hive);
    g_free(op->key);
    g_free(op->name);
    if (op->data) {
        g_bytes_unref(op->data);
    }
    g_free(op->display);
    g_free(op);
}

const char *vo_reg_op_name(VoRegOpKind kind)
{
    static const char *const names[] = {
        [VO_REG_SET] = "set", [VO_REG_DELETE_VALUE] = "delete-value",
        [VO_REG_DELETE_KEY] = "delete-key",
    };

    return names[kind];
}

static char *vo_hive_path(const char *hive)
{
    return g_strdup_printf("/Windows/System32/config/%s", hive);
}

static void vo_hive_free(VoHive *vh)
{
    if (!vh) {
        return;
    }
    if (vh->h) {
        hivex_close(vh->h);
    }
    if (vh->tmp) {
        g_unlink(vh->tmp);
        g_free(vh->tmp);
    }
    g_free(vh->hive);
    g_free(vh);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoHive, vo_hive_free)

/* A private, temporary copy of @data (hive @hive) opened by hivex. */
static VoHive *vo_hive_open_bytes(const char *hive, GBytes *data,
                                  gboolean writable, GError **error)
{
    g_autoptr(VoHive) vh = g_new0(VoHive, 1);
    gsize len;
    const char *p;
    int fd;

    vh->hive = g_strdup(hive);
    fd = g_file_open_tmp("vmaugment-hive-XXXXXX", &vh->tmp, error);
    if (fd < 0) {
        return NULL;
    }
    p = g_bytes_get_data(data, &len);
    if (write(fd, p, len) != (ssize_t)len) {
        close(fd);
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot copy hive: %s",
                    g_strerror(errno));
        return NULL;
    }
    close(fd);
    /* The hive comes from the guest: hivex checks it, we do not trust it. */
    vh->h = hivex_open(vh->tmp, writable ? HIVEX_OPEN_WRITE : 0);
    if (!vh->h) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "%s hive is not valid: %s", hive, g_strerror(errno));
        return NULL;
    }
    return g_steal_pointer(&vh);
}

static VoHive *vo_hive_open(VoGuest *guest, const char *hive,
                            gboolean writable, GError **error)
{
    g_autofree char *path = vo_hive_path(hive);
    g_autoptr(GBytes) data = vo_guest_read_file(guest, path, error);

    return data ? vo_hive_open_bytes(hive, data, writable, error) : NULL;
}

static hive_node_h vo_hive_corrupt(VoHive *vh, const char *key,
                                   GError **error)
{
    g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                "%s\\%s: the hive's key list is corrupt", vh->hive, key);
    return 0;
}

/*
 * Whether @child, found in @node's list of subkeys, names @node as its
 * parent, as every key of a sound hive does: a list that reaches back to
 * the key itself or elsewhere (a cell loop) does not.
 */
static gboolean vo_hive_is_child(VoHive *vh, hive_node_h node,
                                 hive_node_h child)
{
    return hivex_node_parent(vh->h, child) == node;
}

/* The node at backslash-separated @key, optionally creating it. */
static hive_node_h vo_hive_key(VoHive *vh, const char *key, gboolean create,
                               GError **error)
{
    g_auto(GStrv) parts = g_strsplit(key, "\\", -1);
    hive_node_h node = hivex_root(vh->h);

    if (g_strv_length(parts) > VO_MAX_KEY_DEPTH) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID, "key too deep");
        return 0;
    }
    for (guint i = 0; node && parts[i]; i++) {
        hive_node_h child;

        if (!*parts[i]) {
            continue;
        }
        errno = 0;
        child = hivex_node_get_child(vh->h, node, parts[i]);
        if (!child && errno != 0) {
            /* A broken list of subkeys is no proof that the key is
             * absent: a rule or the inventory would judge a guest that
             * is not there. */
            return vo_hive_corrupt(vh, key, error);
        }
        if (child && !vo_hive_is_child(vh, node, child)) {
            return vo_hive_corrupt(vh, key, error);
        }
        if (!child && create) {
            child = hivex_node_add_child(vh->h, node, parts[i]);
        }
        if (!child) {
            g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                        "%s\\%s: no such key", vh->hive, key);
            return 0;
        }
        node = child;
    }
    return node;
}

static char *vo_hive_value_string(VoHive *vh, hive_value_h val)
{
    hive_type t;
    size_t len;

    if (hivex_value_type(vh->h, val, &t, &len) < 0) {
        return NULL;
    }
    switch (t) {
    case hive_t_REG_SZ:
    case hive_t_REG_EXPAND_SZ:
        return hivex_value_string(vh->h, val);
    case hive_t_REG_DWORD:
    case hive_t_REG_DWORD_BIG_ENDIAN:
        return g_strdup_printf("%u", (guint32)hivex_value_dword(vh->h, val));
    case hive_t_REG_QWORD:
        return g_strdup_printf("%" G_GUINT64_FORMAT,
                               (guint64)hivex_value_qword(vh->h, val));
    default:
        return NULL;
    }
}

static char *vo_hive_get(VoHive *vh, const char *key, const char *name,
                         GError **error)
{
    hive_node_h node = vo_hive_key(vh, key, FALSE, error);
    hive_value_h val;
    char *s;

    if (!node) {
        return NULL;
    }
    val = hivex_node_get_value(vh->h, node, name);
    if (!val) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                    "%s\\%s: no value %s", vh->hive, key, name);
        return NULL;
    }
    s = vo_hive_value_string(vh, val);
    if (!s || !g_utf8_validate(s, -1, NULL)) {
        g_free(s);
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s\\%s\\%s is not a string or number", vh->hive, key,
                    name);
        return NULL;
    }
    return s;
}

char *vo_registry_get(VoGuest *guest, const char *hive, const char *key,
                      const char *name, GError **error)
{
    g_autoptr(VoHive) vh = vo_hive_open(guest, hive, FALSE, error);

    return vh ? vo_hive_get(vh, key, name, error) : NULL;
}

void vo_win_app_free(VoWinApp *app)
{
    g_free(app->key);
    g_free(app->display_name);
    g_free(app->version);
    g_free(app->publisher);
    g_free(app->install_date);
    g_free(app);
}

void vo_win_update_free(VoWinUpdate *update)
{
    g_free(update->package);
    g_free(update->kb);
    g_free(update);
}

const char *vo_registry_cbs_state_name(guint32 state)
{
    /* The CurrentState values Windows' servicing stack documents. */
    static const struct {
        guint32 state;
        const char *name;
    } names[] = {
        { 0, "absent" }, { 5, "uninstall-pending" }, { 16, "resolving" },
        { 32, "resolved" }, { 48, "staging" }, { 64, "staged" },
        { 80, "superseded" }, { 96, "install-pending" },
        { 101, "partially-installed" }, { 112, "installed" },
        { 128, "permanent" },
    };

    for (gsize i = 0; i < G_N_ELEMENTS(names); i++) {
        if (names[i].state == state) {
            return names[i].name;
        }
    }
    return "unknown";
}

/* A value of @node as UTF-8 text, or NULL (absent, another type). */
static char *vo_hive_node_string(VoHive *vh, hive_node_h node,
                                 const char *name)
{
    hive_value_h v = hivex_node_get_value(vh->h, node, name);
    char *s = v ? vo_hive_value_string(vh, v) : NULL;

    if (s && !g_utf8_validate(s, -1, NULL)) {
        g_clear_pointer(&s, g_free);
    }
    return s;
}

/*
 * The subkeys of @key, or NULL with @error: VO_ERROR_NOT_FOUND when the
 * key is absent, VO_ERROR_CORRUPT when its list cannot be trusted.
 */
static hive_node_h *vo_hive_children(VoHive *vh, const char *key,
                                     GError **error)
{
    g_autofree hive_node_h *children = NULL;
    hive_node_h node = vo_hive_key(vh, key, FALSE, error);

    if (!node) {
        return NULL;
    }
    errno = 0;
    children = hivex_node_children(vh->h, node);
    for (guint i = 0; children && children[i]; i++) {
        if (!vo_hive_is_child(vh, node, children[i])) {
            g_clear_pointer(&children, g_free);
            errno = EINVAL;
        }
    }
    if (!children) {
        if (errno != 0) {
            vo_hive_corrupt(vh, key, error);
            return NULL;
        }
        return g_new0(hive_node_h, 1);
    }
    return g_steal_pointer(&children);
}

/* Only a corrupt hive fails: an absent key (or a value of another type)
 * has nothing to report. */
static gboolean vo_hive_absent_ok(GError **local, GError **error)
{
    if (!g_error_matches(*local, VO_ERROR, VO_ERROR_CORRUPT)) {
        g_clear_error(local);
        return TRUE;
    }
    g_propagate_error(error, g_steal_pointer(local));
    return FALSE;
}

static gboolean vo_registry_uninstall(VoHive *vh, const char *key,
                                      GPtrArray *apps, GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autofree hive_node_h *children = vo_hive_children(vh, key, &local);

    if (!children) {
        return vo_hive_absent_ok(&local, error);
    }
    for (guint i = 0; children[i]; i++) {
        g_autofree char *name = hivex_node_name(vh->h, children[i]);
        VoWinApp *app;

        if (!name || !g_utf8_validate(name, -1, NULL)) {
            continue;
        }
        app = g_new0(VoWinApp, 1);
        app->key = g_steal_pointer(&name);
        app->display_name = vo_hive_node_string(vh, children[i],
                                                "DisplayName");
        app->version = vo_hive_node_string(vh, children[i],
                                           "DisplayVersion");
        app->publisher = vo_hive_node_string(vh, children[i], "Publisher");
        app->install_date = vo_hive_node_string(vh, children[i],
                                                "InstallDate");
        g_ptr_array_add(apps, app);
    }
    return TRUE;
}

/* "KB5005112" out of "Package_for_KB5005112~31bf...", or NULL. */
static char *vo_registry_kb(const char *package)
{
    const char *p = strstr(package, "_for_KB");
    gsize n = 0;

    if (!p) {
        return NULL;
    }
    p += strlen("_for_");
    while (g_ascii_isdigit(p[2 + n])) {
        n++;
    }
    return n ? g_strndup(p, 2 + n) : NULL;
}

/*
 * Update packages of Component Based Servicing: the KB packages
 * ("Package_for_KB...", "Package_1_for_KB...") and the cumulative ones
 * ("Package_for_RollupFix..."), not the thousands of component packages
 * a Windows installation has besides.
 */
static gboolean vo_registry_cbs(VoHive *vh, GPtrArray *updates,
                                GError **error)
{
    const char *key = "Microsoft\\Windows\\CurrentVersion\\"
                      "Component Based Servicing\\Packages";
    g_autoptr(GError) local = NULL;
    g_autofree hive_node_h *children = vo_hive_children(vh, key, &local);

    if (!children) {
        return vo_hive_absent_ok(&local, error);
    }
    for (guint i = 0; children[i]; i++) {
        g_autofree char *name = hivex_node_name(vh->h, children[i]);
        hive_value_h v;
        hive_type t;
        size_t len;
        VoWinUpdate *u;

        if (!name || !g_utf8_validate(name, -1, NULL) ||
            !g_str_has_prefix(name, "Package_") || !strstr(name, "_for_")) {
            continue;
        }
        v = hivex_node_get_value(vh->h, children[i], "CurrentState");
        if (!v || hivex_value_type(vh->h, v, &t, &len) < 0 ||
            t != hive_t_REG_DWORD || len != 4) {
            continue;
        }
        u = g_new0(VoWinUpdate, 1);
        u->state = (guint32)hivex_value_dword(vh->h, v);
        u->kb = vo_registry_kb(name);
        u->package = g_steal_pointer(&name);
        g_ptr_array_add(updates, u);
    }
    return TRUE;
}

gboolean vo_registry_inventory_hive(GBytes *software, GHashTable *os,
                                    GPtrArray *apps, GPtrArray *updates,
                                    GError **error)
{
    static const struct {
        const char *value;
        const char *key;
    } fields[] = {
        { "ProductName", "product_name" },
        { "CurrentBuild", "current_build" },
        { "DisplayVersion", "display_version" },
        { "EditionID", "edition_id" },
        { "InstallationType", "product_variant" },
        { "CurrentMajorVersionNumber", "major_version" },
        { "CurrentMinorVersionNumber", "minor_version" },
        { "UBR", "ubr" },
    };
    const char *cv = "Microsoft\\Windows NT\\CurrentVersion";
    g_autoptr(VoHive) vh = vo_hive_open_bytes("SOFTWARE", software, FALSE,
                                              error);
    g_autofree char *legacy = NULL;
    const char *build, *ubr;

    if (!vh) {
        return FALSE;
    }
    g_hash_table_replace(os, g_strdup("id"), g_strdup("windows"));
    for (gsize i = 0; i < G_N_ELEMENTS(fields); i++) {
        g_autoptr(GError) local = NULL;
        char *v = vo_hive_get(vh, cv, fields[i].value, &local);

        if (g_error_matches(local, VO_ERROR, VO_ERROR_CORRUPT)) {
            g_propagate_error(error, g_steal_pointer(&local));
            return FALSE;
        }
        if (v) {
            g_hash_table_replace(os, g_strdup(fields[i].key), v);
        }
    }
    /* Before Windows 10 the version is "6.3" in CurrentVersion. */
    legacy = vo_hive_get(vh, cv, "CurrentVersion", NULL);
    if (legacy && !g_hash_table_contains(os, "major_version")) {
        g_auto(GStrv) mm = g_strsplit(legacy, ".", 2);

        g_hash_table_replace(os, g_strdup("major_version"),
                             g_strdup(mm[0]));
        if (mm[0] && mm[1] && !g_hash_table_contains(os, "minor_version")) {
            g_hash_table_replace(os, g_strdup("minor_version"),
                                 g_strdup(mm[1]));
        }
    }
    build = g_hash_table_lookup(os, "current_build");
    ubr = g_hash_table_lookup(os, "ubr");
    if (build) {
        g_hash_table_replace(os, g_strdup("version_id"), g_strdup(build));
    }
    if (build && ubr) {
        g_hash_table_replace(os, g_strdup("patch_level"),
                             g_strdup_printf("%s.%s", build, ubr));
    }
    return vo_registry_uninstall(vh, "Microsoft\\Windows\\CurrentVersion\\"
                                 "Uninstall", apps, error) &&
           vo_registry_uninstall(vh, "Wow6432Node\\Microsoft\\Windows\\"
                                 "CurrentVersion\\Uninstall", apps, error) &&
           vo_registry_cbs(vh, updates, error);
}

gboolean vo_registry_system_hive(GBytes *system, GHashTable *os,
                                 GError **error)
{
    g_autoptr(VoHive) vh = vo_hive_open_bytes("SYSTEM", system, FALSE, error);
    g_autoptr(GError) local = NULL;
    g_autofree char *current = NULL;
    g_autofree char *set = NULL;
    g_autofree char *tcpip = NULL;
    g_autofree char *name = NULL;
    char *host;
    guint64 n;

    if (!vh) {
        return FALSE;
    }
    current = vo_hive_get(vh, "Select", "Current", &local);
    if (!current) {
        return vo_hive_absent_ok(&local, error);
    }
    if (!g_ascii_string_to_unsigned(current, 10, 1, 999, &n, NULL)) {
        return TRUE;
    }
    set = g_strdup_printf("ControlSet%03u", (guint)n);
    g_hash_table_replace(os, g_strdup("current_control_set"), g_strdup(set));
    tcpip = g_strdup_printf("%s\\Services\\Tcpip\\Parameters", set);
    name = g_strdup_printf("%s\\Control\\ComputerName\\ComputerName", set);
    /* virt-inspector's choice first: TCP/IP's host name. */
    host = vo_hive_get(vh, tcpip, "Hostname", &local);
    if (!host) {
        if (!vo_hive_absent_ok(&local, error)) {
            return FALSE;
        }
        host = vo_hive_get(vh, name, "ComputerName", &local);
    }
    if (!host) {
        return vo_hive_absent_ok(&local, error);
    }
    g_hash_table_replace(os, g_strdup("hostname"), host);
    return TRUE;
}

gboolean vo_registry_inventory(VoGuest *guest, GHashTable *os,
                               GPtrArray *apps, GPtrArray *updates,
                               GError **error)
{
    g_autofree char *path = vo_hive_path("SOFTWARE");
    g_autofree char *syspath = vo_hive_path("SYSTEM");
    g_autoptr(GBytes) data = vo_guest_read_file(guest, path, error);
    g_autoptr(GBytes) sys = NULL;
    g_autoptr(GError) local = NULL;

    if (!data || !vo_registry_inventory_hive(data, os, apps, updates, error)) {
        return FALSE;
    }
    sys = vo_guest_read_file(guest, syspath, &local);
    if (!sys && g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        return TRUE;
    }
    if (!sys) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    return vo_registry_system_hive(sys, os, error);
}

/* MountedDevices data: MBR signature + byte offset, or "DMIO:ID:" + the
 * GPT partition GUID (mixed-endian, as Windows stores GUIDs). */
static VoPartition *vo_registry_match_partition(VoGuest *guest,
                                                const guint8 *data,
                                                size_t len)
{
    GPtrArray *parts = guest->layout->partitions;

    if (len == 12) {
        guint32 sig = data[0] | data[1] << 8 | data[2] << 16 |
                      (guint32)data[3] << 24;
        guint64 off = 0;
        g_autofree char *id = g_strdup_printf("%08x", sig);

        for (int i = 11; i >= 4; i--) {
            off = off << 8 | data[i];
        }
        for (guint i = 0; i < parts->len; i++) {
            VoPartition *p = parts->pdata[i];
            /* The signature is that of the partition's own disk. */
            VoLayout *disk = guest->layouts ? guest->layouts->pdata[p->disk]
                                            : guest->layout;
            const char *have = disk->table_id;

            if (!disk->table || !g_str_equal(disk->table, "dos") || !have) {
                continue;
            }
            /* libblkid writes the MBR signature as hex, "0x" or not. */
            if (g_str_has_prefix(have, "0x")) {
                have += 2;
            }
            if (g_ascii_strcasecmp(id, have) == 0 && p->offset == off) {
                return p;
            }
        }
    } else if (len == 24 && memcmp(data, "DMIO:ID:", 8) == 0) {
        const guint8 *g = data + 8;
        g_autofree char *uuid = g_strdup_printf(
            "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
            "%02x%02x%02x%02x%02x%02x",
            g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9],
            g[10], g[11], g[12], g[13], g[14], g[15]);

        for (guint i = 0; i < parts->len; i++) {
            VoPartition *p = parts->pdata[i];

            if (p->part_uuid && g_ascii_strcasecmp(p->part_uuid, uuid) == 0) {
                return p;
            }
        }
    }
    return NULL;
}

gboolean vo_registry_drive_letters(VoGuest *guest, GPtrArray *letters,
                                   GPtrArray *parts, GError **error)
{
    g_autoptr(VoHive) vh = vo_hive_open(guest, "SYSTEM", FALSE, error);
    g_autofree hive_value_h *vals = NULL;
    hive_node_h node;

    if (!vh) {
        return FALSE;
    }
    node = vo_hive_key(vh, "MountedDevices", FALSE, NULL);
    vals = node ? hivex_node_values(vh->h, node) : NULL;
    for (guint i = 0; vals && vals[i]; i++) {
        g_autofree char *name = hivex_value_key(vh->h, vals[i]);
        g_autofree char *data = NULL;
        hive_type t;
        size_t len;
        VoPartition *p;

        if (!name || strlen(name) != 14 ||
            !g_str_has_prefix(name, "\\DosDevices\\") ||
            !g_ascii_isalpha(name[12]) || name[13] != ':' ||
            g_ascii_toupper(name[12]) == 'C') {
            continue;
        }
        data = hivex_value_value(vh->h, vals[i], &t, &len);
        if (!data || t != hive_t_REG_BINARY) {
            continue;
        }
        p = vo_registry_match_partition(guest, (const guint8 *)data, len);
        if (p) {
            g_ptr_array_add(letters,
                            g_strdup_printf("%c", g_ascii_toupper(name[12])));
            g_ptr_array_add(parts, p);
        }
    }
    return TRUE;
}

static gboolean vo_registry_invalid(GError **error, guint i, const char *what)
{
    g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                "bad bundle manifest: registry[%u]: %s", i, what);
    return FALSE;
}

static const char *vo_registry_str(JsonObject *obj, const char *member)
{
    JsonNode *n = json_object_get_member(obj, member);

    if (!n || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_STRING) {
        return NULL;
    }
    return json_node_get_string(n);
}

/* UTF-8 to the NUL-terminated UTF-16LE of REG_SZ. */
static GBytes *vo_registry_utf16(const char *s)
{
    glong n = 0;
    gunichar2 *u = g_utf8_to_utf16(s, -1, NULL, &n, NULL);
    GBytes *b;

    if (!u) {
        return NULL;
    }
    for (glong i = 0; i < n; i++) {
        u[i] = GUINT16_TO_LE(u[i]);
    }
    b = g_bytes_new(u, (n + 1) * sizeof(gunichar2));
    g_free(u);
    return b;
}

gboolean vo_registry_parse(JsonNode *node, GPtrArray *ops, GError **error)
{
    static const char *const allowed[] = {
        "op", "hive", "key", "name", "type", "value", NULL,
    };
    JsonArray *arr;

    if (!JSON_NODE_HOLDS_ARRAY(node)) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "bad bundle manifest: \"registry\" must be an array");
        return FALSE;
    }
    arr = json_node_get_array(node);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonNode *e = json_array_get_element(arr, i);
        g_autoptr(GList) members = NULL;
        JsonObject *obj;
        const char *op, *hive, *key, *name, *type;
        VoRegOp *rop;

        if (!JSON_NODE_HOLDS_OBJECT(e)) {
            return vo_registry_invalid(error, i, "must be an object");
        }
        obj = json_node_get_object(e);
        members = json_object_get_members(obj);
        for (GList *l = members; l; l = l->next) {
            if (!g_strv_contains(allowed, l->data)) {
                return vo_registry_invalid(error, i, "unknown member");
            }
        }
        op = vo_registry_str(obj, "op");
        hive = vo_registry_str(obj, "hive");
        key = vo_registry_str(obj, "key");
        name = vo_registry_str(obj, "name");
        if (!op || !hive || !key) {
            return vo_registry_invalid(error, i, "\"op\", \"hive\" and "
                                       "\"key\" are required strings");
        }
        if (!g_str_equal(hive, "SOFTWARE") && !g_str_equal(hive, "SYSTEM")) {
            return vo_registry_invalid(error, i, "\"hive\" is SOFTWARE or "
                                       "SYSTEM");
        }
        if (!*key || strlen(key) > 1024 || strstr(key, "\\\\") ||
            key[0] == '\\' || g_str_has_suffix(key, "\\") ||
            !g_utf8_validate(key, -1, NULL)) {
            return vo_registry_invalid(error, i, "bad \"key\"");
        }
        rop = g_new0(VoRegOp, 1);
        g_ptr_array_add(ops, rop);
        rop->hive = g_strdup(hive);
        rop->key = g_strdup(key);
        rop->name = g_strdup(name);
        if (g_str_equal(op, "delete-key")) {
            rop->kind = VO_REG_DELETE_KEY;
            if (name || json_object_has_member(obj, "value")) {
                return vo_registry_invalid(error, i, "delete-key takes only "
                                           "a key");
            }
            continue;
        }
        if (!name) {
            return vo_registry_invalid(error, i, "\"name\" is required");
        }
        if (g_str_equal(op, "delete-value")) {
            rop->kind = VO_REG_DELETE_VALUE;
            if (json_object_has_member(obj, "value")) {
                return vo_registry_invalid(error, i, "delete-value takes no "
                                           "value");
            }
            continue;
        }
        if (!g_str_equal(op, "set")) {
            return vo_registry_invalid(error, i, "unknown op");
        }
        rop->kind = VO_REG_SET;
        type = vo_registry_str(obj, "type");
        if (!type) {
            return vo_registry_invalid(error, i, "\"type\" is required");
        }
        if (g_str_equal(type, "sz") || g_str_equal(type, "expand_sz")) {
            const char *v = vo_registry_str(obj, "value");

            if (!v) {
                return vo_registry_invalid(error, i, "string \"value\"");
            }
            rop->type = g_str_equal(type, "sz") ? hive_t_REG_SZ
                                                : hive_t_REG_EXPAND_SZ;
            rop->data = vo_registry_utf16(v);
            rop->display = g_strdup(v);
        } else if (g_str_equal(type, "dword") || g_str_equal(type, "qword")) {
            JsonNode *v = json_object_get_member(obj, "value");
            gint64 n;

            if (!v || !JSON_NODE_HOLDS_VALUE(v) ||
                json_node_get_value_type(v) != G_TYPE_INT64) {
                return vo_registry_invalid(error, i, "integer \"value\"");
            }
            n = json_node_get_int(v);
            if (g_str_equal(type, "dword")) {
                guint32 le;

                if (n < 0 || n > G_MAXUINT32) {
                    return vo_registry_invalid(error, i, "dword out of range");
                }
                le = GUINT32_TO_LE((guint32)n);
                rop->type = hive_t_REG_DWORD;
                rop->data = g_bytes_new(&le, sizeof(le));
            } else {
                guint64 le = GUINT64_TO_LE((guint64)n);

                if (n < 0) {
                    return vo_registry_invalid(error, i, "qword out of range");
                }
                rop->type = hive_t_REG_QWORD;
                rop->data = g_bytes_new(&le, sizeof(le));
            }
            rop->display = g_strdup_printf("%" G_GINT64_FORMAT, n);
        } else {
            return vo_registry_invalid(error, i, "\"type\" is sz, expand_sz, "
                                       "dword or qword");
        }
        if (!rop->data) {
            return vo_registry_invalid(error, i, "value not encodable");
        }
    }
    return TRUE;
}

static gboolean vo_registry_windows(VoGuest *guest, GError **error)
{
    if (!g_str_equal(guest->family, "windows")) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_APPLICABLE,
                    "registry instructions need a Windows guest");
        return FALSE;
    }
    return TRUE;
}

gboolean vo_registry_plan(GPtrArray *ops, VoGuest *guest, JsonBuilder *plan,
                          GError **error)
{
    if (ops->len == 0) {
        return TRUE;
    }
    if (!vo_registry_windows(guest, error)) {
        return FALSE;
    }
    for (guint i = 0; i < ops->len; i++) {
        VoRegOp *op = ops->pdata[i];
        g_autoptr(VoHive) vh = vo_hive_open(guest, op->hive, FALSE, error);
        g_autofree char *old = NULL;

        if (!vh) {
            return FALSE;
        }
        if (op->name) {
            old = vo_hive_get(vh, op->key, op->name, NULL);
        }
        json_builder_begin_object(plan);
        json_builder_set_member_name(plan, "registry");
        json_builder_add_string_value(plan, vo_reg_op_name(op->kind));
        json_builder_set_member_name(plan, "key");
        g_autofree char *full = g_strdup_printf("%s\\%s", op->hive, op->key);
        json_builder_add_string_value(plan, full);
        if (op->name) {
            json_builder_set_member_name(plan, "name");
            json_builder_add_string_value(plan, op->name);
        }
        if (old) {
            json_builder_set_member_name(plan, "old");
            json_builder_add_string_value(plan, old);
        }
        if (op->display) {
            json_builder_set_member_name(plan, "new");
            json_builder_add_string_value(plan, op->display);
        }
        json_builder_end_object(plan);
    }
    return TRUE;
}

/* hivex cannot delete a single value: rewrite the key's values without it. */
static gboolean vo_registry_delete_value(VoHive *vh, hive_node_h node,
                                         const char *name, GError **error)
{
    g_autofree hive_value_h *vals = hivex_node_values(vh->h, node);
    g_autoptr(GArray) keep = g_array_new(FALSE, TRUE,
                                         sizeof(hive_set_value));
    gboolean found = FALSE;
    int r;

    for (guint i = 0; vals && vals[i]; i++) {
        hive_set_value sv;
        hive_type t;
        size_t len;

        sv.key = hivex_value_key(vh->h, vals[i]);
        if (sv.key && g_ascii_strcasecmp(sv.key, name) == 0) {
            found = TRUE;
            free(sv.key);
            continue;
        }
        sv.value = hivex_value_value(vh->h, vals[i], &t, &len);
        sv.t = t;
        sv.len = len;
        g_array_append_val(keep, sv);
    }
    r = found ? hivex_node_set_values(vh->h, node, keep->len,
                                      (hive_set_value *)keep->data, 0)
              : 0;
    for (guint i = 0; i < keep->len; i++) {
        free(g_array_index(keep, hive_set_value, i).key);
        free(g_array_index(keep, hive_set_value, i).value);
    }
    if (r < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "hivex: %s",
                    g_strerror(errno));
        return FALSE;
    }
    return TRUE;
}

static gboolean vo_registry_apply_op(VoHive *vh, VoRegOp *op, GError **error)
{
    g_autoptr(GError) local = NULL;
    hive_node_h node = vo_hive_key(vh, op->key, op->kind == VO_REG_SET,
                                   &local);

    if (!node) {
        if (op->kind != VO_REG_SET) {
            return TRUE;    /* already absent */
        }
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    switch (op->kind) {
    case VO_REG_SET: {
        hive_set_value sv = {
            .key = op->name,
            .t = op->type,
            .len = g_bytes_get_size(op->data),
            .value = (char *)g_bytes_get_data(op->data, NULL),
        };

        if (hivex_node_set_value(vh->h, node, &sv, 0) < 0) {
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "hivex: %s",
                        g_strerror(errno));
            return FALSE;
        }
        return TRUE;
    }
    case VO_REG_DELETE_VALUE:
        return vo_registry_delete_value(vh, node, op->name, error);
    case VO_REG_DELETE_KEY:
        if (node == hivex_root(vh->h) ||
            hivex_node_delete_child(vh->h, node) < 0) {
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                        "cannot delete %s\\%s", op->hive, op->key);
            return FALSE;
        }
        return TRUE;
    }
    return FALSE;
}

gboolean vo_registry_execute(GPtrArray *ops, VoGuest *guest, GError **error)
{
    static const char *const hives[] = { "SOFTWARE", "SYSTEM" };

    if (ops->len == 0) {
        return TRUE;
    }
    if (!vo_registry_windows(guest, error)) {
        return FALSE;
    }
    for (gsize h = 0; h < G_N_ELEMENTS(hives); h++) {
        g_autoptr(VoHive) vh = NULL;
        g_autofree char *path = vo_hive_path(hives[h]);
        g_autofree char *contents = NULL;
        g_autoptr(GBytes) data = NULL;
        g_auto(VoPath) p = { 0 };
        gsize len;

        for (guint i = 0; i < ops->len; i++) {
            VoRegOp *op = ops->pdata[i];

            if (!g_str_equal(op->hive, hives[h])) {
                continue;
            }
            if (!vh && !(vh = vo_hive_open(guest, hives[h], TRUE, error))) {
                return FALSE;
            }
            if (!vo_registry_apply_op(vh, op, error)) {
                g_prefix_error(error, "registry %s %s\\%s: ",
                               vo_reg_op_name(op->kind), op->hive, op->key);
                return FALSE;
            }
        }
        if (!vh) {
            continue;
        }
        if (hivex_commit(vh->h, NULL, 0) < 0 ||
            !g_file_get_contents(vh->tmp, &contents, &len, error)) {
            if (error && !*error) {
                g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                            "hivex commit: %s", g_strerror(errno));
            }
            return FALSE;
        }
        data = g_bytes_new_take(g_steal_pointer(&contents), len);
        if (!vo_guest_resolve(guest, path, TRUE, &p, error)) {
            return FALSE;
        }
        if (!p.exists || !p.fs->ops->replace(p.fs, p.node, data, error)) {
            if (error && !*error) {
                g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND,
                            "%s vanished", path);
            }
            return FALSE;
        }
    }
    return TRUE;
}

gboolean vo_registry_verify_op(VoRegOp *op, VoGuest *guest, char **why)
{
    g_autoptr(GError) local = NULL;
    g_autoptr(VoHive) vh = vo_hive_open(guest, op->hive, FALSE, &local);
    hive_node_h node;
    hive_value_h val;
    hive_type t;
    size_t len;
    g_autofree char *raw = NULL;

    if (!vh) {
        *why = g_strdup(local->message);
        return FALSE;
    }
    node = vo_hive_key(vh, op->key, FALSE, NULL);
    if (op->kind == VO_REG_DELETE_KEY) {
        if (node) {
            *why = g_strdup("key still exists");
        }
        return !node;
    }
    val = node ? hivex_node_get_value(vh->h, node, op->name) : 0;
    if (op->kind == VO_REG_DELETE_VALUE) {
        if (val) {
            *why = g_strdup("value still exists");
        }
        return !val;
    }
    if (!val) {
        *why = g_strdup("value missing");
        return FALSE;
    }
    raw = hivex_value_value(vh->h, val, &t, &len);
    if (!raw || t != op->type || len != g_bytes_get_size(op->data) ||
        memcmp(raw, g_bytes_get_data(op->data, NULL), len) != 0) {
        *why = g_strdup("value differs");
        return FALSE;
    }
    return TRUE;
}
