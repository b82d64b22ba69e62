# make soak: the pause-under-load e2e check with 1,000 pause/resume cycles (make test runs 100).
# SOAK_CYCLES overrides the count; the log lands in build/test-results/soak.log, amber's console
# and stderr in build/test-results/soak-logs/.
SOAK_CYCLES ?= 1000
SOAK_TEST := tests.e2e.test_pause.TestPauseLong.test_02_pause_under_load

soak: $(SETUP_STAMP) all guest
	@mkdir -p $(RESULTS)/soak-logs
	$(Q){ if grep -qwE 'vmx|svm' /proc/cpuinfo; then \
		AMBER_PAUSE_CYCLES=$(SOAK_CYCLES) AMBER_E2E_LOGDIR=$(abspath $(RESULTS))/soak-logs \
			/usr/bin/python3 -m unittest -v $(SOAK_TEST); \
	else \
		AMBER_PAUSE_CYCLES=$(SOAK_CYCLES) AMBER_E2E_LOGDIR=$(abspath $(RESULTS))/soak-logs \
			bash scripts/testhost.sh -- /usr/bin/python3 -m unittest -v $(SOAK_TEST) </dev/null; \
	fi; echo $$? >$(RESULTS)/soak.rc; } 2>&1 | tee $(RESULTS)/soak.log; exit $$(cat $(RESULTS)/soak.rc)

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
