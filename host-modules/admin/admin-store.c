/*
 * vmaugment-admin: the module store (modules, verify, install).
 *
 * There is no "remove": the store offers no removal that keeps its
 * rollback record and the content other names may share, so the tool does
 * not reach behind it (docs/admin.rst).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "admin.h"
#include "store.h"

typedef struct {
    gchar *store;
    gchar *trust_dir;
    gchar *policy;
    gboolean json;
    VmaugTrustStore *trust;
    VmaugPolicy *pol;
    VmaugStore *st;
} AdminStore;

static void admin_store_clear(AdminStore *a)
{
    /* The store refers to trust and policy: it goes first. */
    g_clear_pointer(&a->st, vmaug_store_free);
    g_clear_pointer(&a->pol, vmaug_policy_free);
    g_clear_pointer(&a->trust, vmaug_trust_store_free);
    g_free(a->store);
    g_free(a->trust_dir);
    g_free(a->policy);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(AdminStore, admin_store_clear)

static gboolean admin_store_parse(AdminStore *a, const gchar *usage,
                                  gboolean want_json, int *argc, char ***argv)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new(usage);
    const GOptionEntry entries[] = {
        { "store", 's', 0, G_OPTION_ARG_FILENAME, &a->store,
          "Module store (default: the host's)", "DIR" },
        { "trust-dir", 't', 0, G_OPTION_ARG_FILENAME, &a->trust_dir,
          "Trusted certificates and CRLs (default: the host's)", "DIR" },
        { "policy", 0, 0, G_OPTION_ARG_FILENAME, &a->policy,
          "Host owner's policy (JSON), as given to the helper", "FILE" },
        { NULL }
    };

    if (!admin_parse(ctx, entries, want_json ? &a->json : NULL, argc,
                     argv)) {
        return FALSE;
    }
    if (a->store == NULL) {
        a->store = g_strdup(vmaug_cli_default_store_dir());
    }
    if (a->trust_dir == NULL) {
        a->trust_dir = g_strdup(vmaug_cli_default_trust_dir());
    }
    return TRUE;
}

/*
 * Load trust store and policy, and open the store.  Only install may
 * create a store: a mistyped --store must not silently list nothing.
 */
static gboolean admin_store_open(AdminStore *a, gboolean create,
                                 GError **error)
{
    if (!create && !g_file_test(a->store, G_FILE_TEST_IS_DIR)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                    "no module store at %s", a->store);
        return FALSE;
    }
    a->trust = vmaug_trust_store_new_from_dir(a->trust_dir, error);
    if (a->trust == NULL) {
        g_prefix_error(error, "trust store %s: ", a->trust_dir);
        return FALSE;
    }
    a->pol = a->policy != NULL ? vmaug_policy_load(a->policy, error) :
             vmaug_policy_new_default();
    if (a->pol == NULL) {
        g_prefix_error(error, "policy %s: ", a->policy);
        return FALSE;
    }
    a->st = vmaug_store_open(a->store, a->trust, a->pol, error);
    return a->st != NULL;
}

/* modules/<name>/.highest, as store.h describes it; NULL when absent. */
static gchar *admin_store_highest(AdminStore *a, const gchar *name)
{
    g_autofree gchar *p = g_build_filename(vmaug_store_get_dir(a->st),
                                           "modules", name, ".highest",
                                           NULL);
    g_autoptr(GBytes) b = vmaug_trust_read_file(p, 256, NULL);
    g_autofree gchar *v = NULL;

    if (b == NULL) {
        return NULL;
    }
    v = g_strstrip(g_strndup(g_bytes_get_data(b, NULL),
                             g_bytes_get_size(b)));
    return vmaug_version_is_valid(v) ? g_steal_pointer(&v) : NULL;
}

typedef struct {
    VmaugStoreEntry *entry;
    VmaugPackage *pkg;          /* NULL when it no longer verifies */
    GError *error;
    gchar *highest;
} AdminModule;

static void admin_module_free(AdminModule *m)
{
    vmaug_store_entry_free(m->entry);
    vmaug_package_free(m->pkg);
    g_clear_error(&m->error);
    g_free(m->highest);
    g_free(m);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(AdminModule, admin_module_free)

/* Verify one stored version against the trust store as it is now; only
 * a refusal lands in the audit log. */
static AdminModule *admin_module_check(AdminStore *a, VmaugStoreEntry *e,
                                       const gchar *action)
{
    AdminModule *m = g_new0(AdminModule, 1);

    m->entry = e;
    m->pkg = vmaug_store_open_package(a->st, e->name, e->version,
                                      ADMIN_ACTOR, action, &m->error);
    m->highest = admin_store_highest(a, e->name);
    return m;
}

static const gchar *admin_module_kind(const AdminModule *m)
{
    return m->pkg != NULL ? vmaug_kind_to_string(m->pkg->manifest->kind) :
           "-";
}

static void admin_module_json(JsonBuilder *b, const AdminModule *m)
{
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, m->entry->name);
    json_builder_set_member_name(b, "version");
    json_builder_add_string_value(b, m->entry->version);
    json_builder_set_member_name(b, "kind");
    if (m->pkg != NULL) {
        json_builder_add_string_value(b, admin_module_kind(m));
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "sha256");
    json_builder_add_string_value(b, m->entry->sha256);
    json_builder_set_member_name(b, "signer");
    if (m->pkg != NULL) {
        json_builder_add_string_value(b, m->pkg->signer->common_name);
        json_builder_set_member_name(b, "signer_fingerprint");
        json_builder_add_string_value(b, m->pkg->signer->fingerprint);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "highest_accepted");
    if (m->highest != NULL) {
        json_builder_add_string_value(b, m->highest);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "verifies");
    json_builder_add_boolean_value(b, m->pkg != NULL);
    if (m->error != NULL) {
        json_builder_set_member_name(b, "reason");
        json_builder_add_string_value(b, m->error->message);
    }
    json_builder_end_object(b);
}

static void admin_module_print(const AdminModule *m)
{
    g_autofree gchar *signer = m->pkg != NULL ?
        admin_printable(m->pkg->signer->common_name, -1) : g_strdup("-");

    g_print("%-16s %-10s %-14s %-10s %-4s %s %s\n", m->entry->name,
            m->entry->version, admin_module_kind(m),
            m->highest != NULL ? m->highest : "-",
            m->pkg != NULL ? "yes" : "NO", m->entry->sha256, signer);
    if (m->error != NULL) {
        g_autofree gchar *why = admin_printable(m->error->message, -1);

        g_print("    does not verify: %s\n", why);
    }
}

int admin_cmd_modules(int argc, char **argv)
{
    g_auto(AdminStore) a = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) list = NULL;
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) root = NULL;

    if (!admin_store_parse(&a, "- list the stored modules", TRUE, &argc,
                           &argv)) {
        return admin_parse_exit;
    }
    if (argc != 1) {
        return admin_fail(ADMIN_EXIT_USAGE, "modules takes no arguments");
    }
    if (!admin_store_open(&a, FALSE, &error)) {
        return admin_fail_error(error);
    }
    list = vmaug_store_list(a.st);
    /* The entries now belong to the AdminModules. */
    g_ptr_array_set_free_func(list, NULL);
    if (!a.json && list->len > 0) {
        g_print("%-16s %-10s %-14s %-10s %-4s %-64s %s\n", "NAME", "VERSION",
                "KIND", "HIGHEST", "OK", "SHA256", "SIGNER");
    }
    json_builder_begin_array(b);
    for (guint i = 0; i < list->len; i++) {
        g_autoptr(AdminModule) m =
            admin_module_check(&a, g_ptr_array_index(list, i), NULL);

        if (a.json) {
            admin_module_json(b, m);
        } else {
            admin_module_print(m);
        }
    }
    json_builder_end_array(b);
    if (a.json) {
        root = json_builder_get_root(b);
        admin_print_json(root);
    } else if (list->len == 0) {
        g_print("no modules in %s\n", vmaug_store_get_dir(a.st));
    }
    return ADMIN_EXIT_OK;
}

