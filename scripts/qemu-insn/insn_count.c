/* A QEMU TCG plugin that counts the guest instructions a program executes and prints the total
 * at exit ("insns: N"): the Raspberry Pi cost measure of scripts/test-pi.sh. Each translated
 * block adds its instruction count to one counter, inline (no callback per block), so the count
 * is exact for a single-threaded guest.
 *
 * With the argument `top=N` (`-plugin libinsn_count.so,top=40`) it also counts per translated
 * block and prints the N blocks that executed the most instructions, by guest address
 * ("block 0x...: insns"): map them to functions with `nm -n` or `addr2line -f` on an unstripped
 * build. That is where a kernel's instructions go, without hardware counters.
 *
 * QEMU's plugin header is not packaged on Debian, so the few declarations this plugin uses are
 * written here, from the stable plugin API (QEMU_PLUGIN_VERSION 1, QEMU 4.2 to 8.x). */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

static uint64_t insns;

/* Per-block counts, with `top=N`: one record per translation (a block translated twice has
 * two, merged at exit), in one array allocated at start (inline ops point into it, so it never
 * moves); blocks past its end are counted in `insns` only, and the report says how many. */
struct block {
    uint64_t vaddr, n_insns, runs;
};
#define MAX_BLOCKS (1u << 20)
static struct block *blocks;
static size_t n_blocks, dropped;
static long top;

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns, n);
    if (!blocks) {
        return;
    }
    if (n_blocks == MAX_BLOCKS) {
        dropped++;
        return;
    }
    struct block *b = &blocks[n_blocks++];
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->n_insns = n;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->runs, 1);
}

static int by_vaddr(const void *x, const void *y) {
    const struct block *a = x, *b = y;
    return (a->vaddr > b->vaddr) - (a->vaddr < b->vaddr);
}

static int by_insns_desc(const void *x, const void *y) {
    const struct block *a = x, *b = y;
    uint64_t ia = a->runs * a->n_insns, ib = b->runs * b->n_insns;
    return (ia < ib) - (ia > ib);
}

/* Merges records of the same address, then prints the `top` heaviest. */
static void report_blocks(void) {
    qsort(blocks, n_blocks, sizeof *blocks, by_vaddr);
    size_t m = 0;
    for (size_t i = 0; i < n_blocks; i++) {
        if (m > 0 && blocks[m - 1].vaddr == blocks[i].vaddr &&
            blocks[m - 1].n_insns == blocks[i].n_insns) {
            blocks[m - 1].runs += blocks[i].runs;
        } else {
            blocks[m++] = blocks[i];
        }
    }
    qsort(blocks, m, sizeof *blocks, by_insns_desc);
    char line[128];
    for (size_t i = 0; i < m && i < (size_t)top; i++) {
        snprintf(line, sizeof line, "block 0x%" PRIx64 ": %" PRIu64 " insns (%" PRIu64 " x %" PRIu64 ")\n",
                 blocks[i].vaddr, blocks[i].runs * blocks[i].n_insns, blocks[i].runs,
                 blocks[i].n_insns);
        qemu_plugin_outs(line);
    }
    if (dropped) {
        snprintf(line, sizeof line, "blocks not recorded (table full): %zu\n", dropped);
        qemu_plugin_outs(line);
    }
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    (void)id;
    (void)p;
    char line[64];
    snprintf(line, sizeof line, "insns: %" PRIu64 "\n", insns);
    qemu_plugin_outs(line);
    if (blocks) {
        report_blocks();
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "top=", 4) == 0) {
            top = strtol(argv[i] + 4, NULL, 10);
        }
    }
    if (top > 0) {
        blocks = calloc(MAX_BLOCKS, sizeof *blocks);
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
