/*
 * vmaugment-helper: one device connection (one VM), speaking the "Host
 * helper link" of the protocol header.  Every message is hostile until
 * checked: sizes first, then fixed strings, then meaning.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "helper.h"

/* Keys one module's configuration may hold. */
#define DEVICE_MAX_CONFIG_KEYS  256
/* Registrations one image may hold. */
#define DEVICE_MAX_REGISTRATIONS 256
/* Error messages returned to the guest are short. */
#define DEVICE_MAX_ERROR_TEXT   200

static guint64 *tag_dup(guint64 tag)
{
    return g_memdup2(&tag, sizeof(tag));
}

/* ---- Sending ---- */

void device_reply(Device *dev, guint64 tag, guint16 status,
                  const void *data, gsize len)
{
    struct virtio_vmaugment_resp resp = { 0 };

    if (g_hash_table_remove(dev->cancelled, &tag)) {
        return;     /* the guest will never see it */
    }
    g_hash_table_remove(dev->pending, &tag);
    if (dev->closed) {
        return;
    }
    if (len > VMAUG_MAX_RESP_PAYLOAD) {
        status = VMAUG_S_NO_SPACE;
        resp.len = GUINT32_TO_LE((guint32)MIN(len, G_MAXUINT32));
        len = 0;
    } else {
        resp.len = GUINT32_TO_LE((guint32)len);
    }
    resp.status = GUINT16_TO_LE(status);
    vmaug_link_send(dev->link, VMAUG_HOST_RESPONSE, tag, &resp, sizeof(resp),
                    data, len, -1);
}

void device_reply_error(Device *dev, guint64 tag, const GError *error)
{
    g_autofree gchar *msg = g_utf8_make_valid(error->message, -1);
    gsize len = strlen(msg);

    if (len > DEVICE_MAX_ERROR_TEXT) {
        /* Cut at a character boundary. */
        len = g_utf8_offset_to_pointer(msg, g_utf8_strlen(msg,
                                       DEVICE_MAX_ERROR_TEXT)) - msg;
    }
    device_reply(dev, tag, vmaug_host_error_status(error), msg, len);
}

void device_event(Device *dev, guint32 type, const void *a, gsize alen,
                  const void *b, gsize blen)
{
    struct virtio_vmaugment_event ev = { 0 };

    if (dev->closed || !dev->hello ||
        alen + blen > VMAUG_MAX_EVENT_PAYLOAD) {
        return;
    }
    ev.type = GUINT32_TO_LE(type);
    ev.len = GUINT32_TO_LE((guint32)(alen + blen));
    {
        g_autofree guint8 *body = g_malloc(sizeof(ev) + alen + blen);

        memcpy(body, &ev, sizeof(ev));
        if (alen > 0) {
            memcpy(body + sizeof(ev), a, alen);
        }
        if (blen > 0) {
            memcpy(body + sizeof(ev) + alen, b, blen);
        }
        vmaug_link_send(dev->link, VMAUG_HOST_EVENT, 0, body,
                        sizeof(ev) + alen + blen, NULL, 0, -1);
    }
}

/* ---- Manifests of stored packages, cached by content ---- */

static const VmaugManifest *device_manifest(Device *dev,
                                            const VmaugStoreEntry *e,
                                            GError **error)
{
    Helper *h = dev->helper;
    VmaugManifest *m = g_hash_table_lookup(h->manifests, e->sha256);
    g_autoptr(VmaugPackage) pkg = NULL;

    if (m != NULL) {
        return m;
    }
    pkg = vmaug_store_open_package(dev->store, e->name, e->version,
                                   dev->name, NULL, error);
    if (pkg == NULL) {
        return NULL;
    }
    m = g_steal_pointer(&pkg->manifest);
    g_hash_table_insert(h->manifests, g_strdup(e->sha256), m);
    return m;
}

void device_fill_info(Device *dev, struct vmaug_module_info *info,
                      const gchar *name, const gchar *version,
                      const VmaugManifest *m)
{
    Module *mod = g_hash_table_lookup(dev->modules, name);

    memset(info, 0, sizeof(*info));
    g_strlcpy((gchar *)info->ref.name, name, sizeof(info->ref.name));
    g_strlcpy((gchar *)info->ref.version, version,
              sizeof(info->ref.version));
    info->kind = GUINT32_TO_LE(m->kind);
    info->events = GUINT32_TO_LE(m->events);
    if (mod != NULL && g_strcmp0(mod->version, version) == 0 &&
        mod->state != 0) {
        info->state = GUINT32_TO_LE(mod->state);
    } else {
        info->state = GUINT32_TO_LE(VMAUG_MODULE_STORED);
    }
}

