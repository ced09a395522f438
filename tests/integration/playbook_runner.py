"""Run real `ansible-playbook` processes and read back every task result."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.path.dirname(sys.executable)


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    results: list = field(default_factory=list)

    def for_task(self, task, host=None):
        """All results of the task with this name (optionally one host's)."""
        return [r for r in self.results
                if (r["task"] == task or r["task"].endswith(" : " + task)) and (host is None or r["host"] == host)]

    def result(self, task, host):
        found = self.for_task(task, host)
        assert found, f"no result for task {task!r} on {host!r}; output:\n{self.stdout}\n{self.stderr}"
        return found[-1]["result"]

    def status(self, task, host):
        found = self.for_task(task, host)
        assert found, f"no result for task {task!r} on {host!r}; output:\n{self.stdout}\n{self.stderr}"
        return found[-1]["status"]


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, ".collections"),
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(HERE, "plugins", "callback"),
        "ANSIBLE_CALLBACKS_ENABLED": "result_collector",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOCAL_TEMP": os.path.join(tempfile.gettempdir(), "fleetops-ansible-local"),
        "PATH": BIN + os.pathsep + env.get("PATH", ""),
    })
    env.update(extra or {})
    return env


def run_playbook(playbook, inventory, extra_vars=None, check=False, diff=False, limit=None,
                 env=None, args=(), timeout=900):
    """Run ansible-playbook on a playbook path (or YAML text) and collect every task result."""
    with tempfile.TemporaryDirectory(prefix="fleetops-run-") as tmp:
        if "\n" in playbook:
            path = os.path.join(tmp, "playbook.yml")
            with open(path, "w", encoding="utf-8") as stream:
                stream.write(playbook)
            playbook = path
        results_path = os.path.join(tmp, "results.jsonl")
        argv = [os.path.join(BIN, "ansible-playbook"), "-i", inventory, playbook]
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        if limit:
            argv += ["-l", limit]
        argv += list(args)
        proc = subprocess.run(argv, cwd=ROOT, env=ansible_env(dict(env or {}, FLEETOPS_TEST_RESULTS=results_path)),
                              capture_output=True, text=True, timeout=timeout, check=False)
        results = []
        if os.path.exists(results_path):
            with open(results_path, encoding="utf-8") as stream:
                results = [json.loads(line) for line in stream if line.strip()]
        return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, results)


def local_inventory(path, hosts):
    """Write an INI inventory of local-connection hosts: {name: {var: value}}."""
    lines = ["[all]"]
    for name, hostvars in hosts.items():
        parts = [name, "ansible_connection=local", f"ansible_python_interpreter={sys.executable}"]
        parts += [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in (hostvars or {}).items()]
        lines.append(" ".join(parts))
    with open(path, "w", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")
    return str(path)
