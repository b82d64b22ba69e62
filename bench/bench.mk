# make bench: amber next to QEMU microvm, measured in the same place (the test host without vmx/svm).
# Prints the tables and writes build/bench/results.md; see bench/run.sh for the knobs.
# Nested paging in the test host, as every earlier figure had, whatever TESTHOST_KERNEL_ARGS says.
bench: all guest
	$(Q)TESTHOST_KERNEL_ARGS= bash bench/run.sh

.PHONY: bench
