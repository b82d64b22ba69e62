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

    .section .bss
    .balign 16
stack:
    .skip 65536
stack_top:
