"""Secrets that a restore could leak, each reproduced on real module processes (restore_point, config_restore):
a diff of config files in the formats hosts hold (.env, YAML, nginx, apache, netrc, pgpass, systemd, cron, PEM),
a rotated secret that a diff must show as changed without showing it, a validate command that echoes the candidate
file into its failure, and the sha256 of a short secret file in results.

Each case captures a point, changes the files, runs the module and asserts that no secret value (the captured one
nor the current one) appears anywhere in what the run printed, and what the host looks like afterwards.
"""
import hashlib
import json
import os

import pytest
from fault_host import SECRET, write
from harness import assert_clear_failure, assert_no_secret, run_module

from ansible_collections.fleetops.rollback.plugins.module_utils._redact import CHANGED_AFTER, CHANGED_BEFORE

VALIDATE_ECHOES = "sh -c 'cat \"$1\"; echo \"validation failed\" >&2; exit 1' validate %s"


def capture(host, paths=None, validate=None):
    """Capture the config tree (or `paths`) as the known good point; returns its id."""
    paths = paths or [host.etc]
    spec = [{"path": path, "validate": validate} if validate else path for path in paths]
    run = run_module("restore_point", {"store_path": host.store, "label": "good", "status": "known_good",
                                       "components": {"config": {"paths": spec}}})
    assert run.rc == 0 and not run.failed, run.everything[-3000:]
    return run.result["point"]["id"]


def restore(host, module="restore_point", check=False, diff=True, **extra):
    args = {"store_path": host.store}
    if module == "restore_point":
        args["state"] = "restored"
    args.update(extra)
    return run_module(module, args, check=check, diff=diff)


def write_files(root, files):
    for name, body in files.items():
        write(os.path.join(root, name), body.encode(), 0o600)


def diff_text(run):
    return "".join(d.get("before", "") + d.get("after", "") for d in run.result.get("diff", []))


def diff_of(run, path):
    found = [d for d in run.result.get("diff", []) if d.get("before_header") == path]
    assert found, "no diff for %s in %s" % (path, json.dumps(run.result.get("diff"))[:2000])
    return found[0]


def round_trip(host, captured, current, module="restore_point"):
    """Capture `captured` files, write `current` over them, then restore in check+diff mode and for real with diff:
    neither side's secrets may show in either run. Returns (check run, real run)."""
    write_files(host.etc, captured)
    capture(host)
    write_files(host.etc, current)
    broken = host.state()
    check = restore(host, module=module, check=True)
    assert check.rc == 0 and not check.failed, check.everything[-3000:]
    assert check.result["changed"] is True
    assert host.state() == broken, "check mode changed the host"
    real = restore(host, module=module)
    assert real.rc == 0 and not real.failed, real.everything[-3000:]
    for name, body in captured.items():
        with open(os.path.join(host.etc, name), encoding="utf-8") as stream:
            assert stream.read() == body, "%s was not restored" % name
    return check, real


def secrets_of(*groups):
    """The values given, and the secret every fault host holds in its .env."""
    return [value for group in groups for value in group] + [SECRET]


def changes(run):
    return run.result["plan"]["config"]["changes"]


# ------------------------------------------------------------------------------------------------ diffs


OLD_DB = ["mysql-Old-pw-7731", "pgpass-Old-4410", "redis-Old-pw-0021"]
NEW_DB = ["mysql-New-pw-1942", "pgpass-New-8823", "redis-New-pw-5530"]


def env_file(values):
    return "HOST=db.internal\nMYSQL_PWD=%s\nPGPASS=%s\nREDIS_PASS=%s\nPORT=5432\nPWD=/srv/app\n" % tuple(values)


@pytest.mark.fault("secret-in-diff-mysql-pwd")
def test_pwd_and_pass_names_never_show_in_a_diff(fault_host):
    check, real = round_trip(fault_host, {"db.env": env_file(OLD_DB)}, {"db.env": env_file(NEW_DB)},
                             module="config_restore")
    for run in (check, real):
        assert_no_secret(run, secrets_of(OLD_DB, NEW_DB))
        shown = diff_of(run, os.path.join(fault_host.etc, "db.env"))
        # The non-secret lines show as they are; each changed password shows as changed.
        assert "HOST=db.internal\n" in shown["before"] and "PWD=/srv/app\n" in shown["after"]
        assert shown["before"].count(CHANGED_BEFORE) == 3 and shown["after"].count(CHANGED_AFTER) == 3
    assert changes(check) == changes(real), "check mode did not predict the real run"