/* ---- Configuration: <store>/config/<module>.json, values base64 ---- */

static gchar *device_config_path(Device *dev, const gchar *module)
{
    g_autofree gchar *name = g_strconcat(module, ".json", NULL);

    return g_build_filename(vmaug_store_get_dir(dev->store), "config", name,
                            NULL);
}

static JsonObject *device_config_load(Device *dev, const gchar *module)
{
    g_autofree gchar *path = device_config_path(dev, module);
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GBytes) blob = NULL;
    JsonNode *root;

    blob = vmaug_trust_read_file(path, 4 * 1024 * 1024, NULL);
    if (blob == NULL ||
        !json_parser_load_from_data(parser, g_bytes_get_data(blob, NULL),
                                    g_bytes_get_size(blob), NULL) ||
        (root = json_parser_get_root(parser)) == NULL ||
        !JSON_NODE_HOLDS_OBJECT(root)) {
        return json_object_new();
    }
    return json_object_ref(json_node_get_object(root));
}

static gboolean device_config_key_ok(const gchar *module, const gchar *key)
{
    gsize len = strlen(key);

    return vmaug_name_is_valid(module) && len > 0 &&
           len < VMAUG_CONFIG_KEY_MAX && g_utf8_validate(key, len, NULL);
}

gboolean device_config_get(Device *dev, const gchar *module,
                           const gchar *key, GBytes **value, GError **error)
{
    g_autoptr(JsonObject) o = NULL;
    JsonNode *n;
    guchar *raw;
    gsize len;

    if (!device_config_key_ok(module, key)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid module or key");
        return FALSE;
    }
    o = device_config_load(dev, module);
    n = json_object_get_member(o, key);
    if (n == NULL || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_STRING) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "no configuration %s for %s", key, module);
        return FALSE;
    }
    raw = g_base64_decode(json_node_get_string(n), &len);
    if (len > VMAUG_MAX_CONFIG_VALUE) {
        g_free(raw);
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "stored value too big");
        return FALSE;
    }
    *value = g_bytes_new_take(raw, len);
    return TRUE;
}

gboolean device_config_set(Device *dev, const gchar *module,
                           const gchar *key, const void *value, gsize len,
                           GError **error)
{
    g_autoptr(JsonObject) o = NULL;
    g_autoptr(JsonNode) root = json_node_new(JSON_NODE_OBJECT);
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree gchar *path = NULL;
    g_autofree gchar *json = NULL;
    g_autofree gchar *b64 = NULL;

    if (!device_config_key_ok(module, key) || len > VMAUG_MAX_CONFIG_VALUE) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid module, key or value");
        return FALSE;
    }
    o = device_config_load(dev, module);
    if (!json_object_has_member(o, key) &&
        json_object_get_size(o) >= DEVICE_MAX_CONFIG_KEYS) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "too many configuration keys for %s", module);
        return FALSE;
    }
    b64 = g_base64_encode(value, len);
    json_object_set_string_member(o, key, b64);
    json_node_set_object(root, o);
    json_generator_set_root(gen, root);
    json = json_generator_to_data(gen, NULL);
    path = device_config_path(dev, module);
    return vmaug_store_write_file(path, json, strlen(json), error);
}

/* ---- Registrations: <store>/registrations.json ---- */

static gchar *device_reg_path(Device *dev)
{
    return g_build_filename(vmaug_store_get_dir(dev->store),
                            "registrations.json", NULL);
}

