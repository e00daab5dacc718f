/*
 * libqos driver for the vmaugment virtio device
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef TESTS_LIBQOS_VMAUGMENT_H
#define TESTS_LIBQOS_VMAUGMENT_H

#include "qgraph.h"
#include "virtio.h"
#include "virtio-pci.h"
#include "standard-headers/linux/virtio_vmaugment.h"
#include "standard-headers/vmaugment/host-link.h"

typedef struct QVMAugment QVMAugment;
typedef struct QVMAugmentPCI QVMAugmentPCI;

struct QVMAugment {
    QVirtioDevice *vdev;
    QVirtQueue *reqq;
    QVirtQueue *eventq;
    QGuestAllocator *alloc;
};

struct QVMAugmentPCI {
    QVirtioPCIDevice pci_vdev;
    QVMAugment aug;
};

/*
 * Reset the device as a driver does and bring it up again on new queues:
 * whatever was posted on the old ones is gone.
 */
void qvmaugment_reset(QVMAugment *aug);

/*
 * A double of the host helper: a listening socket the device's chardev
 * connects to, and the helper's side of the link (host-link.h), for the
 * tests to play.
 */
typedef struct QVMAugmentHelper {
    char *dir;
    char *path;
    char *image;            /* a disk image file, for the image property */
    char *cmdline;          /* QEMU's, to start a migration destination */
    int listen_fd;
    int fd;                 /* where qvmh_* read and write: one of these */
    int link_fd;
    int chan_fd;            /* the request channel, -1 without */
    bool offer_channel;     /* qvmh_hello() offers one */
    /* Lifecycle messages received, in order, and the IMAGE_START's. */
    GArray *lifecycle;
    uint64_t start_tag;
    uint32_t start_flags;
} QVMAugmentHelper;

/* A listening socket for the device, and an (empty) disk image file. */
QVMAugmentHelper *qvmh_new(void);
/* Close and remove all of it (a GDestroyNotify). */
void qvmh_free(void *opaque);
/* Hang up: the link and the channel. */
void qvmh_close(QVMAugmentHelper *h);
void qvmh_wait_fd(int fd, short events);
void qvmh_read_exact(QVMAugmentHelper *h, void *buf, size_t len);
void qvmh_send(QVMAugmentHelper *h, uint16_t type, uint64_t tag,
               const void *a, size_t alen, const void *b, size_t blen);
/* The same in one write, with descriptor @fd (SCM_RIGHTS) unless -1. */
void qvmh_send_fd(QVMAugmentHelper *h, uint16_t type, uint64_t tag,
                  const void *a, size_t alen, int fd);
/* Read one message, whatever its type; returns its payload length. */
uint32_t qvmh_recv_any(QVMAugmentHelper *h, struct vmaug_host_msg *msg,
                       void *buf, size_t size);
/* Note a LIFECYCLE message; false for any other. */
bool qvmh_note_lifecycle(QVMAugmentHelper *h,
                         const struct vmaug_host_msg *msg,
                         const void *buf, uint32_t len);
/* Read the next message other than a lifecycle notice. */
uint32_t qvmh_recv(QVMAugmentHelper *h, struct vmaug_host_msg *msg,
                   void *buf, size_t size);
/* Read lifecycle messages until @event arrives. */
void qvmh_expect_lifecycle(QVMAugmentHelper *h, uint32_t event);
/* Answer the device's IMAGE_START. */
void qvmh_start_done(QVMAugmentHelper *h, uint16_t status,
                     const char *message);
/*
 * Send IMAGE_ACCESS @op with @tag; returns the answer's status and, when
 * @message is not NULL, its text.
 */
uint16_t qvmh_image_access(QVMAugmentHelper *h, uint64_t tag, uint32_t op,
                           char **message);
void qvmh_respond(QVMAugmentHelper *h, uint64_t tag, uint16_t status,
                  const void *data, uint32_t len);
/*
 * Accept the device's connection and exchange HELLOs; the device then says
 * the host application and the image start.  Returns the image path the
 * device announced ("" for none).  With @offer_channel, the HELLO passes
 * a request channel (docs/protocol.rst), which the device must take.
 */
char *qvmh_hello(QVMAugmentHelper *h);
/* Read the REQUEST the device relayed for a QUERY; returns its tag. */
uint64_t qvmh_expect_query(QVMAugmentHelper *h, uint64_t id,
                           const char *name);
/* Send a guest event, as the helper does for a module's event. */
void qvmh_module_event(QVMAugmentHelper *h, uint32_t type,
                       const void *payload, uint32_t len);

/* The wire structures tests fill most: a module and a servicing report. */
struct vmaug_module_ref qvmaugment_module_ref(const char *name,
                                              const char *version);
struct vmaug_servicing_report qvmaugment_servicing_report(const char *bundle,
                                                          const char *version,
                                                          uint32_t outcome);

#endif
