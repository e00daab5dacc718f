/*
 * vmaugment host side: the modules registered with a VM image, kept in a
 * sidecar next to the disk image or in the store (registrations.h).
 *
 * The file is read with a size cap before it is parsed, and every member
 * of it is checked for its JSON type and range: it travels with images,
 * so it may come from anywhere.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registrations.h"
#include "store.h"
#include "vmaugment/protocol-names.h"

/* How often a waiting change tries the lock again. */
#define REG_LOCK_POLL_US            (20 * 1000)

void vmaug_registration_free(VmaugRegistration *r)
{
    if (r == NULL) {
        return;
    }
    g_free(r->name);
    g_free(r->version);
    if (r->config != NULL) {
        g_hash_table_unref(r->config);
    }
    g_free(r);
}

/*
 * flock() excludes other open files of the directory, this process's own
 * too: two threads of one process updating registrations in the same
 * directory (two images there) would make each other BUSY, a refusal
 * meant for another process (the host owner's tool) holding the lock.
 * Threads of this process take turns first, waiting (their updates are
 * short), then lock against the others.
 */
typedef struct {
    gchar *dir;                     /* its key in reg_dir_locks */
    GRecMutex turn;                 /* one thread's second update meets
                                     * its own flock: BUSY, as before */
    guint users;
} RegDirLock;

static GMutex reg_dir_locks_lock;
static GHashTable *reg_dir_locks;   /* directory -> RegDirLock */

static RegDirLock *reg_dir_lock_take(const gchar *dir)
{
    RegDirLock *l;

    g_mutex_lock(&reg_dir_locks_lock);
    if (reg_dir_locks == NULL) {
        reg_dir_locks = g_hash_table_new(g_str_hash, g_str_equal);
    }
    l = g_hash_table_lookup(reg_dir_locks, dir);
    if (l == NULL) {
        l = g_new0(RegDirLock, 1);
        l->dir = g_strdup(dir);
        g_rec_mutex_init(&l->turn);
        g_hash_table_insert(reg_dir_locks, l->dir, l);
    }
    l->users++;
    g_mutex_unlock(&reg_dir_locks_lock);
    g_rec_mutex_lock(&l->turn);
    return l;
}

static void reg_dir_lock_give(RegDirLock *l)
{
    g_rec_mutex_unlock(&l->turn);
    g_mutex_lock(&reg_dir_locks_lock);
    if (--l->users == 0) {
        g_hash_table_remove(reg_dir_locks, l->dir);
        g_rec_mutex_clear(&l->turn);
        g_free(l->dir);
        g_free(l);
    }
    g_mutex_unlock(&reg_dir_locks_lock);
}

void vmaug_reg_set_free(VmaugRegSet *set)
{
    if (set == NULL) {
        return;
    }
    g_free(set->path);
    g_free(set->image);
    g_free(set->image_id);
    g_ptr_array_unref(set->regs);
    if (set->lock_fd >= 0) {
        /* Not by the close alone: a process forked meanwhile (the helper
         * starts module processes while its threads write) shares the
         * descriptor, and with it the lock, until it execs. */
        flock(set->lock_fd, LOCK_UN);
        close(set->lock_fd);
    }
    if (set->dir_lock != NULL) {
        reg_dir_lock_give(set->dir_lock);
    }
    g_free(set);
}

gchar *vmaug_reg_sidecar_path(const gchar *image)
{
    return g_strconcat(image, VMAUG_REGS_SIDECAR_SUFFIX, NULL);
}

/* ---- Event names ---- */

gchar *vmaug_reg_events_to_string(guint32 events)
{
    GString *s = g_string_new(NULL);

    for (guint32 t = 1; t <= VMAUG_EVENT_MAX; t++) {
        if ((events & VMAUG_EVENT_MASK(t)) &&
            (VMAUG_EVENT_LIFECYCLE_MASK & VMAUG_EVENT_MASK(t))) {
            if (s->len > 0) {
                g_string_append_c(s, ',');
            }
            g_string_append(s, vmaug_proto_event_name(t));
        }
    }
    return g_string_free(s, FALSE);
}

