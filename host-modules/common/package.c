/*
 * vmaugment host side: errors, names and versions, manifests, packages
 * and the host owner's policy.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <elf.h>
#include <json-glib/json-glib.h>
#include <string.h>

#include "host-common.h"
#include "vmaugment/protocol-names.h"
#include "vmaugment-hex.h"
#include "vmaugment-module.h"

G_DEFINE_QUARK(vmaug-host-error-quark, vmaug_host_error)

/* Each error of the host, the status it is answered with. */
static const guint16 package_error_statuses[] = {
    [VMAUG_HOST_ERROR_IO] = VMAUG_S_IO_ERROR,
    [VMAUG_HOST_ERROR_INVALID] = VMAUG_S_INVALID,
    [VMAUG_HOST_ERROR_TOO_BIG] = VMAUG_S_TOO_BIG,
    [VMAUG_HOST_ERROR_NOT_FOUND] = VMAUG_S_NOT_FOUND,
    [VMAUG_HOST_ERROR_EXISTS] = VMAUG_S_EXISTS,
    [VMAUG_HOST_ERROR_DENIED] = VMAUG_S_DENIED,
    [VMAUG_HOST_ERROR_HASH_MISMATCH] = VMAUG_S_HASH_MISMATCH,
    [VMAUG_HOST_ERROR_BUSY] = VMAUG_S_BUSY,
    [VMAUG_HOST_ERROR_MODULE_FAILED] = VMAUG_S_MODULE_FAILED,
    [VMAUG_HOST_ERROR_TIMEOUT] = VMAUG_S_TIMEOUT,
};

guint16 vmaug_host_error_status(const GError *error)
{
    if (error == NULL) {
        return VMAUG_S_OK;
    }
    if (error->domain == VMAUG_HOST_ERROR && error->code >= 0 &&
        (gsize)error->code < G_N_ELEMENTS(package_error_statuses)) {
        return package_error_statuses[error->code];
    }
    if (error->domain == VMAUG_TRUST_ERROR) {
        return VMAUG_S_DENIED;
    }
    if (error->domain == G_FILE_ERROR) {
        return error->code == G_FILE_ERROR_NOENT ? VMAUG_S_NOT_FOUND :
               VMAUG_S_IO_ERROR;
    }
    return VMAUG_S_INTERNAL;
}

void vmaug_host_error_set_status(GError **error, guint16 status,
                                 const gchar *format, ...)
{
    g_autofree gchar *msg = NULL;
    va_list ap;

    va_start(ap, format);
    msg = g_strdup_vprintf(format, ap);
    va_end(ap);
    for (gsize i = 0; i < G_N_ELEMENTS(package_error_statuses); i++) {
        if (package_error_statuses[i] == status) {
            g_set_error_literal(error, VMAUG_HOST_ERROR, i, msg);
            return;
        }
    }
    g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_FAILED, msg);
}

/* ---- Names and versions ---- */

gboolean vmaug_name_is_valid(const gchar *name)
{
    gsize len = name != NULL ? strlen(name) : 0;

    if (len == 0 || len >= VMAUG_NAME_MAX || !g_ascii_islower(name[0])) {
        return FALSE;
    }
    for (gsize i = 0; i < len; i++) {
        gchar c = name[i];

        if (!g_ascii_islower(c) && !g_ascii_isdigit(c) && c != '-' &&
            c != '_') {
            return FALSE;
        }
    }
    return TRUE;
}

gboolean vmaug_config_key_is_valid(const gchar *key)
{
    gsize len = key != NULL ? strlen(key) : 0;

    return len > 0 && len < VMAUG_CONFIG_KEY_MAX &&
           g_utf8_validate(key, len, NULL);
}

