#!/usr/bin/env bash
# Runs a command inside the test host (QEMU TCG with nested SVM); the test host lives in tests/testhost/.
# usage: scripts/testhost.sh [--] CMD [ARGS...]   (see tests/testhost/testhost.sh for its variables)
exec "$(dirname "$0")/../tests/testhost/testhost.sh" "$@"
