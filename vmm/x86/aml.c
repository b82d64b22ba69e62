/* A small AML (ACPI Machine Language) encoder for hand-built DSDTs (ACPI 6.x, section 20). */
#include "vmm/x86/aml.h"

#include <errno.h>
#include <string.h>

#define AML_ZERO          0x00
#define AML_ONE           0x01
#define AML_NAME          0x08
#define AML_BYTE_PREFIX   0x0a
#define AML_WORD_PREFIX   0x0b
#define AML_DWORD_PREFIX  0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX  0x0e
#define AML_SCOPE         0x10
#define AML_BUFFER        0x11
#define AML_PACKAGE       0x12
#define AML_METHOD        0x14
#define AML_NOTIFY        0x86
#define AML_EXT_PREFIX    0x5b
#define AML_DEVICE        0x82 /* after AML_EXT_PREFIX */
#define AML_ROOT_CHAR     '\\'
#define AML_DUAL_NAME     0x2e
#define AML_MULTI_NAME    0x2f

void aml_init(struct aml *a, uint8_t *buf, size_t cap)
{
    a->buf = buf;
    a->len = 0;
    a->cap = cap;
    a->err = 0;
}

static void set_err(struct aml *a, int err)
{
    if (!a->err)
        a->err = err;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
    if (a->err)
        return;
    if (n > a->cap - a->len) {
        set_err(a, -ENOSPC);
        return;
    }
    memcpy(a->buf + a->len, p, n);
    a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
    aml_bytes(a, &b, 1);
}

/* Insert n bytes at offset at, moving what follows. */
static void insert(struct aml *a, size_t at, const uint8_t *p, size_t n)
{
    if (a->err)
        return;
    if (at > a->len || n > a->cap - a->len) {
        set_err(a, at > a->len ? -EINVAL : -ENOSPC);
        return;
    }
    memmove(a->buf + at + n, a->buf + at, a->len - at);
    memcpy(a->buf + at, p, n);
    a->len += n;
}

static bool name_char(char c, bool lead)
{
    return (c >= 'A' && c <= 'Z') || c == '_' || (!lead && c >= '0' && c <= '9');
}

void aml_name_string(struct aml *a, const char *path)
{
    uint8_t segs[255][4];
    unsigned n = 0;
    const char *p = path;

    if (*p == '\\') {
        aml_byte(a, AML_ROOT_CHAR);
        p++;
    }
    while (*p) {
        size_t l = strcspn(p, ".");
        if (l == 0 || l > 4 || n == 255 || !name_char(p[0], true)) {
            set_err(a, -EINVAL);
            return;
        }
        memset(segs[n], '_', 4);
        for (size_t i = 0; i < l; i++) {
            if (!name_char(p[i], i == 0)) {
                set_err(a, -EINVAL);
                return;
            }
            segs[n][i] = (uint8_t)p[i];
        }
        n++;
        p += l;
        if (*p == '.' && *++p == '\0') {
            set_err(a, -EINVAL);
            return;
        }
    }
    if (n == 0) {
        aml_byte(a, AML_ZERO); /* NullName: only valid after a root char */
        return;
    }
    if (n == 2) {
        aml_byte(a, AML_DUAL_NAME);
    } else if (n > 2) {
        aml_byte(a, AML_MULTI_NAME);
        aml_byte(a, (uint8_t)n);
    }
    aml_bytes(a, segs, (size_t)n * 4);
}

void aml_integer(struct aml *a, uint64_t v)
{
    uint8_t b[9];
    size_t n;
    if (v == 0 || v == 1) {
        aml_byte(a, v ? AML_ONE : AML_ZERO);
        return;
    }
    if (v <= 0xff) {
        b[0] = AML_BYTE_PREFIX;
        n = 1;
    } else if (v <= 0xffff) {
        b[0] = AML_WORD_PREFIX;
        n = 2;
    } else if (v <= 0xffffffff) {
        b[0] = AML_DWORD_PREFIX;
        n = 4;
    } else {
        b[0] = AML_QWORD_PREFIX;
        n = 8;
    }
    for (size_t i = 0; i < n; i++)
        b[1 + i] = (uint8_t)(v >> (8 * i));
    aml_bytes(a, b, n + 1);
}

