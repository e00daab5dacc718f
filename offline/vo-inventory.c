/*
 * Inventory of a guest: os-release, the dpkg or rpm database, the host
 * name, the architecture and the kernels for Linux; the registry for
 * Windows.  The fields virt-inspector reports carry the same values
 * (docs/offline.rst).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include "vo-dpkg-db.h"
#include "vo-inventory.h"
#include "vo-registry.h"
#include "vo-rpm.h"

#define VO_MAX_OS_RELEASE (64 * 1024)
#define VO_MAX_HOSTNAME 4096
/* What an executable's architecture is read from: an ELF header's first
 * 20 bytes, or a PE file's DOS header and the PE header it points to
 * (found within a few KiB; 64 KiB leaves room for any stub). */
#define VO_MAX_EXE_HEAD (64 * 1024)

static void vo_package_free(VoPackage *p)
{
    g_free(p->name);
    g_free(p->version);
    g_free(p->architecture);
    g_free(p->status);
    g_free(p->display_name);
    g_free(p->publisher);
    g_free(p->install_date);
    g_free(p);
}

static void vo_kernel_free(VoKernel *k)
{
    g_free(k->version);
    g_free(k->path);
    g_free(k->package);
    g_free(k->package_version);
    g_free(k);
}

void vo_inventory_free(VoInventory *inv)
{
    if (!inv) {
        return;
    }
    g_free(inv->family);
    g_free(inv->package_format);
    g_hash_table_unref(inv->os);
    g_hash_table_unref(inv->packages);
    g_ptr_array_unref(inv->package_list);
    g_ptr_array_unref(inv->updates);
    g_ptr_array_unref(inv->kernels);
    g_free(inv);
}

static gboolean vo_inventory_os_key_ok(const char *key)
{
    for (const char *c = key; *c; c++) {
        if (!g_ascii_isalnum(*c) && *c != '_') {
            return FALSE;
        }
    }
    return TRUE;
}

static void vo_inventory_parse_os_release(VoInventory *inv, const char *text,
                                          gsize len)
{
    g_autofree char *copy = g_strndup(text, len);
    g_auto(GStrv) lines = g_strsplit(copy, "\n", -1);

    for (guint i = 0; lines[i]; i++) {
        char *line = g_strstrip(lines[i]);
        char *eq = strchr(line, '=');
        g_autofree char *value = NULL;

        if (line[0] == '#' || !eq || eq == line) {
            continue;
        }
        *eq = '\0';
        /* Names are os-release(5)'s [A-Z0-9_]; any other would reach the
         * report as a key that need not even be UTF-8. */
        if (!vo_inventory_os_key_ok(line)) {
            continue;
        }
        /* os-release values use shell quoting. */
        value = g_shell_unquote(eq + 1, NULL);
        if (!value || !g_utf8_validate(value, -1, NULL)) {
            continue;
        }
        g_hash_table_replace(inv->os, g_ascii_strdown(line, -1),
                             g_steal_pointer(&value));
    }
}

gboolean vo_package_installed(const VoPackage *p)
{
    return p->installed;
}

void vo_inventory_add_package(VoInventory *inv, GHashTable *fields)
{
    const char *name = g_hash_table_lookup(fields, "package");
    const char *status = g_hash_table_lookup(fields, "status");
    const char *version = g_hash_table_lookup(fields, "version");
    const char *arch = g_hash_table_lookup(fields, "architecture");
    VoPackage *p;

    /* Every field reaches the report, whose JSON must be UTF-8. */
    if (!name || !status || !version ||
        !g_utf8_validate(name, -1, NULL) ||
        !g_utf8_validate(version, -1, NULL) ||
        !g_utf8_validate(status, -1, NULL) ||
        (arch && !g_utf8_validate(arch, -1, NULL))) {
        return;
    }
    p = g_new0(VoPackage, 1);
    p->name = g_strdup(name);
    p->version = g_strdup(version);
    p->architecture = g_strdup(arch ? arch : "");
    p->status = g_strdup(status);
    /* dpkg's "install ok installed"; rpm's packages are all installed. */
    p->installed = g_str_equal(status, "installed") ||
                   g_str_has_suffix(status, " installed");
    g_ptr_array_add(inv->package_list, p);
    /* Plain names find the first architecture; name:arch is exact. */
    if (!g_hash_table_contains(inv->packages, name)) {
        g_hash_table_insert(inv->packages, g_strdup(name), p);
    }
    if (arch) {
        g_hash_table_insert(inv->packages,
                            g_strdup_printf("%s:%s", name, arch), p);
    }
}

static void vo_inventory_parse_dpkg(VoInventory *inv, const char *text,
                                    gsize len)
{
    g_autoptr(GHashTable) fields = g_hash_table_new_full(g_str_hash,
                                                         g_str_equal, g_free,
                                                         g_free);
    const char *p = text, *end = text + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', end - p);
        const char *eol = nl ? nl : end;
        const char *colon;

        if (eol == p) {
            /* A blank line ends the paragraph. */
            vo_inventory_add_package(inv, fields);
            g_hash_table_remove_all(fields);
        } else if (*p != ' ' && *p != '\t' &&
                   (colon = memchr(p, ':', eol - p))) {
            g_autofree char *key = g_ascii_strdown(p, colon - p);

            if (g_str_equal(key, "package") || g_str_equal(key, "status") ||
                g_str_equal(key, "version") ||
                g_str_equal(key, "architecture")) {
                char *value = g_strndup(colon + 1, eol - colon - 1);

                g_hash_table_replace(fields, g_steal_pointer(&key),
                                     g_strstrip(value));
            }
        }
        p = eol + 1;
    }
    vo_inventory_add_package(inv, fields);
}

static VoInventory *vo_inventory_new(const char *family)
{
    VoInventory *inv = g_new0(VoInventory, 1);

    inv->family = g_strdup(family);
    inv->os = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    inv->packages = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                          NULL);
    inv->package_list = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_package_free);
    inv->updates = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_win_update_free);
    inv->kernels = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_kernel_free);
    g_hash_table_insert(inv->os, g_strdup("family"), g_strdup(family));
    return inv;
}

/* virt-inspector's product name and major/minor version, from
 * os-release's PRETTY_NAME and VERSION_ID ("12" is 12.0). */
static void vo_inventory_os_versions(VoInventory *inv)
{
    const char *pretty = g_hash_table_lookup(inv->os, "pretty_name");
    const char *vid = g_hash_table_lookup(inv->os, "version_id");
    g_auto(GStrv) mm = NULL;
    guint64 major, minor = 0;

    if (pretty) {
        g_hash_table_replace(inv->os, g_strdup("product_name"),
                             g_strdup(pretty));
    }
    if (!vid) {
        return;
    }
    mm = g_strsplit(vid, ".", 3);
    if (!mm[0] ||
        !g_ascii_string_to_unsigned(mm[0], 10, 0, G_MAXUINT32, &major,
                                    NULL) ||
        (mm[1] && !g_ascii_string_to_unsigned(mm[1], 10, 0, G_MAXUINT32,
                                              &minor, NULL))) {
        return;
    }
    g_hash_table_replace(inv->os, g_strdup("major_version"),
                         g_strdup_printf("%" G_GUINT64_FORMAT, major));
    g_hash_table_replace(inv->os, g_strdup("minor_version"),
                         g_strdup_printf("%" G_GUINT64_FORMAT, minor));
}

VoInventory *vo_inventory_parse_linux(const char *family, GBytes *os_release,
                                      GBytes *dpkg_status, GError **error)
{
    g_autoptr(VoInventory) inv = vo_inventory_new(family);

    if (os_release) {
        gsize len;
        const char *text = g_bytes_get_data(os_release, &len);

        vo_inventory_parse_os_release(inv, text,
                                      MIN(len, (gsize)VO_MAX_OS_RELEASE));
    }
    if (dpkg_status) {
        gsize len;
        const char *text = g_bytes_get_data(dpkg_status, &len);

        if (len > VO_DPKG_MAX_STATUS) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "the guest's dpkg status file is implausibly large");
            return NULL;
        }
        vo_inventory_parse_dpkg(inv, text, len);
        inv->package_format = g_strdup("deb");
    }
    vo_inventory_os_versions(inv);
    return g_steal_pointer(&inv);
}

/*
 * virt-inspector's package format and manager: apt for dpkg; for rpm the
 * distribution's own (dnf since Fedora 22 and RHEL 8, yum before,
 * zypper on SUSE).
 */
