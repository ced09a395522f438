"""The fault suite keeps the floor it promises: at least 40 fault kinds and 150 bad-input cases across the modules.

Counted from pytest's own collection of tests/faults (markers `fault(kind)` and `bad_input(module)`), so a case that
is removed or skipped by a marker change lowers the count and fails here."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FAULT_KINDS_FLOOR = 40
BAD_INPUT_FLOOR = 150

COUNTER = r"""
import sys, pytest

class Count:
    def __init__(self):
        self.kinds, self.bad = set(), 0
    def pytest_collection_modifyitems(self, items):
        for item in items:
            for mark in item.iter_markers("fault"):
                self.kinds.add(mark.args[0])
            if item.get_closest_marker("bad_input"):
                self.bad += 1

count = Count()
pytest.main(["--collect-only", "-q", "-o", "addopts=", "-p", "no:xdist", "-p", "no:cacheprovider", sys.argv[1]], plugins=[count])
print("KINDS", len(count.kinds), "BAD", count.bad)
print("LIST", " ".join(sorted(count.kinds)))
"""


def test_the_fault_suite_holds_its_floor():
    proc = subprocess.run([sys.executable, "-c", COUNTER, HERE], capture_output=True, text=True, check=False,
                          cwd=os.path.dirname(os.path.dirname(HERE)))
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in proc.stdout.splitlines()
             if line.startswith(("KINDS", "LIST"))}
    assert "KINDS" in lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    words = lines["KINDS"].split()
    kinds, bad = int(words[0]), int(words[2])
    assert kinds >= FAULT_KINDS_FLOOR, "only %d fault kinds: %s" % (kinds, lines.get("LIST"))
    assert bad >= BAD_INPUT_FLOOR, "only %d bad-input cases" % bad
