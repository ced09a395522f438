"""How the apt and pip backends run their commands (through _process): environment, failure messages, and the
error lines they pick from the output, redacted before they are picked and cut."""

import json
import sys

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import apt as _apt
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pip as _pip

SECRET = "s3cr3t-Value-8842"
ENV_DUMP = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]


def leaks(shown, width=6):
    return any(SECRET[i:i + width] in shown for i in range(len(SECRET) - width + 1))


def test_apt_commands_run_non_interactive_in_the_c_locale(monkeypatch):
    monkeypatch.setenv("LANGUAGE", "de:en")
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    done = _apt.run(ENV_DUMP, timeout=60)
    env = json.loads(done.stdout)
    assert (env["DEBIAN_FRONTEND"], env["LC_ALL"], env["LANG"]) == ("noninteractive", "C.UTF-8", "C.UTF-8")
    assert "LANGUAGE" not in env, "LANGUAGE would translate apt's messages, which are parsed"


def test_pip_commands_run_without_the_callers_pip_settings(monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://elsewhere/simple")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    own = json.loads(_pip.run(ENV_DUMP, env=_pip.child_env(False), timeout=60).stdout)
    assert not any(k.startswith("PIP_") and k not in ("PIP_CONFIG_FILE", "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_NO_INPUT",
                                                      "PIP_NO_COLOR") for k in own)
    assert own["PIP_CONFIG_FILE"] == "/dev/null" and "PYTHONPATH" not in own
    configured = json.loads(_pip.run(ENV_DUMP, env=_pip.child_env(True), timeout=60).stdout)
    assert configured["PIP_INDEX_URL"] == "http://elsewhere/simple" and "PIP_CONFIG_FILE" not in configured
    assert "PYTHONPATH" not in configured


def test_a_command_that_gives_no_answer_or_cannot_run_is_said_so():
    slow = [sys.executable, "-c", "import time; time.sleep(300)"]
    assert _apt._why(_apt.run(slow, timeout=0.5)) == "%s -c gave no answer within 0.5 s" % sys.executable
    assert _pip._why(_pip.run(slow + ["x"], timeout=0.5)) == \
        "%s -c 'import time; time.sleep(300)' x gave no answer within 0.5 s" % sys.executable
    assert _apt._why(_apt.run(["/nonexistent/apt-get", "install"], timeout=60)) == \
        "could not run /nonexistent/apt-get install: No such file or directory"


def test_a_failed_command_names_its_exit_status_and_error_lines():
    done = _apt.run(["sh", "-c", "echo Reading package lists...; echo 'E: Unable to locate package x' >&2; exit 100"],
                    timeout=60)
    assert _apt._why(done) == "sh -c exited 100: E: Unable to locate package x"


def test_error_lines_are_redacted_before_they_are_cut():
    """A secret anywhere around the 1500-character cut, or in a private key block: never shown."""
    for pad in range(1440, 1500, 2):
        # The cut keeps the last 1500 characters: it falls in the key, between key and value, in the value.
        out = "DB_PASSWORD=%s\n%s\n" % (SECRET, "x" * pad)
        err = "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\nE: failed %s\n" % (SECRET, "y" * pad)
        for shown in (_apt.errors(out, ""), _apt.errors("", err), _pip.pip_errors(out, ""), _pip.pip_errors("", err),
                      _pip.pip_errors(out.replace("DB_", "ERROR: DB_"), "")):
            assert not leaks(shown), (pad, shown)
