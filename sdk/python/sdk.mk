# Python SDK: `make run` (set-up, build, then the demo transcript) and `make sdk-test` (SDK unit
# tests, no VM).
# The e2e SDK tests live in tests/e2e/test_sdk.py and run with `make e2e`.

run: setup
	$(Q)$(MAKE) --no-print-directory all guest
	$(Q)if grep -qwE 'vmx|svm' /proc/cpuinfo; then \
	  echo "make run: hardware virtualization found: running the demo directly"; \
	  /usr/bin/python3 scripts/demo.py; \
	else \
	  echo "make run: no vmx/svm on this CPU: running the demo inside the test host (scripts/testhost.sh)"; \
	  scripts/testhost.sh -- /usr/bin/python3 scripts/demo.py </dev/null; \
	fi

sdk-test: $(SETUP_STAMP) $(BUILD)/amber-agent guest
	$(Q)bash tests/run-pyunit.sh $(RESULTS) sdk-unit sdk/python/tests

.PHONY: run sdk-test
