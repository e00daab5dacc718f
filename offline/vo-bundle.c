/*
 * Patch bundle reading, checking and building.
 *
 * Everything in a bundle is hostile until its manifest's signature has been
 * verified, and the manifest stays hostile in shape: every member's type is
 * checked, unknown members are refused (a misspelled "applies" must not
 * silently make a bundle apply everywhere).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include <archive.h>
#include <archive_entry.h>
#include <linux/virtio_vmaugment.h>

#include "vmaugment-trust.h"
#include "vo-bundle.h"
#include "vo-configure.h"
#include "vo-guest.h"
#include "vo-registry.h"
#include "vo-version.h"

#define VO_MANIFEST "manifest.json"
#define VO_SIGNATURE "manifest.json.p7s"
#define VO_PAYLOAD_PREFIX "payload/"
#define VO_MAX_NAME 128

static void vo_file_op_free(VoFileOp *op)
{
    g_free(op->path);
    g_free(op->payload);
    g_free(op->new_sha256);
    g_free(op->old_sha256);
    g_free(op->xattr_name);
    if (op->owned_data) {
        g_bytes_unref(op->owned_data);
    }
    if (op->xattr_value) {
        g_bytes_unref(op->xattr_value);
    }
    if (op->hits) {
        g_ptr_array_unref(op->hits);
    }
    g_free(op);
}

static void vo_package_op_free(VoPackageOp *op)
{
    g_free(op->payload);
    g_free(op->package);
    g_free(op->architecture);
    g_free(op->version);
    g_free(op->old_version);
    g_free(op);
}

void vo_bundle_free(VoBundle *bundle)
{
    if (!bundle) {
        return;
    }
    g_free(bundle->id);
    g_free(bundle->version);
    g_free(bundle->description);
    if (bundle->manifest) {
        json_node_unref(bundle->manifest);
    }
    if (bundle->files) {
        g_ptr_array_unref(bundle->files);
    }
    if (bundle->registry) {
        g_ptr_array_unref(bundle->registry);
    }
    if (bundle->packages) {
        g_ptr_array_unref(bundle->packages);
    }
    if (bundle->payloads) {
        g_hash_table_unref(bundle->payloads);
    }
    g_free(bundle->signer);
    g_free(bundle->signer_fingerprint);
    g_free(bundle->marker_sha256);
    if (bundle->bytes) {
        g_bytes_unref(bundle->bytes);
    }
    g_free(bundle);
}

const char *vo_file_op_name(VoFileOpKind kind)
{
    static const char *const names[] = {
        [VO_FILE_OP_MKDIR] = "mkdir", [VO_FILE_OP_ADD] = "add",
        [VO_FILE_OP_REPLACE] = "replace", [VO_FILE_OP_DELETE] = "delete",
        [VO_FILE_OP_CHMOD] = "chmod", [VO_FILE_OP_CHOWN] = "chown",
        [VO_FILE_OP_XATTR] = "xattr", [VO_FILE_OP_QUARANTINE] = "quarantine",
    };

    return names[kind];
}

VoFileOp *vo_bundle_quarantine_op(VoBundle *bundle)
{
    for (guint i = 0; bundle->files && i < bundle->files->len; i++) {
        VoFileOp *op = bundle->files->pdata[i];

        if (op->kind == VO_FILE_OP_QUARANTINE) {
            return op;
        }
    }
    return NULL;
}

char *vo_sha256(GBytes *data)
{
    return vmaug_sha256_hex(g_bytes_get_data(data, NULL),
                            g_bytes_get_size(data));
}

/* Bundle ids and versions: a conservative alphabet, no dot first. */
static gboolean vo_bundle_chars_ok(const char *name, const char *extra)
{
    gsize len = strlen(name);

    if (len == 0 || len > VO_MAX_NAME || name[0] == '.') {
        return FALSE;
    }
    for (gsize i = 0; i < len; i++) {
        if (!g_ascii_isalnum(name[i]) && !strchr(extra, name[i])) {
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean vo_bundle_name_ok(const char *name)
{
    return vo_bundle_chars_ok(name, "._+-");
}

/* Payload names: the same, and the "~" and "%" of Debian file names
 * ("openssl_3.0.22-1~deb12u2_amd64.deb", "login_1%3a4.13_amd64.deb"). */
static gboolean vo_bundle_payload_name_ok(const char *name)
{
    return vo_bundle_chars_ok(name, "._+-~%");
}

static gboolean vo_bundle_sha_ok(const char *s)
{
    if (strlen(s) != 64) {
        return FALSE;
    }
    for (int i = 0; i < 64; i++) {
        if (!g_ascii_isxdigit(s[i]) || g_ascii_isupper(s[i])) {
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean vo_bundle_invalid(GError **error, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

static gboolean vo_bundle_invalid(GError **error, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VO_ERROR, VO_ERROR_INVALID, "bad bundle manifest: %s",
                msg);
    return FALSE;
}

/* Refuses members outside @allowed (NULL-terminated). */
static gboolean vo_bundle_members_ok(JsonObject *obj, const char *where,
                                     const char *const *allowed,
                                     GError **error)
{
    g_autoptr(GList) members = json_object_get_members(obj);

    for (GList *l = members; l; l = l->next) {
        if (!g_strv_contains(allowed, l->data)) {
            return vo_bundle_invalid(error, "%s: unknown member \"%s\"",
                                     where, (const char *)l->data);
        }
    }
    return TRUE;
}

/* A string member, or NULL (with an error set if present but not a string
 * or if @required). */
static const char *vo_bundle_string(JsonObject *obj, const char *member,
                                    const char *where, gboolean required,
                                    GError **error)
{
    JsonNode *node = json_object_get_member(obj, member);

    if (!node) {
        if (required) {
            vo_bundle_invalid(error, "%s: \"%s\" is missing", where, member);
        }
        return NULL;
    }
    if (!JSON_NODE_HOLDS_VALUE(node) ||
        json_node_get_value_type(node) != G_TYPE_STRING) {
        vo_bundle_invalid(error, "%s: \"%s\" must be a string", where, member);
        return NULL;
    }
    return json_node_get_string(node);
}

static gboolean vo_bundle_id(JsonObject *obj, const char *member,
                             gboolean present, guint32 *value,
                             const char *where, GError **error)
{
    JsonNode *node = json_object_get_member(obj, member);
    gint64 v;

    if (!present) {
        return TRUE;
    }
    if (!JSON_NODE_HOLDS_VALUE(node) ||
        json_node_get_value_type(node) != G_TYPE_INT64) {
        return vo_bundle_invalid(error, "%s: \"%s\" must be an integer",
                                 where, member);
    }
    v = json_node_get_int(node);
    if (v < 0 || v > G_MAXUINT32 - 1) {
        return vo_bundle_invalid(error, "%s: \"%s\" out of range", where,
                                 member);
    }
    *value = v;
    return TRUE;
}

static gboolean vo_bundle_parse_op(VoBundle *bundle, JsonNode *node,
                                   guint index, GError **error)
{
    static const char *const allowed[] = {
        "op", "path", "payload", "old_sha256", "mode", "uid", "gid",
        "name", "value", NULL,
    };
    g_autofree char *where = g_strdup_printf("files[%u]", index);
    g_autoptr(GError) local = NULL;
    JsonObject *obj;
    const char *op, *path, *payload, *old, *mode;
    VoFileOp *fop;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        return vo_bundle_invalid(error, "%s must be an object", where);
    }
    obj = json_node_get_object(node);
    if (!vo_bundle_members_ok(obj, where, allowed, error)) {
        return FALSE;
    }
    op = vo_bundle_string(obj, "op", where, TRUE, error);
    if (!op) {
        return FALSE;
    }
    path = vo_bundle_string(obj, "path", where, TRUE, error);
    if (!path) {
        return FALSE;
    }
    if (!vo_guest_check_path(path, &local)) {
        g_set_error(error, VO_ERROR, local->code, "%s: %s", where,
                    local->message);
        return FALSE;
    }
    fop = g_new0(VoFileOp, 1);
    g_ptr_array_add(bundle->files, fop);
    fop->path = g_strdup(path);
    if (g_str_equal(op, "mkdir")) {
        fop->kind = VO_FILE_OP_MKDIR;
    } else if (g_str_equal(op, "add")) {
        fop->kind = VO_FILE_OP_ADD;
    } else if (g_str_equal(op, "replace")) {
        fop->kind = VO_FILE_OP_REPLACE;
    } else if (g_str_equal(op, "delete")) {
        fop->kind = VO_FILE_OP_DELETE;
    } else if (g_str_equal(op, "chmod")) {
        fop->kind = VO_FILE_OP_CHMOD;
    } else if (g_str_equal(op, "chown")) {
        fop->kind = VO_FILE_OP_CHOWN;
    } else if (g_str_equal(op, "quarantine")) {
        if (vo_bundle_quarantine_op(bundle) != NULL) {
            return vo_bundle_invalid(error, "%s: one quarantine instruction "
                                     "per bundle", where);
        }
        fop->kind = VO_FILE_OP_QUARANTINE;
    } else if (g_str_equal(op, "xattr")) {
        static const char *const prefixes[] = {
            "user.", "trusted.", "security.", NULL,
        };
        const char *name = vo_bundle_string(obj, "name", where, TRUE, error);
        JsonNode *value = json_object_get_member(obj, "value");
        gboolean known = FALSE;

        if (!name) {
            return FALSE;
        }
        for (guint i = 0; prefixes[i]; i++) {
            known |= g_str_has_prefix(name, prefixes[i]) &&
                     strlen(name) > strlen(prefixes[i]);
        }
        if (!known || strlen(name) > 255) {
            return vo_bundle_invalid(error, "%s: xattr \"name\" must be "
                                     "user.*, trusted.* or security.*",
                                     where);
        }
        if (!value || (!JSON_NODE_HOLDS_NULL(value) &&
                       (!JSON_NODE_HOLDS_VALUE(value) ||
                        json_node_get_value_type(value) != G_TYPE_STRING))) {
            return vo_bundle_invalid(error, "%s: xattr \"value\" is a "
                                     "string, or null to remove", where);
        }
        fop->kind = VO_FILE_OP_XATTR;
        fop->xattr_name = g_strdup(name);
        if (!JSON_NODE_HOLDS_NULL(value)) {
            const char *v = json_node_get_string(value);

            fop->xattr_value = g_bytes_new(v, strlen(v));
        }
    } else {
        return vo_bundle_invalid(error, "%s: unknown op \"%s\"", where, op);
    }

    payload = vo_bundle_string(obj, "payload", where, FALSE, error);
    if (!payload && json_object_has_member(obj, "payload")) {
        return FALSE;
    }
    if ((fop->kind == VO_FILE_OP_ADD || fop->kind == VO_FILE_OP_REPLACE) !=
        (payload != NULL)) {
        return vo_bundle_invalid(error, "%s: \"payload\" is required for "
                                 "add and replace, and only there", where);
    }
    if (payload) {
        if (!vo_bundle_payload_name_ok(payload)) {
            return vo_bundle_invalid(error, "%s: bad payload name", where);
        }
        fop->payload = g_strdup(payload);
    }

    old = vo_bundle_string(obj, "old_sha256", where,
                           fop->kind == VO_FILE_OP_REPLACE, error);
    if (!old && (fop->kind == VO_FILE_OP_REPLACE ||
                 json_object_has_member(obj, "old_sha256"))) {
        return FALSE;
    }
    if (old) {
        if (fop->kind != VO_FILE_OP_REPLACE && fop->kind != VO_FILE_OP_DELETE) {
            return vo_bundle_invalid(error, "%s: \"old_sha256\" only applies "
                                     "to replace and delete", where);
        }
        if (!vo_bundle_sha_ok(old)) {
            return vo_bundle_invalid(error, "%s: \"old_sha256\" must be 64 "
                                     "lower-case hex digits", where);
        }
        fop->old_sha256 = g_strdup(old);
    }

    mode = vo_bundle_string(obj, "mode", where, FALSE, error);
    if (!mode && json_object_has_member(obj, "mode")) {
        return FALSE;
    }
    if (mode) {
        char *end = NULL;
        guint64 v = g_ascii_strtoull(mode, &end, 8);

        /* A string, so that 644 and 0644 cannot be confused. */
        if (!*mode || *end || v > 07777 || mode[0] != '0') {
            return vo_bundle_invalid(error, "%s: \"mode\" must be an octal "
                                     "string like \"0644\"", where);
        }
        fop->has_mode = TRUE;
        fop->mode = v;
    }
    fop->has_uid = json_object_has_member(obj, "uid");
    fop->has_gid = json_object_has_member(obj, "gid");
    if (!vo_bundle_id(obj, "uid", fop->has_uid, &fop->uid, where, error) ||
        !vo_bundle_id(obj, "gid", fop->has_gid, &fop->gid, where, error)) {
        return FALSE;
    }
    if (fop->kind == VO_FILE_OP_CHMOD && !fop->has_mode) {
        return vo_bundle_invalid(error, "%s: chmod needs \"mode\"", where);
    }
    if (fop->kind == VO_FILE_OP_CHOWN && !fop->has_uid && !fop->has_gid) {
        return vo_bundle_invalid(error, "%s: chown needs \"uid\" or \"gid\"",
                                 where);
    }
    if ((json_object_has_member(obj, "name") ||
         json_object_has_member(obj, "value")) &&
        fop->kind != VO_FILE_OP_XATTR) {
        return vo_bundle_invalid(error, "%s: \"name\"/\"value\" belong to "
                                 "xattr", where);
    }
    if ((fop->kind == VO_FILE_OP_DELETE || fop->kind == VO_FILE_OP_REPLACE ||
         fop->kind == VO_FILE_OP_XATTR ||
         fop->kind == VO_FILE_OP_QUARANTINE) &&
        (fop->has_mode || fop->has_uid || fop->has_gid)) {
        return vo_bundle_invalid(error, "%s: %s takes no attributes", where,
                                 op);
    }
    if (fop->kind == VO_FILE_OP_ADD || fop->kind == VO_FILE_OP_MKDIR) {
        /* New files get explicit, predictable attributes. */
        if (!fop->has_mode) {
            fop->mode = fop->kind == VO_FILE_OP_ADD ? 0644 : 0755;
        }
        fop->has_mode = fop->has_uid = fop->has_gid = TRUE;
    }
    return TRUE;
}

/*
 * Instructions creating each missing level of directory @path (0755,
 * 0:0; kept when present), @path itself too when @self, inserted at
 * @at in the bundle's instructions: what "marker" and the parents of a
 * "mkdir" need.  A level some instruction already names is left to it.
 * Returns the last level's path as the instructions spell it.
 */
static char *vo_bundle_add_dirs(VoBundle *bundle, const char *path,
                                gboolean self, guint at, GHashTable *paths)
{
    g_autofree char *norm = vo_guest_normalize_path(path);
    g_auto(GStrv) parts = g_strsplit(norm + 1, "/", -1);
    g_autoptr(GString) dir = g_string_new(NULL);
    gboolean windows = path[0] != '/';

    for (guint i = 0; parts[i] && (self || parts[i + 1]); i++) {
        VoFileOp *op;

        g_string_append_printf(dir, "%s%s", windows ? "\\" : "/", parts[i]);
        op = g_new0(VoFileOp, 1);
        op->kind = VO_FILE_OP_MKDIR;
        op->path = g_strdup_printf("%s%s", windows ? "C:" : "", dir->str);
        if (!g_hash_table_add(paths, vo_guest_normalize_path(op->path))) {
            vo_file_op_free(op);
            continue;
        }
        op->mode = 0755;
        op->has_mode = op->has_uid = op->has_gid = TRUE;
        g_ptr_array_insert(bundle->files, at++, op);
    }
    return g_strdup_printf("%s%s", windows ? "C:" : "", dir->str);
}

/*
 * "marker": "DIR" adds instructions creating DIR (each level, kept when
 * present) and DIR/ID-VERSION.json naming the bundle, the manifest's hash
 * and the signer, for a check from inside the guest at its next boot.
 */
static gboolean vo_bundle_add_marker(VoBundle *bundle, JsonNode *node,
                                     GBytes *manifest, GHashTable *paths,
                                     GError **error)
{
    g_autoptr(JsonBuilder) jb = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *dir = NULL;
    g_autofree char *sha = vo_sha256(manifest);
    g_autofree char *text = NULL;
    gboolean windows;
    const char *path;
    VoFileOp *op;

    if (!JSON_NODE_HOLDS_VALUE(node) ||
        json_node_get_value_type(node) != G_TYPE_STRING) {
        return vo_bundle_invalid(error, "\"marker\" is a directory path");
    }
    path = json_node_get_string(node);
    if (!vo_guest_check_path(path, NULL)) {
        return vo_bundle_invalid(error, "bad \"marker\" directory");
    }
    windows = path[0] != '/';
    dir = vo_bundle_add_dirs(bundle, path, TRUE, bundle->files->len, paths);

    json_builder_begin_object(jb);
    json_builder_set_member_name(jb, "bundle");
    json_builder_add_string_value(jb, bundle->id);
    json_builder_set_member_name(jb, "version");
    json_builder_add_string_value(jb, bundle->version);
    json_builder_set_member_name(jb, "manifest_sha256");
    json_builder_add_string_value(jb, sha);
    json_builder_set_member_name(jb, "signer_fingerprint");
    json_builder_add_string_value(jb, bundle->signer_fingerprint
                                          ? bundle->signer_fingerprint
                                          : "");
    json_builder_end_object(jb);
    root = json_builder_get_root(jb);
    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, NULL);

    op = g_new0(VoFileOp, 1);
    op->kind = VO_FILE_OP_ADD;
    op->path = g_strdup_printf("%s%s%s-%s.json", dir, windows ? "\\" : "/",
                               bundle->id, bundle->version);
    op->owned_data = g_bytes_new(text, strlen(text));
    op->data = op->owned_data;
    op->new_sha256 = vo_sha256(op->data);
    op->mode = 0644;
    op->has_mode = op->has_uid = op->has_gid = TRUE;
    g_ptr_array_add(bundle->files, op);
    if (!g_hash_table_add(paths, vo_guest_normalize_path(op->path))) {
        return vo_bundle_invalid(error, "the marker's path is also an "
                                 "instruction's");
    }
    /* The guest reports in fixed protocol fields. */
    if (strlen(bundle->id) >= VMAUG_NAME_MAX ||
        strlen(bundle->version) >= VMAUG_VERSION_MAX) {
        return vo_bundle_invalid(error, "a bundle with a \"marker\" has an "
                                 "id shorter than 64 and a version shorter "
                                 "than 32 characters");
    }
    bundle->marker_sha256 = g_strdup(sha);
    return TRUE;
}

/* The bytes of payload @name, which the signed table @payload lists
 * with their hash. */
static GBytes *vo_bundle_payload(VoBundle *bundle, JsonObject *payload,
                                 const char *name, const char *where,
                                 GError **error)
{
    JsonNode *entry = json_object_get_member(payload, name);
    GBytes *data = g_hash_table_lookup(bundle->payloads, name);
    g_autofree char *have = NULL;
    const char *sha;

    if (!entry || !JSON_NODE_HOLDS_OBJECT(entry) || !data) {
        vo_bundle_invalid(error, "%s: payload \"%s\" is missing", where,
                          name);
        return NULL;
    }
    sha = vo_bundle_string(json_node_get_object(entry), "sha256", name, TRUE,
                           error);
    if (!sha) {
        return NULL;
    }
    have = vo_sha256(data);
    if (!g_str_equal(sha, have)) {
        g_set_error(error, VO_ERROR, VO_ERROR_SIGNATURE,
                    "payload \"%s\" does not match the signed manifest's "
                    "hash", name);
        return NULL;
    }
    return data;
}

/*
 * A package to "stage": its .deb is added, as a file, to the directory
 * the guest installs from at its next boot (vo-configure.h), where dpkg
 * runs the preinst that an offline unpack cannot.
 */
static gboolean vo_bundle_stage(VoBundle *bundle, const char *pl,
                                JsonObject *payload, const char *where,
                                GHashTable *paths, GError **error)
{
    VoFileOp *op;

    g_free(vo_bundle_add_dirs(bundle, VO_CONFIGURE_STAGED, TRUE,
                              bundle->files->len, paths));
    op = g_new0(VoFileOp, 1);
    op->kind = VO_FILE_OP_ADD;
    op->path = g_strdup_printf("%s/%s", VO_CONFIGURE_STAGED, pl);
    op->payload = g_strdup(pl);
    op->mode = 0644;
    op->has_mode = op->has_uid = op->has_gid = TRUE;
    g_ptr_array_add(bundle->files, op);
    if (!g_hash_table_add(paths, vo_guest_normalize_path(op->path))) {
        return vo_bundle_invalid(error, "%s: %s appears twice", where,
                                 op->path);
    }
    op->data = vo_bundle_payload(bundle, payload, pl, where, error);
    if (!op->data) {
        return FALSE;
    }
    op->new_sha256 = vo_sha256(op->data);
    return TRUE;
}

/*
 * "packages": {"op": "unpack" or "stage", "payload": P, "package": N,
 * "architecture": A, "version": V, "old_version": O or null}, each
 * package once, names and versions as dpkg accepts them.
 */
static gboolean vo_bundle_parse_packages(VoBundle *bundle, JsonNode *node,
                                         JsonObject *payload,
                                         GHashTable *paths, GError **error)
{
    static const char *const allowed[] = {
        "op", "payload", "package", "architecture", "version",
        "old_version", NULL,
    };
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash,
                                                       g_str_equal, g_free,
                                                       NULL);
    JsonArray *arr;

    if (!JSON_NODE_HOLDS_ARRAY(node)) {
        return vo_bundle_invalid(error, "\"packages\" must be an array");
    }
    arr = json_node_get_array(node);
    if (json_array_get_length(arr) > VO_BUNDLE_MAX_OPS) {
        return vo_bundle_invalid(error, "too many packages");
    }
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        g_autofree char *where = g_strdup_printf("packages[%u]", i);
        JsonNode *el = json_array_get_element(arr, i);
        g_autoptr(GError) local = NULL;
        const char *op, *pl, *name, *arch, *version;
        JsonNode *old;
        JsonObject *obj;
        VoPackageOp *pop;

        if (!JSON_NODE_HOLDS_OBJECT(el)) {
            return vo_bundle_invalid(error, "%s must be an object", where);
        }
        obj = json_node_get_object(el);
        if (!vo_bundle_members_ok(obj, where, allowed, error) ||
            !(op = vo_bundle_string(obj, "op", where, TRUE, error)) ||
            !(pl = vo_bundle_string(obj, "payload", where, TRUE, error)) ||
            !(name = vo_bundle_string(obj, "package", where, TRUE, error)) ||
            !(arch = vo_bundle_string(obj, "architecture", where, TRUE,
                                      error)) ||
            !(version = vo_bundle_string(obj, "version", where, TRUE,
                                         error))) {
            return FALSE;
        }
        old = json_object_get_member(obj, "old_version");
        if (!g_str_equal(op, "unpack") && !g_str_equal(op, "stage")) {
            return vo_bundle_invalid(error, "%s: unknown op \"%s\"", where,
                                     op);
        }
        if (!old || (!JSON_NODE_HOLDS_NULL(old) &&
                     (!JSON_NODE_HOLDS_VALUE(old) ||
                      json_node_get_value_type(old) != G_TYPE_STRING))) {
            return vo_bundle_invalid(error, "%s: \"old_version\" is a "
                                     "string, or null for a new package",
                                     where);
        }
        if (!vo_bundle_payload_name_ok(pl)) {
            return vo_bundle_invalid(error, "%s: bad payload name", where);
        }
        if (!vo_version_check_package(name, &local) ||
            !vo_version_check_arch(arch, &local) ||
            !vo_version_check(version, &local) ||
            (!JSON_NODE_HOLDS_NULL(old) &&
             !vo_version_check(json_node_get_string(old), &local))) {
            return vo_bundle_invalid(error, "%s: %s", where, local->message);
        }
        if (!g_hash_table_add(seen, g_strdup_printf("%s:%s", name, arch))) {
            return vo_bundle_invalid(error, "%s: %s:%s appears twice", where,
                                     name, arch);
        }
        if (g_str_equal(op, "stage")) {
            if (!vo_bundle_stage(bundle, pl, payload, where, paths, error)) {
                return FALSE;
            }
            continue;
        }
        pop = g_new0(VoPackageOp, 1);
        g_ptr_array_add(bundle->packages, pop);
        pop->payload = g_strdup(pl);
        pop->package = g_strdup(name);
        pop->architecture = g_strdup(arch);
        pop->version = g_strdup(version);
        pop->old_version = JSON_NODE_HOLDS_NULL(old)
                               ? NULL : g_strdup(json_node_get_string(old));
        pop->data = vo_bundle_payload(bundle, payload, pl, where, error);
        if (!pop->data) {
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean vo_bundle_parse(VoBundle *bundle, GBytes *manifest,
                                GError **error)
{
    static const char *const allowed[] = {
        "format", "id", "version", "description", "applies", "files",
        "registry", "packages", "marker", "payload", NULL,
    };
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GHashTable) paths = g_hash_table_new_full(g_str_hash,
                                                        g_str_equal, g_free,
                                                        NULL);
    gsize len;
    const char *text = g_bytes_get_data(manifest, &len);
    JsonNode *root, *node;
    JsonObject *obj, *payload;
    JsonArray *files;
    const char *s;

    if (!g_utf8_validate(text, len, NULL)) {
        return vo_bundle_invalid(error, "not UTF-8");
    }
    if (!json_parser_load_from_data(parser, text, len, error)) {
        return FALSE;
    }
    root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        return vo_bundle_invalid(error, "the root must be an object");
    }
    bundle->manifest = json_node_ref(root);
    obj = json_node_get_object(root);
    if (!vo_bundle_members_ok(obj, "manifest", allowed, error)) {
        return FALSE;
    }
    node = json_object_get_member(obj, "format");
    if (!node || !JSON_NODE_HOLDS_VALUE(node) ||
        json_node_get_value_type(node) != G_TYPE_INT64 ||
        json_node_get_int(node) != VO_BUNDLE_FORMAT) {
        return vo_bundle_invalid(error, "\"format\" must be %d",
                                 VO_BUNDLE_FORMAT);
    }
    s = vo_bundle_string(obj, "id", "manifest", TRUE, error);
    if (!s) {
        return FALSE;
    }
    if (!vo_bundle_name_ok(s)) {
        return vo_bundle_invalid(error, "bad \"id\"");
    }
    bundle->id = g_strdup(s);
    s = vo_bundle_string(obj, "version", "manifest", TRUE, error);
    if (!s) {
        return FALSE;
    }
    if (!vo_bundle_name_ok(s)) {
        return vo_bundle_invalid(error, "bad \"version\"");
    }
    bundle->version = g_strdup(s);
    s = vo_bundle_string(obj, "description", "manifest", FALSE, error);
    if (!s && json_object_has_member(obj, "description")) {
        return FALSE;
    }
    bundle->description = g_strdup(s);

    node = json_object_get_member(obj, "applies");
    if (node) {
        if (!JSON_NODE_HOLDS_ARRAY(node)) {
            return vo_bundle_invalid(error, "\"applies\" must be an array");
        }
        bundle->rules = json_node_get_array(node);
    }

    node = json_object_get_member(obj, "registry");
    if (node && !vo_registry_parse(node, bundle->registry, error)) {
        return FALSE;
    }

    node = json_object_get_member(obj, "payload");
    if (!node || !JSON_NODE_HOLDS_OBJECT(node)) {
        return vo_bundle_invalid(error, "\"payload\" must be an object");
    }
    payload = json_node_get_object(node);

    node = json_object_get_member(obj, "files");
    if (!node || !JSON_NODE_HOLDS_ARRAY(node)) {
        return vo_bundle_invalid(error, "\"files\" must be an array");
    }
    files = json_node_get_array(node);
    if (json_array_get_length(files) > VO_BUNDLE_MAX_OPS) {
        return vo_bundle_invalid(error, "too many instructions");
    }
    for (guint i = 0; i < json_array_get_length(files); i++) {
        VoFileOp *op;

        if (!vo_bundle_parse_op(bundle, json_array_get_element(files, i), i,
                                error)) {
            return FALSE;
        }
        op = g_ptr_array_index(bundle->files, bundle->files->len - 1);
        /* One instruction per path keeps checking and verifying exact. */
        if (!g_hash_table_add(paths, vo_guest_normalize_path(op->path))) {
            return vo_bundle_invalid(error, "files[%u]: %s appears twice%s",
                                     i, op->path, op->kind ==
                                     VO_FILE_OP_MKDIR ? " (or as the parent "
                                     "of an earlier mkdir)" : "");
        }
        /* mkdir -p: the missing parents, before it (as "marker" does). */
        if (op->kind == VO_FILE_OP_MKDIR) {
            g_free(vo_bundle_add_dirs(bundle, op->path, FALSE,
                                      bundle->files->len - 1, paths));
        }
        if (op->payload) {
            g_autofree char *where = g_strdup_printf("files[%u]", i);

            op->data = vo_bundle_payload(bundle, payload, op->payload, where,
                                         error);
            if (!op->data) {
                return FALSE;
            }
            op->new_sha256 = vo_sha256(op->data);
        }
    }
    node = json_object_get_member(obj, "packages");
    if (node && !vo_bundle_parse_packages(bundle, node, payload, paths,
                                          error)) {
        return FALSE;
    }
    node = json_object_get_member(obj, "marker");
    if (node && !vo_bundle_add_marker(bundle, node, manifest, paths, error)) {
        return FALSE;
    }
    /* Every payload carried must be one the signed manifest lists. */
    {
        GHashTableIter it;
        gpointer key;

        g_hash_table_iter_init(&it, bundle->payloads);
        while (g_hash_table_iter_next(&it, &key, NULL)) {
            if (!json_object_has_member(payload, key)) {
                g_set_error(error, VO_ERROR, VO_ERROR_SIGNATURE,
                            "payload \"%s\" is not in the signed manifest",
                            (const char *)key);
                return FALSE;
            }
        }
    }
    return TRUE;
}

static GBytes *vo_bundle_read_entry(struct archive *a, gint64 size,
                                    gint64 max, const char *name,
                                    GError **error)
{
    guint8 *buf;
    la_ssize_t got;

    if (size < 0 || size > max) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "bundle member %s is too large", name);
        return NULL;
    }
    buf = g_malloc(size ? size : 1);
    got = archive_read_data(a, buf, size);
    if (got != size) {
        g_free(buf);
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "bundle member %s is truncated: %s", name,
                    archive_error_string(a) ? archive_error_string(a) : "");
        return NULL;
    }
    return g_bytes_new_take(buf, size);
}