/* The lifecycle event named @name, or 0. */
static guint32 reg_lifecycle_event(const gchar *name)
{
    guint32 t = vmaug_proto_event_type(name);

    if (t == 0 || !(VMAUG_EVENT_LIFECYCLE_MASK & VMAUG_EVENT_MASK(t))) {
        return 0;
    }
    return t;
}

gboolean vmaug_reg_events_from_string(const gchar *text, guint32 *events,
                                      GError **error)
{
    g_auto(GStrv) parts = NULL;
    guint32 mask = 0;

    if (text == NULL || strlen(text) > 1024) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid event list");
        return FALSE;
    }
    parts = g_strsplit(text, ",", -1);
    for (guint i = 0; parts[i] != NULL; i++) {
        const gchar *p = g_strstrip(parts[i]);
        guint32 t;

        /* "" alone is the empty set; an empty item in a list is a typo. */
        if (*p == '\0' && parts[1] == NULL) {
            break;
        }
        t = reg_lifecycle_event(p);
        if (t == 0) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                        "unknown lifecycle event \"%s\" (known: host-start, "
                        "image-start, image-stop, host-stop, pause, resume)",
                        p);
            return FALSE;
        }
        mask |= VMAUG_EVENT_MASK(t);
    }
    *events = mask;
    return TRUE;
}

/* ---- The set in memory ---- */

static gint reg_cmp(gconstpointer a, gconstpointer b)
{
    const VmaugRegistration *ra = *(VmaugRegistration *const *)a;
    const VmaugRegistration *rb = *(VmaugRegistration *const *)b;

    return strcmp(ra->name, rb->name);
}

static gboolean reg_check(const gchar *name, const gchar *version,
                          guint32 events, guint32 flags, GError **error)
{
    if (!vmaug_name_is_valid(name)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid module name");
        return FALSE;
    }
    if (version != NULL && *version != '\0' &&
        !vmaug_version_is_valid(version)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid version of %s", name);
        return FALSE;
    }
    if (events & ~VMAUG_EVENT_LIFECYCLE_MASK) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "%s: only lifecycle events can be registered", name);
        return FALSE;
    }
    if (flags & ~VMAUG_REG_F_REQUIRED) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "%s: unknown registration flags 0x%x", name, flags);
        return FALSE;
    }
    return TRUE;
}

const VmaugRegistration *vmaug_reg_set_find(const VmaugRegSet *set,
                                            const gchar *name)
{
    for (guint i = 0; i < set->regs->len; i++) {
        const VmaugRegistration *r = g_ptr_array_index(set->regs, i);

        if (g_strcmp0(r->name, name) == 0) {
            return r;
        }
    }
    return NULL;
}

/* Add or replace @name; a pin replaced by a pin keeps its configuration. */
static gboolean reg_set_store(VmaugRegSet *set, const gchar *name,
                              const gchar *version, guint32 events,
                              guint32 flags, gboolean pinned,
                              GError **error)
{
    VmaugRegistration *r;

    if (!reg_check(name, version, events, flags, error)) {
        return FALSE;
    }
    r = (VmaugRegistration *)vmaug_reg_set_find(set, name);
    if (r == NULL) {
        if (set->regs->len >= VMAUG_REGS_MAX) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                        "too many registrations (at most %u)",
                        VMAUG_REGS_MAX);
            return FALSE;
        }
        r = g_new0(VmaugRegistration, 1);
        r->name = g_strdup(name);
        g_ptr_array_add(set->regs, r);
        g_ptr_array_sort(set->regs, reg_cmp);
    }
    g_free(r->version);
    r->version = g_strdup(version != NULL ? version : "");
    r->events = events;
    r->flags = flags;
    if (!pinned && r->config != NULL) {
        g_clear_pointer(&r->config, g_hash_table_unref);
    }
    r->pinned = pinned;
    return TRUE;
}

