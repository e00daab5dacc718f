/*
 * libqos driver for the vmaugment virtio device, and a double of the host
 * helper that plays the helper's side of its socket for the tests
 * (qvmh_*).  The double trusts nothing the device sends: every message is
 * checked as it arrives.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/socket.h>
#include <sys/un.h>
#include <poll.h>
#include "../libqtest.h"
#include "qemu/bswap.h"
#include "qemu/module.h"
#include "qgraph.h"
#include "vmaugment.h"
#include "standard-headers/linux/virtio_vmaugment.h"
#include "standard-headers/vmaugment/host-link.h"

/* How long the helper double waits for the device to send something. */
#define QVMH_POLL_MS    10000

static QGuestAllocator *alloc;

static void *qvmaugment_get_driver(QVMAugment *aug, const char *interface)
{
    if (!g_strcmp0(interface, "vmaugment")) {
        return aug;
    }
    if (!g_strcmp0(interface, "virtio")) {
        return aug->vdev;
    }

    fprintf(stderr, "%s not present in vmaugment-pci\n", interface);
    g_assert_not_reached();
}

static void qvmaugment_setup(QVMAugment *aug)
{
    QVirtioDevice *vdev = aug->vdev;
    uint64_t features = qvirtio_get_features(vdev);

    /* Keep indirect descriptors: the tests build oversized tables. */
    features &= ~(QVIRTIO_F_BAD_FEATURE |
                  (1ull << VIRTIO_RING_F_EVENT_IDX));
    qvirtio_set_features(vdev, features);
    aug->reqq = qvirtqueue_setup(vdev, alloc, VMAUG_VQ_REQUEST);
    aug->eventq = qvirtqueue_setup(vdev, alloc, VMAUG_VQ_EVENT);
    qvirtio_set_driver_ok(vdev);
}

static void qvmaugment_cleanup(QVMAugment *aug)
{
    qvirtqueue_cleanup(aug->vdev->bus, aug->reqq, alloc);
    qvirtqueue_cleanup(aug->vdev->bus, aug->eventq, alloc);
}

void qvmaugment_reset(QVMAugment *aug)
{
    qvirtio_reset(aug->vdev);
    qvmaugment_cleanup(aug);
    qvirtio_set_acknowledge(aug->vdev);
    qvirtio_set_driver(aug->vdev);
    qvmaugment_setup(aug);
}

static void *qvmaugment_pci_get_driver(void *object, const char *interface)
{
    QVMAugmentPCI *dev = object;

    if (!g_strcmp0(interface, "pci-device")) {
        return dev->pci_vdev.pdev;
    }
    return qvmaugment_get_driver(&dev->aug, interface);
}

static void qvmaugment_pci_destructor(QOSGraphObject *obj)
{
    QVMAugmentPCI *dev = (QVMAugmentPCI *)obj;

    qvmaugment_cleanup(&dev->aug);
    qvirtio_pci_destructor(&dev->pci_vdev.obj);
}

static void qvmaugment_pci_start_hw(QOSGraphObject *obj)
{
    QVMAugmentPCI *dev = (QVMAugmentPCI *)obj;

    qvirtio_pci_start_hw(&dev->pci_vdev.obj);
    qvmaugment_setup(&dev->aug);
}

static void *qvmaugment_pci_create(void *pci_bus, QGuestAllocator *t_alloc,
                                   void *addr)
{
    QVMAugmentPCI *dev = g_new0(QVMAugmentPCI, 1);
    QOSGraphObject *obj = &dev->pci_vdev.obj;

    virtio_pci_init(&dev->pci_vdev, pci_bus, addr);
    dev->aug.vdev = &dev->pci_vdev.vdev;
    dev->aug.alloc = t_alloc;
    alloc = t_alloc;

    obj->get_driver = qvmaugment_pci_get_driver;
    obj->start_hw = qvmaugment_pci_start_hw;
    obj->destructor = qvmaugment_pci_destructor;
    return obj;
}

static void qvmaugment_register_nodes(void)
{
    QPCIAddress addr = {
        .devfn = QPCI_DEVFN(4, 0),
    };
    QOSGraphEdgeOptions opts = {
        .extra_device_opts = "addr=04.0",
    };

    add_qpci_address(&opts, &addr);
    qos_node_create_driver("vmaugment-pci", qvmaugment_pci_create);
    qos_node_consumes("vmaugment-pci", "pci-bus", &opts);
    qos_node_produces("vmaugment-pci", "pci-device");
    qos_node_produces("vmaugment-pci", "virtio");
    qos_node_produces("vmaugment-pci", "vmaugment");
}

libqos_init(qvmaugment_register_nodes);

/* ---- The host helper double ---- */