static VoBundle *vo_bundle_new(void)
{
    VoBundle *bundle = g_new0(VoBundle, 1);

    bundle->files = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_file_op_free);
    bundle->registry = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_reg_op_free);
    bundle->packages = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_package_op_free);
    bundle->payloads = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                             (GDestroyNotify)g_bytes_unref);
    return bundle;
}

VoBundle *vo_bundle_parse_unverified(GBytes *manifest, GHashTable *payloads,
                                     GError **error)
{
    g_autoptr(VoBundle) bundle = vo_bundle_new();
    GHashTableIter it;
    gpointer key, value;

    g_hash_table_iter_init(&it, payloads);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        g_hash_table_insert(bundle->payloads, g_strdup(key),
                            g_bytes_ref(value));
    }
    if (!vo_bundle_parse(bundle, manifest, error)) {
        return NULL;
    }
    return g_steal_pointer(&bundle);
}

/* The members of the tar archive @a (opened on @path, freed here), then
 * the signature (unless @trust_dir is NULL: already verified), then the
 * manifest. */
static VoBundle *vo_bundle_read(struct archive *a, const char *path,
                                const char *trust_dir, const char *signer_cn,
                                const char *signer_fp, GError **error)
{
    g_autoptr(VoBundle) bundle = vo_bundle_new();
    g_autoptr(GBytes) manifest = NULL;
    g_autoptr(GBytes) signature = NULL;
    g_autoptr(VmaugTrustStore) store = NULL;
    g_autoptr(VmaugTrustSigner) signer = NULL;
    g_autoptr(GError) local = NULL;
    struct archive_entry *entry;
    guint64 total = 0;
    int r;

    while ((r = archive_read_next_header(a, &entry)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(entry);
        gint64 size = archive_entry_size(entry);
        GBytes *data;

        if (name && archive_entry_filetype(entry) == AE_IFDIR &&
            (g_str_equal(name, "payload") || g_str_equal(name, "payload/"))) {
            /* tar(1) records the folder; it carries nothing. */
            continue;
        }
        if (!name || archive_entry_filetype(entry) != AE_IFREG) {
            g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                        "bundle member %s is not a regular file",
                        name ? name : "(unnamed)");
            goto fail;
        }
        if (g_str_equal(name, VO_MANIFEST) && !manifest) {
            manifest = vo_bundle_read_entry(a, size, VO_BUNDLE_MAX_MANIFEST,
                                            name, error);
            if (!manifest) {
                goto fail;
            }
        } else if (g_str_equal(name, VO_SIGNATURE) && !signature) {
            signature = vo_bundle_read_entry(
                a, size, VMAUG_TRUST_MAX_SIGNATURE_SIZE, name, error);
            if (!signature) {
                goto fail;
            }
        } else if (g_str_has_prefix(name, VO_PAYLOAD_PREFIX) &&
                   vo_bundle_payload_name_ok(name +
                                             strlen(VO_PAYLOAD_PREFIX)) &&
                   !g_hash_table_contains(bundle->payloads,
                                          name + strlen(VO_PAYLOAD_PREFIX))) {
            data = vo_bundle_read_entry(a, size,
                                        VO_BUNDLE_MAX_PAYLOAD_TOTAL - total,
                                        name, error);
            if (!data) {
                goto fail;
            }
            total += g_bytes_get_size(data);
            g_hash_table_insert(bundle->payloads,
                                g_strdup(name + strlen(VO_PAYLOAD_PREFIX)),
                                data);
        } else {
            g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                        "unexpected or repeated bundle member %s", name);
            goto fail;
        }
    }
    if (r != ARCHIVE_EOF) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "cannot read bundle %s: %s", path,
                    archive_error_string(a));
        goto fail;
    }
    archive_read_free(a);
    a = NULL;

    if (!manifest || !signature) {
        g_set_error(error, VO_ERROR, VO_ERROR_SIGNATURE,
                    "bundle %s lacks %s; only signed bundles are applied",
                    path, manifest ? VO_SIGNATURE : VO_MANIFEST);
        return NULL;
    }
    if (!trust_dir) {
        /* vo_bundle_load_checked_data(): our parent verified these bytes
         * and told us by whom. */
        bundle->signer = g_strdup(signer_cn);
        bundle->signer_fingerprint = g_strdup(signer_fp);
        if (!vo_bundle_parse(bundle, manifest, error)) {
            return NULL;
        }
        return g_steal_pointer(&bundle);
    }
    /* Nothing of the manifest is parsed before its signature checks out. */
    store = vmaug_trust_store_new_from_dir(trust_dir, &local);
    if (!store) {
        g_set_error(error, VO_ERROR, VO_ERROR_SIGNATURE,
                    "cannot load the trust store %s: %s", trust_dir,
                    local->message);
        return NULL;
    }
    signer = vmaug_trust_store_verify(store, manifest, signature, &local);
    if (!signer) {
        g_set_error(error, VO_ERROR, VO_ERROR_SIGNATURE,
                    "bundle %s: signature rejected: %s", path,
                    local->message);
        return NULL;
    }
    bundle->signer = g_strdup(signer->common_name);
    bundle->signer_fingerprint = g_strdup(signer->fingerprint);
    if (!vo_bundle_parse(bundle, manifest, error)) {
        return NULL;
    }
    return g_steal_pointer(&bundle);