/* Why the guest's change of @name is refused, when it is pinned. */
static gboolean reg_not_pinned(const VmaugRegSet *set, const gchar *name,
                               GError **error)
{
    const VmaugRegistration *r = vmaug_reg_set_find(set, name);

    if (r != NULL && r->pinned) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "%s is pinned by the host owner", name);
        return FALSE;
    }
    return TRUE;
}

gboolean vmaug_reg_set_put(VmaugRegSet *set, const gchar *name,
                           const gchar *version, guint32 events,
                           guint32 flags, GError **error)
{
    return reg_not_pinned(set, name, error) &&
           reg_set_store(set, name, version, events, flags, FALSE, error);
}

gboolean vmaug_reg_set_pin(VmaugRegSet *set, const gchar *name,
                           const gchar *version, guint32 events,
                           guint32 flags, GError **error)
{
    return reg_set_store(set, name, version, events, flags, TRUE, error);
}

gboolean vmaug_reg_set_remove_any(VmaugRegSet *set, const gchar *name,
                                  GError **error)
{
    for (guint i = 0; i < set->regs->len; i++) {
        VmaugRegistration *r = g_ptr_array_index(set->regs, i);

        if (g_strcmp0(r->name, name) == 0) {
            g_ptr_array_remove_index(set->regs, i);
            return TRUE;
        }
    }
    g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                "%s is not registered", name);
    return FALSE;
}

gboolean vmaug_reg_set_remove(VmaugRegSet *set, const gchar *name,
                              GError **error)
{
    return reg_not_pinned(set, name, error) &&
           vmaug_reg_set_remove_any(set, name, error);
}

gboolean vmaug_reg_set_config(VmaugRegSet *set, const gchar *name,
                              const gchar *key, const gchar *value,
                              GError **error)
{
    VmaugRegistration *r = (VmaugRegistration *)vmaug_reg_set_find(set, name);

    if (r == NULL || !r->pinned) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "%s has no pinned registration: only a pin carries the "
                    "host owner's configuration", name);
        return FALSE;
    }
    if (!vmaug_config_key_is_valid(key)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "%s: invalid configuration key", name);
        return FALSE;
    }
    if (value == NULL) {
        if (r->config == NULL || !g_hash_table_remove(r->config, key)) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                        "%s: no host configuration %s", name, key);
            return FALSE;
        }
        return TRUE;
    }
    if (strlen(value) > VMAUG_MAX_CONFIG_VALUE ||
        !g_utf8_validate(value, -1, NULL)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "%s: the value of %s is not UTF-8 of at most %u bytes",
                    name, key, VMAUG_MAX_CONFIG_VALUE);
        return FALSE;
    }
    if (r->config == NULL) {
        r->config = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                          g_free);
    }
    if (!g_hash_table_contains(r->config, key) &&
        g_hash_table_size(r->config) >= VMAUG_REGS_MAX_CONFIG) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "%s: at most %u host configuration keys", name,
                    VMAUG_REGS_MAX_CONFIG);
        return FALSE;
    }
    g_hash_table_insert(r->config, g_strdup(key), g_strdup(value));
    return TRUE;
}

const gchar *vmaug_reg_set_host_config(const VmaugRegSet *set,
                                       const gchar *name, const gchar *key)
{
    const VmaugRegistration *r = vmaug_reg_set_find(set, name);

    if (r == NULL || !r->pinned || r->config == NULL) {
        return NULL;
    }
    return g_hash_table_lookup(r->config, key);
}

/* ---- Reading ---- */

static gboolean reg_fail(GError **error, const gchar *path,
                         const gchar *why)
{
    g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                "registrations %s: %s", path, why);
    return FALSE;
}

/*
 * Read at most VMAUG_REGS_MAX_FILE bytes of a regular file.  NULL with no
 * error set means the file does not exist.
 */
