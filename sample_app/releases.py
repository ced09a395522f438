"""The sample application's releases: version, required config keys and config, in one place.

Release 1 (1.0.0) is healthy with its own config. Release 2 (2.0.0) is the bad one: it requires
CACHE_URL, which its config does not set, so /health answers 503; deploying it also changes
app.env (LOG_LEVEL and a rotated SECRET_KEY) and adds conf.d/20-tuning.env. Release 3 (3.0.0)
is healthy and requires nothing that release 1 did not. Release 4 (4.0.0) is bad in a way /health
does not see: its conf.d/30-errors.env sets ERROR_RATE=0.3, so 30% of the requests to / answer 500;
only the metrics (app_requests_total) show it.

The secret values are fixed test data so that tests can prove they never leak (logs, HTTP
responses, rollback diffs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Keys whose values are secrets: never printed by the app, redacted by the rollback tool.
SECRET_KEYS = ("SECRET_KEY", "DB_PASSWORD")

_SECRET_1 = "r1-secret-9f2c1e7a4b3d"
_SECRET_2 = "r2-secret-rotated-51c0de"
_DB_PASSWORD = "db-pass-5d8a3c71"

_BASE_REQUIRES = ("APP_NAME", "WORKERS", "DB_HOST", "SECRET_KEY", "DB_PASSWORD")


@dataclass(frozen=True)
class Release:
    number: int
    version: str
    requires: tuple
    app_env: tuple                       # (KEY, VALUE) pairs, written in this order
    conf_d: dict = field(default_factory=dict)  # file name -> ((KEY, VALUE), ...)

    @property
    def metadata(self):
        """The release.json written next to app.py."""
        return {"version": self.version, "requires": list(self.requires)}

    def config(self):
        """The effective KEY -> VALUE config this release's files produce (app.env, then conf.d sorted)."""
        merged = dict(self.app_env)
        for name in sorted(self.conf_d):
            merged.update(dict(self.conf_d[name]))
        return merged

    def secret_values(self):
        """The secret values in this release's config (what must never leak)."""
        return [value for key, value in self.config().items() if key in SECRET_KEYS]


def _app_env(log_level, secret_key):
    """The .env of a release: the releases differ in their log level and secret key."""
    return (("APP_NAME", "sample"), ("LOG_LEVEL", log_level), ("WORKERS", "4"), ("DB_HOST", "127.0.0.1"),
            ("DB_NAME", "app"), ("SECRET_KEY", secret_key), ("DB_PASSWORD", _DB_PASSWORD))


RELEASES = {
    1: Release(
        number=1,
        version="1.0.0",
        requires=_BASE_REQUIRES,
        app_env=_app_env(log_level="info", secret_key=_SECRET_1),
        conf_d={"10-features.env": (("FEATURE_SEARCH", "on"),)},
    ),
    2: Release(
        number=2,
        version="2.0.0",
        requires=_BASE_REQUIRES + ("CACHE_URL",),
        app_env=_app_env(log_level="debug", secret_key=_SECRET_2),
        conf_d={
            "10-features.env": (("FEATURE_SEARCH", "on"),),
            "20-tuning.env": (("WORKERS", "8"), ("HTTP_TIMEOUT", "30")),
        },
    ),
    3: Release(
        number=3,
        version="3.0.0",
        requires=_BASE_REQUIRES,
        app_env=_app_env(log_level="warning", secret_key=_SECRET_1),
        conf_d={"10-features.env": (("FEATURE_SEARCH", "on"), ("FEATURE_EXPORT", "on"))},
    ),
    4: Release(
        number=4,
        version="4.0.0",
        requires=_BASE_REQUIRES,
        app_env=_app_env(log_level="info", secret_key=_SECRET_1),
        conf_d={
            "10-features.env": (("FEATURE_SEARCH", "on"), ("FEATURE_EXPORT", "on")),
            "30-errors.env": (("ERROR_RATE", "0.3"),),
        },
    ),
}

ALL_SECRET_VALUES = sorted({value for release in RELEASES.values() for value in release.secret_values()})


def get(number):
    """The release with this number, or ValueError naming the known ones."""
    try:
        return RELEASES[int(number)]
    except (KeyError, ValueError, TypeError):
        known = ", ".join(str(n) for n in sorted(RELEASES))
        raise ValueError(f"unknown release {number!r}; known releases: {known}") from None


def render_env(pairs, header):
    """KEY=VALUE file text with a comment header."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"{key}={value}" for key, value in pairs]
    return "\n".join(lines) + "\n"