fail:
    archive_read_free(a);
    return NULL;
}

VoBundle *vo_bundle_load(const char *path, const char *trust_dir,
                         GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autofree char *data = NULL;
    VoBundle *bundle;
    gsize len;

    /*
     * Read once into memory: what is verified here is exactly what the
     * worker gets (bundle->bytes), whatever happens to the file.
     */
    if (!g_file_get_contents(path, &data, &len, &local)) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "cannot read bundle %s: %s", path, local->message);
        return NULL;
    }
    if (len > VO_BUNDLE_MAX_PAYLOAD_TOTAL + VO_BUNDLE_MAX_MANIFEST +
                  64 * 1024 * 1024) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "bundle %s is too large", path);
        return NULL;
    }
    bundle = vo_bundle_load_data(data, len, path, trust_dir, error);
    if (bundle) {
        bundle->bytes = g_bytes_new_take(g_steal_pointer(&data), len);
    }
    return bundle;
}

/* The tar archive of @len bytes at @data, read by vo_bundle_read(). */
static VoBundle *vo_bundle_read_memory(const void *data, gsize len,
                                       const char *name,
                                       const char *trust_dir,
                                       const char *signer,
                                       const char *fingerprint,
                                       GError **error)
{
    struct archive *a = archive_read_new();

    archive_read_support_format_tar(a);
    if (archive_read_open_memory(a, data, len) != ARCHIVE_OK) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "cannot read bundle %s: %s", name,
                    archive_error_string(a));
        archive_read_free(a);
        return NULL;
    }
    return vo_bundle_read(a, name, trust_dir, signer, fingerprint, error);
}

VoBundle *vo_bundle_load_checked_data(const void *data, gsize len,
                                      const char *name, const char *signer,
                                      const char *fingerprint,
                                      GError **error)
{
    return vo_bundle_read_memory(data, len, name, NULL, signer, fingerprint,
                                 error);
}

VoBundle *vo_bundle_load_data(const void *data, gsize len, const char *name,
                              const char *trust_dir, GError **error)
{
    return vo_bundle_read_memory(data, len, name, trust_dir, NULL, NULL,
                                 error);
}

static gboolean vo_bundle_add_entry(struct archive *a, const char *name,
                                    GBytes *data, GError **error)
{
    struct archive_entry *entry = archive_entry_new();
    gsize len;
    const void *p = g_bytes_get_data(data, &len);
    gboolean ok;

    archive_entry_set_pathname(entry, name);
    archive_entry_set_filetype(entry, AE_IFREG);
    archive_entry_set_perm(entry, 0644);
    archive_entry_set_size(entry, len);
    /* Reproducible archives: no owners or times. */
    archive_entry_set_mtime(entry, 0, 0);
    ok = archive_write_header(a, entry) == ARCHIVE_OK &&
         (len == 0 || archive_write_data(a, p, len) == (la_ssize_t)len);
    archive_entry_free(entry);
    if (!ok) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot write bundle member %s: %s", name,
                    archive_error_string(a));
    }
    return ok;
}

/* Reads into @payloads the files of @payload_dir that the instructions of
 * array @member ("files", "packages") name. */
static gboolean vo_bundle_read_payloads(JsonObject *root, const char *member,
                                        const char *payload_dir,
                                        GHashTable *payloads, GError **error)
{
    JsonNode *node = json_object_get_member(root, member);
    JsonArray *arr;

    if (!node) {
        return TRUE;
    }
    if (!JSON_NODE_HOLDS_ARRAY(node)) {
        return vo_bundle_invalid(error, "\"%s\" must be an array", member);
    }
    arr = json_node_get_array(node);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonNode *op = json_array_get_element(arr, i);
        g_autofree char *file = NULL;
        const char *name;
        char *contents;
        gsize len;

        if (!JSON_NODE_HOLDS_OBJECT(op) ||
            !json_object_has_member(json_node_get_object(op), "payload")) {
            continue;
        }
        name = json_object_get_string_member(json_node_get_object(op),
                                             "payload");
        if (!name || !vo_bundle_payload_name_ok(name)) {
            return vo_bundle_invalid(error, "%s[%u]: bad payload name",
                                     member, i);
        }
        if (g_hash_table_contains(payloads, name)) {
            continue;
        }
        file = g_build_filename(payload_dir, name, NULL);
        if (!g_file_get_contents(file, &contents, &len, error)) {
            return FALSE;
        }
        g_hash_table_insert(payloads, g_strdup(name),
                            g_bytes_new_take(contents, len));
    }
    return TRUE;
}