static gchar *reg_read_file(const gchar *path, gsize *len, GError **error)
{
    /* O_NONBLOCK: a FIFO planted under the name must not hang the caller. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    g_autofree gchar *buf = NULL;
    gsize got = 0;

    if (fd < 0) {
        if (errno == ENOENT) {
            return NULL;
        }
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "cannot open %s: %s", path, g_strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        reg_fail(error, path, "not a regular file");
        return NULL;
    }
    if (st.st_size > VMAUG_REGS_MAX_FILE) {
        close(fd);
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "registrations %s: larger than %u bytes", path,
                    VMAUG_REGS_MAX_FILE);
        return NULL;
    }
    /*
     * Sized by fstat(), not by the cap: most sidecars are a few hundred
     * bytes.  The file is replaced by rename, never rewritten in place, so
     * one byte more than fstat() saw means someone else is writing it.
     */
    buf = g_malloc(st.st_size + 2);
    while (got <= (gsize)st.st_size) {
        ssize_t n = read(fd, buf + got, st.st_size + 1 - got);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                        "cannot read %s: %s", path, g_strerror(errno));
            close(fd);
            return NULL;
        }
        if (n == 0) {
            break;
        }
        got += n;
    }
    close(fd);
    if (got > (gsize)st.st_size) {
        reg_fail(error, path, "it grew while it was read");
        return NULL;
    }
    buf[got] = '\0';
    *len = got;
    return g_steal_pointer(&buf);
}