static void vo_inventory_package_os(VoInventory *inv)
{
    static const char *const el[] = {
        "rhel", "centos", "rocky", "almalinux", "ol", NULL,
    };
    const char *id = g_hash_table_lookup(inv->os, "id");
    const char *major = g_hash_table_lookup(inv->os, "major_version");
    const char *manager = NULL;

    if (!inv->package_format) {
        return;
    }
    g_hash_table_replace(inv->os, g_strdup("package_format"),
                         g_strdup(inv->package_format));
    if (g_str_equal(inv->package_format, "deb")) {
        manager = "apt";
    } else if (id && g_str_equal(id, "fedora")) {
        manager = "dnf";
    } else if (id && g_strv_contains(el, id) && major) {
        manager = g_ascii_strtoull(major, NULL, 10) >= 8 ? "dnf" : "yum";
    } else if (id && (g_str_has_prefix(id, "opensuse") ||
                      g_str_equal(id, "sles"))) {
        manager = "zypper";
    }
    if (manager) {
        g_hash_table_replace(inv->os, g_strdup("package_management"),
                             g_strdup(manager));
    }
}

/* The architecture of an ELF or PE executable, in libguestfs' words. */
static const char *vo_inventory_binary_arch(const guint8 *d, gsize len)
{
    if (len >= 20 && memcmp(d, "\x7f" "ELF", 4) == 0) {
        gboolean is64 = d[4] == 2, le = d[5] == 1;
        guint16 m = le ? d[18] | d[19] << 8 : d[18] << 8 | d[19];

        switch (m) {
        case 3:
            return "i386";
        case 62:
            return "x86_64";
        case 183:
            return "aarch64";
        case 40:
            return "arm";
        case 21:
            return le ? "ppc64le" : "ppc64";
        case 20:
            return "ppc";
        case 22:
            return is64 ? "s390x" : "s390";
        case 243:
            return is64 ? "riscv64" : "riscv32";
        }
        return NULL;
    }
    if (len >= 64 && d[0] == 'M' && d[1] == 'Z') {
        guint32 pe = d[60] | d[61] << 8 | d[62] << 16 | (guint32)d[63] << 24;

        if (pe > len - 6 || memcmp(d + pe, "PE\0\0", 4) != 0) {
            return NULL;
        }
        switch (d[pe + 4] | d[pe + 5] << 8) {
        case 0x14c:
            return "i386";
        case 0x8664:
            return "x86_64";
        case 0xaa64:
            return "aarch64";
        case 0x1c4:
            return "arm";
        }
    }
    return NULL;
}

/* "arch" from the header of the first of @paths that exists, as
 * virt-inspector finds it; a file that is absent is skipped, one that
 * cannot be read is an error. */
static gboolean vo_inventory_arch(VoGuest *guest, VoInventory *inv,
                                  const char *const *paths, GError **error)
{
    for (guint i = 0; paths[i]; i++) {
        g_autoptr(GError) local = NULL;
        g_autoptr(GBytes) bin = vo_guest_read_file_head(
            guest, paths[i], VO_MAX_EXE_HEAD, &local);
        const char *arch;
        gsize len;
        const guint8 *d;

        if (!bin) {
            if (g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND) ||
                g_error_matches(local, VO_ERROR, VO_ERROR_UNSUPPORTED)) {
                continue;
            }
            g_propagate_error(error, g_steal_pointer(&local));
            return FALSE;
        }
        d = g_bytes_get_data(bin, &len);
        arch = vo_inventory_binary_arch(d, len);
        if (arch) {
            g_hash_table_replace(inv->os, g_strdup("arch"), g_strdup(arch));
        }
        return TRUE;
    }
    return TRUE;
}

/* Reads @path, NULL without an error when the guest has none or one
 * larger than @max. */
static GBytes *vo_inventory_optional(VoGuest *guest, const char *path,
                                     guint64 max, GError **error)
{
    g_autoptr(GError) local = NULL;
    GBytes *data = vo_guest_read_file_max(guest, path, max, &local);

    if (!data && !g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND) &&
        !g_error_matches(local, VO_ERROR, VO_ERROR_UNSUPPORTED)) {
        g_propagate_error(error, g_steal_pointer(&local));
    }
    return data;
}

/* The first line of a small text file, stripped: NULL, without an
 * error, when the guest has none, an empty or a non-UTF-8 one. */
static char *vo_inventory_first_line(VoGuest *guest, const char *path,
                                     GError **error)
{
    g_autoptr(GBytes) data = vo_inventory_optional(guest, path,
                                                   VO_MAX_HOSTNAME, error);
    g_autofree char *text = NULL;
    char *nl;

    if (!data) {
        return NULL;
    }
    text = g_strndup(g_bytes_get_data(data, NULL), g_bytes_get_size(data));
    nl = strchr(text, '\n');
    if (nl) {
        *nl = '\0';
    }
    g_strstrip(text);
    if (!*text || !g_utf8_validate(text, -1, NULL)) {
        return NULL;
    }
    return g_steal_pointer(&text);
}

static gboolean vo_inventory_hostname(VoGuest *guest, VoInventory *inv,
                                      GError **error)
{
    g_autoptr(GError) local = NULL;
    char *host = vo_inventory_first_line(guest, "/etc/hostname", &local);

    if (local) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    if (host) {
        g_hash_table_replace(inv->os, g_strdup("hostname"), host);
    }
    return TRUE;
}

/*
 * Debian's os-release has only the major version ("12"): like
 * virt-inspector, take the product name and the point release from
 * /etc/debian_version ("12.15") when it has that form.
 */
static gboolean vo_inventory_debian_version(VoGuest *guest, VoInventory *inv,
                                            GError **error)
{
    const char *id = g_hash_table_lookup(inv->os, "id");
    const char *vid = g_hash_table_lookup(inv->os, "version_id");
    g_autoptr(GError) local = NULL;
    g_autofree char *line = NULL;
    g_auto(GStrv) mm = NULL;
    guint64 major, minor;

    if (!id || !g_str_equal(id, "debian") || (vid && strchr(vid, '.'))) {
        return TRUE;
    }
    line = vo_inventory_first_line(guest, "/etc/debian_version", &local);
    if (local) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    if (!line) {
        return TRUE;
    }
    mm = g_strsplit(line, ".", 3);
    if (!mm[0] || !mm[1] ||
        !g_ascii_string_to_unsigned(mm[0], 10, 0, G_MAXUINT32, &major,
                                    NULL) ||
        !g_ascii_string_to_unsigned(mm[1], 10, 0, G_MAXUINT32, &minor,
                                    NULL)) {
        return TRUE;
    }
    g_hash_table_replace(inv->os, g_strdup("product_name"),
                         g_steal_pointer(&line));
    g_hash_table_replace(inv->os, g_strdup("major_version"),
                         g_strdup_printf("%" G_GUINT64_FORMAT, major));
    g_hash_table_replace(inv->os, g_strdup("minor_version"),
                         g_strdup_printf("%" G_GUINT64_FORMAT, minor));
    return TRUE;
}

static VoKernel *vo_inventory_kernel(VoInventory *inv, const char *version)
{
    VoKernel *k;

    for (guint i = 0; i < inv->kernels->len; i++) {
        k = inv->kernels->pdata[i];
        if (g_str_equal(k->version, version)) {
            return k;
        }
    }
    k = g_new0(VoKernel, 1);
    k->version = g_strdup(version);
    g_ptr_array_add(inv->kernels, k);
    return k;
}

/*
 * Kernels: the installed linux-image-VERSION packages (not the meta
 * packages, whose names carry no version) and the kernels Debian's
 * /vmlinuz links name; each with /boot/vmlinuz-VERSION when present.
 * Without a directory listing, a kernel that neither names is not found.
 */
static void vo_inventory_kernels(VoGuest *guest, VoInventory *inv)
{
    static const char *const links[] = {
        "/vmlinuz", "/vmlinuz.old", "/boot/vmlinuz", "/boot/vmlinuz.old",
    };
    const char *prefix = "linux-image-";

    for (guint i = 0; i < inv->package_list->len; i++) {
        VoPackage *p = inv->package_list->pdata[i];
        g_autofree char *version = NULL;
        VoKernel *k;

        if (!p->installed || !g_str_has_prefix(p->name, prefix) ||
            !g_ascii_isdigit(p->name[strlen(prefix)])) {
            continue;
        }
        version = g_strdup(p->name + strlen(prefix));
        if (g_str_has_suffix(version, "-unsigned")) {
            version[strlen(version) - strlen("-unsigned")] = '\0';
        }
        k = vo_inventory_kernel(inv, version);
        if (!k->package) {
            k->package = g_strdup(p->name);
            k->package_version = g_strdup(p->version);
        }
    }
    for (gsize i = 0; i < G_N_ELEMENTS(links); i++) {
        g_auto(VoPath) r = { 0 };
        const char *v;

        /* The links are hints: a dangling or looping one names nothing. */
        if (!vo_guest_resolve(guest, links[i], TRUE, &r, NULL) ||
            !r.exists || r.st.type != VO_NODE_REGULAR ||
            !g_str_has_prefix(r.resolved, "/boot/vmlinuz-")) {
            continue;
        }
        v = r.resolved + strlen("/boot/vmlinuz-");
        if (*v && !strchr(v, '/') && g_utf8_validate(v, -1, NULL)) {
            vo_inventory_kernel(inv, v);
        }
    }
    for (guint i = 0; i < inv->kernels->len; i++) {
        VoKernel *k = inv->kernels->pdata[i];
        g_autofree char *path = g_strdup_printf("/boot/vmlinuz-%s",
                                                k->version);
        g_auto(VoPath) r = { 0 };

        /* Reported as found, not trusted: an unusable /boot names none. */
        if (vo_guest_resolve(guest, path, TRUE, &r, NULL) && r.exists &&
            r.st.type == VO_NODE_REGULAR) {
            k->path = g_steal_pointer(&path);
        }
    }
}

static VoInventory *vo_inventory_read_windows(VoGuest *guest, GError **error)
{
    static const char *const cmd[] = {
        "/Windows/System32/cmd.exe", NULL,
    };
    g_autoptr(VoInventory) inv = vo_inventory_new(guest->family);
    g_autoptr(GPtrArray) apps = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_win_app_free);

    if (!vo_registry_inventory(guest, inv->os, apps, inv->updates, error) ||
        !vo_inventory_arch(guest, inv, cmd, error)) {
        return NULL;
    }
    /* Where the hives are read from, in virt-inspector's notation. */
    g_hash_table_replace(inv->os, g_strdup("systemroot"),
                         g_strdup("/Windows"));
    /* Uninstall entries are the Windows packages. */
    for (guint i = 0; i < apps->len; i++) {
        VoWinApp *app = apps->pdata[i];
        VoPackage *p = g_new0(VoPackage, 1);

        p->name = g_strdup(app->key);
        p->version = g_strdup(app->version ? app->version : "");
        p->architecture = g_strdup("");
        p->installed = TRUE;
        p->display_name = g_strdup(app->display_name);
        p->publisher = g_strdup(app->publisher);
        p->install_date = g_strdup(app->install_date);
        g_ptr_array_add(inv->package_list, p);
        if (!g_hash_table_contains(inv->packages, p->name)) {
            g_hash_table_insert(inv->packages, g_strdup(p->name), p);
        }
    }
    /* A rule may name a program as people see it; a key name wins. */
    for (guint i = 0; i < inv->package_list->len; i++) {
        VoPackage *p = inv->package_list->pdata[i];

        if (p->display_name &&
            !g_hash_table_contains(inv->packages, p->display_name)) {
            g_hash_table_insert(inv->packages, g_strdup(p->display_name), p);
        }
    }
    return g_steal_pointer(&inv);
}

void vo_inventory_add_rpm(const char *name, const char *evr,
                          const char *arch, gpointer data)
{
    g_autoptr(GHashTable) fields = g_hash_table_new(g_str_hash, g_str_equal);

    g_hash_table_insert(fields, "package", (gpointer)name);
    g_hash_table_insert(fields, "version", (gpointer)evr);
    g_hash_table_insert(fields, "status", "installed");
    if (arch) {
        g_hash_table_insert(fields, "architecture", (gpointer)arch);
    }
    vo_inventory_add_package(data, fields);
}

VoInventory *vo_inventory_read(VoGuest *guest, GError **error)
{
    /* libguestfs' order for a Linux guest's architecture. */
    static const char *const bins[] = {
        "/bin/bash", "/bin/ls", "/bin/echo", "/bin/rm", "/bin/sh", NULL,
    };
    gboolean found;
    g_autoptr(GBytes) osr = NULL;
    g_autoptr(GBytes) status = NULL;
    g_autoptr(GError) local = NULL;
    g_autoptr(VoInventory) inv = NULL;

    if (g_str_equal(guest->family, "windows")) {
        return vo_inventory_read_windows(guest, error);
    }

    osr = vo_guest_read_file_head(guest, "/etc/os-release", VO_MAX_OS_RELEASE,
                                  &local);
    /* Only a missing file falls back: one that cannot be read (a link
     * loop, a corrupt inode) would otherwise pass for a guest without it,
     * and the rules would judge an OS that is not there. */
    if (!osr && g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        g_clear_error(&local);
        osr = vo_guest_read_file_head(guest, "/usr/lib/os-release",
                                      VO_MAX_OS_RELEASE, &local);
    }
    if (!osr && !g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        g_propagate_error(error, g_steal_pointer(&local));
        return NULL;
    }
    g_clear_error(&local);

    status = vo_guest_read_text_max(guest, VO_DPKG_ADMINDIR "/status",
                                    VO_DPKG_MAX_STATUS, &local);
    if (!status && !g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        g_propagate_error(error, g_steal_pointer(&local));
        return NULL;
    }
    inv = vo_inventory_parse_linux(guest->family, osr, status, error);
    /* Without dpkg, rpm's database, if there is one. */
    if (inv && !status) {
        if (!vo_rpm_read(guest, vo_inventory_add_rpm, inv, &found, error)) {
            return NULL;
        }
        if (found) {
            inv->package_format = g_strdup("rpm");
        }
    }
    if (!inv || !vo_inventory_hostname(guest, inv, error) ||
        !vo_inventory_debian_version(guest, inv, error) ||
        !vo_inventory_arch(guest, inv, bins, error)) {
        return NULL;
    }
    vo_inventory_kernels(guest, inv);
    vo_inventory_package_os(inv);
    return g_steal_pointer(&inv);
}

static gint vo_inventory_cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A string member, left out when NULL. */
static void vo_inventory_member(JsonBuilder *b, const char *name,
                                const char *value)
{
    if (value) {
        json_builder_set_member_name(b, name);
        json_builder_add_string_value(b, value);
    }
}

