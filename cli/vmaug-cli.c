/*
 * The command-line conventions every host tool follows (docs/cli.rst).
 *
 * The table below is the one place that says which error of which library
 * is a refusal, a "does not apply" or a usage error; it reads the
 * libraries' headers for their codes and links none of them.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>

#include "vmaug-cli.h"
#include "host-common.h"
#include "vmaugment-repo.h"
#include "vmaugment-trust.h"
#include "vo-disk.h"

static const char *vmaug_cli_name = "vmaugment";
static gboolean vmaug_cli_opt_version;
static gboolean vmaug_cli_opt_verbose;

/*
 * Errors that are not plain failures, by domain.  A domain is named by its
 * quark's string so that a tool need not link every library named here.
 */
static const struct {
    const char *domain;
    int code;
    int status;
} vmaug_cli_statuses[] = {
    /* Signatures: the bytes are not what a trusted signer signed. */
    { "vmaug-trust-error-quark", VMAUG_TRUST_ERROR_BAD_SIGNATURE,
      VMAUG_EXIT_REFUSED },
    { "vmaug-trust-error-quark", VMAUG_TRUST_ERROR_UNKNOWN_SIGNER,
      VMAUG_EXIT_REFUSED },
    { "vmaug-trust-error-quark", VMAUG_TRUST_ERROR_EXPIRED,
      VMAUG_EXIT_REFUSED },
    { "vmaug-trust-error-quark", VMAUG_TRUST_ERROR_REVOKED,
      VMAUG_EXIT_REFUSED },
    /* The module store and packages: signature, policy, its limits. */
    { "vmaug-host-error-quark", VMAUG_HOST_ERROR_DENIED, VMAUG_EXIT_REFUSED },
    { "vmaug-host-error-quark", VMAUG_HOST_ERROR_HASH_MISMATCH,
      VMAUG_EXIT_REFUSED },
    { "vmaug-host-error-quark", VMAUG_HOST_ERROR_TOO_BIG,
      VMAUG_EXIT_REFUSED },
    /* The repository: what its signed index and packages must be. */
    { "vmaug-repo-error-quark", VMAUG_REPO_ERROR_TLS, VMAUG_EXIT_REFUSED },
    { "vmaug-repo-error-quark", VMAUG_REPO_ERROR_TOO_BIG,
      VMAUG_EXIT_REFUSED },
    { "vmaug-repo-error-quark", VMAUG_REPO_ERROR_SIGNATURE,
      VMAUG_EXIT_REFUSED },
    { "vmaug-repo-error-quark", VMAUG_REPO_ERROR_EXPIRED,
      VMAUG_EXIT_REFUSED },
    { "vmaug-repo-error-quark", VMAUG_REPO_ERROR_ROLLBACK,
      VMAUG_EXIT_REFUSED },
    { "vmaug-repo-error-quark", VMAUG_REPO_ERROR_MISMATCH,
      VMAUG_EXIT_REFUSED },
    { "vmaug-repo-error-quark", VMAUG_REPO_ERROR_PACKAGE,
      VMAUG_EXIT_REFUSED },
    /* Offline servicing: bundles. */
    { "vmaugment-offline-error-quark", VO_ERROR_SIGNATURE,
      VMAUG_EXIT_REFUSED },
    { "vmaugment-offline-error-quark", VO_ERROR_NOT_APPLICABLE,
      VMAUG_EXIT_NOT_APPLICABLE },
};

void vmaug_cli_init(const char *tool)
{
    setlocale(LC_ALL, "");
    vmaug_cli_name = tool;
    g_set_prgname(tool);
}

const char *vmaug_cli_tool(void)
{
    return vmaug_cli_name;
}

const char *vmaug_cli_version(void)
{
    return VMAUGMENT_VERSION;
}

void vmaug_cli_setup(GOptionContext *ctx, gboolean *json,
                     const char *const *examples)
{
    vmaug_cli_setup_full(ctx, TRUE, TRUE, json, examples);
}

void vmaug_cli_setup_daemon(GOptionContext *ctx, const char *const *examples)
{
    vmaug_cli_setup_full(ctx, TRUE, FALSE, NULL, examples);
}

