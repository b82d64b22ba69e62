# Guest images for e2e tests and benchmarks: `make guest` fills build/guest/ (see scripts/build-guest.sh),
# and build/guest/generic/ (a kernel with the VM generation ID driver, for test_vmgenid only; a
# failure there, e.g. offline, does not fail the target: that test then skips and says why).
# The script always runs (it is cheap when nothing changed): it fingerprints its inputs, including
# build/amber-agent, so an agent built later in the same make run still lands in the images.

GUEST_AGENT := $(sort $(wildcard build/amber-agent) $(filter build/amber-agent,$(ALL_BINS)))

guest: $(SETUP_STAMP) $(GUEST_AGENT)
	$(Q)bash scripts/build-guest.sh
	-$(Q)bash scripts/build-guest.sh generic

.PHONY: guest
