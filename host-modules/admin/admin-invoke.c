/*
 * vmaugment-admin invoke: try a stored module on the host, without a
 * guest.  The tool connects to the running helper as a device named
 * "vmaugment-admin" would (link-client.h), so the module goes through
 * exactly what a guest's call goes through: the helper verifies the
 * signature again, applies the policy and the rollback record, starts
 * the module in its sandbox and records the decision in the audit log
 * under that name.  Nothing here decides anything; the helper's answer is
 * reported (docs/admin.rst, docs/cli.rst for the exit statuses).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "host-common.h"
#include "link-client.h"
#include "vmaugment/protocol-names.h"

/* The name the helper logs and audits this tool's calls under. */
#define ADMIN_INVOKE_DEVICE "vmaugment-admin"
/* Loading starts a sandboxed process and may fetch nothing: this is a
 * bound on a helper that stopped answering, not on the module's work. */
#define ADMIN_INVOKE_TIMEOUT_MS (120 * 1000)

/* A non-OK answer of the helper, with its text, as an error the tools'
 * exit statuses know. */
static void admin_invoke_answer_error(GError **error, guint16 status,
                                      GBytes *text, const gchar *what)
{
    g_autofree gchar *why = NULL;

    if (text != NULL && g_bytes_get_size(text) > 0) {
        g_autofree gchar *raw = g_utf8_make_valid(
            g_bytes_get_data(text, NULL), g_bytes_get_size(text));

        why = admin_printable(raw, -1);
    } else {
        const struct vmaug_proto_status *st = vmaug_proto_status(status);

        why = st != NULL ? g_strdup(st->words) :
              g_strdup_printf("status %u", status);
    }
    vmaug_host_error_set_status(error, status, "%s: %s", what, why);
}

static void admin_invoke_report(const gchar *module, const gchar *function,
                                GBytes *out, const GError *error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "module");
    json_builder_add_string_value(b, module);
    json_builder_set_member_name(b, "function");
    json_builder_add_string_value(b, function);
    if (out != NULL) {
        gsize len;
        const gchar *p = g_bytes_get_data(out, &len);

        /* Text as text; anything else losslessly. */
        if (g_utf8_validate_len(p, len, NULL) && memchr(p, 0, len) == NULL) {
            g_autofree gchar *s = g_strndup(p, len);

            json_builder_set_member_name(b, "output");
            json_builder_add_string_value(b, s);
        } else {
            g_autofree gchar *s = g_base64_encode((const guchar *)p, len);

            json_builder_set_member_name(b, "output-base64");
            json_builder_add_string_value(b, s);
        }
    }
    vmaug_cli_print_report(b, error == NULL ? "ok" :
                           vmaug_exit_status_word(vmaug_cli_status(error)),
                           error);
}

static gboolean admin_invoke_run(const gchar *socket, const gchar *module,
                                 const gchar *version, const gchar *function,
                                 const gchar *input, GBytes **out,
                                 GError **error)
{
    g_autoptr(VmaugLinkClient) c = NULL;
    g_autoptr(GBytes) data = NULL;
    struct vmaug_module_ref ref;
    guint16 status;

    c = vmaug_link_client_connect(socket, ADMIN_INVOKE_DEVICE, NULL, NULL, 0,
                                  error);
    if (c == NULL) {
        g_prefix_error(error, "helper: ");
        return FALSE;
    }
    g_debug("connected to %s at %s", vmaug_link_client_get_peer(c), socket);
    /* The calls are the host owner's, as QMP's are; what a module is
     * checked against does not depend on who asks. */
    vmaug_link_client_set_host_owner(c, TRUE);
    vmaug_link_client_ref(&ref, module, version);
    if (!vmaug_link_client_call(c, VMAUG_OP_LOAD, &ref, sizeof(ref), NULL, 0,
                                ADMIN_INVOKE_TIMEOUT_MS, &status, &data,
                                error)) {
        return FALSE;
    }
    if (status != VMAUG_S_OK) {
        /* A refused LOAD carries the helper's reason as its text. */
        admin_invoke_answer_error(error, status, data, module);
        return FALSE;
    }
    g_clear_pointer(&data, g_bytes_unref);
    if (!vmaug_link_client_invoke(c, module, function, input, strlen(input),
                                  ADMIN_INVOKE_TIMEOUT_MS, &status, &data,
                                  error)) {
        return FALSE;
    }
    if (status != VMAUG_S_OK) {
        g_autofree gchar *what = g_strdup_printf("%s %s", module, function);

        admin_invoke_answer_error(error, status, data, what);
        return FALSE;
    }
    *out = g_steal_pointer(&data);
    return TRUE;
}

int admin_cmd_invoke(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new(
        "MODULE FUNCTION [INPUT] - call a stored module through the helper");
    g_autofree gchar *socket = NULL;
    g_autofree gchar *version = NULL;
    g_autoptr(GBytes) out = NULL;
    g_autoptr(GError) error = NULL;
    gboolean json = FALSE;
    g_autofree gchar *socket_help = g_strdup_printf(
        "The helper's socket (default: %s)",
        vmaug_cli_default_helper_socket());
    const GOptionEntry entries[] = {
        { "socket", 0, 0, G_OPTION_ARG_FILENAME, &socket, socket_help,
          "PATH" },
        { "module-version", 0, 0, G_OPTION_ARG_STRING, &version,
          "Load this version (default: the highest stored)", "VERSION" },
        { NULL }
    };
    const gchar *module, *function, *input;

    if (!admin_parse(ctx, entries, &json, &argc, &argv)) {
        return admin_parse_exit;
    }
    if (argc < 3 || argc > 4) {
        return admin_fail(ADMIN_EXIT_USAGE,
                          "invoke takes MODULE FUNCTION [INPUT]");
    }
    module = argv[1];
    function = argv[2];
    input = argc == 4 ? argv[3] : "";
    if (!vmaug_name_is_valid(module)) {
        return admin_fail(ADMIN_EXIT_USAGE, "invalid module name %s", module);
    }
    if (*function == '\0' || strlen(function) >= VMAUG_FUNCTION_MAX) {
        return admin_fail(ADMIN_EXIT_USAGE, "invalid function name %s",
                          function);
    }
    if (version != NULL && !vmaug_version_is_valid(version)) {
        return admin_fail(ADMIN_EXIT_USAGE, "invalid version %s", version);
    }
    if (strlen(input) > VMAUG_MAX_REQ_PAYLOAD -
        sizeof(struct vmaug_invoke)) {
        return admin_fail(ADMIN_EXIT_USAGE, "INPUT is longer than a call "
                          "may carry");
    }
    if (!admin_invoke_run(socket != NULL ? socket :
                          vmaug_cli_default_helper_socket(), module, version,
                          function, input, &out, &error)) {
        if (json) {
            admin_invoke_report(module, function, NULL, error);
        }
        g_printerr("vmaugment-admin: invoke %s %s: %s\n", module, function,
                   error->message);
        return vmaug_cli_status(error);
    }
    if (json) {
        admin_invoke_report(module, function, out, NULL);
    } else {
        gsize len;
        const void *p = g_bytes_get_data(out, &len);

        fwrite(p, 1, len, stdout);
    }
    return ADMIN_EXIT_OK;
}