static gboolean version_parse(const gchar *v, guint32 parts[4])
{
    guint n = 0;
    const gchar *p = v;

    if (v == NULL || strlen(v) >= VMAUG_VERSION_MAX) {
        return FALSE;
    }
    memset(parts, 0, 4 * sizeof(guint32));
    for (;;) {
        guint64 x = 0;
        guint digits = 0;

        while (g_ascii_isdigit(*p)) {
            x = x * 10 + (*p - '0');
            /* Bounded before it can overflow: at most 10 digits. */
            if (++digits > 10 || x > G_MAXINT32) {
                return FALSE;
            }
            p++;
        }
        if (digits == 0 || n >= 4) {
            return FALSE;
        }
        parts[n++] = (guint32)x;
        if (*p == '\0') {
            return TRUE;
        }
        if (*p != '.') {
            return FALSE;
        }
        p++;
    }
}

gboolean vmaug_version_is_valid(const gchar *version)
{
    guint32 parts[4];

    return version_parse(version, parts);
}

gint vmaug_version_compare(const gchar *a, const gchar *b)
{
    guint32 pa[4], pb[4];

    if (!version_parse(a, pa) || !version_parse(b, pb)) {
        return g_strcmp0(a, b);
    }
    for (guint i = 0; i < 4; i++) {
        if (pa[i] != pb[i]) {
            return pa[i] < pb[i] ? -1 : 1;
        }
    }
    return 0;
}

gchar *vmaug_fixed_string(const guint8 *field, gsize size)
{
    const guint8 *nul = memchr(field, 0, size);

    if (nul == NULL ||
        !g_utf8_validate((const gchar *)field, nul - field, NULL)) {
        return NULL;
    }
    return g_strndup((const gchar *)field, nul - field);
}

/* ---- Manifests ---- */

static const gchar *const capability_names[] = { VMAUG_CAPABILITIES, NULL };

const gchar *vmaug_kind_to_string(guint32 kind)
{
    const gchar *name = vmaug_proto_kind_name(kind);

    return name != NULL ? name : "unknown";
}

void vmaug_manifest_free(VmaugManifest *m)
{
    if (m == NULL) {
        return;
    }
    g_free(m->name);
    g_free(m->version);
    g_free(m->arch);
    g_free(m->min_host_version);
    g_free(m->entry);
    g_strfreev(m->functions);
    g_strfreev(m->capabilities);
    g_free(m);
}

gboolean vmaug_manifest_has_function(const VmaugManifest *m,
                                     const gchar *function)
{
    return m->functions != NULL &&
           g_strv_contains((const gchar *const *)m->functions, function);
}

gboolean vmaug_manifest_has_capability(const VmaugManifest *m,
                                       const gchar *cap)
{
    return m->capabilities != NULL &&
           g_strv_contains((const gchar *const *)m->capabilities, cap);
}

static gboolean manifest_fail(GError **error, const gchar *fmt, ...)
    G_GNUC_PRINTF(2, 3);

static gboolean manifest_fail(GError **error, const gchar *fmt, ...)
{
    va_list ap;
    g_autofree gchar *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                "manifest: %s", msg);
    return FALSE;
}

/* The member must exist and be a JSON string (not null, not a number). */
static const gchar *manifest_string(JsonObject *o, const gchar *member,
                                    GError **error)
{
    const gchar *s = vmaug_json_string(o, member);

    if (s == NULL) {
        manifest_fail(error, "\"%s\" must be a string", member);
    }
    return s;
}

static gboolean manifest_uint(JsonObject *o, const gchar *member,
                              guint64 max, guint64 *out, GError **error)
{
    JsonNode *n = json_object_get_member(o, member);
    gint64 v;

    if (n == NULL || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_INT64) {
        return manifest_fail(error, "\"%s\" must be an integer", member);
    }
    v = json_node_get_int(n);
    if (v < 0 || (guint64)v > max) {
        return manifest_fail(error, "\"%s\" out of range", member);
    }
    *out = (guint64)v;
    return TRUE;
}