URLS = ("cache:\n  url: redis://:%s@cache.internal:6379/0\nqueue: amqp://guest:%s@mq.internal/vhost\n"
        "database: {\"dsn\": \"postgres://app:%s@db:5432/app\", \"pool\": 5}\n")
OLD_URL = ["redisurl-Old-3321", "amqp-Old-7714", "pgurl-Old-0931"]
NEW_URL = ["redisurl-New-9012", "amqp-New-2290", "pgurl-New-6618"]


@pytest.mark.fault("secret-in-diff-url-empty-user")
def test_url_credentials_with_an_empty_user_never_show_in_a_diff(fault_host):
    check, real = round_trip(fault_host, {"urls.yml": URLS % tuple(OLD_URL)}, {"urls.yml": URLS % tuple(NEW_URL)})
    for run in (check, real):
        assert_no_secret(run, secrets_of(OLD_URL, NEW_URL))
        shown = diff_of(run, os.path.join(fault_host.etc, "urls.yml"))
        assert "redis://:%s@cache.internal:6379/0" % CHANGED_BEFORE in shown["before"]
        assert "redis://:%s@cache.internal:6379/0" % CHANGED_AFTER in shown["after"]


HEADERS = {
    "nginx.conf": "server {\n    listen 443 ssl;\n    ssl_certificate_key /etc/ssl/private/app.key;\n"
                  "    location /api/ {\n        proxy_set_header Authorization \"Bearer %s\";\n"
                  "        proxy_set_header X-Api-Key \"%s\";\n        proxy_pass http://127.0.0.1:8080;\n    }\n}\n",
    "apache.conf": "<VirtualHost *:443>\n    RequestHeader set Authorization \"Basic %s\"\n"
                   "    ProxyPass / http://127.0.0.1:8080/\n</VirtualHost>\n",
    "probe.sh": "#!/bin/sh\ncurl -sS -H 'Authorization: Bearer %s' https://api.internal/health\n",
    "client.json": "{\"headers\": {\"Authorization\": \"Bearer %s\"}, \"timeout\": 5}\n",
}
OLD_TOKENS = ["nginxTok0ld81aa", "nginxKey0ld3k", "YWRtaW46b2xkcGFzcw==", "curlTok0ld55x", "jsonTok0ld72z"]
NEW_TOKENS = ["nginxTokN3w92bb", "nginxKeyN3w4q", "YWRtaW46bmV3cGFzcw==", "curlTokN3w66y", "jsonTokN3w13w"]


def header_files(tokens):
    return {"nginx.conf": HEADERS["nginx.conf"] % tuple(tokens[:2]), "apache.conf": HEADERS["apache.conf"] % tokens[2],
            "probe.sh": HEADERS["probe.sh"] % tokens[3], "client.json": HEADERS["client.json"] % tokens[4]}


@pytest.mark.fault("secret-in-diff-bearer-header")
def test_authorization_headers_never_show_in_a_diff(fault_host):
    check, real = round_trip(fault_host, header_files(OLD_TOKENS), header_files(NEW_TOKENS))
    for run in (check, real):
        assert_no_secret(run, secrets_of(OLD_TOKENS, NEW_TOKENS))
        nginx = diff_of(run, os.path.join(fault_host.etc, "nginx.conf"))
        # The scheme and every non-secret directive stay in sight.
        assert 'proxy_set_header Authorization "Bearer %s";' % CHANGED_BEFORE in nginx["before"]
        assert "ssl_certificate_key /etc/ssl/private/app.key;" in nginx["after"]
        assert "proxy_pass http://127.0.0.1:8080;" in nginx["after"]


NETRC = "machine api.example.com login deploy password %s\nmachine ftp.example.com\n  login mirror\n  password %s\n" \
        "  account %s\ndefault login anonymous password guest@\n"
OLD_NETRC = ["netrcPw-Old-1122", "netrcPw-Old-3344", "netrcAcct-Old-55"]
NEW_NETRC = ["netrcPw-New-6677", "netrcPw-New-8899", "netrcAcct-New-00"]


@pytest.mark.fault("secret-in-diff-netrc")
def test_netrc_tokens_never_show_in_a_diff(fault_host):
    check, real = round_trip(fault_host, {".netrc": NETRC % tuple(OLD_NETRC)}, {".netrc": NETRC % tuple(NEW_NETRC)})
    for run in (check, real):
        assert_no_secret(run, secrets_of(OLD_NETRC, NEW_NETRC))
        assert "  login mirror\n" in diff_of(run, os.path.join(fault_host.etc, ".netrc"))["after"]


