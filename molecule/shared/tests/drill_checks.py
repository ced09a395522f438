"""Checks both molecule drills make from inside each container (testinfra `host` objects).

Everything is read on the host itself: its app over its own loopback, its files, its restore point store.
"""

from __future__ import annotations

import json

STORE = "/var/lib/fleetops/rollback"
APP = "http://127.0.0.1:8080"
# Release 2's rotated secret: it was on the host while the bad release ran, and must not leak into the
# store's journal or manifests (file bodies live only in the content-addressed blobs).
RELEASE_2_SECRET = "r2-secret-rotated-51c0de"

_GET = (
    "import json, sys, urllib.request, urllib.error\n"
    "try:\n"
    "    r = urllib.request.urlopen(sys.argv[1], timeout=10); code, body = r.status, r.read()\n"
    "except urllib.error.HTTPError as e:\n"
    "    code, body = e.code, e.read()\n"
    "print(json.dumps({'status': code, 'body': body.decode()}))\n"
)


def http_get(host, path):
    """(status, parsed JSON body) of GET APP+path, requested inside the container."""
    out = host.check_output("python3 -c %s %s", _GET, APP + path)
    reply = json.loads(out)
    return reply["status"], json.loads(reply["body"])


def read_json(host, path):
    return json.loads(host.file(path).content_string)


def journal(host):
    return [json.loads(line) for line in host.file(STORE + "/journal.jsonl").content_string.splitlines() if line]


def manifests(host):
    ids = host.check_output("ls -1 %s/points", STORE).split()
    return [read_json(host, "%s/points/%s/manifest.json" % (STORE, point_id)) for point_id in ids]


def assert_release_1_serving(host):
    status, health = http_get(host, "/health")
    assert status == 200, health
    assert health["status"] == "ok"
    assert health["version"] == "1.0.0"
    status, version = http_get(host, "/version")
    assert status == 200
    assert (version["version"], version["release"]) == ("1.0.0", "1")
    assert host.run("python3 /opt/fleetops/sample_app/appctl.py status --root /").rc == 0


def assert_release_1_files(host):
    current = host.file("/srv/app/current")
    assert current.is_symlink
    assert current.linked_to == "/srv/app/releases/1"
    env = host.file("/etc/app/app.env")
    assert env.mode == 0o640
    assert "LOG_LEVEL=info" in env.content_string
    assert RELEASE_2_SECRET not in env.content_string
    # Release 2 added conf.d/20-tuning.env: the config restore removed it again.
    assert not host.file("/etc/app/conf.d/20-tuning.env").exists
    assert host.file("/etc/app/conf.d/10-features.env").exists


def assert_store_private(host):
    store = host.file(STORE)
    assert store.is_directory
    assert store.user == "root"
    assert store.mode == 0o700
    for sub in ("points", "blobs", "blobs/sha256", "dumps"):
        assert host.file("%s/%s" % (STORE, sub)).mode == 0o700, sub
    for manifest in host.check_output("find %s/points -name manifest.json", STORE).split():
        assert host.file(manifest).mode == 0o600, manifest
    assert host.file(STORE + "/journal.jsonl").mode == 0o600
    # No file or directory in the store is readable by group or others.
    loose = host.check_output("find %s -perm /077 -not -type l", STORE)
    assert loose == "", loose


def assert_rolled_back_once(host, reason, later_noops):
    """One real restore to the known good point (release-1), with a safety point of release 2. With
    later_noops, the idempotence run restored again and found nothing to do (a journalled no-op); without,
    no later restore ran at all. Returns (points by id, the restore's journal event)."""
    known_good = host.file(STORE + "/known_good").content_string.strip()
    points = {m["id"]: m for m in manifests(host)}
    assert points[known_good]["label"] == "release-1"
    assert points[known_good]["status"] == "known_good"
    assert points[known_good]["components"]["release"]["release"] == "1"

    restores = [e for e in journal(host) if e["event"] == "restore"]
    assert [e["outcome"] for e in restores][:1] == ["restored"], restores
    if later_noops:
        assert len(restores) >= 2, "the idempotence run should have journalled a no-op restore: %s" % restores
        assert all(e["outcome"] == "noop" for e in restores[1:]), restores
    else:
        assert len(restores) == 1, restores
    first = restores[0]
    assert first["point"] == known_good
    assert first["reason"] == reason
    assert not first.get("restart_error")
    safety = points[first["safety_point"]]
    assert safety["status"] == "safety"
    assert safety["components"]["release"]["release"] == "2"
    return points, first


def assert_no_secret_in_records(host):
    leaked = host.run("grep -rl %s %s/journal.jsonl %s/points", RELEASE_2_SECRET, STORE, STORE)
    assert leaked.rc == 1, leaked.stdout