/* An array of distinct strings, each accepted by @check. */
static GStrv manifest_strings(JsonObject *o, const gchar *member, guint max,
                              gboolean (*check)(const gchar *s),
                              GError **error)
{
    JsonNode *n = json_object_get_member(o, member);
    g_autoptr(GStrvBuilder) b = g_strv_builder_new();
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    JsonArray *a;

    if (n == NULL || !JSON_NODE_HOLDS_ARRAY(n)) {
        manifest_fail(error, "\"%s\" must be an array", member);
        return NULL;
    }
    a = json_node_get_array(n);
    if (json_array_get_length(a) > max) {
        manifest_fail(error, "\"%s\" has more than %u entries", member, max);
        return NULL;
    }
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonNode *e = json_array_get_element(a, i);
        const gchar *s;

        if (!JSON_NODE_HOLDS_VALUE(e) ||
            json_node_get_value_type(e) != G_TYPE_STRING) {
            manifest_fail(error, "\"%s\"[%u] must be a string", member, i);
            return NULL;
        }
        s = json_node_get_string(e);
        if (!check(s) || !g_hash_table_add(seen, (gpointer)s)) {
            manifest_fail(error, "\"%s\"[%u] is invalid or repeated", member,
                          i);
            return NULL;
        }
        g_strv_builder_add(b, s);
    }
    return g_strv_builder_end(b);
}

