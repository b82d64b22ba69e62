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