/* The registrations as an array of struct vmaug_registration. */
static GArray *device_reg_load(Device *dev)
{
    g_autofree gchar *path = device_reg_path(dev);
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GBytes) blob = NULL;
    GArray *out = g_array_new(FALSE, TRUE, sizeof(struct vmaug_registration));
    JsonNode *root;
    JsonArray *a;

    blob = vmaug_trust_read_file(path, 1024 * 1024, NULL);
    if (blob == NULL ||
        !json_parser_load_from_data(parser, g_bytes_get_data(blob, NULL),
                                    g_bytes_get_size(blob), NULL) ||
        (root = json_parser_get_root(parser)) == NULL ||
        !JSON_NODE_HOLDS_ARRAY(root)) {
        return out;
    }
    a = json_node_get_array(root);
    for (guint i = 0; i < json_array_get_length(a) &&
                      out->len < DEVICE_MAX_REGISTRATIONS; i++) {
        JsonNode *n = json_array_get_element(a, i);
        struct vmaug_registration r = { 0 };
        JsonObject *o;
        const gchar *name, *version;

        if (!JSON_NODE_HOLDS_OBJECT(n)) {
            continue;
        }
        o = json_node_get_object(n);
        name = json_object_get_string_member_with_default(o, "name", "");
        version = json_object_get_string_member_with_default(o, "version",
                                                             "");
        if (!vmaug_name_is_valid(name) ||
            (*version != '\0' && !vmaug_version_is_valid(version))) {
            continue;
        }
        g_strlcpy((gchar *)r.ref.name, name, sizeof(r.ref.name));
        g_strlcpy((gchar *)r.ref.version, version, sizeof(r.ref.version));
        r.events = GUINT32_TO_LE((guint32)
            json_object_get_int_member_with_default(o, "events", 0));
        r.flags = GUINT32_TO_LE((guint32)
            json_object_get_int_member_with_default(o, "flags", 0));
        g_array_append_val(out, r);
    }
    return out;
}

static gboolean device_reg_save(Device *dev, GArray *regs, GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree gchar *json = NULL;
    g_autofree gchar *path = device_reg_path(dev);

    json_builder_begin_array(b);
    for (guint i = 0; i < regs->len; i++) {
        struct vmaug_registration *r =
            &g_array_index(regs, struct vmaug_registration, i);

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, (const gchar *)r->ref.name);
        json_builder_set_member_name(b, "version");
        json_builder_add_string_value(b, (const gchar *)r->ref.version);
        json_builder_set_member_name(b, "events");
        json_builder_add_int_value(b, GUINT32_FROM_LE(r->events));
        json_builder_set_member_name(b, "flags");
        json_builder_add_int_value(b, GUINT32_FROM_LE(r->flags));
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json = json_generator_to_data(gen, NULL);
    return vmaug_store_write_file(path, json, strlen(json), error);
}

/* ---- Requests ---- */

typedef struct {
    gchar *name;
    gchar *version;                 /* "" for the newest */
} DeviceRef;

static void device_ref_clear(DeviceRef *r)
{
    g_free(r->name);
    g_free(r->version);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(DeviceRef, device_ref_clear)

static gboolean device_parse_ref(const struct vmaug_module_ref *raw,
                                 DeviceRef *out, GError **error)
{
    out->name = vmaug_fixed_string(raw->name, sizeof(raw->name));
    out->version = vmaug_fixed_string(raw->version, sizeof(raw->version));
    if (out->name == NULL || out->version == NULL ||
        !vmaug_name_is_valid(out->name) ||
        (*out->version != '\0' && !vmaug_version_is_valid(out->version))) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid module name or version");
        return FALSE;
    }
    return TRUE;
}

static gboolean device_expect_len(guint32 len, gsize want, GError **error)
{
    if (len != want) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "payload of %u bytes, %" G_GSIZE_FORMAT " expected", len,
                    want);
        return FALSE;
    }
    return TRUE;
}

static void device_defer(Device *dev, guint64 tag)
{
    g_hash_table_add(dev->pending, tag_dup(tag));
}

static gboolean device_query(Device *dev, guint64 tag, const guint8 *p,
                             guint32 len, GError **error)
{
    g_auto(DeviceRef) ref = { 0 };
    g_autoptr(VmaugStoreEntry) e = NULL;
    struct vmaug_module_info info;
    const VmaugManifest *m;

    if (!device_expect_len(len, sizeof(struct vmaug_module_ref), error) ||
        !device_parse_ref((const void *)p, &ref, error)) {
        return FALSE;
    }
    e = vmaug_store_lookup(dev->store, ref.name, ref.version, error);
    if (e == NULL || (m = device_manifest(dev, e, error)) == NULL) {
        return FALSE;
    }
    device_fill_info(dev, &info, e->name, e->version, m);
    device_reply(dev, tag, VMAUG_S_OK, &info, sizeof(info));
    return TRUE;
}

