/*
 * The checks every reader of untrusted JSON on the host shares (manifests,
 * registrations, servicing records, bundles, the offline worker's
 * reports): nesting measured before json-glib sees the text, and members
 * taken only with the type the reader expects.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "json-strict.h"

gboolean vmaug_json_depth_ok(const gchar *json, gsize len, guint max_depth)
{
    return vmaug_json_shape_ok(json, len, max_depth, 0);
}

gboolean vmaug_json_shape_ok(const gchar *json, gsize len, guint max_depth,
                             gsize max_values)
{
    guint depth = 0;
    gsize values = 1;
    gboolean in_string = FALSE;

    for (gsize i = 0; i < len; i++) {
        gchar c = json[i];

        if (in_string) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_string = FALSE;
            }
        } else if (c == '"') {
            in_string = TRUE;
        } else if (c == '/' || c == '\'') {
            /* json-glib also reads comments and single-quoted strings,
             * which JSON has not: a '"' inside one would end our idea of
             * where strings are, and hide the nesting that follows. */
            return FALSE;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth) {
                return FALSE;
            }
        } else if (c == ',' || c == ':') {
            /* Each begins one more value (or a member's): json-glib
             * makes a node of each, some eighty bytes for two bytes of
             * text. */
            if (max_values != 0 && ++values > max_values) {
                return FALSE;
            }
        } else if (c == '}' || c == ']') {
            if (depth > 0) {
                depth--;
            }
        }
    }
    return TRUE;
}

const gchar *vmaug_json_string(JsonObject *o, const gchar *name)
{
    JsonNode *n = json_object_get_member(o, name);

    if (n == NULL || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_STRING) {
        return NULL;
    }
    return json_node_get_string(n);
}
