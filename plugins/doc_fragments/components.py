# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by tools/sync_components.py from the component registry (plugins/module_utils/_components): do not edit.

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  components:
    description:
      - 'With O(state=present), what to capture: one entry per component, each with its own options.'
      - 'Restores apply the components a point holds in this order: migrations, database, packages, config, release,
        images, kubernetes; a failed restore re-applies the safety point in the reverse order.'
    type: dict
    suboptions:
      migrations:
        description:
          - The schema revision a command such as C(alembic current) prints, restored with the configured downgrade
            command.
        type: dict
        suboptions:
          current:
            description:
              - 'A command that prints the revision (for example C(alembic current)): a string split like a shell
                would, or an argv list; never run through a shell.'
            type: raw
            required: true
          downgrade:
            description:
              - The command that goes back to the revision, with C(%s) set to it (for example C(alembic downgrade
                %s)).
            type: raw
            required: true
          upgrade:
            description:
              - Tried when the downgrade fails (a safety revert may have to go forward), with C(%s) set to the revision.
            type: raw
          chdir:
            description:
              - The absolute directory the commands run in.
            type: str
          timeout:
            description:
              - Seconds each command may take (1 to 86400).
            type: int
            default: 600
          revision_regex:
            description:
              - A regular expression with a C((?P<revision>...)) group that finds the revision in what C(current)
                prints; by default a revision is the first word of a line.
            type: str
          base:
            description:
              - The target of a downgrade when the point holds no revision.
            type: str
            default: base
      database:
        description:
          - A PostgreSQL database dumped into the point's C(dumps/<id>/) with sha256 and per-table row counts, restored
            through the pg_restore flow (safety dump first, writes blocked, counts verified).
        type: dict
        suboptions:
          db:
            description:
              - The database to dump or restore into. At most 63 bytes (PostgreSQL would cut a longer name and reach
                another database); any characters, passed to the client tools as one argument, never through a shell.
            type: str
            required: true
            aliases:
              - login_db
          login_host:
            description:
              - Host of the server. Empty means the default unix socket. O(components.database.login_unix_socket)
                wins over it.
            type: str
            default: ''
          port:
            description:
              - Port of the server (1-65535).
            type: int
            default: 5432
            aliases:
              - login_port
          login_user:
            description:
              - The role to connect as.
            type: str
            default: postgres
          login_password:
            description:
              - The password of O(components.database.login_user). It reaches psycopg2 directly and pg_dump/pg_restore
                through a temporary 0600 passfile (E(PGPASSFILE)), never their command line, and never appears in
                results or errors.
              - Without it, the usual libpq sources apply (E(PGPASSWORD), E(PGPASSFILE), C(~/.pgpass)).
              - A password holding a NUL byte or a line break is refused (without showing it).
            type: str
            default: ''
          login_unix_socket:
            description:
              - Absolute path of the directory of the server's unix socket (for peer or password login over the
                socket).
            type: str
            default: ''
          maintenance_db:
            description:
              - The database to connect to for C(CREATE DATABASE), C(DROP DATABASE) and renames (scratch databases
                for verification, C(mode=recreate) of pg_restore and reverts).
            type: str
            default: postgres
          connect_timeout:
            description:
              - Seconds to wait for a connection (1-3600).
            type: int
            default: 10
          bin_dir:
            description:
              - Absolute path of the directory holding C(pg_dump) and C(pg_restore).
              - By default the first of E(PATH) and C(/usr/lib/postgresql/*/bin) whose major version matches the
                server's (or the closest newer one, as pg_dump reads older servers).
            type: path
          format:
            description:
              - C(custom) is one compressed file; C(directory) is one file per table and allows parallel O(components.database.jobs).
              - Always explicit; never guessed from a file name.
            type: str
            default: custom
            choices:
              - custom
              - directory
          jobs:
            description:
              - Parallel pg_dump workers (1-256). More than one only with O(components.database.format=directory).
            type: int
            default: 1
          compress:
            description:
              - gzip level 0-9 passed to C(pg_dump -Z). Default is pg_dump's own (6). On small machines a low level
                is much faster (1 is often twice as fast as 6 for a few percent more bytes).
            type: int
          schemas:
            description:
              - Dump only these schemas (C(pg_dump -n) patterns). Each pattern must match something (C(--strict-names)).
            type: list
            elements: str
          exclude_schemas:
            description:
              - Do not dump these schemas (C(pg_dump -N) patterns).
            type: list
            elements: str
          tables:
            description:
              - Dump only these tables (C(pg_dump -t) patterns). Each pattern must match something (C(--strict-names)).
            type: list
            elements: str
          exclude_tables:
            description:
              - Do not dump these tables (C(pg_dump -T) patterns).
            type: list
            elements: str
          mode:
            description:
              - How a restore puts the dump back, as M(fleetops.rollback.pg_restore)'s O(fleetops.rollback.pg_restore#module:mode).
            type: str
            default: clean
            choices:
              - clean
              - recreate
          block_writes:
            description:
              - Refuse new connections and end the others while a restore runs, as M(fleetops.rollback.pg_restore)
                does.
            type: bool
            default: false
      packages:
        description:
          - Exact pip versions of virtualenvs (editable and VCS installs included) and apt/dpkg versions of named
            packages; a restore uses one pip call and one apt-get call.
        type: dict
        suboptions:
          pip:
            description:
              - Python environments, one entry each. See M(fleetops.rollback.package_snapshot) for the details.
            type: list
            elements: dict
            suboptions:
              virtualenv:
                description:
                  - The virtualenv directory (absolute); give it or O(components.packages.pip.executable).
                type: path
              executable:
                description:
                  - A python or pip (absolute) of an environment that is not a virtualenv.
                type: path
              find_links:
                description:
                  - Wheelhouse directories or URLs where a restore finds the exact versions (pip C(--find-links)).
                type: list
                elements: str
              index_url:
                description:
                  - A package index URL (pip C(--index-url)); never with credentials in it.
                type: str
              prune_extra:
                description:
                  - A restore removes what the point does not have.
                type: bool
                default: true
              build_isolation:
                description:
                  - pip builds sdists in an isolated environment.
                type: bool
                default: true
              use_pip_config:
                description:
                  - Let pip read its config files and E(PIP_*) variables (by default they are ignored, so a restore
                    depends only on the point and the source given).
                type: bool
                default: false
          apt:
            description:
              - Debian packages.
            type: dict
            suboptions:
              names:
                description:
                  - The Debian packages whose versions are pinned.
                type: list
                elements: str
                required: true
              hold:
                description:
                  - C(apt-mark hold) them after a restore.
                type: bool
                default: false
              prune_extra:
                description:
                  - A named package that was not installed at capture is removed by a restore.
                type: bool
                default: true
              dpkg_lock_timeout:
                description:
                  - Seconds to wait for another apt or dpkg run's lock (0 to 3600); then the failure names the process
                    holding it and changes nothing.
                type: int
                default: 300
      config:
        description:
          - Files and trees, byte-exact with mode and owner; an optional validate command (such as C(nginx -t -c
            %s)) checks each file before it is swapped in.
        type: dict
        suboptions:
          paths:
            description:
              - Absolute files or directories (a directory is captured whole), or V({path, validate}) where C(validate)
                is a command with C(%s) run on each candidate file before it is swapped in (for example C(nginx
                -t -c %s)).
            type: list
            elements: raw
            required: true
      release:
        description:
          - A C(current) symlink over release directories (the ansistrano / capistrano layout), flipped atomically.
        type: dict
        suboptions:
          path:
            description:
              - The C(current) symlink over release directories (an absolute path).
            type: str
            required: true
          validate:
            description:
              - A command run with C(%s) set to the release directory before the flip.
            type: str
      images:
        description:
          - Docker C(repo:tag -> image id) and the containers running them; a restore retags, recreates the containers
            with their own settings and waits until they run and are healthy.
        type: dict
        suboptions:
          refs:
            description:
              - Docker C(repo:tag) references whose image ids are recorded. A restore points each back; the image
                it pointed at keeps a C(rollback-<time>) tag.
            type: list
            elements: raw
            required: true
          containers:
            description:
              - 'C(by_image) (every container configured with one of the refs), C(none), or a list of container
                names: the containers recreated on the recorded images with their own settings.'
            type: raw
            default: by_image
          docker_host:
            description:
              - 'The Docker engine: a C(unix://) socket or C(tcp://127.0.0.1:PORT); default E(DOCKER_HOST) or the
                local socket. Needs the Docker SDK for Python on the host.'
            type: str
          wait_timeout:
            description:
              - Seconds to wait for the recreated containers to run (and be healthy, with a HEALTHCHECK).
            type: float
            default: 120.0
      kubernetes:
        description:
          - 'Deployments, StatefulSets and DaemonSets of one namespace: the pod template, replicas and revision,
            the ConfigMaps they read by content and the Secrets by salted hash; a restore patches the recorded template
            back (ConfigMaps first) and waits for the rollout.'
        type: dict
        suboptions:
          kubeconfig:
            description:
              - 'Path of the kubeconfig file. Default: E(KUBECONFIG), then C(~/.kube/config), as kubectl reads it.'
              - Not needed with O(components.kubernetes.host) (and O(kubernetes_api_key) when the server asks for
                a token).
              - Read from E(K8S_AUTH_KUBECONFIG) when not given.
            type: path
          context:
            description:
              - 'The kubeconfig context to use. Default: the file''s C(current-context). A context the file does
                not have is refused with the list of those it has.'
              - Read from E(K8S_AUTH_CONTEXT) when not given.
            type: str
          host:
            description:
              - URL of the API server, for example C(https://127.0.0.1:6443). With a kubeconfig it replaces the
                context's server; without one, it is the whole connection.
              - Read from E(K8S_AUTH_HOST) when not given.
            type: str
          validate_certs:
            description:
              - 'Whether the server''s TLS certificate is checked. Default: the kubeconfig''s setting, else C(true).'
              - Read from E(K8S_AUTH_VERIFY_SSL) when not given.
            type: bool
            aliases:
              - verify_ssl
          ca_cert:
            description:
              - 'Path of the CA bundle that signed the server''s certificate. Default: the kubeconfig''s.'
              - Read from E(K8S_AUTH_SSL_CA_CERT) when not given.
            type: path
            aliases:
              - ssl_ca_cert
          namespace:
            description:
              - 'The namespace of the workloads. Default: the context''s namespace, else C(default). A namespace
                the cluster does not have is refused before anything is read or changed.'
              - Read from E(K8S_AUTH_NAMESPACE) when not given.
            type: str
          workloads:
            description:
              - 'The workloads captured: each a dict with C(kind) (C(Deployment) by default, C(StatefulSet), C(DaemonSet)
                or kubectl''s short names C(deploy), C(sts), C(ds)) and exactly one of C(name) or C(selector) (a
                label selector in kubectl''s syntax, such as C(app=web,tier!=cache)), or a string C(deployment/web),
                C(sts/db) or C(web) (a Deployment).'
              - A selector that matches nothing is refused when the point is captured.
            type: list
            elements: raw
            required: true
          configmaps:
            description:
              - Whether the ConfigMaps the pod templates reference are captured by content and restored, before
                the workloads. An immutable ConfigMap whose data differs from the point is refused, naming it.
            type: bool
            default: true
          secrets:
            description:
              - 'What is done with the Secrets the pod templates reference. Their values are never stored: a point
                holds each one''s name, type and a salted sha256 of its data only, so no Secret value can leak from
                a store, a result, a diff or a journal. Restoring Secrets is a separate, explicit step with your
                secret manager.'
              - 'C(report): a Secret whose data changed since the capture is reported in the plan and a warning;
                C(verify): the restore is refused before anything changes; C(ignore): Secrets are not looked at.'
            type: str
            default: report
            choices:
              - report
              - verify
              - ignore
          replicas:
            description:
              - Whether the recorded C(spec.replicas) is restored. Set C(false) when a HorizontalPodAutoscaler owns
                the replica count.
            type: bool
            default: true
          wait_timeout:
            description:
              - Seconds to wait for each restored rollout to complete (observed generation, every replica updated,
                ready and available). A rollout that reports C(ProgressDeadlineExceeded) or misses this deadline
                fails the restore, and the safety point is re-applied.
            type: float
            default: 300.0
  database_password:
    description:
      - 'With O(state=restored), the password of the O(components.database.login_user) that restores the database
        component, for this run only: points never store passwords.'
      - Without it, the usual libpq sources on the host apply (E(PGPASSWORD), E(PGPASSFILE), C(~/.pgpass)) or a
        unix socket with peer authentication.
    type: str
  kubernetes_api_key:
    description:
      - 'With O(state=restored) or a capture, the bearer token for the kubernetes component''s API server, for this
        run only: points never store tokens. Without it, the kubeconfig''s credentials apply.'
    type: str
"""
