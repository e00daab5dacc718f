/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvmaugment: the guest's interface to /dev/vmaugment.
 *
 * Plain C without GLib so that it fits small guests.  Every function that
 * talks to the host returns:
 *   0        the host answered VMAUG_S_OK,
 *   > 0      the host answered with that VMAUG_S_* status
 *            (vmaug_client_message() then holds the host's explanation),
 *   < 0      a negative errno: the request did not complete (no device,
 *            timeout, bad arguments, the device misbehaved).
 * vmaug_strerror() turns any of these into text.
 *
 * A client may be used by one thread at a time; open one client per thread
 * for parallel calls (the driver matches every response to its caller).
 */
#ifndef VMAUGMENT_H
#define VMAUGMENT_H

#include <stddef.h>
#include <stdint.h>
/* In quotes: installed, the protocol header is beside this one
 * (<vmaugment/linux/>), not among the system's Linux headers. */
#include "linux/virtio_vmaugment.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMAUG_DEVICE_PATH "/dev/vmaugment"

typedef struct vmaug_client vmaug_client;

/* A host event as read() returns it. */
typedef struct {
    uint64_t seq;
    uint32_t type;              /* VMAUG_EVENT_* */
    uint32_t flags;             /* VMAUG_EVENT_F_* */
    uint32_t len;               /* bytes in data */
    uint8_t data[VMAUG_MAX_EVENT_PAYLOAD];
} vmaug_event;

/* Called after every uploaded chunk and once at the start. */
typedef void (*vmaug_progress_fn)(uint64_t done, uint64_t total, void *user);

/* @path NULL means VMAUG_DEVICE_PATH. */
int vmaug_client_open(const char *path, vmaug_client **client);
void vmaug_client_close(vmaug_client *client);
int vmaug_client_fd(const vmaug_client *client);
/* Per-call timeout in milliseconds; 0 is the driver's default. */
void vmaug_client_set_timeout(vmaug_client *client, unsigned int timeout_ms);
/* The host's text for the last non-OK status, or "". */
const char *vmaug_client_message(const vmaug_client *client);

const char *vmaug_status_name(int status);
const char *vmaug_strerror(int ret);
const char *vmaug_event_name(uint32_t type);
/* Returns 0 and the type, or -EINVAL for an unknown name. */
int vmaug_event_from_name(const char *name, uint32_t *type);
const char *vmaug_kind_name(uint32_t kind);
const char *vmaug_module_state_name(uint32_t state);

/* Fill a struct vmaug_module_ref; -ENAMETOOLONG when a field is too long. */
int vmaug_module_ref_set(struct vmaug_module_ref *ref, const char *name,
                         const char *version);

/* Raw call: @resp gets up to @resp_cap bytes; @resp_len the reported size. */
int vmaug_call(vmaug_client *client, uint16_t opcode,
               const void *req, size_t req_len,
               void *resp, size_t resp_cap, size_t *resp_len);

/* Sends @data and checks the echo is byte for byte the same (-EBADMSG). */
int vmaug_ping(vmaug_client *client, const void *data, size_t len);
int vmaug_version(vmaug_client *client, struct vmaug_version_info *info);

int vmaug_query(vmaug_client *client, const char *name, const char *version,
                struct vmaug_module_info *info);
int vmaug_load(vmaug_client *client, const char *name, const char *version,
               struct vmaug_module_info *info);
int vmaug_unload(vmaug_client *client, const char *name,
                 const char *version);

/*
 * Upload the module package in @fd (a regular file) under @name/@version.
 * The data goes to the device from the caller's pages without a copy.
 * @info (may be NULL) receives what the host stored.
 */
int vmaug_upload_fd(vmaug_client *client, int fd, const char *name,
                    const char *version, vmaug_progress_fn progress,
                    void *user, struct vmaug_module_info *info);

/* *@out is malloc()ed (free() it), *@out_len its size. */
int vmaug_invoke(vmaug_client *client, const char *module,
                 const char *function, const void *in, size_t in_len,
                 void **out, size_t *out_len);
int vmaug_config_get(vmaug_client *client, const char *module,
                     const char *key, void **value, size_t *value_len);
int vmaug_config_set(vmaug_client *client, const char *module,
                     const char *key, const void *value, size_t value_len);

int vmaug_register(vmaug_client *client, const char *name,
                   const char *version, uint32_t events, uint32_t flags);
int vmaug_unregister(vmaug_client *client, const char *name,
                     const char *version);

/*
 * All entries of @what (VMAUG_LIST_MODULES: struct vmaug_module_info,
 * VMAUG_LIST_REGISTRATIONS: struct vmaug_registration); *@entries is
 * malloc()ed.
 */
int vmaug_list(vmaug_client *client, uint32_t what, void **entries,
               size_t *count);

/*
 * Report how the offline update @bundle @version (whose signed manifest
 * has SHA-256 @manifest_sha256) went: @outcome is VMAUG_SERVICING_*,
 * @message (may be NULL) at most VMAUG_SERVICING_MESSAGE_MAX bytes.  On
 * success *@boot (may be NULL) is the image start the host counted it at.
 */
int vmaug_servicing_report(vmaug_client *client, const char *bundle,
                           const char *version,
                           const uint8_t manifest_sha256[32],
                           uint32_t outcome, const char *message,
                           uint32_t *boot);

/* Events of these types (VMAUG_EVENT_MASK() bits) become readable. */
int vmaug_subscribe(vmaug_client *client, uint32_t mask);
/* Wait up to @timeout_ms (-1: forever) for one event; -ETIMEDOUT if none. */
int vmaug_read_event(vmaug_client *client, vmaug_event *event,
                     int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* VMAUGMENT_H */