static gboolean check_function(const gchar *s)
{
    gsize len = strlen(s);

    if (len == 0 || len >= VMAUG_FUNCTION_MAX) {
        return FALSE;
    }
    for (gsize i = 0; i < len; i++) {
        if (!g_ascii_isalnum(s[i]) && s[i] != '_' && s[i] != '-' &&
            s[i] != '.') {
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean check_capability(const gchar *s)
{
    return g_strv_contains(capability_names, s);
}

/* An absolute, canonical directory path: no "." or "..", no "//", no
 * trailing "/" (except "/" itself is refused: too broad). */
static gboolean check_root(const gchar *s)
{
    g_autofree gchar *canon = g_canonicalize_filename(s, "/");

    return s[0] == '/' && s[1] != '\0' && g_strcmp0(canon, s) == 0 &&
           strlen(s) < 1024;
}

static gboolean check_event(const gchar *s)
{
    return vmaug_proto_event_type(s) != 0;
}

static const gchar *const manifest_members[] = {
    "format", "name", "version", "kind", "abi", "arch", "min_host_version",
    "entry", "events", "functions", "capabilities", "payload", "description",
    NULL
};

VmaugManifest *vmaug_manifest_parse(const gchar *json, gsize len,
                                    GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(VmaugManifest) m = g_new0(VmaugManifest, 1);
    g_auto(GStrv) events = NULL;
    g_autoptr(GList) members = NULL;
    g_autoptr(GError) local = NULL;
    JsonNode *root, *payload;
    JsonObject *o, *po;
    const gchar *s;
    guint64 v;

    if (len == 0 || len > VMAUG_PKG_MAX_MANIFEST) {
        manifest_fail(error, "size %" G_GSIZE_FORMAT " out of range", len);
        return NULL;
    }
    if (memchr(json, '\0', len) != NULL ||
        !vmaug_json_depth_ok(json, len, 4)) {
        manifest_fail(error, "not a flat JSON document");
        return NULL;
    }
    if (!json_parser_load_from_data(parser, json, len, &local)) {
        manifest_fail(error, "%s", local->message);
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        manifest_fail(error, "the root must be an object");
        return NULL;
    }
    o = json_node_get_object(root);
    /* Unknown members are refused: a field we ignore could be one the
     * signer meant to restrict us with. */
    members = json_object_get_members(o);
    for (GList *l = members; l != NULL; l = l->next) {
        if (!g_strv_contains(manifest_members, l->data)) {
            manifest_fail(error, "unknown member \"%s\"",
                          (const gchar *)l->data);
            return NULL;
        }
    }
    if (!manifest_uint(o, "format", G_MAXUINT32, &v, error)) {
        return NULL;
    }
    if (v != VMAUG_PKG_FORMAT) {
        manifest_fail(error, "format %" G_GUINT64_FORMAT " unsupported", v);
        return NULL;
    }
    if ((s = manifest_string(o, "name", error)) == NULL) {
        return NULL;
    }
    if (!vmaug_name_is_valid(s)) {
        manifest_fail(error, "invalid name");
        return NULL;
    }
    m->name = g_strdup(s);
    if ((s = manifest_string(o, "version", error)) == NULL) {
        return NULL;
    }
    if (!vmaug_version_is_valid(s)) {
        manifest_fail(error, "invalid version");
        return NULL;
    }
    m->version = g_strdup(s);
    if ((s = manifest_string(o, "kind", error)) == NULL) {
        return NULL;
    }
    m->kind = vmaug_proto_kind(s);
    if (m->kind == 0) {
        manifest_fail(error, "unknown kind \"%s\"", s);
        return NULL;
    }
    if (!manifest_uint(o, "abi", G_MAXUINT32, &v, error)) {
        return NULL;
    }
    m->abi = (guint32)v;
    if ((s = manifest_string(o, "arch", error)) == NULL) {
        return NULL;
    }
    m->arch = g_strdup(s);
    if ((s = manifest_string(o, "min_host_version", error)) == NULL) {
        return NULL;
    }
    if (!vmaug_version_is_valid(s)) {
        manifest_fail(error, "invalid min_host_version");
        return NULL;
    }
    m->min_host_version = g_strdup(s);
    if ((s = manifest_string(o, "entry", error)) == NULL) {
        return NULL;
    }
    m->entry = g_strdup(s);
    if (json_object_has_member(o, "description") &&
        manifest_string(o, "description", error) == NULL) {
        return NULL;
    }
    events = manifest_strings(o, "events", VMAUG_EVENT_MAX, check_event,
                              error);
    if (events == NULL) {
        return NULL;
    }
    for (guint i = 0; events[i] != NULL; i++) {
        m->events |= VMAUG_EVENT_MASK(vmaug_proto_event_type(events[i]));
    }
    m->functions = manifest_strings(o, "functions", VMAUG_PKG_MAX_FUNCTIONS,
                                    check_function, error);
    if (m->functions == NULL) {
        return NULL;
    }
    m->capabilities = manifest_strings(o, "capabilities",
                                       VMAUG_PKG_MAX_CAPABILITIES,
                                       check_capability, error);
    if (m->capabilities == NULL) {
        return NULL;
    }
    payload = json_object_get_member(o, "payload");
    if (payload == NULL || !JSON_NODE_HOLDS_OBJECT(payload)) {
        manifest_fail(error, "\"payload\" must be an object");
        return NULL;
    }
    po = json_node_get_object(payload);
    if (json_object_get_size(po) != 2 ||
        !manifest_uint(po, "size", G_MAXINT64, &m->payload_size, error) ||
        (s = manifest_string(po, "sha256", error)) == NULL ||
        !vmaug_hex_decode_sha256(s, m->payload_sha256)) {
        if (error != NULL && *error == NULL) {
            manifest_fail(error, "\"payload\" needs exactly size and sha256");
        }
        return NULL;
    }
    return g_steal_pointer(&m);
}

/* ---- Packages ---- */

const gchar *vmaug_host_arch(void)
{
#if defined(__x86_64__)
    return "x86_64";
#elif defined(__aarch64__)
    return "aarch64";
#elif defined(__i386__)
    return "i386";
#elif defined(__riscv) && __riscv_xlen == 64
    return "riscv64";
#else
    return "unknown";
#endif
}

void vmaug_package_free(VmaugPackage *pkg)
{
    if (pkg == NULL) {
        return;
    }
    g_bytes_unref(pkg->file);
    vmaug_manifest_free(pkg->manifest);
    vmaug_trust_signer_free(pkg->signer);
    g_free(pkg);
}

GBytes *vmaug_package_get_payload(VmaugPackage *pkg)
{
    return g_bytes_new_from_bytes(pkg->file, pkg->payload_offset,
                                  pkg->manifest->payload_size);
}

static GBytes *package_signed_bytes(const guint8 *manifest, gsize len)
{
    GByteArray *b = g_byte_array_sized_new(len + 64);

    g_byte_array_append(b, (const guint8 *)VMAUG_PKG_SIGNING_CONTEXT,
                        strlen(VMAUG_PKG_SIGNING_CONTEXT));
    g_byte_array_append(b, manifest, len);
    return g_byte_array_free_to_bytes(b);
}

VmaugPackage *vmaug_package_verify(GBytes *file, VmaugTrustStore *trust,
                                   guint64 max_size, GError **error)
{
    g_autoptr(VmaugPackage) pkg = g_new0(VmaugPackage, 1);
    g_autoptr(GBytes) signed_bytes = NULL;
    g_autoptr(GBytes) sig = NULL;
    g_autoptr(GError) local = NULL;
    gsize size;
    const guint8 *p = g_bytes_get_data(file, &size);
    guint32 format, mlen, slen, reserved;
    guint64 plen;
    guint8 digest[32];

    if (size > max_size) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_TOO_BIG,
                    "package of %" G_GSIZE_FORMAT " bytes exceeds %"
                    G_GUINT64_FORMAT, size, max_size);
        return NULL;
    }
    if (size < VMAUG_PKG_HEADER_SIZE ||
        memcmp(p, VMAUG_PKG_MAGIC, 8) != 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "not a vmaugment package");
        return NULL;
    }
    format = GUINT32_FROM_LE(*(const guint32 *)(p + 8));
    mlen = GUINT32_FROM_LE(*(const guint32 *)(p + 12));
    slen = GUINT32_FROM_LE(*(const guint32 *)(p + 16));
    reserved = GUINT32_FROM_LE(*(const guint32 *)(p + 20));
    plen = GUINT64_FROM_LE(*(const guint64 *)(p + 24));
    if (format != VMAUG_PKG_FORMAT || reserved != 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "package format %u unsupported", format);
        return NULL;
    }
    /* Every length is checked against the others before any is used;
     * the sum cannot overflow with these bounds. */
    if (mlen == 0 || mlen > VMAUG_PKG_MAX_MANIFEST || slen == 0 ||
        slen > VMAUG_TRUST_MAX_SIGNATURE_SIZE || plen == 0 ||
        plen > max_size ||
        VMAUG_PKG_HEADER_SIZE + (guint64)mlen + plen + slen != size) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "package lengths do not add up (truncated or padded)");
        return NULL;
    }
    pkg->file = g_bytes_ref(file);
    pkg->payload_offset = VMAUG_PKG_HEADER_SIZE + mlen;

    /* Signature first: nothing else is parsed before we know who wrote it. */
    signed_bytes = package_signed_bytes(p + VMAUG_PKG_HEADER_SIZE, mlen);
    sig = g_bytes_new_from_bytes(file, size - slen, slen);
    pkg->signer = vmaug_trust_store_verify(trust, signed_bytes, sig, &local);
    if (pkg->signer == NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "signature refused: %s", local->message);
        return NULL;
    }
    pkg->manifest = vmaug_manifest_parse((const gchar *)p +
                                         VMAUG_PKG_HEADER_SIZE, mlen, error);
    if (pkg->manifest == NULL) {
        return NULL;
    }
    /* The signed manifest names its payload; anything else is another
     * package's payload spliced in. */
    if (pkg->manifest->payload_size != plen) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "mix-and-match: payload size differs from the signed "
                    "manifest");
        return NULL;
    }
    vmaug_sha256(p + pkg->payload_offset, plen, digest);
    if (memcmp(digest, pkg->manifest->payload_sha256, 32) != 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "mix-and-match: payload is not the one the manifest "
                    "was signed with");
        return NULL;
    }
    if (pkg->manifest->abi != VMAUG_MODULE_ABI_VERSION ||
        g_strcmp0(pkg->manifest->entry, VMAUG_MODULE_SYMBOL) != 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "module ABI %u / entry %s not supported",
                    pkg->manifest->abi, pkg->manifest->entry);
        return NULL;
    }
    if (g_strcmp0(pkg->manifest->arch, vmaug_host_arch()) != 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "module built for %s, host is %s", pkg->manifest->arch,
                    vmaug_host_arch());
        return NULL;
    }
    if (vmaug_version_compare(pkg->manifest->min_host_version,
                              VMAUG_HOST_VERSION) > 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "module needs host %s, this is %s",
                    pkg->manifest->min_host_version, VMAUG_HOST_VERSION);
        return NULL;
    }
    return g_steal_pointer(&pkg);
}

/* The ELF machine of each architecture a manifest may name. */
static const struct {
    const gchar *arch;
    guint16 machine;
    guint8 elf_class;
} package_machines[] = {
    { "x86_64", EM_X86_64, ELFCLASS64 },
    { "aarch64", EM_AARCH64, ELFCLASS64 },
    { "i386", EM_386, ELFCLASS32 },
    { "riscv64", EM_RISCV, ELFCLASS64 },
};

gboolean vmaug_payload_check(GBytes *payload, const gchar *arch,
                             GError **error)
{
    gsize len;
    const guint8 *p = g_bytes_get_data(payload, &len);
    guint16 type, machine;

    /* e_type and e_machine sit at the same offsets in both classes. */
    if (len < sizeof(Elf32_Ehdr) || memcmp(p, ELFMAG, SELFMAG) != 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "the payload is not an ELF file");
        return FALSE;
    }
    if (p[EI_DATA] != ELFDATA2LSB) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "the payload is not a little-endian ELF file");
        return FALSE;
    }
    memcpy(&type, p + offsetof(Elf64_Ehdr, e_type), 2);
    memcpy(&machine, p + offsetof(Elf64_Ehdr, e_machine), 2);
    if (GUINT16_FROM_LE(type) != ET_DYN) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "the payload is not an ELF shared object");
        return FALSE;
    }
    for (gsize i = 0; i < G_N_ELEMENTS(package_machines); i++) {
        if (g_strcmp0(arch, package_machines[i].arch) == 0) {
            if (GUINT16_FROM_LE(machine) != package_machines[i].machine ||
                p[EI_CLASS] != package_machines[i].elf_class) {
                g_set_error(error, VMAUG_HOST_ERROR,
                            VMAUG_HOST_ERROR_INVALID,
                            "the payload is not built for %s (ELF machine "
                            "%u)", arch, GUINT16_FROM_LE(machine));
                return FALSE;
            }
            return TRUE;
        }
    }
    g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                "no host runs modules for architecture %s", arch);
    return FALSE;
}