gboolean vo_bundle_build(const char *manifest_path, const char *payload_dir,
                         const char *key_path, const char *cert_path,
                         const char *out_path, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GHashTable) payloads = g_hash_table_new_full(
        g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_bytes_unref);
    JsonNode *root, *files;

    if (!json_parser_load_from_file(parser, manifest_path, error)) {
        return FALSE;
    }
    root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        return vo_bundle_invalid(error, "the root must be an object");
    }
    files = json_object_get_member(json_node_get_object(root), "files");
    if (!files || !JSON_NODE_HOLDS_ARRAY(files)) {
        return vo_bundle_invalid(error, "\"files\" must be an array");
    }
    if (!vo_bundle_read_payloads(json_node_get_object(root), "files",
                                 payload_dir, payloads, error) ||
        !vo_bundle_read_payloads(json_node_get_object(root), "packages",
                                 payload_dir, payloads, error)) {
        return FALSE;
    }
    return vo_bundle_build_manifest(root, payloads, key_path, cert_path,
                                    out_path, error);
}

gboolean vo_bundle_build_manifest(JsonNode *root, GHashTable *payloads,
                                  const char *key_path,
                                  const char *cert_path,
                                  const char *out_path, GError **error)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(VmaugTrustIdentity) identity = NULL;
    g_autoptr(GBytes) manifest = NULL;
    g_autoptr(GBytes) signature = NULL;
    g_autofree char *tmp = g_strdup_printf("%s.tmp", out_path);
    JsonObject *table;
    struct archive *a;
    GHashTableIter it;
    gpointer key, value;
    gsize len;
    char *text;

    identity = vmaug_trust_identity_load(key_path, cert_path, error);
    if (!identity) {
        return FALSE;
    }
    /* Unpacked packages are configured by the guest at its next boot. */
    if (!JSON_NODE_HOLDS_OBJECT(root) ||
        !vo_configure_add(json_node_get_object(root), payloads, error)) {
        return FALSE;
    }
    table = json_object_new();
    g_hash_table_iter_init(&it, payloads);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        g_autofree char *sha = vo_sha256(value);
        JsonObject *entry = json_object_new();

        json_object_set_string_member(entry, "sha256", sha);
        json_object_set_int_member(entry, "size", g_bytes_get_size(value));
        json_object_set_object_member(table, key, entry);
    }
    json_object_set_object_member(json_node_get_object(root), "payload",
                                  table);
    json_generator_set_pretty(gen, TRUE);
    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, &len);
    manifest = g_bytes_new_take(text, len);
    /* Never sign what apply would refuse: the same parser, now. */
    {
        g_autoptr(VoBundle) check = vo_bundle_parse_unverified(
            manifest, payloads, error);

        if (!check) {
            return FALSE;
        }
    }
    signature = vmaug_trust_identity_sign(identity, manifest, error);
    if (!signature) {
        return FALSE;
    }

    a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (archive_write_open_filename(a, tmp) != ARCHIVE_OK) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot write %s: %s",
                    tmp, archive_error_string(a));
        archive_write_free(a);
        return FALSE;
    }
    if (!vo_bundle_add_entry(a, VO_MANIFEST, manifest, error) ||
        !vo_bundle_add_entry(a, VO_SIGNATURE, signature, error)) {
        archive_write_free(a);
        return FALSE;
    }
    g_hash_table_iter_init(&it, payloads);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        g_autofree char *name = g_strconcat(VO_PAYLOAD_PREFIX, key, NULL);

        if (!vo_bundle_add_entry(a, name, value, error)) {
            archive_write_free(a);
            return FALSE;
        }
    }
    if (archive_write_close(a) != ARCHIVE_OK) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot write %s: %s",
                    tmp, archive_error_string(a));
        archive_write_free(a);
        return FALSE;
    }
    archive_write_free(a);
    if (rename(tmp, out_path) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot rename %s: %s",
                    tmp, g_strerror(errno));
        return FALSE;
    }
    return TRUE;
}
