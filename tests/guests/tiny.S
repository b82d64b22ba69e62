/* Tiny hand-made 64-bit guests for direct /dev/kvm tests: print the marker, then spin or stop. */
/* Built once per behaviour: -DSPIN (count forever), -DPOWEROFF (ACPI power-off), -DRESET. */
    .code64
    .section .text
    .globl _start
_start:
    lea msg(%rip), %rsi
    mov $msg_end - msg, %ecx
    mov $0x3f8, %dx
1:  lodsb
    outb %al, %dx
    loop 1b
#if defined(POWEROFF)
    mov $0x3c0, %dx          /* ACPI sleep control: SLP_TYP 5 | SLP_EN */
    mov $0x34, %al
    outb %al, %dx
#elif defined(RESET)
    mov $0x64, %dx           /* i8042 pulse reset line */
    mov $0xfe, %al
    outb %al, %dx
#endif
    xor %rax, %rax
2:  inc %rax                 /* spin: a vCPU that never exits on its own */
    mov %rax, counter(%rip)
    jmp 2b

    .section .data
msg:    .ascii "amber-guest: ready\n"
msg_end:
counter: .quad 0