int admin_cmd_verify(int argc, char **argv)
{
    g_auto(AdminStore) a = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(AdminModule) m = NULL;
    VmaugStoreEntry *e;

    if (!admin_store_parse(&a, "NAME [VERSION] - verify a stored module "
                           "against the trust store now", FALSE, &argc,
                           &argv)) {
        return admin_parse_exit;
    }
    if (argc < 2 || argc > 3) {
        return admin_fail(ADMIN_EXIT_USAGE, "verify takes NAME [VERSION]");
    }
    if (!admin_store_open(&a, FALSE, &error)) {
        return admin_fail_error(error);
    }
    e = vmaug_store_lookup(a.st, argv[1], argc == 3 ? argv[2] : NULL,
                           &error);
    if (e == NULL) {
        return admin_fail_error(error);
    }
    /* Audited either way: the owner checked it, and what was found. */
    m = admin_module_check(&a, e, "verify");
    if (m->pkg == NULL) {
        return admin_fail(vmaug_cli_status(m->error),
                          "%s %s does not verify: %s",
                          e->name, e->version, m->error->message);
    }
    {
        g_autofree gchar *cn = admin_printable(m->pkg->signer->common_name,
                                               -1);
        g_autofree gchar *exp = admin_format_time(m->pkg->signer->not_after);

        g_print("%s %s (%s) verifies: signed by %s [%s], certificate "
                "valid until %s\nsha256 %s\n", e->name, e->version,
                admin_module_kind(m), cn, m->pkg->signer->fingerprint, exp,
                e->sha256);
    }
    if (m->highest != NULL &&
        vmaug_version_compare(e->version, m->highest) < 0 &&
        !a.pol->allow_rollback) {
        g_print("note: %s %s is accepted, so the helper refuses to load "
                "this older version\n", e->name, m->highest);
    }
    return ADMIN_EXIT_OK;
}

int admin_cmd_install(int argc, char **argv)
{
    g_auto(AdminStore) a = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) file = NULL;
    g_autoptr(VmaugManifest) m = NULL;
    gboolean already;

    if (!admin_store_parse(&a, "PACKAGE.vmod - verify a package and add "
                           "it to the store", TRUE, &argc, &argv)) {
        return admin_parse_exit;
    }
    if (argc != 2) {
        return admin_fail(ADMIN_EXIT_USAGE, "install takes one package");
    }
    if (!admin_store_open(&a, TRUE, &error)) {
        return admin_fail_error(error);
    }
    /* Capped before reading: a package larger than the policy allows is
     * refused like the helper refuses it, and recorded. */
    file = vmaug_trust_read_file(argv[1], a.pol->max_package_size, &error);
    if (file == NULL) {
        if (error->domain == VMAUG_TRUST_ERROR) {
            vmaug_store_audit(a.st, ADMIN_ACTOR, "install", NULL, NULL,
                              NULL, NULL, error);
        }
        return admin_fail(error->domain == VMAUG_TRUST_ERROR ?
                          ADMIN_EXIT_REFUSED : ADMIN_EXIT_FAILED,
                          "%s: %s", argv[1],
                          error->message);
    }
    m = vmaug_store_install_full(a.st, file, ADMIN_ACTOR, &already, &error);
    if (m == NULL) {
        return admin_fail(vmaug_cli_status(error), "%s refused: %s", argv[1],
                          error->message);
    }
    if (a.json) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, m->name);
        json_builder_set_member_name(b, "version");
        json_builder_add_string_value(b, m->version);
        json_builder_set_member_name(b, "kind");
        json_builder_add_string_value(b, vmaug_kind_to_string(m->kind));
        vmaug_cli_print_report(b, already ? "already-stored" : "installed",
                               NULL);
        return ADMIN_EXIT_OK;
    }
    g_print("%s %s %s (%s)\n", already ? "already stored" : "installed",
            m->name, m->version,
            vmaug_kind_to_string(m->kind));
    return ADMIN_EXIT_OK;
}
