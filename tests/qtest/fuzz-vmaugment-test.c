/*
 * Reproducers for hostile input to the vmaugment device
 *
 * Each case drives the device through raw port and memory accesses, the way
 * the generic fuzzer (generic-fuzz-vmaugment) does, and checks that QEMU
 * survives.  Add a case here for every problem a fuzzer finds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"

#define VMAUG_FUZZ_ARGS "-machine q35 -m 64M -nodefaults " \
                        "-device vmaugment-pci,addr=04.0"

/* PCI config address of 00:04.0 register @reg. */
#define CFG(reg) (0x80000000 | (4 << 11) | (reg))

/* virtio-pci modern layout in BAR 4 (QEMU's defaults). */
#define BAR4            0xe0000000ULL
#define COMMON          (BAR4 + 0x0000)
#define NOTIFY          (BAR4 + 0x3000)

static void assert_alive(QTestState *s)
{
    QDict *resp = qtest_qmp(s, "{ 'execute': 'query-status' }");

    g_assert(qdict_haskey(resp, "return"));
    qobject_unref(resp);
}

/* Map BAR 4, enable memory and bus mastering, bring queue 0 up at @ring. */
static void setup_queue(QTestState *s, uint64_t desc, uint64_t avail,
                        uint64_t used)
{
    qtest_outl(s, 0xcf8, CFG(0x20));
    qtest_outl(s, 0xcfc, (uint32_t)BAR4);
    qtest_outl(s, 0xcf8, CFG(0x24));
    qtest_outl(s, 0xcfc, 0);
    qtest_outl(s, 0xcf8, CFG(0x04));
    qtest_outw(s, 0xcfc, 0x0006);

    qtest_writeb(s, COMMON + 0x14, 0x01 | 0x02);        /* ACK | DRIVER */
    qtest_writel(s, COMMON + 0x08, 1);                  /* features hi */
    qtest_writel(s, COMMON + 0x0c, 1);                  /* VERSION_1 */
    qtest_writeb(s, COMMON + 0x14, 0x01 | 0x02 | 0x08); /* FEATURES_OK */
    qtest_writew(s, COMMON + 0x16, 0);                  /* queue_select */
    qtest_writew(s, COMMON + 0x18, 8);                  /* queue_size */
    qtest_writeq(s, COMMON + 0x20, desc);
    qtest_writeq(s, COMMON + 0x28, avail);
    qtest_writeq(s, COMMON + 0x30, used);
    qtest_writew(s, COMMON + 0x1c, 1);                  /* queue_enable */
    qtest_writeb(s, COMMON + 0x14, 0x01 | 0x02 | 0x08 | 0x04);
}

/* Post descriptor @head on a ring at 0x10000 and kick queue 0. */
static void kick(QTestState *s, uint16_t idx, uint16_t head)
{
    qtest_writew(s, 0x10000 + 0x80 + 4 + 2 * (idx % 8), head);
    qtest_writew(s, 0x10000 + 0x80 + 2, idx + 1);
    qtest_writew(s, NOTIFY, 0);
}

static void write_desc(QTestState *s, int i, uint64_t addr, uint32_t len,
                       uint16_t flags, uint16_t next)
{
    qtest_writeq(s, 0x10000 + 16 * i, addr);
    qtest_writel(s, 0x10000 + 16 * i + 8, len);
    qtest_writew(s, 0x10000 + 16 * i + 12, flags);
    qtest_writew(s, 0x10000 + 16 * i + 14, next);
}

/* Request and response buffers inside the device's own BAR. */
static void test_buffers_in_mmio(void)
{
    QTestState *s = qtest_init(VMAUG_FUZZ_ARGS);

    setup_queue(s, 0x10000, 0x10080, 0x10100);
    write_desc(s, 0, COMMON, 24, 0x1, 1);               /* NEXT */
    write_desc(s, 1, NOTIFY, 64, 0x2, 0);               /* WRITE */
    kick(s, 0, 0);
    assert_alive(s);
    qtest_quit(s);
}

/* Lengths that wrap and addresses past the end of RAM. */
static void test_huge_lengths(void)
{
    QTestState *s = qtest_init(VMAUG_FUZZ_ARGS);

    setup_queue(s, 0x10000, 0x10080, 0x10100);
    write_desc(s, 0, 0x20000, 0xffffffff, 0x1, 1);
    write_desc(s, 1, 0xfffffffffffff000ULL, 0xffffffff, 0x2, 0);
    kick(s, 0, 0);
    write_desc(s, 2, 0x20000, 24, 0x1, 3);
    write_desc(s, 3, 0x3fff000, 0x2000, 0x2, 0);        /* crosses RAM end */
    kick(s, 1, 2);
    assert_alive(s);
    qtest_quit(s);
}

/* The ring itself placed over the device's registers. */
static void test_ring_in_mmio(void)
{
    QTestState *s = qtest_init(VMAUG_FUZZ_ARGS);

    setup_queue(s, COMMON, COMMON + 0x80, NOTIFY);
    qtest_writew(s, NOTIFY, 0);
    qtest_writew(s, NOTIFY, 1);
    qtest_writew(s, NOTIFY, 0xffff);
    assert_alive(s);
    qtest_quit(s);
}

/* Reset while a request is being taken off the ring. */
static void test_reset_during_request(void)
{
    QTestState *s = qtest_init(VMAUG_FUZZ_ARGS);

    setup_queue(s, 0x10000, 0x10080, 0x10100);
    write_desc(s, 0, 0x20000, 24, 0x1, 1);
    write_desc(s, 1, 0x20100, 64, 0x2, 0);
    qtest_writeq(s, 0x20000, 1);                        /* id */
    qtest_writew(s, 0x20008, 0x0010);                   /* QUERY, short */
    kick(s, 0, 0);
    qtest_writeb(s, COMMON + 0x14, 0);                  /* reset */
    kick(s, 1, 0);
    assert_alive(s);
    qtest_quit(s);
}

int main(int argc, char **argv)
{
    const char *arch = qtest_get_arch();

    g_test_init(&argc, &argv, NULL);
    if (strcmp(arch, "x86_64") == 0) {
        qtest_add_func("fuzz/vmaugment/buffers-in-mmio", test_buffers_in_mmio);
        qtest_add_func("fuzz/vmaugment/huge-lengths", test_huge_lengths);
        qtest_add_func("fuzz/vmaugment/ring-in-mmio", test_ring_in_mmio);
        qtest_add_func("fuzz/vmaugment/reset-during-request",
                       test_reset_during_request);
    }
    return g_test_run();
}
