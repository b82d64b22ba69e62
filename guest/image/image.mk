# Guest images for e2e tests and benchmarks: `make guest` fills build/guest/ (see scripts/build-guest.sh).
# The script always runs (it is cheap when nothing changed): it fingerprints its inputs, including
# build/amber-agent, so an agent built later in the same make run still lands in the images.

GUEST_AGENT := $(sort $(wildcard build/amber-agent) $(filter build/amber-agent,$(ALL_BINS)))

guest: $(SETUP_STAMP) $(GUEST_AGENT)
	$(Q)bash scripts/build-guest.sh

.PHONY: guest