static gboolean reg_only_members(JsonObject *o, const gchar *const *known)
{
    g_autoptr(GList) members = json_object_get_members(o);

    for (GList *l = members; l != NULL; l = l->next) {
        if (!g_strv_contains(known, l->data)) {
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean reg_parse_events(JsonNode *n, guint32 *events)
{
    JsonArray *a;

    if (n == NULL || !JSON_NODE_HOLDS_ARRAY(n)) {
        return FALSE;
    }
    a = json_node_get_array(n);
    *events = 0;
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonNode *e = json_array_get_element(a, i);
        guint32 t;

        if (!JSON_NODE_HOLDS_VALUE(e) ||
            json_node_get_value_type(e) != G_TYPE_STRING) {
            return FALSE;
        }
        t = reg_lifecycle_event(json_node_get_string(e));
        if (t == 0 || (*events & VMAUG_EVENT_MASK(t))) {
            return FALSE;
        }
        *events |= VMAUG_EVENT_MASK(t);
    }
    return TRUE;
}

static gboolean reg_is_bool(JsonNode *n)
{
    return n != NULL && JSON_NODE_HOLDS_VALUE(n) &&
           json_node_get_value_type(n) == G_TYPE_BOOLEAN;
}

/* The host configuration of the pin of @name: an object of strings. */
static gboolean reg_parse_config(VmaugRegSet *set, const gchar *name,
                                 JsonNode *n, GError **error)
{
    g_autoptr(GList) members = NULL;
    g_autoptr(GError) local = NULL;
    JsonObject *o;

    if (!JSON_NODE_HOLDS_OBJECT(n)) {
        return reg_fail(error, set->path, "invalid \"config\"");
    }
    o = json_node_get_object(n);
    if (json_object_get_size(o) > VMAUG_REGS_MAX_CONFIG) {
        return reg_fail(error, set->path, "too many \"config\" keys");
    }
    members = json_object_get_members(o);
    for (GList *l = members; l != NULL; l = l->next) {
        const gchar *value = vmaug_json_string(o, l->data);

        if (value == NULL) {
            return reg_fail(error, set->path,
                            "a \"config\" value is not a string");
        }
        if (!vmaug_reg_set_config(set, name, l->data, value, &local)) {
            return reg_fail(error, set->path, local->message);
        }
    }
    return TRUE;
}

static gboolean reg_parse_entry(VmaugRegSet *set, gint64 format_version,
                                JsonNode *n, GError **error)
{
    static const gchar *const known_v1[] = {
        "name", "version", "events", "required", NULL
    };
    static const gchar *const known_v2[] = {
        "name", "version", "events", "required", "pinned", "config", NULL
    };
    g_autoptr(GError) local = NULL;
    JsonObject *o;
    JsonNode *req, *pin, *config;
    const gchar *name, *version;
    guint32 events;
    gboolean pinned = FALSE;

    if (!JSON_NODE_HOLDS_OBJECT(n)) {
        return reg_fail(error, set->path, "a registration is not an object");
    }
    o = json_node_get_object(n);
    if (!reg_only_members(o, format_version >= 2 ? known_v2 : known_v1)) {
        return reg_fail(error, set->path, "unknown member in a registration");
    }
    name = vmaug_json_string(o, "name");
    if (name == NULL || !vmaug_name_is_valid(name)) {
        return reg_fail(error, set->path, "invalid module name");
    }
    version = vmaug_json_string(o, "version");
    if (version == NULL ||
        (*version != '\0' && !vmaug_version_is_valid(version))) {
        return reg_fail(error, set->path, "invalid version");
    }
    if (!reg_parse_events(json_object_get_member(o, "events"), &events)) {
        return reg_fail(error, set->path, "invalid events");
    }
    req = json_object_get_member(o, "required");
    if (!reg_is_bool(req)) {
        return reg_fail(error, set->path, "invalid \"required\"");
    }
    /* Version 2 states every pin, so that none is lost to a typo. */
    if (format_version >= 2) {
        pin = json_object_get_member(o, "pinned");
        if (!reg_is_bool(pin)) {
            return reg_fail(error, set->path, "invalid \"pinned\"");
        }
        pinned = json_node_get_boolean(pin);
    }
    config = json_object_get_member(o, "config");
    if (config != NULL && !pinned) {
        return reg_fail(error, set->path,
                        "\"config\" in a registration that is not pinned");
    }
    if (vmaug_reg_set_find(set, name) != NULL) {
        return reg_fail(error, set->path, "a module is registered twice");
    }
    if (!reg_set_store(set, name, version, events,
                       json_node_get_boolean(req) ?
                       VMAUG_REG_F_REQUIRED : 0, pinned, &local)) {
        return reg_fail(error, set->path, local->message);
    }
    return config == NULL || reg_parse_config(set, name, config, error);
}

static gboolean reg_parse(VmaugRegSet *set, const gchar *json, gsize len,
                          GError **error)
{
    static const gchar *const known[] = {
        "format", "format-version", "image", "image-id", "registrations",
        NULL
    };
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) local = NULL;
    JsonNode *root, *n;
    JsonObject *o;
    JsonArray *regs;
    const gchar *s;
    gint64 version;

    if (!g_utf8_validate(json, len, NULL) || memchr(json, 0, len) != NULL) {
        return reg_fail(error, set->path, "not UTF-8 text");
    }
    /* The format nests object > array > object > array at most. */
    if (!vmaug_json_depth_ok(json, len, 4)) {
        return reg_fail(error, set->path, "nested too deeply");
    }
    if (!json_parser_load_from_data(parser, json, len, &local)) {
        return reg_fail(error, set->path, local->message);
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        return reg_fail(error, set->path, "not a JSON object");
    }
    o = json_node_get_object(root);
    if (!reg_only_members(o, known)) {
        return reg_fail(error, set->path, "unknown member");
    }
    if (g_strcmp0(vmaug_json_string(o, "format"), VMAUG_REGS_FORMAT) != 0) {
        return reg_fail(error, set->path, "not a " VMAUG_REGS_FORMAT " file");
    }
    n = json_object_get_member(o, "format-version");
    if (n == NULL || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_INT64 ||
        json_node_get_int(n) < VMAUG_REGS_FORMAT_VERSION_MIN ||
        json_node_get_int(n) > VMAUG_REGS_FORMAT_VERSION) {
        return reg_fail(error, set->path, "unsupported format-version");
    }
    version = json_node_get_int(n);

    /*
     * A sidecar names the image it belongs to, so that one renamed or
     * copied next to another image is not taken for that image's.
     */
    n = json_object_get_member(o, "image");
    if (set->image != NULL) {
        s = vmaug_json_string(o, "image");
        if (s == NULL) {
            return reg_fail(error, set->path, "no \"image\"");
        }
        if (strcmp(s, set->image) != 0) {
            g_autofree gchar *why = g_strdup_printf(
                "the registrations of image \"%s\", not of \"%s\"",
                s, set->image);

            return reg_fail(error, set->path, why);
        }
    } else if (n != NULL && !JSON_NODE_HOLDS_NULL(n)) {
        return reg_fail(error, set->path,
                        "a store's registrations name no image");
    }

    s = vmaug_json_string(o, "image-id");
    if (s == NULL || !g_uuid_string_is_valid(s)) {
        return reg_fail(error, set->path, "invalid image-id");
    }
    g_free(set->image_id);
    set->image_id = g_strdup(s);

    n = json_object_get_member(o, "registrations");
    if (n == NULL || !JSON_NODE_HOLDS_ARRAY(n)) {
        return reg_fail(error, set->path, "no registrations array");
    }
    regs = json_node_get_array(n);
    if (json_array_get_length(regs) > VMAUG_REGS_MAX) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "registrations %s: more than %u", set->path,
                    VMAUG_REGS_MAX);
        return FALSE;
    }
    for (guint i = 0; i < json_array_get_length(regs); i++) {
        if (!reg_parse_entry(set, version,
                             json_array_get_element(regs, i), error)) {
            return FALSE;
        }
    }
    return TRUE;
}

/* An empty set kept in @path, of disk image @image or of a store (NULL). */
static VmaugRegSet *reg_set_new(const gchar *image, const gchar *path)
{
    VmaugRegSet *set = g_new0(VmaugRegSet, 1);

    set->regs = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vmaug_registration_free);
    set->lock_fd = -1;
    set->path = g_strdup(path);
    set->image = image != NULL ? g_path_get_basename(image) : NULL;
    return set;
}

VmaugRegSet *vmaug_reg_set_parse(const gchar *image, const gchar *path,
                                 const gchar *json, gsize len,
                                 GError **error)
{
    g_autoptr(VmaugRegSet) set = reg_set_new(image, path);

    if (!reg_parse(set, json, len, error)) {
        return NULL;
    }
    return g_steal_pointer(&set);
}

VmaugRegSet *vmaug_reg_set_load(const gchar *image, const gchar *store_dir,
                                GError **error)
{
    g_autoptr(VmaugRegSet) set = NULL;
    g_autoptr(GError) local = NULL;
    g_autofree gchar *path = NULL;
    g_autofree gchar *json = NULL;
    gsize len = 0;

    g_return_val_if_fail(image != NULL || store_dir != NULL, NULL);

    if (image != NULL) {
        path = vmaug_reg_sidecar_path(image);
    } else {
        path = g_build_filename(store_dir, VMAUG_REGS_STORE_FILE, NULL);
    }
    json = reg_read_file(path, &len, &local);
    if (local != NULL) {
        g_propagate_error(error, g_steal_pointer(&local));
        return NULL;
    }
    if (json == NULL) {
        /* No file yet: an empty set, whose identity is made now. */
        set = reg_set_new(image, path);
        set->image_id = g_uuid_string_random();
        return g_steal_pointer(&set);
    }
    return vmaug_reg_set_parse(image, path, json, len, error);
}

VmaugRegSet *vmaug_reg_set_load_for_update(const gchar *image,
                                           const gchar *store_dir,
                                           guint wait_ms, GError **error)
{
    g_autofree gchar *dir = NULL;
    gint64 deadline = g_get_monotonic_time() + (gint64)wait_ms * 1000;
    RegDirLock *turn;
    VmaugRegSet *set;
    int fd;

    g_return_val_if_fail(image != NULL || store_dir != NULL, NULL);

    /*
     * The directory, not the file: the file is replaced by rename, and a
     * lock file of our own would be one more file to copy with images.
     */
    dir = image != NULL ? g_path_get_dirname(image) : g_strdup(store_dir);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "cannot open %s: %s", dir, g_strerror(errno));
        return NULL;
    }
    turn = reg_dir_lock_take(dir);
    /*
     * Polled, not blocking: whoever can open the directory can hold its
     * lock for ever, and the wait must end all the same.
     */
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;

        if (e == EINTR) {
            continue;
        }
        if (e == EWOULDBLOCK && g_get_monotonic_time() < deadline) {
            g_usleep(REG_LOCK_POLL_US);
            continue;
        }
        close(fd);
        reg_dir_lock_give(turn);
        if (e == EWOULDBLOCK) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_BUSY,
                        "the registrations in %s are being changed "
                        "(its lock is held)", dir);
        } else {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                        "cannot lock %s: %s", dir, g_strerror(e));
        }
        return NULL;
    }
    set = vmaug_reg_set_load(image, store_dir, error);
    if (set == NULL) {
        close(fd);
        reg_dir_lock_give(turn);
        return NULL;
    }
    set->lock_fd = fd;
    set->dir_lock = turn;
    return set;
}