GBytes *vmaug_package_build(const gchar *manifest_json, const gchar *version,
                            GBytes *payload, VmaugTrustIdentity *signer,
                            GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(JsonBuilder) pb = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(VmaugManifest) check = NULL;
    g_autoptr(GBytes) signed_bytes = NULL;
    g_autoptr(GBytes) sig = NULL;
    g_autofree gchar *manifest = NULL;
    g_autofree gchar *hex = NULL;
    GByteArray *out;
    JsonNode *root;
    gsize mlen, plen;
    const guint8 *pdata = g_bytes_get_data(payload, &plen);
    guint8 hdr[VMAUG_PKG_HEADER_SIZE] = { 0 };

    if (!json_parser_load_from_data(parser, manifest_json, -1, error)) {
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "manifest template must be a JSON object");
        return NULL;
    }
    hex = vmaug_sha256_hex(g_bytes_get_data(payload, NULL), plen);
    json_builder_begin_object(pb);
    json_builder_set_member_name(pb, "size");
    json_builder_add_int_value(pb, (gint64)plen);
    json_builder_set_member_name(pb, "sha256");
    json_builder_add_string_value(pb, hex);
    json_builder_end_object(pb);
    json_object_set_member(json_node_get_object(root), "payload",
                           json_builder_get_root(pb));
    /* Defaults for what the build, not the author, decides. */
    if (!json_object_has_member(json_node_get_object(root), "format")) {
        json_object_set_int_member(json_node_get_object(root), "format",
                                   VMAUG_PKG_FORMAT);
    }
    if (!json_object_has_member(json_node_get_object(root), "abi")) {
        json_object_set_int_member(json_node_get_object(root), "abi",
                                   VMAUG_MODULE_ABI_VERSION);
    }
    if (!json_object_has_member(json_node_get_object(root), "entry")) {
        json_object_set_string_member(json_node_get_object(root), "entry",
                                      VMAUG_MODULE_SYMBOL);
    }
    if (!json_object_has_member(json_node_get_object(root), "arch")) {
        json_object_set_string_member(json_node_get_object(root), "arch",
                                      vmaug_host_arch());
    }
    if (!json_object_has_member(json_node_get_object(root),
                                "min_host_version")) {
        json_object_set_string_member(json_node_get_object(root),
                                      "min_host_version", VMAUG_HOST_VERSION);
    }
    if (version != NULL) {
        json_object_set_string_member(json_node_get_object(root), "version",
                                      version);
    }
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    manifest = json_generator_to_data(gen, &mlen);
    /* Never sign what the host would refuse to parse. */
    check = vmaug_manifest_parse(manifest, mlen, error);
    if (check == NULL) {
        return NULL;
    }
    signed_bytes = package_signed_bytes((const guint8 *)manifest, mlen);
    sig = vmaug_trust_identity_sign(signer, signed_bytes, error);
    if (sig == NULL) {
        return NULL;
    }
    memcpy(hdr, VMAUG_PKG_MAGIC, 8);
    *(guint32 *)(hdr + 8) = GUINT32_TO_LE(VMAUG_PKG_FORMAT);
    *(guint32 *)(hdr + 12) = GUINT32_TO_LE((guint32)mlen);
    *(guint32 *)(hdr + 16) = GUINT32_TO_LE((guint32)g_bytes_get_size(sig));
    *(guint64 *)(hdr + 24) = GUINT64_TO_LE((guint64)plen);
    out = g_byte_array_sized_new(sizeof(hdr) + mlen + plen +
                                 g_bytes_get_size(sig));
    g_byte_array_append(out, hdr, sizeof(hdr));
    g_byte_array_append(out, (const guint8 *)manifest, mlen);
    g_byte_array_append(out, pdata, plen);
    g_byte_array_append(out, g_bytes_get_data(sig, NULL),
                        g_bytes_get_size(sig));
    return g_byte_array_free_to_bytes(out);
}

