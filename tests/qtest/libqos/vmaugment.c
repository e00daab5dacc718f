/*
 * libqos driver for the vmaugment virtio device
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "../libqtest.h"
#include "qemu/module.h"
#include "qgraph.h"
#include "vmaugment.h"
#include "standard-headers/linux/virtio_vmaugment.h"

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