def unit_files(values):
    pem = "\n".join(values[5:])
    return {
        "app.service": "[Service]\nUser=app\nEnvironment=\"API_TOKEN=%s\" \"LOG_LEVEL=info\"\n"
                       "ExecStart=/usr/bin/app --db-password %s --port 80\n" % tuple(values[:2]),
        "backup.cron": "MAILTO=ops\n30 2 * * * root mysqldump -u root -p%s app > /var/backups/app.sql\n" % values[2],
        "pgpass": "# hostname:port:database:username:password\ndb.internal:5432:app:app:%s\n" % values[3],
        "compose.yml": "services:\n  app:\n    environment:\n      - HOST=db\n      - \"DB_PASSWORD=%s\"\n" % values[4],
        "tls.key": "-----BEGIN RSA PRIVATE KEY-----\n%s\n-----END RSA PRIVATE KEY-----\n" % pem,
    }


OLD_UNIT = ["unitTok-Old-01", "unitPw-Old-02", "mysqlP-Old-03", "pgpassL-Old-04", "composeP-Old-05",
            "MIIEowIBAAKCAQEAoldKEYline1", "oldKEYline2abcdefABCDEF"]
NEW_UNIT = ["unitTok-New-11", "unitPw-New-12", "mysqlP-New-13", "pgpassL-New-14", "composeP-New-15",
            "MIIEowIBAAKCAQEAnewKEYline1", "newKEYline2abcdefABCDEF"]


@pytest.mark.fault("secret-in-diff-command-line-and-key-files")
def test_systemd_cron_pgpass_compose_and_pem_secrets_never_show_in_a_diff(fault_host):
    check, real = round_trip(fault_host, unit_files(OLD_UNIT), unit_files(NEW_UNIT))
    for run in (check, real):
        assert_no_secret(run, secrets_of(OLD_UNIT, NEW_UNIT))
        unit = diff_of(run, os.path.join(fault_host.etc, "app.service"))
        assert '"LOG_LEVEL=info"' in unit["before"] and "--port 80" in unit["after"]
        assert "-----BEGIN RSA PRIVATE KEY-----" in diff_of(run, os.path.join(fault_host.etc, "tls.key"))["after"]


@pytest.mark.fault("secret-in-diff-secret-named-file")
def test_the_bare_content_of_a_secret_named_file_never_shows_in_a_diff(fault_host):
    """redis.pass, master.key, .htpasswd: no key name gives their values away, the file's name does."""
    old = {"redis.pass": "bareRedis-Old-771\n", "master.key": "0ld0f3e1a2b3c4d5e6f708192a3b4c5d\n",
           ".htpasswd": "admin:$apr1$0ldSalt1$0ldHashValueABCDEFGHIJ\n"}
    new = {"redis.pass": "bareRedis-New-114\n", "master.key": "4e3wf3e1a2b3c4d5e6f708192a3b4c5d\n",
           ".htpasswd": "admin:$apr1$n3wSalt2$n3wHashValueKLMNOPQRST\n"}
    check, real = round_trip(fault_host, old, new)
    values = [v.strip().split(":", 1)[-1] for v in list(old.values()) + list(new.values())]
    for run in (check, real):
        assert_no_secret(run, values + ["0ldSalt1", "n3wHashValue"])
        shown = diff_of(run, os.path.join(fault_host.etc, "redis.pass"))
        assert (shown["before"], shown["after"]) == (CHANGED_BEFORE + "\n", CHANGED_AFTER + "\n")
        assert diff_of(run, os.path.join(fault_host.etc, ".htpasswd"))["after"].startswith("admin:")


# ------------------------------------------------------------------------------------------------ rotation


@pytest.mark.fault("secret-rotation-invisible-in-diff")
def test_a_rotated_secret_shows_as_a_change_without_its_value(fault_host):
    """SECRET_KEY was rotated since the point: both sides used to redact to the same line, so the diff showed no
    change at all. Now the line shows as changed, and neither value shows; the unchanged secret stays equal."""
    old = "APP_NAME=demo\nSECRET_KEY=django-Old-key-8812\nDB_PASSWORD=unchanged-pw-4471\n"
    new = "APP_NAME=demo\nSECRET_KEY=django-New-key-2291\nDB_PASSWORD=unchanged-pw-4471\n"
    check, real = round_trip(fault_host, {"app.env": old}, {"app.env": new})
    for run in (check, real):
        assert_no_secret(run, ["django-Old-key-8812", "django-New-key-2291", "unchanged-pw-4471"])
        shown = diff_of(run, os.path.join(fault_host.etc, "app.env"))
        assert shown["before"] != shown["after"], "the rotation is invisible in the diff"
        assert "SECRET_KEY=%s\n" % CHANGED_BEFORE in shown["before"]
        assert "SECRET_KEY=%s\n" % CHANGED_AFTER in shown["after"]
        assert "DB_PASSWORD=********\n" in shown["before"] and "DB_PASSWORD=********\n" in shown["after"]
    # Only the rotated line differs between the sides.
    shown = diff_of(check, os.path.join(fault_host.etc, "app.env"))
    differing = [pair for pair in zip(shown["before"].splitlines(), shown["after"].splitlines()) if pair[0] != pair[1]]
    assert [a.split("=")[0] for a, _b in differing] == ["SECRET_KEY"]