/* Load @name @version (empty: newest); answer @tag (0: nobody waits). */
static gboolean device_load(Device *dev, guint64 tag, const gchar *name,
                            const gchar *version, GError **error)
{
    g_autoptr(VmaugStoreEntry) e = NULL;
    g_autoptr(VmaugPackage) pkg = NULL;
    Module *old = g_hash_table_lookup(dev->modules, name);
    Module *m;

    e = vmaug_store_lookup(dev->store, name, version, error);
    if (e == NULL) {
        return FALSE;
    }
    if (old != NULL && g_strcmp0(old->version, e->version) == 0 &&
        old->state != VMAUG_MODULE_CRASHED) {
        if (old->state == VMAUG_MODULE_LOADED) {
            struct vmaug_module_info info;

            device_fill_info(dev, &info, old->name, old->version,
                             old->manifest);
            if (tag != 0) {
                device_reply(dev, tag, VMAUG_S_OK, &info, sizeof(info));
            }
        } else if (tag != 0) {
            device_defer(dev, tag);
            module_add_load_waiter(old, tag);
        }
        return TRUE;
    }
    /* An older version stays stored but may not run again: that is
     * what rollback protection is for. */
    if (!vmaug_store_check_version(dev->store, name, e->version, dev->name,
                                   error)) {
        return FALSE;
    }
    /* Verified again at every load: trust may have changed since the
     * upload, and the file could have been altered. */
    pkg = vmaug_store_open_package(dev->store, name, e->version, dev->name,
                                   "load", error);
    if (pkg == NULL) {
        return FALSE;
    }
    if (old != NULL) {
        /* Swapping versions: the old one goes first, QEMU stays. */
        struct vmaug_module_ref ref;

        module_ref_fill(old, &ref);
        g_hash_table_remove(dev->modules, name);
        module_stop(old, FALSE);
        device_event(dev, VMAUG_EVENT_MODULE_UNLOADED, &ref, sizeof(ref),
                     NULL, 0);
    }
    m = module_start(dev, pkg, error);
    if (m == NULL) {
        return FALSE;
    }
    g_hash_table_insert(dev->modules, g_strdup(m->name), m);
    if (tag != 0) {
        device_defer(dev, tag);
        module_add_load_waiter(m, tag);
    }
    return TRUE;
}

static gboolean device_unload(Device *dev, guint64 tag, const guint8 *p,
                              guint32 len, GError **error)
{
    g_auto(DeviceRef) ref = { 0 };
    struct vmaug_module_ref raw;
    Module *m;

    if (!device_expect_len(len, sizeof(struct vmaug_module_ref), error) ||
        !device_parse_ref((const void *)p, &ref, error)) {
        return FALSE;
    }
    m = g_hash_table_lookup(dev->modules, ref.name);
    if (m == NULL || (*ref.version != '\0' &&
                      g_strcmp0(ref.version, m->version) != 0)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "%s is not loaded", ref.name);
        return FALSE;
    }
    module_ref_fill(m, &raw);
    g_hash_table_remove(dev->modules, ref.name);
    module_stop(m, FALSE);
    device_reply(dev, tag, VMAUG_S_OK, NULL, 0);
    device_event(dev, VMAUG_EVENT_MODULE_UNLOADED, &raw, sizeof(raw), NULL,
                 0);
    return TRUE;
}

static gboolean device_upload(Device *dev, guint64 tag, guint16 opcode,
                              const guint8 *p, guint32 len, GError **error)
{
    struct vmaug_upload_state st = { 0 };
    guint64 id, offset = 0;

    switch (opcode) {
    case VMAUG_OP_UPLOAD_BEGIN: {
        const struct vmaug_upload_begin *b = (const void *)p;
        g_auto(DeviceRef) ref = { 0 };

        if (!device_expect_len(len, sizeof(*b), error) ||
            !device_parse_ref(&b->ref, &ref, error)) {
            return FALSE;
        }
        if (*ref.version == '\0') {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                        "an upload names its version");
            return FALSE;
        }
        if (!vmaug_store_upload_begin(dev->store,
                                      GUINT64_FROM_LE(b->total_size),
                                      b->sha256, ref.name, ref.version,
                                      dev->name, &id, &offset, error)) {
            return FALSE;
        }
        break;
    }
    case VMAUG_OP_UPLOAD_CHUNK: {
        struct vmaug_upload_chunk c;

        if (len <= sizeof(c)) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                        "chunk without data");
            return FALSE;
        }
        memcpy(&c, p, sizeof(c));
        id = GUINT64_FROM_LE(c.upload_id);
        if (!vmaug_store_upload_chunk(dev->store, id,
                                      GUINT64_FROM_LE(c.offset),
                                      p + sizeof(c), len - sizeof(c),
                                      &offset, error)) {
            return FALSE;
        }
        break;
    }
    case VMAUG_OP_UPLOAD_COMMIT: {
        struct vmaug_upload_ref r;
        g_autoptr(VmaugManifest) m = NULL;
        struct vmaug_module_info info;

        if (!device_expect_len(len, sizeof(r), error)) {
            return FALSE;
        }
        memcpy(&r, p, sizeof(r));
        m = vmaug_store_upload_commit(dev->store,
                                      GUINT64_FROM_LE(r.upload_id),
                                      dev->name, error);
        if (m == NULL) {
            return FALSE;
        }
        device_fill_info(dev, &info, m->name, m->version, m);
        device_reply(dev, tag, VMAUG_S_OK, &info, sizeof(info));
        return TRUE;
    }
    default: {
        struct vmaug_upload_ref r;

        if (!device_expect_len(len, sizeof(r), error)) {
            return FALSE;
        }
        memcpy(&r, p, sizeof(r));
        if (!vmaug_store_upload_abort(dev->store,
                                      GUINT64_FROM_LE(r.upload_id),
                                      dev->name, error)) {
            return FALSE;
        }
        device_reply(dev, tag, VMAUG_S_OK, NULL, 0);
        return TRUE;
    }
    }
    st.upload_id = GUINT64_TO_LE(id);
    st.offset = GUINT64_TO_LE(offset);
    device_reply(dev, tag, VMAUG_S_OK, &st, sizeof(st));
    return TRUE;
}

static gboolean device_invoke(Device *dev, guint64 tag, const guint8 *p,
                              guint32 len, GError **error)
{
    const struct vmaug_invoke *inv = (const void *)p;
    g_autofree gchar *module = NULL;
    g_autofree gchar *function = NULL;
    Module *m;

    if (len < sizeof(*inv)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "short invoke");
        return FALSE;
    }
    module = vmaug_fixed_string(inv->module, sizeof(inv->module));
    function = vmaug_fixed_string(inv->function, sizeof(inv->function));
    if (module == NULL || function == NULL || !vmaug_name_is_valid(module) ||
        *function == '\0') {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid module or function name");
        return FALSE;
    }
    m = g_hash_table_lookup(dev->modules, module);
    if (m == NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "%s is not loaded", module);
        return FALSE;
    }
    if (m->state == VMAUG_MODULE_CRASHED) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_MODULE_FAILED,
                    "%s crashed; load it again", module);
        return FALSE;
    }
    /* Only what the signed manifest exports reaches the module. */
    if (!vmaug_manifest_has_function(m->manifest, function)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "%s does not export %s", module, function);
        return FALSE;
    }
    if (!module_invoke(m, tag, function, p + sizeof(*inv),
                       len - sizeof(*inv), error)) {
        return FALSE;
    }
    device_defer(dev, tag);
    return TRUE;
}

static gboolean device_config(Device *dev, guint64 tag, guint16 opcode,
                              const guint8 *p, guint32 len, GError **error)
{
    const struct vmaug_config_ref *c = (const void *)p;
    g_autofree gchar *module = NULL;
    g_autofree gchar *key = NULL;
    g_autoptr(GBytes) value = NULL;

    if (len < sizeof(*c) || (opcode == VMAUG_OP_CONFIG_GET &&
                             len != sizeof(*c))) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "bad configuration request");
        return FALSE;
    }
    module = vmaug_fixed_string(c->module, sizeof(c->module));
    key = vmaug_fixed_string(c->key, sizeof(c->key));
    if (module == NULL || key == NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid module or key");
        return FALSE;
    }
    if (opcode == VMAUG_OP_CONFIG_SET) {
        if (len - sizeof(*c) > VMAUG_MAX_CONFIG_VALUE) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                        "value too big");
            return FALSE;
        }
        if (!device_config_set(dev, module, key, p + sizeof(*c),
                               len - sizeof(*c), error)) {
            return FALSE;
        }
        device_reply(dev, tag, VMAUG_S_OK, NULL, 0);
        return TRUE;
    }
    if (!device_config_get(dev, module, key, &value, error)) {
        return FALSE;
    }
    device_reply(dev, tag, VMAUG_S_OK, g_bytes_get_data(value, NULL),
                 g_bytes_get_size(value));
    return TRUE;
}