void aml_string(struct aml *a, const char *s)
{
    for (const char *c = s; *c; c++) {
        if ((unsigned char)*c > 0x7f) {
            set_err(a, -EINVAL);
            return;
        }
    }
    aml_byte(a, AML_STRING_PREFIX);
    aml_bytes(a, s, strlen(s) + 1);
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void aml_eisaid(struct aml *a, const char *id)
{
    if (strlen(id) != 7) {
        set_err(a, -EINVAL);
        return;
    }
    uint32_t v = 0;
    for (int i = 0; i < 3; i++) {
        if (id[i] < 'A' || id[i] > 'Z') {
            set_err(a, -EINVAL);
            return;
        }
        v = (v << 5) | (uint32_t)(id[i] - '@');
    }
    for (int i = 3; i < 7; i++) {
        int h = hex_val(id[i]);
        if (h < 0) {
            set_err(a, -EINVAL);
            return;
        }
        v = (v << 4) | (uint32_t)h;
    }
    /* The id is stored big-endian: three letters in 15 bits, then four hex digits. */
    uint32_t le = ((v >> 24) & 0xff) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
    aml_byte(a, AML_DWORD_PREFIX);
    aml_bytes(a, &le, 4);
}

void aml_name(struct aml *a, const char *name)
{
    aml_byte(a, AML_NAME);
    aml_name_string(a, name);
}

void aml_block_end(struct aml *a, size_t mark)
{
    if (a->err)
        return;
    if (mark > a->len) {
        set_err(a, -EINVAL);
        return;
    }
    size_t body = a->len - mark, n;
    if (body + 1 <= 0x3f)
        n = 1;
    else if (body + 2 <= 0xfff)
        n = 2;
    else if (body + 3 <= 0xfffff)
        n = 3;
    else if (body + 4 <= 0xfffffff)
        n = 4;
    else {
        set_err(a, -E2BIG);
        return;
    }
    /* PkgLength counts its own bytes; beyond one byte, the low nibble comes first. */
    size_t v = body + n;
    uint8_t enc[4];
    if (n == 1) {
        enc[0] = (uint8_t)v;
    } else {
        enc[0] = (uint8_t)(((n - 1) << 6) | (v & 0xf));
        for (size_t i = 1; i < n; i++)
            enc[i] = (uint8_t)(v >> (4 + 8 * (i - 1)));
    }
    insert(a, mark, enc, n);
}

size_t aml_scope_begin(struct aml *a, const char *name)
{
    aml_byte(a, AML_SCOPE);
    size_t mark = a->len;
    aml_name_string(a, name);
    return mark;
}

size_t aml_device_begin(struct aml *a, const char *name)
{
    aml_byte(a, AML_EXT_PREFIX);
    aml_byte(a, AML_DEVICE);
    size_t mark = a->len;
    aml_name_string(a, name);
    return mark;
}

size_t aml_package_begin(struct aml *a, uint8_t nelems)
{
    aml_byte(a, AML_PACKAGE);
    size_t mark = a->len;
    aml_byte(a, nelems);
    return mark;
}

size_t aml_method_begin(struct aml *a, const char *name, unsigned nargs)
{
    if (nargs > 7) {
        set_err(a, -EINVAL);
        return a->len;
    }
    aml_byte(a, AML_METHOD);
    size_t mark = a->len;
    aml_name_string(a, name);
    aml_byte(a, (uint8_t)nargs); /* MethodFlags: ArgCount, not serialized, SyncLevel 0 */
    return mark;
}

void aml_notify(struct aml *a, const char *path, uint64_t value)
{
    aml_byte(a, AML_NOTIFY);
    aml_name_string(a, path);
    aml_integer(a, value);
}

size_t aml_buffer_begin(struct aml *a)
{
    aml_byte(a, AML_BUFFER);
    return a->len;
}

void aml_buffer_end(struct aml *a, size_t mark)
{
    if (a->err)
        return;
    if (mark > a->len) {
        set_err(a, -EINVAL);
        return;
    }
    /* BufferSize (an integer term) goes before the bytes, then the PkgLength before both. */
    uint8_t tmp[16];
    struct aml sz;
    aml_init(&sz, tmp, sizeof(tmp));
    aml_integer(&sz, a->len - mark);
    insert(a, mark, tmp, sz.len);
    aml_block_end(a, mark);
}

void aml_res_io(struct aml *a, uint16_t base, uint8_t len)
{
    uint8_t d[8] = {
        0x47, 0x01, (uint8_t)base, (uint8_t)(base >> 8), (uint8_t)base, (uint8_t)(base >> 8),
        0x01, len};
    aml_bytes(a, d, sizeof(d));
}

void aml_res_irq_noflags(struct aml *a, unsigned irq)
{
    if (irq > 15) {
        set_err(a, -EINVAL);
        return;
    }
    uint16_t mask = (uint16_t)(1u << irq);
    uint8_t d[3] = {0x22, (uint8_t)mask, (uint8_t)(mask >> 8)};
    aml_bytes(a, d, sizeof(d));
}

void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len, bool writable)
{
    uint8_t d[12] = {0x86, 0x09, 0x00, writable ? 0x01 : 0x00};
    memcpy(d + 4, &base, 4);
    memcpy(d + 8, &len, 4);
    aml_bytes(a, d, sizeof(d));
}

void aml_res_ext_irq_edge(struct aml *a, uint32_t gsi)
{
    /* Flags: bit 0 consumer, bit 1 edge-triggered; active high (bit 2 = 0), exclusive (bit 3 = 0).
     */
    uint8_t d[9] = {0x89, 0x06, 0x00, 0x03, 0x01};
    memcpy(d + 5, &gsi, 4);
    aml_bytes(a, d, sizeof(d));
}

void aml_res_end(struct aml *a)
{
    uint8_t d[2] = {0x79, 0x00};
    aml_bytes(a, d, sizeof(d));
}