/* ---- Policy ---- */

static const gchar *const default_grants[] = {
    VMAUG_CAP_LOG, VMAUG_CAP_CONFIG, VMAUG_CAP_STATE, VMAUG_CAP_SPOOL,
    VMAUG_CAP_EVENTS, VMAUG_CAP_UI, VMAUG_CAP_RESTART_IMAGE, NULL
};

VmaugPolicy *vmaug_policy_new_default(void)
{
    VmaugPolicy *p = g_new0(VmaugPolicy, 1);

    p->max_package_size = VMAUG_PKG_DEFAULT_MAX_SIZE;
    p->grants = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                      (GDestroyNotify)g_strfreev);
    /* Restarting the host application and installing other modules are
     * granted only by name: they reach beyond the image. */
    g_hash_table_insert(p->grants, g_strdup("*"),
                        g_strdupv((gchar **)default_grants));
    p->read_roots = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                          (GDestroyNotify)g_strfreev);
    return p;
}

void vmaug_policy_free(VmaugPolicy *policy)
{
    if (policy == NULL) {
        return;
    }
    g_hash_table_unref(policy->grants);
    g_hash_table_unref(policy->read_roots);
    g_free(policy);
}

gboolean vmaug_policy_grants(const VmaugPolicy *policy, const gchar *module,
                             const gchar *cap)
{
    GStrv caps;

    if (g_strcmp0(cap, VMAUG_CAP_LOG) == 0) {
        return TRUE;
    }
    caps = g_hash_table_lookup(policy->grants, module);
    if (caps != NULL && g_strv_contains((const gchar *const *)caps, cap)) {
        return TRUE;
    }
    caps = g_hash_table_lookup(policy->grants, "*");
    return caps != NULL && g_strv_contains((const gchar *const *)caps, cap);
}