void qvmh_close(QVMAugmentHelper *h)
{
    if (h->link_fd >= 0) {
        close(h->link_fd);
    }
    if (h->chan_fd >= 0) {
        close(h->chan_fd);
    }
    h->fd = h->link_fd = h->chan_fd = -1;
}

void qvmh_free(void *opaque)
{
    QVMAugmentHelper *h = opaque;

    qvmh_close(h);
    close(h->listen_fd);
    unlink(h->path);
    unlink(h->image);
    rmdir(h->dir);
    g_array_free(h->lifecycle, true);
    g_free(h->cmdline);
    g_free(h->path);
    g_free(h->image);
    g_free(h->dir);
    g_free(h);
}

/* A listening socket for the device, and an (empty) disk image file. */
QVMAugmentHelper *qvmh_new(void)
{
    QVMAugmentHelper *h = g_new0(QVMAugmentHelper, 1);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };

    h->dir = g_dir_make_tmp("vmaugment-test-XXXXXX", NULL);
    g_assert(h->dir);
    h->path = g_build_filename(h->dir, "helper.sock", NULL);
    g_assert_cmpuint(strlen(h->path), <, sizeof(sun.sun_path));
    strcpy(sun.sun_path, h->path);
    h->fd = h->link_fd = h->chan_fd = -1;
    h->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    g_assert_cmpint(h->listen_fd, >=, 0);
    g_assert_cmpint(bind(h->listen_fd, (struct sockaddr *)&sun, sizeof(sun)),
                    ==, 0);
    g_assert_cmpint(listen(h->listen_fd, 1), ==, 0);
    h->image = g_build_filename(h->dir, "disk.img", NULL);
    g_assert(g_file_set_contents(h->image, "", 0, NULL));
    h->lifecycle = g_array_new(false, true, sizeof(uint32_t));
    return h;
}

void qvmh_wait_fd(int fd, short events)
{
    struct pollfd pfd = { .fd = fd, .events = events };

    g_assert_cmpint(poll(&pfd, 1, QVMH_POLL_MS), ==, 1);
}

void qvmh_read_exact(QVMAugmentHelper *h, void *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n;

        qvmh_wait_fd(h->fd, POLLIN);
        n = read(h->fd, (uint8_t *)buf + done, len - done);
        g_assert_cmpint(n, >, 0);
        done += n;
    }
}

/* Read one message, whatever its type; returns its payload length. */
uint32_t qvmh_recv_any(QVMAugmentHelper *h, struct vmaug_host_msg *msg,
                       void *buf, size_t size)
{
    uint32_t len;

    qvmh_read_exact(h, msg, sizeof(*msg));
    g_assert_cmphex(le32_to_cpu(msg->magic), ==, VMAUG_HOST_MAGIC);
    len = le32_to_cpu(msg->len);
    g_assert_cmpuint(len, <=, size);
    qvmh_read_exact(h, buf, len);
    return len;
}

/* Note a LIFECYCLE message; false for any other. */
bool qvmh_note_lifecycle(QVMAugmentHelper *h,
                         const struct vmaug_host_msg *msg,
                         const void *buf, uint32_t len)
{
    struct vmaug_host_lifecycle lc;
    uint32_t event;

    if (le16_to_cpu(msg->type) != VMAUG_HOST_LIFECYCLE) {
        return false;
    }
    g_assert_cmpuint(len, ==, sizeof(lc));
    memcpy(&lc, buf, sizeof(lc));
    event = le32_to_cpu(lc.event);
    g_assert_cmpuint(event, >=, VMAUG_EVENT_HOST_START);
    g_assert_cmpuint(event, <=, VMAUG_EVENT_RESUME);
    g_array_append_val(h->lifecycle, event);
    if (event == VMAUG_EVENT_IMAGE_START) {
        h->start_tag = le64_to_cpu(msg->tag);
        h->start_flags = le32_to_cpu(lc.flags);
    } else {
        /* Only IMAGE_START is answered, so only it has a tag. */
        g_assert_cmpuint(le64_to_cpu(msg->tag), ==, 0);
    }
    return true;
}

/* Read the next message other than a lifecycle notice. */
uint32_t qvmh_recv(QVMAugmentHelper *h, struct vmaug_host_msg *msg,
                   void *buf, size_t size)
{
    for (;;) {
        uint32_t len = qvmh_recv_any(h, msg, buf, size);

        if (!qvmh_note_lifecycle(h, msg, buf, len)) {
            return len;
        }
    }
}

/* Read lifecycle messages until @event arrives. */
void qvmh_expect_lifecycle(QVMAugmentHelper *h, uint32_t event)
{
    struct vmaug_host_msg msg;
    struct vmaug_host_lifecycle buf;

    for (;;) {
        uint32_t len = qvmh_recv_any(h, &msg, &buf, sizeof(buf));

        g_assert(qvmh_note_lifecycle(h, &msg, &buf, len));
        if (g_array_index(h->lifecycle, uint32_t, h->lifecycle->len - 1) ==
            event) {
            return;
        }
    }
}

