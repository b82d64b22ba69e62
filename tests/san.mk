# Sanitizer runs for `make test`: amber and the unit tests built with ASan + UBSan into build/san/
# (the top Makefile's SAN= switch), the unit tests recorded as the "unit-san" suite. The e2e
# suite then runs tests/e2e/test_evil.py against build/san/amber too (with --seccomp=off, since
# LeakSanitizer's exit check needs ptrace).
SAN_CHECKS ?= address,undefined

test-san: $(SETUP_STAMP)
	$(Q)$(MAKE) --no-print-directory SAN=$(SAN_CHECKS) build/san/amber
	$(Q)$(MAKE) --no-print-directory SAN=$(SAN_CHECKS) unit RESULTS=$(abspath $(RESULTS)) \
	    UNIT_SUITE=unit-san

.PHONY: test-san