VmaugPolicy *vmaug_policy_load(const gchar *path, GError **error)
{
    g_autoptr(VmaugPolicy) p = vmaug_policy_new_default();
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GBytes) blob = NULL;
    JsonNode *root, *n;
    JsonObject *o;

    blob = vmaug_trust_read_file(path, 1024 * 1024, error);
    if (blob == NULL) {
        return NULL;
    }
    if (!vmaug_json_depth_ok(g_bytes_get_data(blob, NULL),
                             g_bytes_get_size(blob), 8) ||
        !json_parser_load_from_data(parser, g_bytes_get_data(blob, NULL),
                                    g_bytes_get_size(blob), error)) {
        g_prefix_error(error, "%s: ", path);
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "%s: the root must be an object", path);
        return NULL;
    }
    o = json_node_get_object(root);
    n = json_object_get_member(o, "allow_rollback");
    if (n != NULL) {
        if (!JSON_NODE_HOLDS_VALUE(n) ||
            json_node_get_value_type(n) != G_TYPE_BOOLEAN) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                        "%s: allow_rollback must be a boolean", path);
            return NULL;
        }
        p->allow_rollback = json_node_get_boolean(n);
    }
    n = json_object_get_member(o, "max_package_size");
    if (n != NULL) {
        if (!JSON_NODE_HOLDS_VALUE(n) ||
            json_node_get_value_type(n) != G_TYPE_INT64 ||
            json_node_get_int(n) <= VMAUG_PKG_HEADER_SIZE ||
            (guint64)json_node_get_int(n) > VMAUG_MAX_UPLOAD_SIZE) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                        "%s: max_package_size out of range", path);
            return NULL;
        }
        p->max_package_size = json_node_get_int(n);
    }
    n = json_object_get_member(o, "grants");
    if (n != NULL) {
        g_autoptr(GList) names = NULL;

        if (!JSON_NODE_HOLDS_OBJECT(n)) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                        "%s: grants must be an object", path);
            return NULL;
        }
        g_hash_table_remove_all(p->grants);
        names = json_object_get_members(json_node_get_object(n));
        for (GList *l = names; l != NULL; l = l->next) {
            GStrv caps = manifest_strings(json_node_get_object(n), l->data,
                                          VMAUG_PKG_MAX_CAPABILITIES,
                                          check_capability, error);
            if (caps == NULL) {
                g_prefix_error(error, "%s: grants: ", path);
                return NULL;
            }
            g_hash_table_insert(p->grants, g_strdup(l->data), caps);
        }
    }
    n = json_object_get_member(o, "read_roots");
    if (n != NULL) {
        g_autoptr(GList) names = NULL;

        if (!JSON_NODE_HOLDS_OBJECT(n)) {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                        "%s: read_roots must be an object", path);
            return NULL;
        }
        names = json_object_get_members(json_node_get_object(n));
        for (GList *l = names; l != NULL; l = l->next) {
            GStrv roots = manifest_strings(json_node_get_object(n), l->data,
                                           VMAUG_PKG_MAX_CAPABILITIES,
                                           check_root, error);
            if (roots == NULL) {
                g_prefix_error(error, "%s: read_roots: ", path);
                return NULL;
            }
            g_hash_table_insert(p->read_roots, g_strdup(l->data), roots);
        }
    }
    return g_steal_pointer(&p);
}
