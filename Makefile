# amber top-level build: binaries to build/, guest images to build/guest/, tests and benchmarks.
# Each directory contributes its objects through a module.mk fragment included below.

CC        ?= gcc
BUILD     ?= build
WERROR    ?= 1
SAN       ?=
V         ?= 0
FUZZ_SECONDS ?= 30

ifeq ($(V),0)
Q := @
else
Q :=
endif

WARNINGS := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat=2 -Wundef -Wno-unused-parameter -Wno-format-truncation
ifeq ($(WERROR),1)
WARNINGS += -Werror
endif

CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -D_GNU_SOURCE -fno-strict-aliasing -fstack-protector-strong \
            -D_FORTIFY_SOURCE=2 -I. $(WARNINGS) -MD -MP
LDFLAGS  ?=
LDLIBS_VMM := -lpthread -ljson-c -lseccomp -luring
# amber is linked statically (STATIC=0 turns it off): only the library code it uses is mapped,
# which takes about 1.3 MiB off every sandbox's resident size (docs/design.md, "Memory"; figures in docs/benchmarks.md).
STATIC   ?= 1

ifneq ($(SAN),)
BUILD    := build/san
CFLAGS   += -fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS  += -fsanitize=$(SAN)
STATIC   := 0
endif
LDFLAGS_VMM := $(if $(filter 1,$(STATIC)),-static)

SETUP_STAMP := build/.setup-stamp

.DEFAULT_GOAL := all

# Fragments append to these lists.
VMM_OBJS   :=
CTL_OBJS   :=
UNIT_TESTS :=
FUZZ_TARGETS :=
ALL_BINS   :=

# Every directory that builds something owns one fragment (module.mk or <part>.mk).
include tests/module.mk
include $(sort $(filter-out tests/module.mk,$(wildcard */module.mk */*.mk */*/*.mk)))

all: $(SETUP_STAMP) $(ALL_BINS)

# Linked here, after every fragment has added its objects.
$(BUILD)/amber: $(addprefix $(BUILD)/,$(VMM_OBJS) board/main.o)
	@[ "$(V)" = 0 ] && echo "  LD      $@" || true
	$(Q)$(CC) $(LDFLAGS) $(LDFLAGS_VMM) -o $@ $^ $(LDLIBS_VMM)

# `make setup` installs the Debian packages amber needs (apt-get, see scripts/setup.sh). Other
# targets only check for them and ask for `make setup` when one is missing; make run and make
# test call setup themselves.
setup:
	$(Q)mkdir -p build
	$(Q)bash scripts/setup.sh
	$(Q)touch $(SETUP_STAMP)

$(SETUP_STAMP): scripts/setup.sh
	$(Q)mkdir -p build
	$(Q)bash scripts/setup.sh --check
	$(Q)touch $@

$(BUILD)/%.o: %.c | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	@[ "$(V)" = 0 ] && echo "  CC      $<" || true
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# Every #include points down the layers of the README's architecture map (scripts/check-layers.sh).
check-layers:
	$(Q)bash scripts/check-layers.sh $(RESULTS)

format-check:
	$(Q)files=$$(git ls-files '*.c' '*.h'); \
	  [ -z "$$files" ] || clang-format --dry-run --Werror $$files

format:
	$(Q)clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

.PHONY: all setup check-layers format-check format clean

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
