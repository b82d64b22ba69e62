/* A small AML (ACPI Machine Language) encoder for hand-built DSDTs. */
#ifndef AMBER_VMM_X86_AML_H
#define AMBER_VMM_X86_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * An output buffer. Every call appends; the first error (-ENOSPC when full, -EINVAL for a bad
 * name or value) sticks in err and later calls do nothing, so a builder checks once at the end.
 */
struct aml {
    uint8_t *buf;
    size_t len;
    size_t cap;
    int err;
};

/* Start writing into buf[0..cap). */
void aml_init(struct aml *a, uint8_t *buf, size_t cap);

/* Raw bytes. */
void aml_bytes(struct aml *a, const void *p, size_t n);
void aml_byte(struct aml *a, uint8_t b);

/*
 * A NameString: optional leading '\' then dot-separated segments of 1-4 characters from
 * [A-Z0-9_] (first not a digit), each padded with '_' to four: "\\_SB.COM1", "_S5", "VR00".
 */
void aml_name_string(struct aml *a, const char *path);

/* Integer constant in the shortest form (ZeroOp, OneOp, Byte/Word/DWord/QWordConst). */
void aml_integer(struct aml *a, uint64_t v);

/* String constant (printable ASCII, NUL added). */
void aml_string(struct aml *a, const char *s);

/* A 7-character EISA id such as "PNP0501", compressed to its 32-bit integer form. */
void aml_eisaid(struct aml *a, const char *id);

/* Name(name, ...): emits NameOp and the name; the caller appends exactly one data object. */
void aml_name(struct aml *a, const char *name);

/*
 * Blocks with a PkgLength. *_begin() emits the opcode and returns a mark; the caller appends
 * the contents, then *_end(mark) inserts the length. Blocks nest; close them innermost first.
 */
size_t aml_scope_begin(struct aml *a, const char *name);  /* Scope(name) { ... } */
size_t aml_device_begin(struct aml *a, const char *name); /* Device(name) { ... } */
size_t aml_package_begin(struct aml *a, uint8_t nelems);  /* Package(nelems) { ... } */
size_t aml_buffer_begin(struct aml *a);                   /* Buffer() { bytes } */
void aml_block_end(struct aml *a, size_t mark);           /* ends a Scope/Device/Package */
void aml_buffer_end(struct aml *a, size_t mark);          /* ends a Buffer, adding its size */
/* Method(name, nargs, NotSerialized) { ... }: nargs 0..7; close with aml_block_end. */
size_t aml_method_begin(struct aml *a, const char *name, unsigned nargs);

/* Notify(path, value): the statement that sends a notification value to the device at path. */
void aml_notify(struct aml *a, const char *path, uint64_t value);

/* Resource descriptors for a ResourceTemplate (put inside a Buffer; finish with aml_res_end). */
void aml_res_io(struct aml *a, uint16_t base, uint8_t len); /* IO(Decode16, base, base, 1, len) */
void aml_res_irq_noflags(struct aml *a, unsigned irq);      /* IRQNoFlags() {irq}, irq < 16 */
void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len, bool writable);
void aml_res_ext_irq_edge(struct aml *a, uint32_t gsi); /* Interrupt(Consumer, Edge, ActiveHigh,
                                                         * Exclusive) {gsi} */
void aml_res_end(struct aml *a);                        /* EndTag with checksum 0 */

#endif
