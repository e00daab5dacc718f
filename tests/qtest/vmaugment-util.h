/*
 * Shared by the vmaugment qos tests: requests submitted and collected as
 * a guest driver does, and the steps of a test that plays the helper.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef TESTS_QTEST_VMAUGMENT_UTIL_H
#define TESTS_QTEST_VMAUGMENT_UTIL_H

#include "libqos/qgraph.h"
#include "libqos/vmaugment.h"
#include "standard-headers/linux/virtio_vmaugment.h"

#define QVMAUG_TIMEOUT_US   (30 * 1000 * 1000)
#define QVMAUG_RESP_MAX     8192

/* The device's messages for requests it fails on the helper's behalf. */
#define QVMAUG_MSG_UNAVAILABLE  "host helper not connected"
#define QVMAUG_MSG_INTERRUPTED  "interrupted: host helper lost or VM restored"

/* A request handed to the device and not yet collected. */
typedef struct QVMAugCall {
    uint64_t out_addr;
    uint64_t in_addr;
    size_t in_size;
    uint32_t head;
} QVMAugCall;

typedef struct QVMAugReply {
    struct virtio_vmaugment_resp hdr;
    uint8_t data[QVMAUG_RESP_MAX];
    uint32_t used_len;
} QVMAugReply;

QVMAugCall qvmaug_submit_raw(QVMAugment *aug, const void *out, size_t out_size,
                             size_t in_size);

QVMAugCall qvmaug_submit(QVMAugment *aug, uint64_t id, uint16_t opcode,
                         const void *payload, uint32_t len, size_t in_size);

bool qvmaug_broken(QVMAugment *aug);

/* Wait for the answer to @c; an answered request never breaks the device. */
void qvmaug_collect(QVMAugment *aug, QVMAugCall *c, QVMAugReply *r);

/* An error reply carries exactly @msg, and the used length covers it. */
void qvmaug_assert_message(const QVMAugReply *r, const char *msg);

/* A reply with @status and nothing after its header. */
void qvmaug_assert_empty(const QVMAugReply *r, uint16_t status);

/* Send one request and return the response status. */
uint16_t qvmaug_call(QVMAugment *aug, uint64_t id, uint16_t opcode,
                     const void *payload, uint32_t len, QVMAugReply *r);

uint16_t qvmaug_send_version(QVMAugment *aug, struct vmaug_version_info *info);

uint16_t qvmaug_send_ping(QVMAugment *aug, uint64_t id, const void *data,
                          uint32_t len, QVMAugReply *r);

uint16_t qvmaug_send_subscribe(QVMAugment *aug, uint32_t mask,
                               uint32_t reserved, uint32_t *new_mask);

QVMAugCall qvmaug_submit_query(QVMAugment *aug, uint64_t id, const char *name);

uint16_t qvmaug_send_query(QVMAugment *aug, uint64_t id, const char *name,
                           QVMAugReply *r);

/* @resp is a GenericError saying exactly @desc; frees @resp. */
void qvmaug_qmp_error(QDict *resp, const char *desc);

void qvmaug_assert_qemu_alive(void);

uint16_t qvmaug_used_idx(QVirtQueue *vq);

/*
 * Wait for the device to mark itself broken, and check that it handed
 * nothing back on @vq: the violating chain is detached, not answered.
 */
void qvmaug_wait_broken(QVMAugment *aug, QVirtQueue *vq, uint16_t used);

void *qvmaug_helper_before(GString *cmd_line, void *arg);

/*
 * The options of a test that plays the helper: its chardev on the device,
 * and with @fast a request timeout of one second.
 */
QOSGraphTestOptions qvmaug_helper_opts(bool fast);

/*
 * Wait until the device reports the helper as @state.  Reads config space
 * rather than sending VERSION: libqos never reuses descriptors, so a busy
 * loop of requests would run out of them.
 */
void qvmaug_wait_helper_state(QVMAugment *aug, uint32_t state);

/* Connect as the helper of a VM that runs, and prepare its image. */
void qvmaug_helper_connect(QVMAugmentHelper *h, QVMAugment *aug);

/* Read the REQUEST a QMP command made; returns its payload length. */
uint32_t qvmaug_expect_admin(QVMAugmentHelper *h, uint16_t opcode,
                             uint64_t *tag, void *payload, size_t size);

#endif