void vmaug_cli_setup_full(GOptionContext *ctx, gboolean version,
                          gboolean verbose, gboolean *json,
                          const char *const *examples)
{
    g_autoptr(GString) text = g_string_new(NULL);
    const GOptionEntry common[] = {
        { "version", 0, 0, G_OPTION_ARG_NONE, &vmaug_cli_opt_version,
          "Print the version and exit", NULL },
        { "verbose", 'v', 0, G_OPTION_ARG_NONE, &vmaug_cli_opt_verbose,
          "Print debug messages (like G_MESSAGES_DEBUG=all)", NULL },
        { NULL }
    };
    const GOptionEntry version_only[] = { common[0], { NULL } };
    const GOptionEntry verbose_only[] = { common[1], { NULL } };
    const GOptionEntry json_entries[] = {
        { "json", 0, 0, G_OPTION_ARG_NONE, json,
          "Print a JSON report, also on failure", NULL },
        { NULL }
    };

    if (version) {
        g_option_context_add_main_entries(ctx, version_only, NULL);
    }
    if (verbose) {
        g_option_context_add_main_entries(ctx, verbose_only, NULL);
    }
    if (json != NULL) {
        g_option_context_add_main_entries(ctx, json_entries, NULL);
    }
    if (examples != NULL && examples[0] != NULL) {
        g_string_append(text, "Examples:\n");
        for (gsize i = 0; examples[i] != NULL; i++) {
            g_string_append_printf(text, "  %s\n", examples[i]);
        }
        g_string_append_c(text, '\n');
    }
    g_string_append_printf(text, "Exit status: %d done, %d failed, "
                           "%d usage, %d not applicable, %d refused "
                           "(signature or policy); see docs/cli.rst.\n",
                           VMAUG_EXIT_OK, VMAUG_EXIT_FAILURE,
                           VMAUG_EXIT_USAGE, VMAUG_EXIT_NOT_APPLICABLE,
                           VMAUG_EXIT_REFUSED);
    g_option_context_set_description(ctx, text->str);
}

int vmaug_cli_parse(GOptionContext *ctx, int *argc, char ***argv)
{
    g_autoptr(GError) error = NULL;

    if (!g_option_context_parse(ctx, argc, argv, &error)) {
        return vmaug_cli_usage("%s", error->message);
    }
    if (vmaug_cli_opt_version) {
        g_print("%s %s\n", vmaug_cli_name, VMAUGMENT_VERSION);
        return VMAUG_EXIT_OK;
    }
    if (vmaug_cli_opt_verbose) {
        /* Children (the offline worker, module processes) inherit it. */
        g_setenv("G_MESSAGES_DEBUG", "all", TRUE);
    }
    return -1;
}

gboolean vmaug_cli_verbose(void)
{
    return vmaug_cli_opt_verbose;
}

int vmaug_cli_usage(const char *format, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, format);
    msg = g_strdup_vprintf(format, ap);
    va_end(ap);
    g_printerr("%s: usage: %s\nTry '%s --help'.\n", vmaug_cli_name, msg,
               g_get_prgname());
    return VMAUG_EXIT_USAGE;
}

int vmaug_cli_status(const GError *error)
{
    const char *domain;

    if (error == NULL) {
        return VMAUG_EXIT_OK;
    }
    if (error->domain == G_OPTION_ERROR) {
        return VMAUG_EXIT_USAGE;
    }
    domain = g_quark_to_string(error->domain);
    for (gsize i = 0; i < G_N_ELEMENTS(vmaug_cli_statuses); i++) {
        if (error->code == vmaug_cli_statuses[i].code &&
            g_str_equal(domain, vmaug_cli_statuses[i].domain)) {
            return vmaug_cli_statuses[i].status;
        }
    }
    return VMAUG_EXIT_FAILURE;
}

int vmaug_cli_fail(const GError *error, const char *what_format, ...)
{
    int status = vmaug_cli_status(error);
    g_autofree char *what = NULL;
    va_list ap;

    if (what_format != NULL) {
        va_start(ap, what_format);
        what = g_strdup_vprintf(what_format, ap);
        va_end(ap);
    }
    if (status == VMAUG_EXIT_USAGE) {
        return what != NULL ? vmaug_cli_usage("%s: %s", what, error->message)
                            : vmaug_cli_usage("%s", error->message);
    }
    if (what != NULL) {
        g_printerr("%s: %s: %s\n", vmaug_cli_name, what, error->message);
    } else {
        g_printerr("%s: %s\n", vmaug_cli_name, error->message);
    }
    return status;
}

void vmaug_cli_print_json(JsonNode *node)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree char *text = NULL;

    json_generator_set_pretty(gen, TRUE);
    json_generator_set_root(gen, node);
    text = json_generator_to_data(gen, NULL);
    g_print("%s\n", text);
}

void vmaug_cli_print_report(JsonBuilder *b, const char *status_word,
                            const GError *error)
{
    g_autoptr(JsonNode) root = NULL;

    if (status_word == NULL) {
        status_word = vmaug_exit_status_word(vmaug_cli_status(error));
    }
    json_builder_set_member_name(b, "status");
    json_builder_add_string_value(b, status_word);
    if (error != NULL) {
        json_builder_set_member_name(b, "error");
        json_builder_add_string_value(b, error->message);
    }
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    vmaug_cli_print_json(root);
}

void vmaug_cli_print_failure(const GError *error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    vmaug_cli_print_report(b, NULL, error);
}

const char *vmaug_cli_default_trust_dir(void)
{
    return VMAUGMENT_TRUST_DIR;
}

const char *vmaug_cli_default_store_dir(void)
{
    return VMAUGMENT_STORE_DIR;
}

const char *vmaug_cli_default_helper_socket(void)
{
    return VMAUGMENT_HELPER_SOCKET;
}
