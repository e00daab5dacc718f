/*
 * Reproducers for hostile input to the vmaugment device
 *
 * Each case drives the device through raw port and memory accesses, the way
 * the generic fuzzer (generic-fuzz-vmaugment) does, and checks what the
 * device did with every chain (answered it in the used ring, or marked
 * itself broken for a ring-protocol violation) and that QEMU survives.
 * Add a case here for every problem a fuzzer finds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qemu/bswap.h"
#include "qobject/qdict.h"
#include "standard-headers/linux/virtio_config.h"
#include "standard-headers/linux/virtio_vmaugment.h"

#define VMAUG_FUZZ_ARGS "-machine q35 -m 64M -nodefaults " \
                        "-device vmaugment-pci,addr=04.0"

/* PCI config address of 00:04.0 register @reg. */
#define CFG(reg) (0x80000000 | (4 << 11) | (reg))

/* virtio-pci modern layout in BAR 4 (QEMU's defaults). */
#define BAR4            0xe0000000ULL
#define COMMON          (BAR4 + 0x0000)
#define NOTIFY          (BAR4 + 0x3000)
#define STATUS          (COMMON + 0x14)

/* The ring the cases post to, in RAM: descriptors, avail, used. */
#define RING            0x10000ULL
#define AVAIL           (RING + 0x80)
#define USED            (RING + 0x100)

/*
 * What the device must do with each chain is known: an answer in the used
 * ring, or NEEDS_RESET for a ring-protocol violation.  The messages below
 * are the device's (hw/vmaugment/vmaugment.c); the used length of an
 * answer is the response header plus the message.
 */
#define MSG_LENGTH      "header length differs from the buffer size"
#define RESP_SIZE       sizeof(struct virtio_vmaugment_resp)

static void assert_alive(QTestState *s)
{
    QDict *resp = qtest_qmp(s, "{ 'execute': 'query-status' }");

    g_assert(qdict_haskey(resp, "return"));
    qobject_unref(resp);
}

/* Broken means virtio_error(): NEEDS_RESET in the device status. */
static void assert_broken(QTestState *s, bool broken)
{
    uint8_t status = qtest_readb(s, STATUS);

    g_assert_cmphex(status & VIRTIO_CONFIG_S_NEEDS_RESET, ==,
                    broken ? VIRTIO_CONFIG_S_NEEDS_RESET : 0);
    assert_alive(s);
}

static uint16_t used_idx(QTestState *s)
{
    return qtest_readw(s, USED + 2);
}

/* Used ring entry @i must say: chain @head, @len bytes written. */
static void assert_used(QTestState *s, uint16_t i, uint32_t head,
                        uint32_t len)
{
    g_assert_cmpuint(qtest_readl(s, USED + 4 + 8 * (i % 8)), ==, head);
    g_assert_cmpuint(qtest_readl(s, USED + 4 + 8 * (i % 8) + 4), ==, len);
}

