/*
 * vmaugment QMP commands when the device is not built in
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-vmaugment.h"

static void vmaugment_unsupported(Error **errp)
{
    error_setg(errp, "vmaugment support is not compiled in");
}

VmaugmentInfoList *qmp_query_vmaugment(Error **errp)
{
    return NULL;
}

VmaugmentModuleList *coroutine_fn
qmp_query_vmaugment_modules(const char *device, Error **errp)
{
    vmaugment_unsupported(errp);
    return NULL;
}

VmaugmentRegistrationList *coroutine_fn
qmp_query_vmaugment_registrations(const char *device, Error **errp)
{
    vmaugment_unsupported(errp);
    return NULL;
}

void coroutine_fn qmp_vmaugment_register(const char *device, const char *name,
                                         const char *version,
                                         VmaugmentLifecycleEventList *events,
                                         bool has_required, bool required,
                                         Error **errp)
{
    vmaugment_unsupported(errp);
}

void coroutine_fn qmp_vmaugment_unregister(const char *device,
                                           const char *name,
                                           const char *version, Error **errp)
{
    vmaugment_unsupported(errp);
}

void coroutine_fn qmp_vmaugment_unload(const char *device, const char *name,
                                       const char *version, Error **errp)
{
    vmaugment_unsupported(errp);
}

VmaugmentSandboxList *coroutine_fn
qmp_query_vmaugment_sandboxes(const char *device, Error **errp)
{
    vmaugment_unsupported(errp);
    return NULL;
}

VmaugmentUiElementList *coroutine_fn
qmp_query_vmaugment_ui(const char *device, Error **errp)
{
    vmaugment_unsupported(errp);
    return NULL;
}
