# make bench: amber next to QEMU microvm, measured in the same place (the test host without vmx/svm).
# Prints the tables and writes build/bench/results.md; see bench/run.sh for the knobs.
bench: all guest
	$(Q)bash bench/run.sh

.PHONY: bench