JsonNode *vo_inventory_to_json(VoGuest *guest, VoInventory *inv)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(GPtrArray) keys = g_ptr_array_new();
    GHashTableIter it;
    gpointer key;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "image");
    json_builder_add_string_value(b, guest->image);
    /* Served to us in a format our parent knows, and names in our place
     * (vo_worker_report_formats()). */
    json_builder_set_member_name(b, "format");
    json_builder_add_null_value(b);
    json_builder_set_member_name(b, "virtual_size");
    json_builder_add_int_value(b, vo_disk_get_size(guest->disk));
    json_builder_set_member_name(b, "partition_table");
    if (guest->layout->table) {
        json_builder_add_string_value(b, guest->layout->table);
    } else {
        json_builder_add_null_value(b);
    }

    /* Every disk of the guest, in its order; "disk" below counts from 1. */
    json_builder_set_member_name(b, "disks");
    json_builder_begin_array(b);
    /* The guest's own: decrypted LUKS volumes are listed as partitions. */
    for (guint i = 0; guest->disks && i < (guest->n_disks ? guest->n_disks
                                                          : guest->disks->len);
         i++) {
        VoLayout *layout = guest->layouts->pdata[i];

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "disk");
        json_builder_add_int_value(b, i + 1);
        json_builder_set_member_name(b, "format");
        json_builder_add_null_value(b);
        json_builder_set_member_name(b, "virtual_size");
        json_builder_add_int_value(b,
                                   vo_disk_get_size(guest->disks->pdata[i]));
        json_builder_set_member_name(b, "partition_table");
        if (layout->table) {
            json_builder_add_string_value(b, layout->table);
        } else {
            json_builder_add_null_value(b);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);

    json_builder_set_member_name(b, "partitions");
    json_builder_begin_array(b);
    for (guint i = 0; i < guest->layout->partitions->len; i++) {
        VoPartition *p = guest->layout->partitions->pdata[i];
        const struct {
            const char *key;
            const char *value;
        } strs[] = {
            { "type", p->type }, { "partuuid", p->part_uuid },
            { "partlabel", p->part_label }, { "filesystem", p->fstype },
            { "uuid", p->fs_uuid }, { "label", p->fs_label },
            { "volume", p->volume },
        };

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "disk");
        json_builder_add_int_value(b, vo_layout_disk_number(p));
        if (p->container) {
            /* Decrypted: the container's partition holds it. */
            json_builder_set_member_name(b, "luks-partition");
            json_builder_add_int_value(b, p->container->number);
        }
        json_builder_set_member_name(b, "number");
        json_builder_add_int_value(b, p->number);
        json_builder_set_member_name(b, "offset");
        json_builder_add_int_value(b, p->offset);
        json_builder_set_member_name(b, "size");
        json_builder_add_int_value(b, p->size);
        for (gsize k = 0; k < G_N_ELEMENTS(strs); k++) {
            if (strs[k].value && g_utf8_validate(strs[k].value, -1, NULL)) {
                json_builder_set_member_name(b, strs[k].key);
                json_builder_add_string_value(b, strs[k].value);
            }
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);

    json_builder_set_member_name(b, "mounts");
    json_builder_begin_array(b);
    for (guint i = 0; i < guest->mounts->len; i++) {
        VoMount *m = guest->mounts->pdata[i];
        g_autofree char *shown = NULL;

        json_builder_begin_object(b);
        if (g_str_equal(guest->family, "windows")) {
            /* "/" is C:, "/:D" is D: (see vo_guest_normalize_path()). */
            shown = g_str_equal(m->mountpoint, "/")
                        ? g_strdup("C:")
                        : g_strdup_printf("%s:", m->mountpoint + 2);
        }
        json_builder_set_member_name(b, "mountpoint");
        json_builder_add_string_value(b, shown ? shown : m->mountpoint);
        if (m->part) {
            json_builder_set_member_name(b, "disk");
            json_builder_add_int_value(b, vo_layout_disk_number(m->part));
            if (m->part->container) {
                json_builder_set_member_name(b, "luks-partition");
                json_builder_add_int_value(b, m->part->container->number);
            }
            json_builder_set_member_name(b, "partition");
            json_builder_add_int_value(b, m->part->number);
            if (m->part->volume) {
                json_builder_set_member_name(b, "volume");
                json_builder_add_string_value(b, m->part->volume);
            }
        }
        if (m->fs) {
            json_builder_set_member_name(b, "filesystem");
            json_builder_add_string_value(b, m->part->fstype);
        }
        if (m->problem) {
            json_builder_set_member_name(b, "problem");
            json_builder_add_string_value(b, m->problem);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);

    json_builder_set_member_name(b, "os");
    json_builder_begin_object(b);
    g_hash_table_iter_init(&it, inv->os);
    while (g_hash_table_iter_next(&it, &key, NULL)) {
        g_ptr_array_add(keys, key);
    }
    g_ptr_array_sort(keys, vo_inventory_cmp_str);
    for (guint i = 0; i < keys->len; i++) {
        json_builder_set_member_name(b, keys->pdata[i]);
        json_builder_add_string_value(
            b, g_hash_table_lookup(inv->os, keys->pdata[i]));
    }
    json_builder_end_object(b);

    json_builder_set_member_name(b, "packages");
    json_builder_begin_array(b);
    for (guint i = 0; i < inv->package_list->len; i++) {
        VoPackage *p = inv->package_list->pdata[i];

        json_builder_begin_object(b);
        vo_inventory_member(b, "name", p->name);
        vo_inventory_member(b, "version", p->version);
        if (p->status) {
            /* dpkg's own fields. */
            vo_inventory_member(b, "architecture", p->architecture);
            vo_inventory_member(b, "status", p->status);
        }
        vo_inventory_member(b, "display_name", p->display_name);
        vo_inventory_member(b, "publisher", p->publisher);
        vo_inventory_member(b, "install_date", p->install_date);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);

    if (g_str_equal(inv->family, "windows")) {
        json_builder_set_member_name(b, "updates");
        json_builder_begin_array(b);
        for (guint i = 0; i < inv->updates->len; i++) {
            VoWinUpdate *u = inv->updates->pdata[i];

            json_builder_begin_object(b);
            vo_inventory_member(b, "package", u->package);
            vo_inventory_member(b, "kb", u->kb);
            json_builder_set_member_name(b, "state");
            json_builder_add_int_value(b, u->state);
            vo_inventory_member(b, "state_name",
                                vo_registry_cbs_state_name(u->state));
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
    } else {
        json_builder_set_member_name(b, "kernels");
        json_builder_begin_array(b);
        for (guint i = 0; i < inv->kernels->len; i++) {
            VoKernel *k = inv->kernels->pdata[i];

            json_builder_begin_object(b);
            vo_inventory_member(b, "version", k->version);
            vo_inventory_member(b, "path", k->path);
            vo_inventory_member(b, "package", k->package);
            vo_inventory_member(b, "package_version", k->package_version);
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
    }
    json_builder_end_object(b);
    return json_builder_get_root(b);
}
