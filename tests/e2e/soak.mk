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

# make soak-cmp: bench/soak_cmp.py SOAK_RUNS times per VMM, amber and QEMU microvm taking turns,
# with a pass count per VMM. SOAK_CYCLES pause/resume cycles per run (default 1000), SOAK_LOAD
# (both, streams, writes, none) and SOAK_VCPUS bisect the load; SOAK_EXTRA=--no-pause runs the
# control (same load and API round trips, nothing paused). Every failed amber run leaves its
# evidence in build/test-results/soak-cmp/ (see bench/soak_cmp.py).
SOAK_RUNS ?= 5
SOAK_LOAD ?= both
SOAK_VCPUS ?= 2
SOAK_EXTRA ?=
SOAK_CMP_ARGS = --runs $(SOAK_RUNS) --load $(SOAK_LOAD) --vcpus $(SOAK_VCPUS) $(SOAK_EXTRA)

soak-cmp: $(SETUP_STAMP) all guest
	@mkdir -p $(RESULTS)/soak-cmp
	$(Q){ if grep -qwE 'vmx|svm' /proc/cpuinfo; then \
		AMBER_SOAK_CYCLES=$(SOAK_CYCLES) /usr/bin/python3 bench/soak_cmp.py $(SOAK_CMP_ARGS); \
	else \
		bash scripts/testhost.sh -- /usr/bin/env AMBER_SOAK_CYCLES=$(SOAK_CYCLES) \
			/usr/bin/python3 bench/soak_cmp.py $(SOAK_CMP_ARGS) </dev/null; \
	fi; echo $$? >$(RESULTS)/soak-cmp.rc; } 2>&1 | tee $(RESULTS)/soak-cmp/summary.log; \
	exit $$(cat $(RESULTS)/soak-cmp.rc)

.PHONY: soak-cmp
