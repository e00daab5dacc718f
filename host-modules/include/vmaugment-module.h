/*
 * vmaugment module ABI and host API, version 1.
 *
 * A module is an ELF shared object for the host that exports one symbol,
 * VMAUG_MODULE_SYMBOL, of type struct vmaug_module.  The helper loads it in
 * a sandboxed child process of its own that is confined before the object
 * is mapped: its IFUNC resolvers and constructors already run in the
 * sandbox, with nothing more than the dynamic loader needs for this one
 * object, and init() with the sandbox complete.  A module cannot open
 * files, create sockets or processes, or map executable memory; everything
 * it may do beyond computing goes through the struct vmaug_host_api it is
 * given, limited to the capabilities its manifest requests and the host
 * owner grants.
 *
 * The module is single-threaded: the host calls init, then any number of
 * event and call, then fini, one at a time.  Host API functions may be
 * called from any of them.
 *
 * This header is plain C (no GLib), so modules need nothing but libc.
 * Installed as <vmaugment/vmaugment-module.h>, with vmaugment-module.pc
 * for the flags a module is built with (examples/module-template).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_MODULE_H
#define VMAUGMENT_MODULE_H

#include <stddef.h>
#include <stdint.h>
/* The VMAUG_S_* statuses a call returns.  In quotes: installed, the
 * protocol header is beside this one (<vmaugment/linux/>). */
#include "linux/virtio_vmaugment.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMAUG_MODULE_ABI_VERSION    1
#define VMAUG_MODULE_SYMBOL         "vmaug_module_v1"

/* Capabilities, as named in a manifest's "capabilities" array. */
#define VMAUG_CAP_LOG               "log"           /* always granted */
#define VMAUG_CAP_CONFIG            "config"        /* own configuration */
#define VMAUG_CAP_STATE             "state"         /* own state directory */
#define VMAUG_CAP_SPOOL             "spool"         /* printer spool */
#define VMAUG_CAP_EVENTS            "events"        /* messages to the guest */
#define VMAUG_CAP_UI                "ui"            /* UI to the host */
#define VMAUG_CAP_RESTART_IMAGE     "restart-image"
#define VMAUG_CAP_RESTART_HOST      "restart-host"
#define VMAUG_CAP_MODULES           "modules"       /* install modules */
#define VMAUG_CAP_HOST_READ         "host-read"     /* read granted paths */
#define VMAUG_CAP_IMAGE_SCAN        "image-scan"    /* scan its VM's image */
#define VMAUG_CAP_IMAGE_QUARANTINE  "image-quarantine"  /* move aside what
                                                         * a scan finds */
/* Every capability above, the list a manifest is checked against; what
 * each allows is the host API table of the helper (module-api.c). */
#define VMAUG_CAPABILITIES \
    VMAUG_CAP_LOG, VMAUG_CAP_CONFIG, VMAUG_CAP_STATE, VMAUG_CAP_SPOOL, \
    VMAUG_CAP_EVENTS, VMAUG_CAP_UI, VMAUG_CAP_RESTART_IMAGE, \
    VMAUG_CAP_RESTART_HOST, VMAUG_CAP_MODULES, VMAUG_CAP_HOST_READ, \
    VMAUG_CAP_IMAGE_SCAN, VMAUG_CAP_IMAGE_QUARANTINE

/* Log levels for vmaug_host_api.log. */
#define VMAUG_LOG_ERROR             0
#define VMAUG_LOG_WARNING           1
#define VMAUG_LOG_INFO              2
#define VMAUG_LOG_DEBUG             3

/* What vmaug_host_api.request_restart restarts. */
#define VMAUG_RESTART_IMAGE         1
#define VMAUG_RESTART_HOST          2