/* ---- Writing ---- */

static void reg_config_to_json(JsonBuilder *b, GHashTable *config)
{
    g_autoptr(GList) keys = g_hash_table_get_keys(config);

    /* Sorted: the same set is the same file. */
    keys = g_list_sort(keys, (GCompareFunc)strcmp);
    json_builder_set_member_name(b, "config");
    json_builder_begin_object(b);
    for (GList *l = keys; l != NULL; l = l->next) {
        json_builder_set_member_name(b, l->data);
        json_builder_add_string_value(b, g_hash_table_lookup(config,
                                                             l->data));
    }
    json_builder_end_object(b);
}

static gchar *reg_to_json(const VmaugRegSet *set, gsize *len)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    gint64 version = VMAUG_REGS_FORMAT_VERSION_MIN;
    gchar *out;

    /* The oldest version that holds the set: helpers that know no pins
     * still read a set without them. */
    for (guint i = 0; i < set->regs->len; i++) {
        const VmaugRegistration *r = g_ptr_array_index(set->regs, i);

        if (r->pinned) {
            version = 2;
        }
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "format");
    json_builder_add_string_value(b, VMAUG_REGS_FORMAT);
    json_builder_set_member_name(b, "format-version");
    json_builder_add_int_value(b, version);
    json_builder_set_member_name(b, "image");
    if (set->image != NULL) {
        json_builder_add_string_value(b, set->image);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "image-id");
    json_builder_add_string_value(b, set->image_id);
    json_builder_set_member_name(b, "registrations");
    json_builder_begin_array(b);
    for (guint i = 0; i < set->regs->len; i++) {
        const VmaugRegistration *r = g_ptr_array_index(set->regs, i);

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, r->name);
        json_builder_set_member_name(b, "version");
        json_builder_add_string_value(b, r->version);
        json_builder_set_member_name(b, "events");
        json_builder_begin_array(b);
        for (guint32 t = 1; t <= VMAUG_EVENT_MAX; t++) {
            if (r->events & VMAUG_EVENT_MASK(t)) {
                json_builder_add_string_value(b, vmaug_proto_event_name(t));
            }
        }
        json_builder_end_array(b);
        json_builder_set_member_name(b, "required");
        json_builder_add_boolean_value(b,
                                       !!(r->flags & VMAUG_REG_F_REQUIRED));
        if (version >= 2) {
            json_builder_set_member_name(b, "pinned");
            json_builder_add_boolean_value(b, r->pinned);
        }
        if (r->config != NULL && g_hash_table_size(r->config) > 0) {
            reg_config_to_json(b, r->config);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);

    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    out = json_generator_to_data(gen, len);
    out = g_realloc(out, *len + 2);
    out[(*len)++] = '\n';
    out[*len] = '\0';
    return out;
}

gboolean vmaug_reg_set_save(VmaugRegSet *set, GError **error)
{
    g_autofree gchar *json = NULL;
    gsize len;

    if (set->image_id == NULL) {
        set->image_id = g_uuid_string_random();
    }
    json = reg_to_json(set, &len);
    /* What we could not read back must not be written either. */
    if (len > VMAUG_REGS_MAX_FILE) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "registrations %s: larger than %u bytes", set->path,
                    VMAUG_REGS_MAX_FILE);
        return FALSE;
    }
    return vmaug_store_write_file(set->path, json, len, error);
}
