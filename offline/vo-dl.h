/*
 * Libraries loaded when a command needs them, not linked: every process
 * start pays for each linked library (mapping it and resolving its
 * symbols, about a millisecond per library and more for large ones), and
 * libvirt, libclamav and libguestfs bring dozens of libraries that most
 * commands never call (docs/performance.md).
 *
 * A user lists its calls once, X(name) per function, and keeps them in a
 * VO_DL_TABLE; the header of the library gives their types.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-disk.h"

G_BEGIN_DECLS

#define VO_DL_MEMBER(f) __typeof__(f) *f;
#define VO_DL_NAME(f) #f,
#define VO_DL_ONE(f) +1

/* The functions of CALLS, by name (.f) and as the loader fills them. */
#define VO_DL_TABLE(CALLS)                                              \
    union {                                                             \
        struct {                                                        \
            CALLS(VO_DL_MEMBER)                                         \
        } f;                                                            \
        void *sym[0 CALLS(VO_DL_ONE)];                                  \
    }

/* The NULL-terminated names of CALLS, for vo_dl_load(). */
#define VO_DL_NAMES(CALLS) { CALLS(VO_DL_NAME) NULL }

/*
 * Loads @soname (once; later calls only return TRUE) and resolves
 * @names into @sym, in order.  A missing library is VO_ERROR_UNSUPPORTED
 * prefixed with @need (what needs it and the package that has it); a
 * missing function says which.
 */
gboolean vo_dl_load(void **handle, const char *soname,
                    const char *const *names, void **sym, const char *need,
                    GError **error);

G_END_DECLS
