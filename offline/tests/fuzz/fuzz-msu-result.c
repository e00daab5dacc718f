/*
 * Fuzz target: the Windows installer's result as the worker reports it
 * to the privileged parent ("msu_install", vo-msu.h): any JSON the
 * guest's file and a worker taken over by its image could make, checked
 * and recorded by vo_msu_result_record() against a servicing record
 * that holds no bundle (so nothing is ever written).
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>

#include "json-strict.h"
#include "vo-disk.h"
#include "vo-msu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) shown = NULL;

    /* What vo_worker_read_report() lets through: bounded nesting. */
    if (!vmaug_json_depth_ok((const char *)data, size, 32) ||
        !json_parser_load_from_data(parser, (const char *)data, size,
                                    NULL) ||
        !json_parser_get_root(parser)) {
        return 0;
    }
    shown = vo_msu_result_record("/nonexistent/fuzz-msu.raw",
                                 json_parser_get_root(parser), &error);
    if (!shown) {
        g_assert(g_error_matches(error, VO_ERROR, VO_ERROR_CORRUPT));
    } else {
        g_assert(JSON_NODE_HOLDS_OBJECT(shown));
        g_assert(json_object_get_string_member_with_default(
                     json_node_get_object(shown), "status", NULL));
    }
    return 0;
}