static gboolean device_register(Device *dev, guint64 tag, guint16 opcode,
                                const guint8 *p, guint32 len, GError **error)
{
    g_autoptr(GArray) regs = device_reg_load(dev);
    g_auto(DeviceRef) ref = { 0 };
    const struct vmaug_module_ref *raw = (const void *)p;
    struct vmaug_registration r;
    gboolean found = FALSE;

    if (opcode == VMAUG_OP_REGISTER) {
        if (!device_expect_len(len, sizeof(r), error)) {
            return FALSE;
        }
        memcpy(&r, p, sizeof(r));
        raw = &r.ref;
        if (GUINT32_FROM_LE(r.flags) & ~VMAUG_REG_F_REQUIRED) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                        "unknown registration flags");
            return FALSE;
        }
    } else if (!device_expect_len(len, sizeof(*raw), error)) {
        return FALSE;
    }
    if (!device_parse_ref(raw, &ref, error)) {
        return FALSE;
    }
    for (guint i = 0; i < regs->len; i++) {
        struct vmaug_registration *e =
            &g_array_index(regs, struct vmaug_registration, i);

        if (g_strcmp0((const gchar *)e->ref.name, ref.name) == 0) {
            found = TRUE;
            if (opcode == VMAUG_OP_REGISTER) {
                *e = r;
            } else {
                g_array_remove_index(regs, i);
            }
            break;
        }
    }
    if (opcode == VMAUG_OP_UNREGISTER && !found) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "%s is not registered", ref.name);
        return FALSE;
    }
    if (opcode == VMAUG_OP_REGISTER && !found) {
        if (regs->len >= DEVICE_MAX_REGISTRATIONS) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                        "too many registrations");
            return FALSE;
        }
        g_array_append_val(regs, r);
    }
    if (!device_reg_save(dev, regs, error)) {
        return FALSE;
    }
    device_reply(dev, tag, VMAUG_S_OK, NULL, 0);
    return TRUE;
}

static gboolean device_list(Device *dev, guint64 tag, const guint8 *p,
                            guint32 len, GError **error)
{
    struct vmaug_list_req req;
    struct vmaug_list_resp resp = { 0 };
    g_autoptr(GByteArray) out = g_byte_array_new();
    guint32 start, total;

    if (!device_expect_len(len, sizeof(req), error)) {
        return FALSE;
    }
    memcpy(&req, p, sizeof(req));
    start = GUINT32_FROM_LE(req.start);
    g_byte_array_append(out, (const guint8 *)&resp, sizeof(resp));
    if (GUINT32_FROM_LE(req.what) == VMAUG_LIST_MODULES) {
        g_autoptr(GPtrArray) list = vmaug_store_list(dev->store);

        total = list->len;
        for (guint i = start; i < list->len &&
                              i - start < VMAUG_LIST_MAX_ENTRIES; i++) {
            VmaugStoreEntry *e = g_ptr_array_index(list, i);
            const VmaugManifest *m = device_manifest(dev, e, NULL);
            struct vmaug_module_info info;

            if (m == NULL) {
                /* Refused at load too; listed so the guest sees it. */
                memset(&info, 0, sizeof(info));
                g_strlcpy((gchar *)info.ref.name, e->name,
                          sizeof(info.ref.name));
                g_strlcpy((gchar *)info.ref.version, e->version,
                          sizeof(info.ref.version));
                info.state = GUINT32_TO_LE(VMAUG_MODULE_STORED);
            } else {
                device_fill_info(dev, &info, e->name, e->version, m);
            }
            g_byte_array_append(out, (const guint8 *)&info, sizeof(info));
            resp.count++;
        }
    } else if (GUINT32_FROM_LE(req.what) == VMAUG_LIST_REGISTRATIONS) {
        g_autoptr(GArray) regs = device_reg_load(dev);

        total = regs->len;
        for (guint i = start; i < regs->len &&
                              i - start < VMAUG_LIST_MAX_ENTRIES; i++) {
            g_byte_array_append(out, (const guint8 *)&g_array_index(
                                    regs, struct vmaug_registration, i),
                                sizeof(struct vmaug_registration));
            resp.count++;
        }
    } else {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "unknown list");
        return FALSE;
    }
    resp.total = GUINT32_TO_LE(total);
    resp.count = GUINT32_TO_LE(resp.count);
    memcpy(out->data, &resp, sizeof(resp));
    device_reply(dev, tag, VMAUG_S_OK, out->data, out->len);
    return TRUE;
}

