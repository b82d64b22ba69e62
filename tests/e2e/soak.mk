# make soak: the pause-under-load e2e check with 1,000 pause/resume cycles (make test runs 100),
# on the test host's second stack (TESTHOST_STACK2, as make test-stack2) when there is no vmx/svm.
# SOAK_CYCLES overrides the count; results and the log land in build/test-results/soak/.
SOAK_CYCLES ?= 1000
SOAK_TEST ?= test_pause.TestPauseLong.test_02_pause_under_load
SOAK_BUDGET_S ?= 3600

soak: $(SETUP_STAMP) all guest
	$(Q)bash scripts/setup.sh --stack $(TESTHOST_STACK2)
	$(Q)mkdir -p $(RESULTS)/soak
	$(Q){ TESTHOST_STACK=$(TESTHOST_STACK2) AMBER_PAUSE_CYCLES=$(SOAK_CYCLES) \
		AMBER_E2E_BUDGET_S=$(SOAK_BUDGET_S) AMBER_E2E_TEST_TIMEOUT_S=$$(($(SOAK_BUDGET_S) - 120)) \
		bash tests/e2e/run.sh $(RESULTS)/soak $(SOAK_TEST); echo $$? >$(RESULTS)/soak/rc; } 2>&1 \
		| tee $(RESULTS)/soak/soak.log; exit $$(cat $(RESULTS)/soak/rc)

.PHONY: soak
