/*
 * Strict readers for untrusted JSON (json-strict.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/*
 * json-glib parses recursively: check that @json nests objects and arrays
 * at most @max_depth deep before it sees the text.  Text with what only
 * json-glib reads (comments, single-quoted strings) is refused too.
 */
gboolean vmaug_json_depth_ok(const gchar *json, gsize len, guint max_depth);

/*
 * vmaug_json_depth_ok(), and at most @max_values values and members in all
 * (0: no bound): text of "0," repeated costs json-glib some forty times
 * its size in nodes, which a length bound alone does not keep small.
 */
gboolean vmaug_json_shape_ok(const gchar *json, gsize len, guint max_depth,
                             gsize max_values);

/* The string member @name of @o, or NULL when it is absent or not a JSON
 * string (null, a number, an object...). */
const gchar *vmaug_json_string(JsonObject *o, const gchar *name);

G_END_DECLS