void qvmh_start_done(QVMAugmentHelper *h, uint16_t status,
                     const char *message)
{
    struct vmaug_host_lifecycle_done done = {
        .event = cpu_to_le32(VMAUG_EVENT_IMAGE_START),
        .status = cpu_to_le16(status),
    };

    qvmh_send(h, VMAUG_HOST_LIFECYCLE_DONE, h->start_tag, &done,
              sizeof(done), message, message ? strlen(message) : 0);
}

uint16_t qvmh_image_access(QVMAugmentHelper *h, uint64_t tag, uint32_t op,
                           char **message)
{
    struct vmaug_host_image_access req = { .op = cpu_to_le32(op) };
    struct vmaug_host_image_access_done done;
    struct vmaug_host_msg msg;
    uint8_t buf[sizeof(done) + VMAUG_HOST_MESSAGE_MAX];
    uint32_t len;

    qvmh_send(h, VMAUG_HOST_IMAGE_ACCESS, tag, &req, sizeof(req), NULL, 0);
    len = qvmh_recv(h, &msg, buf, sizeof(buf));
    g_assert_cmpuint(le16_to_cpu(msg.type), ==, VMAUG_HOST_IMAGE_ACCESS_DONE);
    g_assert_cmphex(le64_to_cpu(msg.tag), ==, tag);
    g_assert_cmpuint(len, >=, sizeof(done));
    memcpy(&done, buf, sizeof(done));
    g_assert_cmpuint(le32_to_cpu(done.op), ==, op);
    if (message) {
        *message = g_strndup((const char *)buf + sizeof(done),
                             len - sizeof(done));
    }
    return le16_to_cpu(done.status);
}

void qvmh_send(QVMAugmentHelper *h, uint16_t type, uint64_t tag,
               const void *a, size_t alen, const void *b, size_t blen)
{
    struct vmaug_host_msg msg = {
        .magic = cpu_to_le32(VMAUG_HOST_MAGIC),
        .type = cpu_to_le16(type),
        .len = cpu_to_le32(alen + blen),
        .tag = cpu_to_le64(tag),
    };

    g_assert_cmpint(write(h->fd, &msg, sizeof(msg)), ==, sizeof(msg));
    if (alen) {
        g_assert_cmpint(write(h->fd, a, alen), ==, alen);
    }
    if (blen) {
        g_assert_cmpint(write(h->fd, b, blen), ==, blen);
    }
}

void qvmh_send_fd(QVMAugmentHelper *h, uint16_t type, uint64_t tag,
                  const void *a, size_t alen, int fd)
{
    struct vmaug_host_msg msg = {
        .magic = cpu_to_le32(VMAUG_HOST_MAGIC),
        .type = cpu_to_le16(type),
        .len = cpu_to_le32(alen),
        .tag = cpu_to_le64(tag),
    };
    struct iovec iov[2] = { { &msg, sizeof(msg) }, { (void *)a, alen } };
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm = {};
    struct msghdr mh = {
        .msg_iov = iov,
        .msg_iovlen = 2,
        .msg_control = fd >= 0 ? cm.buf : NULL,
        .msg_controllen = fd >= 0 ? sizeof(cm.buf) : 0,
    };

    if (fd >= 0) {
        cm.hdr.cmsg_level = SOL_SOCKET;
        cm.hdr.cmsg_type = SCM_RIGHTS;
        cm.hdr.cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(&cm.hdr), &fd, sizeof(int));
    }
    g_assert_cmpint(sendmsg(h->fd, &mh, 0), ==, sizeof(msg) + alen);
}

void qvmh_respond(QVMAugmentHelper *h, uint64_t tag, uint16_t status,
                  const void *data, uint32_t len)
{
    struct virtio_vmaugment_resp resp = {
        .status = cpu_to_le16(status),
        .len = cpu_to_le32(len),
    };

    qvmh_send(h, VMAUG_HOST_RESPONSE, tag, &resp, sizeof(resp), data, len);
}

/*
 * Accept the device's connection and exchange HELLOs; the device then says
 * the host application and the image start.  Returns the image path the
 * device announced ("" for none).
 */