/* The response header the device wrote at @addr. */
static void assert_response(QTestState *s, uint64_t addr, uint64_t id,
                            uint16_t opcode, uint16_t status, uint32_t len)
{
    struct virtio_vmaugment_resp resp;

    qtest_memread(s, addr, &resp, sizeof(resp));
    g_assert_cmpuint(le64_to_cpu(resp.id), ==, id);
    g_assert_cmphex(le16_to_cpu(resp.opcode), ==, opcode);
    g_assert_cmpuint(le16_to_cpu(resp.status), ==, status);
    g_assert_cmpuint(le32_to_cpu(resp.len), ==, len);
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

/* Reset the device and bring queue 0 up again on a fresh ring in RAM. */
static void reset_and_setup(QTestState *s)
{
    qtest_writeb(s, STATUS, 0);
    qtest_writew(s, AVAIL + 2, 0);
    qtest_writew(s, USED + 2, 0);
    setup_queue(s, RING, AVAIL, USED);
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

/*
 * Request and response buffers inside the device's own BAR.  That is no
 * ring violation.  Reading its own registers from within the kick is
 * blocked as re-entrant IO, so the header reads as zeros with 8 payload
 * bytes behind it: refused with a status, and the chain handed back.
 */
static void test_buffers_in_mmio(void)
{
    QTestState *s = qtest_init(VMAUG_FUZZ_ARGS);

    setup_queue(s, 0x10000, 0x10080, 0x10100);
    write_desc(s, 0, COMMON, 24, 0x1, 1);               /* NEXT */
    write_desc(s, 1, NOTIFY, 64, 0x2, 0);               /* WRITE */
    kick(s, 0, 0);
    g_assert_cmpuint(used_idx(s), ==, 1);
    assert_used(s, 0, 0, RESP_SIZE + strlen(MSG_LENGTH));
    assert_broken(s, false);
    qtest_quit(s);
}

/*
 * Lengths that wrap and addresses past the end of RAM.  The first chain
 * cannot be mapped at all: a ring violation, so the device is broken and
 * takes nothing more until reset.  After a reset, a response buffer that
 * runs past the end of RAM is still written and handed back.
 */
static void test_huge_lengths(void)
{
    QTestState *s = qtest_init(VMAUG_FUZZ_ARGS);

    setup_queue(s, 0x10000, 0x10080, 0x10100);
    write_desc(s, 0, 0x20000, 0xffffffff, 0x1, 1);
    write_desc(s, 1, 0xfffffffffffff000ULL, 0xffffffff, 0x2, 0);
    kick(s, 0, 0);
    assert_broken(s, true);
    write_desc(s, 2, 0x20000, 24, 0x1, 3);
    write_desc(s, 3, 0x3fff000, 0x2000, 0x2, 0);        /* crosses RAM end */
    kick(s, 1, 2);
    g_assert_cmpuint(used_idx(s), ==, 0);
    assert_broken(s, true);

    /* An all-zero header with 8 payload bytes behind it. */
    reset_and_setup(s);
    kick(s, 0, 2);
    g_assert_cmpuint(used_idx(s), ==, 1);
    assert_used(s, 0, 2, RESP_SIZE + strlen(MSG_LENGTH));
    assert_response(s, 0x3fff000, 0, 0, VMAUG_S_INVALID, strlen(MSG_LENGTH));
    assert_broken(s, false);
    qtest_quit(s);
}

/*
 * The ring itself placed over the device's registers, where its avail
 * index reads as 0 (and the device's own read of it, from within a kick,
 * is blocked as re-entrant IO): nothing is posted, so kicks take nothing
 * and break nothing, and the device serves a ring in RAM afterwards.
 */
static void test_ring_in_mmio(void)
{
    QTestState *s = qtest_init(VMAUG_FUZZ_ARGS);
    struct virtio_vmaugment_req ping = {
        .id = cpu_to_le64(3),
        .opcode = cpu_to_le16(VMAUG_OP_PING),
    };

    setup_queue(s, COMMON, COMMON + 0x80, NOTIFY);
    qtest_writew(s, NOTIFY, 0);
    qtest_writew(s, NOTIFY, 1);
    qtest_writew(s, NOTIFY, 0xffff);
    g_assert_cmpuint(qtest_readw(s, COMMON + 0x80 + 2), ==, 0);
    assert_broken(s, false);

    reset_and_setup(s);
    qtest_memwrite(s, 0x20000, &ping, sizeof(ping));
    write_desc(s, 0, 0x20000, sizeof(ping), 0x1, 1);
    write_desc(s, 1, 0x20100, 64, 0x2, 0);
    kick(s, 0, 0);
    g_assert_cmpuint(used_idx(s), ==, 1);
    assert_used(s, 0, 0, RESP_SIZE);
    assert_response(s, 0x20100, 3, VMAUG_OP_PING, VMAUG_S_OK, 0);
    assert_broken(s, false);
    qtest_quit(s);
}

/*
 * A request answered, the device reset, and a kick on the ring that the
 * reset took away: the device takes nothing from it, breaks nothing, and
 * answers the same chain once the driver sets the queue up again.
 */
static void test_kick_after_reset(void)
{
    QTestState *s = qtest_init(VMAUG_FUZZ_ARGS);

    setup_queue(s, 0x10000, 0x10080, 0x10100);
    write_desc(s, 0, 0x20000, 24, 0x1, 1);
    write_desc(s, 1, 0x20100, 64, 0x2, 0);
    qtest_writeq(s, 0x20000, 1);                        /* id */
    qtest_writew(s, 0x20008, 0x0010);                   /* QUERY */
    kick(s, 0, 0);
    g_assert_cmpuint(used_idx(s), ==, 1);
    assert_used(s, 0, 0, RESP_SIZE + strlen(MSG_LENGTH));
    assert_response(s, 0x20100, 1, VMAUG_OP_QUERY, VMAUG_S_INVALID,
                    strlen(MSG_LENGTH));

    qtest_writeb(s, COMMON + 0x14, 0);                  /* reset */
    g_assert_cmphex(qtest_readb(s, STATUS), ==, 0);
    g_assert_cmpuint(qtest_readw(s, COMMON + 0x1c), ==, 0);
    qtest_memset(s, 0x20100, 0, 64);
    kick(s, 1, 0);
    g_assert_cmpuint(used_idx(s), ==, 1);
    assert_response(s, 0x20100, 0, 0, 0, 0);
    assert_broken(s, false);

    reset_and_setup(s);
    kick(s, 0, 0);
    g_assert_cmpuint(used_idx(s), ==, 1);
    assert_used(s, 0, 0, RESP_SIZE + strlen(MSG_LENGTH));
    assert_response(s, 0x20100, 1, VMAUG_OP_QUERY, VMAUG_S_INVALID,
                    strlen(MSG_LENGTH));
    assert_broken(s, false);
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
        qtest_add_func("fuzz/vmaugment/kick-after-reset",
                       test_kick_after_reset);
    }
    return g_test_run();
}
