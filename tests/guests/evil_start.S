/* Evil test guests: entry point. Own stack, run the case, then ACPI power-off (0x34 to 0x3c0). */
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    lea stack_top(%rip), %rsp
    cld
    call evil_main
1:  mov $0x3c0, %dx
    mov $0x34, %al
    outb %al, %dx
    hlt
    jmp 1b

/* evil_triple_fault: an empty IDT, then an invalid opcode: #UD, #DF and the triple fault. The
 * e2e test reads evil_fault_rip from the ELF to check the address amber reports. */
    .globl evil_triple_fault, evil_fault_rip
evil_triple_fault:
    lidt null_idt(%rip)
evil_fault_rip:
    ud2

    .section .rodata
null_idt:
    .word 0
    .quad 0

    .section .bss
    .balign 16
stack:
    .skip 65536
stack_top:
