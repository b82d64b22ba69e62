"""Unit tests of tests/testhost/run-e2e.sh, the resume loop, with a stub test host: a test host that
dies with evidence is journaled and resumed; one that ends without evidence is not."""
import os
import shutil
import subprocess
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Stands for tests/testhost/testhost.sh. Its first call starts a test and dies, saying why when
# STUB_EVIDENCE is set; later calls finish the test (the journal's replay decides it may run).
STUB = r"""#!/usr/bin/env bash
shift
res=$3
n=$(cat "$STUB_DIR/calls" 2>/dev/null || echo 0)
echo $((n + 1)) >"$STUB_DIR/calls"
if [ "$n" = 0 ]; then
    echo "start test_x.T.test_a" >>"$res/e2e-journal.txt"
    [ -n "${STUB_EVIDENCE:-}" ] && printf '%s\n' "$STUB_EVIDENCE" >"$TESTHOST_EVIDENCE"
    exit 124
fi
python3 - "$res" <<'PY'
import sys
sys.path.insert(0, "tests/testhost")
import unittest
import e2e, run_tests
j = e2e.Journal(sys.argv[1] + "/e2e-journal.txt")
e2e.select(unittest.TestSuite(), j)  # journals the resume of what the death cut off
for name in list(j.resumed):
    j.record("start", name)
    j.record("pass", name)
run_tests.write_results(sys.argv[1], j)
PY
"""


class ResumeLoop(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root, True)
        for sub in ("tests/testhost", "tests/e2e"):
            os.makedirs(os.path.join(self.root, sub))
        for path in ("tests/testhost/run-e2e.sh", "tests/testhost/e2e.py", "tests/testhost/leak.py",
                     "tests/e2e/run_tests.py", "tests/e2e/harness.py", "tests/e2e/evidence.py"):
            shutil.copy(os.path.join(REPO, path), os.path.join(self.root, path))
        shutil.copytree(os.path.join(REPO, "sdk/python/amber"), os.path.join(self.root, "sdk/python/amber"))
        stub = os.path.join(self.root, "tests/testhost/testhost.sh")
        with open(stub, "w") as f:
            f.write(STUB)
        os.chmod(stub, 0o755)
        self.results = os.path.join(self.root, "build", "res")

    def run_loop(self, evidence=""):
        env = dict(os.environ, STUB_DIR=self.root, STUB_EVIDENCE=evidence, AMBER_E2E_BUDGET_S="400")
        out = subprocess.run(["bash", os.path.join(self.root, "tests/testhost/run-e2e.sh"), self.results],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        with open(os.path.join(self.results, "e2e.txt")) as f:
            totals = f.read()
        with open(os.path.join(self.results, "e2e-journal.txt")) as f:
            journal = f.read().splitlines()
        with open(os.path.join(self.root, "calls")) as f:
            calls = int(f.read())
        return out.stdout.decode(), totals, journal, calls

    def test_a_death_with_evidence_is_journaled_and_resumed(self):
        out, totals, journal, calls = self.run_loop("test host (debian12) killed: its heartbeat stopped 61 s ago")
        self.assertEqual(calls, 2, out)
        self.assertIn("died test host (debian12) killed: its heartbeat stopped 61 s ago", journal)
        self.assertEqual(totals, "1 passed, 0 failed, 0 skipped\n", out)
        self.assertIn("e2e: RESUMED in a fresh test host (it died under test_x.T.test_a)", out)
        self.assertNotIn("RETRIED", out)  # a resume is not a retry

    def test_an_end_without_evidence_is_not_resumed_and_counts(self):
        out, totals, journal, calls = self.run_loop("")
        self.assertEqual(calls, 1, out)
        self.assertFalse([line for line in journal if line.startswith("died")], journal)
        self.assertEqual(totals, "0 passed, 1 failed, 0 skipped\n", out)


if __name__ == "__main__":
    unittest.main()