static void device_request(Device *dev, guint64 tag, const guint8 *data,
                           guint32 len)
{
    g_autoptr(GError) error = NULL;
    struct virtio_vmaugment_req req;
    const guint8 *p = data + sizeof(req);
    guint32 plen;
    gboolean ok;

    /* The device validated this, but a QEMU is no more trusted than its
     * guest: the header and its length must agree. */
    if (len < sizeof(req)) {
        device_reply(dev, tag, VMAUG_S_INVALID, NULL, 0);
        return;
    }
    memcpy(&req, data, sizeof(req));
    plen = GUINT32_FROM_LE(req.len);
    if (plen != len - sizeof(req) || plen > VMAUG_MAX_REQ_PAYLOAD ||
        req.flags != 0) {
        device_reply(dev, tag, VMAUG_S_INVALID, NULL, 0);
        return;
    }
    switch (GUINT16_FROM_LE(req.opcode)) {
    case VMAUG_OP_QUERY:
        ok = device_query(dev, tag, p, plen, &error);
        break;
    case VMAUG_OP_LOAD: {
        g_auto(DeviceRef) ref = { 0 };

        ok = device_expect_len(plen, sizeof(struct vmaug_module_ref),
                               &error) &&
             device_parse_ref((const void *)p, &ref, &error) &&
             device_load(dev, tag, ref.name, ref.version, &error);
        break;
    }
    case VMAUG_OP_UNLOAD:
        ok = device_unload(dev, tag, p, plen, &error);
        break;
    case VMAUG_OP_UPLOAD_BEGIN:
    case VMAUG_OP_UPLOAD_CHUNK:
    case VMAUG_OP_UPLOAD_COMMIT:
    case VMAUG_OP_UPLOAD_ABORT:
        ok = device_upload(dev, tag, GUINT16_FROM_LE(req.opcode), p, plen,
                           &error);
        break;
    case VMAUG_OP_INVOKE:
        ok = device_invoke(dev, tag, p, plen, &error);
        break;
    case VMAUG_OP_CONFIG_GET:
    case VMAUG_OP_CONFIG_SET:
        ok = device_config(dev, tag, GUINT16_FROM_LE(req.opcode), p, plen,
                           &error);
        break;
    case VMAUG_OP_REGISTER:
    case VMAUG_OP_UNREGISTER:
        ok = device_register(dev, tag, GUINT16_FROM_LE(req.opcode), p, plen,
                             &error);
        break;
    case VMAUG_OP_LIST:
        ok = device_list(dev, tag, p, plen, &error);
        break;
    default:
        device_reply(dev, tag, VMAUG_S_UNSUPPORTED, NULL, 0);
        return;
    }
    if (!ok) {
        device_reply_error(dev, tag, error);
    }
}

/* The image starts: load what it registered and tell those that care. */
static void device_image_start(Device *dev)
{
    g_autoptr(GArray) regs = device_reg_load(dev);

    for (guint i = 0; i < regs->len; i++) {
        struct vmaug_registration *r =
            &g_array_index(regs, struct vmaug_registration, i);
        g_autoptr(GError) error = NULL;
        const gchar *name = (const gchar *)r->ref.name;
        Module *m;

        if (!device_load(dev, 0, name, (const gchar *)r->ref.version,
                         &error)) {
            g_message("image %s: registered module %s not loaded: %s",
                      dev->name, name, error->message);
            continue;
        }
        m = g_hash_table_lookup(dev->modules, name);
        if (m != NULL && (GUINT32_FROM_LE(r->events) &
                          VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START))) {
            module_post_event(m, VMAUG_EVENT_IMAGE_START, NULL, 0);
        }
    }
}

