/*
 * vmaugment virtio-pci proxy
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "hw/virtio/virtio-pci.h"
#include "hw/vmaugment/vmaugment.h"
#include "qapi/error.h"
#include "qemu/module.h"
#include "qom/object.h"

typedef struct VMAugmentPCI VMAugmentPCI;

#define TYPE_VMAUGMENT_PCI "vmaugment-pci-base"
DECLARE_INSTANCE_CHECKER(VMAugmentPCI, VMAUGMENT_PCI, TYPE_VMAUGMENT_PCI)

struct VMAugmentPCI {
    VirtIOPCIProxy parent_obj;
    VirtIOVMAugment vdev;
};

static void vmaugment_pci_realize(VirtIOPCIProxy *vpci_dev, Error **errp)
{
    VMAugmentPCI *dev = VMAUGMENT_PCI(vpci_dev);
    DeviceState *vdev = DEVICE(&dev->vdev);

    /* A new device: modern virtio only, PCI ID 0x1040 + device ID. */
    virtio_pci_force_virtio_1(vpci_dev);
    qdev_realize(vdev, BUS(&vpci_dev->bus), errp);
}

static void vmaugment_pci_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    VirtioPCIClass *k = VIRTIO_PCI_CLASS(klass);

    k->realize = vmaugment_pci_realize;
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
}

static void vmaugment_pci_instance_init(Object *obj)
{
    VMAugmentPCI *dev = VMAUGMENT_PCI(obj);

    virtio_instance_init_common(obj, &dev->vdev, sizeof(dev->vdev),
                                TYPE_VMAUGMENT);
}

static const VirtioPCIDeviceTypeInfo vmaugment_pci_info = {
    .base_name = TYPE_VMAUGMENT_PCI,
    .generic_name = "vmaugment-pci",
    .instance_size = sizeof(VMAugmentPCI),
    .instance_init = vmaugment_pci_instance_init,
    .class_init = vmaugment_pci_class_init,
};

static void vmaugment_pci_register(void)
{
    virtio_pci_types_register(&vmaugment_pci_info);
}

type_init(vmaugment_pci_register)