char *qvmh_hello(QVMAugmentHelper *h)
{
    struct vmaug_host_hello hello;
    struct vmaug_host_msg msg;
    uint8_t buf[sizeof(hello) + 2 * VMAUG_HOST_PATH_MAX];
    uint32_t len;
    uint16_t store_len, image_len;

    qvmh_wait_fd(h->listen_fd, POLLIN);
    qvmh_close(h);      /* an earlier connection's */
    h->fd = h->link_fd = accept(h->listen_fd, NULL, NULL);
    g_assert_cmpint(h->fd, >=, 0);

    len = qvmh_recv_any(h, &msg, buf, sizeof(buf));
    g_assert_cmpuint(le16_to_cpu(msg.type), ==, VMAUG_HOST_HELLO);
    g_assert_cmpuint(len, >=, sizeof(hello));
    memcpy(&hello, buf, sizeof(hello));
    g_assert_cmpuint(le32_to_cpu(hello.proto_version), ==,
                     VMAUG_PROTO_VERSION);
    g_assert(memchr(hello.name, 0, sizeof(hello.name)));
    store_len = le16_to_cpu(hello.store_len);
    image_len = le16_to_cpu(hello.image_len);
    g_assert_cmpuint(len, ==, sizeof(hello) + store_len + image_len);
    /*
     * A unix socket passes descriptors: the device asks for a channel, and
     * for an upload area, which the helper may pass (or not) later.
     */
    g_assert_cmphex(le32_to_cpu(hello.flags), ==,
                    VMAUG_HOST_HELLO_F_CHANNEL |
                    VMAUG_HOST_HELLO_F_UPLOAD_AREA);
    g_assert_cmpuint(hello.reserved, ==, 0);

    memset(&hello, 0, sizeof(hello));
    hello.proto_version = cpu_to_le32(VMAUG_PROTO_VERSION);
    g_strlcpy((char *)hello.name, "vmaugment-test", sizeof(hello.name));
    if (h->offer_channel) {
        int sv[2];

        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
        hello.flags = cpu_to_le32(VMAUG_HOST_HELLO_F_CHANNEL);
        qvmh_send_fd(h, VMAUG_HOST_HELLO, 0, &hello, sizeof(hello), sv[1]);
        close(sv[1]);
        h->chan_fd = sv[0];
    } else {
        qvmh_send(h, VMAUG_HOST_HELLO, 0, &hello, sizeof(hello), NULL, 0);
    }

    g_array_set_size(h->lifecycle, 0);
    qvmh_expect_lifecycle(h, VMAUG_EVENT_HOST_START);
    qvmh_expect_lifecycle(h, VMAUG_EVENT_IMAGE_START);
    g_assert_cmpuint(h->lifecycle->len, ==, 2);
    return g_strndup((char *)buf + sizeof(hello) + store_len, image_len);
}

/* Read the REQUEST the device relayed for a QUERY; returns its tag. */
uint64_t qvmh_expect_query(QVMAugmentHelper *h, uint64_t id,
                           const char *name)
{
    struct vmaug_host_msg msg;
    uint8_t buf[sizeof(struct virtio_vmaugment_req) +
                sizeof(struct vmaug_module_ref)];
    struct virtio_vmaugment_req req;
    struct vmaug_module_ref ref;

    g_assert_cmpuint(qvmh_recv(h, &msg, buf, sizeof(buf)), ==, sizeof(buf));
    g_assert_cmpuint(le16_to_cpu(msg.type), ==, VMAUG_HOST_REQUEST);
    memcpy(&req, buf, sizeof(req));
    memcpy(&ref, buf + sizeof(req), sizeof(ref));
    g_assert_cmpuint(le64_to_cpu(req.id), ==, id);
    g_assert_cmpuint(le16_to_cpu(req.opcode), ==, VMAUG_OP_QUERY);
    g_assert_cmpuint(le32_to_cpu(req.len), ==, sizeof(ref));
    g_assert_cmpstr((char *)ref.name, ==, name);
    return le64_to_cpu(msg.tag);
}

void qvmh_module_event(QVMAugmentHelper *h, uint32_t type,
                       const void *payload, uint32_t len)
{
    struct virtio_vmaugment_event ev = {
        .type = cpu_to_le32(type),
        .len = cpu_to_le32(len),
    };

    qvmh_send(h, VMAUG_HOST_EVENT, 0, &ev, sizeof(ev), payload, len);
}

struct vmaug_module_ref qvmaugment_module_ref(const char *name,
                                              const char *version)
{
    struct vmaug_module_ref ref = {};

    g_strlcpy((char *)ref.name, name, sizeof(ref.name));
    g_strlcpy((char *)ref.version, version, sizeof(ref.version));
    return ref;
}

struct vmaug_servicing_report qvmaugment_servicing_report(const char *bundle,
                                                          const char *version,
                                                          uint32_t outcome)
{
    struct vmaug_servicing_report rep = {
        .outcome = cpu_to_le32(outcome),
    };

    g_strlcpy((char *)rep.bundle, bundle, sizeof(rep.bundle));
    g_strlcpy((char *)rep.version, version, sizeof(rep.version));
    return rep;
}
