/*
 * Loading a library when a command needs it (vo-dl.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <dlfcn.h>

#include "vo-dl.h"

gboolean vo_dl_load(void **handle, const char *soname,
                    const char *const *names, void **sym, const char *need,
                    GError **error)
{
    void *h;

    if (*handle) {
        return TRUE;
    }
    /* RTLD_NOW: a library that lacks a symbol fails here, not in the
     * middle of a job. */
    h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED, "%s: %s", need,
                    dlerror());
        return FALSE;
    }
    for (guint i = 0; names[i]; i++) {
        sym[i] = dlsym(h, names[i]);
        if (!sym[i]) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "this %s lacks %s", soname, names[i]);
            dlclose(h);
            return FALSE;
        }
    }
    *handle = h;
    return TRUE;
}