static gboolean device_hello(Device *dev, const guint8 *data, guint32 len,
                             const gchar **why)
{
    Helper *h = dev->helper;
    struct vmaug_host_hello hello;
    g_autofree gchar *store_path = NULL;
    g_autofree gchar *canon = NULL;
    g_autoptr(GError) error = NULL;
    VmaugStore *store;

    if (len < sizeof(hello) || len - sizeof(hello) > VMAUG_HOST_PATH_MAX) {
        *why = "bad HELLO";
        return FALSE;
    }
    memcpy(&hello, data, sizeof(hello));
    if (GUINT32_FROM_LE(hello.proto_version) != VMAUG_PROTO_VERSION) {
        *why = "device speaks another protocol version";
        return FALSE;
    }
    dev->name = vmaug_fixed_string(hello.name, sizeof(hello.name));
    if (dev->name == NULL) {
        *why = "bad device name";
        return FALSE;
    }
    g_strcanon(dev->name, "abcdefghijklmnopqrstuvwxyz"
               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/ ", '_');
    store_path = g_strndup((const gchar *)data + sizeof(hello),
                           len - sizeof(hello));
    if (strlen(store_path) != len - sizeof(hello) ||
        !g_utf8_validate(store_path, -1, NULL)) {
        *why = "bad store path";
        return FALSE;
    }
    canon = g_canonicalize_filename(*store_path != '\0' ? store_path :
                                    h->default_store, NULL);
    /* QEMU may only pick among stores the host owner listed. */
    if (g_strcmp0(canon, h->default_store) != 0 &&
        !g_ptr_array_find_with_equal_func(h->allowed_stores, canon,
                                          g_str_equal, NULL)) {
        g_warning("device %s asks for store %s, which is not allowed",
                  dev->name, canon);
        *why = "store not allowed";
        return FALSE;
    }
    store = g_hash_table_lookup(h->stores, canon);
    if (store == NULL) {
        store = vmaug_store_open(canon, h->trust, h->policy, &error);
        if (store == NULL) {
            g_warning("store %s: %s", canon, error->message);
            *why = "store unavailable";
            return FALSE;
        }
        g_hash_table_insert(h->stores, g_strdup(canon), store);
    }
    dev->store = store;
    dev->hello = TRUE;
    g_message("device %s connected (store %s)", dev->name, canon);
    device_image_start(dev);
    return TRUE;
}

static gboolean device_on_message(VmaugLink *link, guint16 type, guint64 tag,
                                  const guint8 *data, guint32 len,
                                  gpointer user_data, const gchar **why)
{
    Device *dev = user_data;

    if (type == VMAUG_HOST_HELLO) {
        if (dev->hello) {
            *why = "second HELLO";
            return FALSE;
        }
        return device_hello(dev, data, len, why);
    }
    if (!dev->hello) {
        *why = "message before HELLO";
        return FALSE;
    }
    switch (type) {
    case VMAUG_HOST_REQUEST:
        /* Tags in flight are unique; a reused one would pair answers
         * with the wrong requests. */
        if (g_hash_table_contains(dev->pending, &tag)) {
            device_reply(dev, tag, VMAUG_S_BUSY, NULL, 0);
            return TRUE;
        }
        device_request(dev, tag, data, len);
        return TRUE;
    case VMAUG_HOST_CANCEL:
        if (len != 0) {
            *why = "CANCEL with a payload";
            return FALSE;
        }
        if (g_hash_table_remove(dev->pending, &tag)) {
            /* Bounded: the device cancels only what is in flight. */
            g_hash_table_add(dev->cancelled, tag_dup(tag));
        }
        return TRUE;
    default:
        *why = "unexpected message type";
        return FALSE;
    }
}

static gboolean device_free_idle(gpointer data)
{
    device_free(data);
    return G_SOURCE_REMOVE;
}

static void device_on_closed(VmaugLink *link, const gchar *why,
                             gpointer user_data)
{
    Device *dev = user_data;

    g_message("device %s disconnected: %s",
              dev->name != NULL ? dev->name : "(no hello)", why);
    dev->closed = TRUE;
    dev->helper->devices = g_list_remove(dev->helper->devices, dev);
    /* Not from inside the link's own callback. */
    g_idle_add(device_free_idle, dev);
}

Device *device_new(Helper *helper, int fd)
{
    Device *dev = g_new0(Device, 1);
    struct vmaug_host_hello hello = {
        .proto_version = GUINT32_TO_LE(VMAUG_PROTO_VERSION),
    };

    dev->helper = helper;
    dev->modules = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                         NULL);
    dev->pending = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                         NULL);
    dev->cancelled = g_hash_table_new_full(g_int64_hash, g_int64_equal,
                                           g_free, NULL);
    dev->link = vmaug_link_new(fd, VMAUG_HOST_MAGIC,
                               MAX(VMAUG_HOST_MAX_MSG,
                                   sizeof(struct vmaug_host_hello) +
                                   VMAUG_HOST_PATH_MAX),
                               HELPER_MAX_QUEUED_OUT, device_on_message,
                               device_on_closed, dev);
    helper->devices = g_list_prepend(helper->devices, dev);
    g_strlcpy((gchar *)hello.name, HELPER_VERSION_STRING,
              sizeof(hello.name));
    vmaug_link_send(dev->link, VMAUG_HOST_HELLO, 0, &hello, sizeof(hello),
                    NULL, 0, -1);
    return dev;
}

void device_free(Device *dev)
{
    GHashTableIter it;
    Module *m;

    g_hash_table_iter_init(&it, dev->modules);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&m)) {
        g_hash_table_iter_remove(&it);
        /* The VM is gone: nobody waits for a graceful fini. */
        module_stop(m, TRUE);
    }
    if (!dev->closed) {
        dev->helper->devices = g_list_remove(dev->helper->devices, dev);
    }
    vmaug_link_free(dev->link);
    g_hash_table_unref(dev->modules);
    g_hash_table_unref(dev->pending);
    g_hash_table_unref(dev->cancelled);
    g_free(dev->name);
    g_free(dev);
}