# ------------------------------------------------------------------------------------------------ validate


@pytest.mark.fault("secret-in-validate-output")
@pytest.mark.parametrize("module", ["restore_point", "config_restore"])
def test_a_validator_that_echoes_the_candidate_does_not_print_its_secrets(fault_host, module):
    """The validator prints the candidate file (with its password) and fails: the failure message keeps the
    validator's words, but not the password, and the host is as it was."""
    secret_old, secret_new = "validated-Old-pw-6650", "current-New-pw-1208"
    write_files(fault_host.etc, {"app.env": "HOST=db\nDB_PASSWORD=%s\nREDIS_URL=redis://:%s@cache/0\n"
                                            % (secret_old, secret_old)})
    capture(fault_host, validate=VALIDATE_ECHOES)
    write_files(fault_host.etc, {"app.env": "HOST=db2\nDB_PASSWORD=%s\nREDIS_URL=redis://:%s@cache/0\n"
                                            % (secret_new, secret_new)})
    broken = fault_host.state()
    run = restore(fault_host, module=module)
    path = os.path.join(fault_host.etc, "app.env")
    assert_clear_failure(run, path, "failed validation", "validation failed", "exit code 1",
                         secrets=[secret_old, secret_new, SECRET])
    assert "DB_PASSWORD=********" in run.msg, "the validator's output is not in the message: %s" % run.msg
    assert fault_host.state() == broken, "a failed validation changed the host"
    # The journal keeps the same message: redacted there too.
    info = run_module("restore_point_info", {"store_path": fault_host.store, "journal": 10})
    assert info.rc == 0, info.everything[-2000:]
    assert any(e.get("outcome") == "failed" for e in info.result["journal"])
    assert_no_secret(info, [secret_old, secret_new])


# ------------------------------------------------------------------------------------------------ hashes


@pytest.mark.fault("secret-hash-in-result")
def test_the_sha256_of_a_short_secret_file_is_never_in_a_result(fault_host):
    """A file holding only a short password: its full sha256 in a result lets anyone confirm guesses offline.
    Plans, diffs and check-mode predictions show a 12-digit prefix."""
    old, new = b"hunter2\n", b"letmein\n"
    secret_file = os.path.join(fault_host.etc, "redis.pass")
    write(secret_file, old, 0o600)
    capture(fault_host)
    write(secret_file, new, 0o600)
    full = [hashlib.sha256(body).hexdigest() for body in (old, new)]
    runs = [restore(fault_host, check=True), restore(fault_host, module="config_restore", check=True),
            restore(fault_host)]
    for run in runs:
        assert run.rc == 0 and not run.failed, run.everything[-3000:]
        assert_no_secret(run, full + ["hunter2", "letmein", SECRET])
        change = [c for c in run.result["plan"]["config"]["changes"] if c["path"] == secret_file][0]
        assert (change["from"]["sha256"], change["to"]["sha256"]) == (full[1][:12], full[0][:12])
    assert changes(runs[0]) == changes(runs[2]), "check mode did not predict the real run"
    with open(secret_file, "rb") as stream:
        assert stream.read() == old


@pytest.mark.fault("secret-hash-in-corrupt-blob-failure")
def test_a_corrupt_blob_of_a_secret_file_is_named_by_a_prefix(fault_host):
    secret_file = os.path.join(fault_host.etc, "token")
    write(secret_file, b"tok-4471\n", 0o600)
    capture(fault_host)
    write(secret_file, b"tok-9999\n", 0o600)
    sha = hashlib.sha256(b"tok-4471\n").hexdigest()
    with open(os.path.join(fault_host.store, "blobs", "sha256", sha[:2], sha[2:]), "wb") as stream:
        stream.write(b"tampered\n")
    broken = fault_host.state()
    run = restore(fault_host)
    assert_clear_failure(run, secret_file, sha[:12], "nothing was changed", secrets=[sha, "tok-4471", "tok-9999"])
    assert fault_host.state() == broken
