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

#endif
