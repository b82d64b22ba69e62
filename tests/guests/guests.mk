# Tiny hand-made guests (ELF64, entered in 64-bit mode) for direct /dev/kvm tests and benches.
TINY_GUESTS := build/guests/spin build/guests/poweroff build/guests/reset
ALL_BINS += $(TINY_GUESTS)

build/guests/spin: DEF := -DSPIN
build/guests/poweroff: DEF := -DPOWEROFF
build/guests/reset: DEF := -DRESET
$(TINY_GUESTS): tests/guests/tiny.S
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(DEF) -nostdlib -static -no-pie -Wl,-Ttext=0x200000 -Wl,--build-id=none \
	    -Wl,-z,noexecstack -o $@ $<

# The evil guest: one ELF whose attack is chosen by "evil=NAME [seed=N]" on amber's command line
# (cases: regs random queue_edge chains notify status unmapped legacy reset_storm).
EVIL_SRCS := tests/guests/evil_start.S tests/guests/evil.c tests/guests/evil_mmio.c \
             tests/guests/evil_queue.c tests/guests/evil_legacy.c
ALL_BINS += build/guests/evil
build/guests/evil: $(EVIL_SRCS) tests/guests/evil.h
	@mkdir -p $(dir $@)
	$(Q)$(CC) -O2 -g -I. -std=gnu11 -ffreestanding -fno-builtin -fno-stack-protector -fno-pic \
	    -mno-red-zone -mgeneral-regs-only -fno-tree-loop-distribute-patterns -Wall -Wextra \
	    -Werror -nostdlib -static -no-pie -Wl,-Ttext=0x200000 -Wl,--build-id=none \
	    -Wl,-z,noexecstack -o $@ $(EVIL_SRCS)
