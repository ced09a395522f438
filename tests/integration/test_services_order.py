"""The services role keeps declared order across managers (systemd, command, systemd)."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE_VARS = os.path.join(ROOT, "roles", "services", "vars", "main.yml")
ROLE_DEFAULTS = os.path.join(ROOT, "roles", "services", "defaults", "main.yml")

SERVICES = [
    {"name": "postgresql", "manager": "systemd"},
    {"name": "app", "start": ["true"], "stop": ["true"], "restart": ["true"]},
    {"name": "worker", "manager": "command", "start": ["true"], "stop": ["true"], "restart": ["true"]},
    {"name": "nginx", "manager": "systemd", "unit": "nginx.service"},
]

PLAY = """
- name: Runs of same-manager services
  hosts: target
  gather_facts: false
  tasks:
    - name: Load the role's defaults and variables
      ansible.builtin.include_vars:
        file: "{{ item }}"
      loop: [%r, %r]
    - name: Show the runs
      ansible.builtin.debug:
        msg: "{{ _services_runs | map('map', attribute='name') | map('list') | list }}"
""" % (ROLE_DEFAULTS, ROLE_VARS)


def runs(playbook, one_host, **extra):
    run = playbook(PLAY, one_host, extra_vars=dict({"services_list": SERVICES}, **extra))
    assert run.rc == 0, run.stdout + run.stderr
    return run.result("Show the runs", "target")["msg"]


def test_runs_follow_declared_order_across_managers(playbook, one_host):
    assert runs(playbook, one_host, services_action="start") == [["postgresql"], ["app", "worker"], ["nginx"]]
    assert runs(playbook, one_host, services_action="stop") == [["nginx"], ["worker", "app"], ["postgresql"]]
    assert runs(playbook, one_host, services_action="restart", services_only=["nginx", "postgresql"]) == [
        ["postgresql", "nginx"]]
