/*
 * Replays fuzz inputs (files, or every file of directories) through a
 * libFuzzer target in builds without libFuzzer.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_run_file(const gchar *path)
{
    g_autofree gchar *data = NULL;
    gsize len;

    if (!g_file_get_contents(path, &data, &len, NULL)) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    return 0;
}

int main(int argc, char **argv)
{
    guint runs = 0;

    for (int i = 1; i < argc; i++) {
        g_autoptr(GDir) d = g_dir_open(argv[i], 0, NULL);
        const gchar *n;

        if (d == NULL) {
            if (fuzz_run_file(argv[i]) != 0) {
                return 1;
            }
            runs++;
            continue;
        }
        while ((n = g_dir_read_name(d)) != NULL) {
            g_autofree gchar *p = g_build_filename(argv[i], n, NULL);

            if (fuzz_run_file(p) != 0) {
                return 1;
            }
            runs++;
        }
    }
    printf("%u inputs\n", runs);
    return runs > 0 ? 0 : 1;
}