/* Limits the host enforces on what modules hand it. */
#define VMAUG_MODULE_MAX_PATH       255     /* state-relative path */
#define VMAUG_MODULE_MAX_LOG        1024    /* bytes of one log line */
#define VMAUG_MODULE_MAX_UI         4096    /* bytes of one UI element */
#define VMAUG_MODULE_MAX_SPOOL      (16 * 1024 * 1024)  /* one document */
#define VMAUG_MODULE_MAX_HOST_PATH  1024    /* absolute host path */
#define VMAUG_MODULE_MAX_REASON     256     /* bytes of a handler's reason */
#define VMAUG_MODULE_MAX_SCAN_PATHS 4096    /* bytes of scan_image's paths */
#define VMAUG_MODULE_MAX_SCAN_REPORT 4096   /* bytes of its report */

/* What vmaug_host_api.scan_image found. */
#define VMAUG_SCAN_CLEAN            0
#define VMAUG_SCAN_INFECTED         1
#define VMAUG_SCAN_INCOMPLETE       2   /* a limit, or files unreadable */

/* Bounds of one scan_image; 0 in a field takes the host's default, and
 * the host's own bounds win over larger values. */
struct vmaug_scan_limits {
    uint64_t max_file_size;         /* bytes of one file scanned */
    uint32_t timeout_s;             /* the whole scan */
    uint32_t reserved;              /* 0 */
};

/* Opaque handle the host passes back to itself. */
typedef struct vmaug_host vmaug_host;

/*
 * Functions returning int return 0 (or a count) on success and a negative
 * errno on failure: -EPERM for a capability not granted, -EINVAL for bad
 * arguments, -EIO when the host failed.
 */
struct vmaug_host_api {
    uint32_t abi_version;           /* VMAUG_MODULE_ABI_VERSION */
    uint32_t size;                  /* sizeof(struct vmaug_host_api) */

    void (*log)(vmaug_host *h, int level, const char *message);

    /* The module's own configuration, persisted per image.  get copies at
     * most cap bytes and returns the value's length (-ENOENT if unset).
     * "guest.KEY" reads what the guest set, or the host owner's KEY where
     * the module's pinned registration has one; "host.KEY" only the host
     * owner's.  set writes neither. */
    int (*config_get)(vmaug_host *h, const char *key, void *value,
                      size_t cap);
    int (*config_set)(vmaug_host *h, const char *key, const void *value,
                      size_t len);

    /* Open a file below the module's own state directory; path is
     * relative, without "..", symlinks are not followed.  Returns a file
     * descriptor.  flags are open(2) flags (O_RDONLY, O_WRONLY|O_CREAT...). */
    int (*state_open)(vmaug_host *h, const char *path, int flags);

    /* Queue a document in the printer spool; job receives the job id
     * (NUL-terminated, at most job_cap bytes).  Returns 0. */
    int (*spool_submit)(vmaug_host *h, const char *title, const void *data,
                        size_t len, char *job, size_t job_cap);

    /* Send bytes to the guest as a VMAUG_EVENT_MODULE_MESSAGE. */
    int (*post_event)(vmaug_host *h, const void *data, size_t len);

    /* Surface a UI element (a JSON object, e.g. a menu entry or a progress
     * dialog) through the host's admin interface. */
    int (*post_ui)(vmaug_host *h, const char *json);

    /* Ask for a restart of the image or of the host application. */
    int (*request_restart)(vmaug_host *h, int what);

    /* Install a signed module package (the "upgrade" capability); it is
     * verified exactly like an upload.  Returns 0. */
    int (*install_module)(vmaug_host *h, const void *package, size_t len);

    /* Open a host file or directory read-only; only below the roots the
     * host owner's policy grants this module ("host-read").  Absolute
     * path, no "..", symlinks are not followed.  Returns a descriptor;
     * directories can be listed with getdents64(2). */
    int (*host_open)(vmaug_host *h, const char *path);

    /*
     * Scan the disk image of this module's own VM with the host's
     * malware scanner ("image-scan"): the module names no image and no
     * host path, only guest paths to limit the scan to (paths: absolute,
     * one per line; NULL or "" for every filesystem).  It returns when
     * the scan ended, however long that takes within the limits (the
     * call's own time bound is extended by the scan's).  report receives
     * at most cap bytes of text, one line per item, fields separated by
     * tabs, bytes below 0x20, 0x7f and '\\' written as \xNN:
     *
     *   result clean|infected|incomplete
     *   engine NAME<TAB>database VERSION<TAB>signatures N
     *   files N<TAB>cached N<TAB>bytes N
     *   finding FILESYSTEM<TAB>PATH<TAB>SIGNATURE    (each)
     *   error PATH<TAB>REASON                        (each)
     *   more N                                       (lines left out)
     *   failure REASON                               (with a negative
     *                                                 return)
     *
     * Returns VMAUG_SCAN_*, or a negative errno: -ENODEV when the VM
     * names no image, -ETIMEDOUT when the scan exceeded its time, -EIO
     * when the scanner failed (the report says why).
     */
    int (*scan_image)(vmaug_host *h, const char *paths,
                      const struct vmaug_scan_limits *limits, char *report,
                      size_t cap, size_t *report_len);

    /* Say why the event handler or call running now fails: the host
     * names this (at most VMAUG_MODULE_MAX_REASON bytes of UTF-8, control
     * characters replaced) where it reports the failure, e.g. the reason
     * an image start was refused.  Cleared when the next one starts. */
    int (*set_reason)(vmaug_host *h, const char *reason);

    /*
     * Before this module's VM first runs, from its image-start handler
     * only: move aside into the guest's quarantine directory every file
     * the host's malware scanner finds in the VM's image, below @paths
     * as for scan_image ("image-quarantine").  The module names no file
     * to move, no image and no bundle: the host applies
     * the signed quarantine bundle the host owner pinned on the module's
     * registration (its "quarantine-bundle" key), with the host's
     * scanner and database, while QEMU has let go of the image; the
     * apply is atomic (docs/offline.rst, "Quarantine").  report as for
     * scan_image:
     *
     *   result quarantined|clean
     *   moved FILESYSTEM<TAB>PATH<TAB>SIGNATURE      (each)
     *   error PATH<TAB>REASON                        (each)
     *   more N
     *   failure REASON                               (with a negative
     *                                                 return)
     *
     * Returns the number of files moved, or a negative errno: -EINVAL
     * for paths as scan_image refuses them, -ENODEV when the VM names
     * no image, -ENOENT when the host owner pinned no
     * bundle, -EBUSY when the image start is not held (the guest may
     * run), -ETIMEDOUT, -EIO (the report says why; the image is as it
     * was, or every file moved).
     */
    int (*quarantine_image)(vmaug_host *h, const char *paths, char *report,
                            size_t cap, size_t *report_len);
};

struct vmaug_module {
    uint32_t abi_version;           /* VMAUG_MODULE_ABI_VERSION */
    uint32_t size;                  /* sizeof(struct vmaug_module) */

    /* Returns 0, or a negative errno to refuse loading.  *priv is passed
     * to the other functions. */
    int (*init)(const struct vmaug_host_api *api, vmaug_host *h,
                void **priv);
    void (*fini)(void *priv);

    /* A lifecycle event (VMAUG_EVENT_*) the manifest says it handles;
     * data is empty or a struct vmaug_module_ref.  May be NULL. */
    int (*event)(void *priv, uint32_t type, const void *data, size_t len);

    /*
     * A guest call to one of the functions the manifest exports.  Write
     * at most out_cap bytes to out and their number to *out_len.  Returns
     * a VMAUG_S_* status (0 is VMAUG_S_OK).
     */
    int (*call)(void *priv, const char *function, const void *in,
                size_t in_len, void *out, size_t out_cap, size_t *out_len);
};

#define VMAUG_MODULE_DEFINE(...) \
    __attribute__((visibility("default"))) \
    const struct vmaug_module vmaug_module_v1 = { \
        .abi_version = VMAUG_MODULE_ABI_VERSION, \
        .size = sizeof(struct vmaug_module), \
        __VA_ARGS__ \
    }

#ifdef __cplusplus
}
#endif

#endif /* VMAUGMENT_MODULE_H */
