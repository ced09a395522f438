"""Object store of the Kubernetes API test double: objects, a global resourceVersion, and watch events.

Part of a test double for the collection's tests, not a Kubernetes implementation.
"""
import copy
import datetime
import threading
import uuid


# Kinds whose objects have a spec but no metadata.generation in Kubernetes 1.32 (pods got one in 1.33).
NO_GENERATION = ("pods",)


def now_rfc3339():
    """The current UTC time, to the second, as the API writes timestamps."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StoreError(Exception):
    """An API error with its HTTP code and Status reason."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}


class Store:
    """Objects keyed by (resource, namespace, name); every write bumps one global resourceVersion and logs a watch event.

    resource is the API's plural with its group, e.g. "deployments.apps" or "configmaps" (core group).
    """

    def __init__(self, history=20000):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects = {}
        self.rv = 0
        self.events = []  # (rv, type, resource, namespace, object copy)
        self.history = history
        self.closed = False

    # --- reads -------------------------------------------------------------------------------------------------
    def get(self, resource, namespace, name):
        with self.lock:
            obj = self.objects.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource, namespace=None):
        """Copies of the objects of one resource, in one namespace or (None) all, sorted by namespace and name."""
        with self.lock:
            keys = sorted(k for k in self.objects if k[0] == resource and (namespace is None or k[1] == namespace))
            return [copy.deepcopy(self.objects[k]) for k in keys], str(self.rv)

    def owned_by(self, uid):
        """Keys of the objects with an ownerReference to uid."""
        with self.lock:
            return [k for k, o in self.objects.items()
                    if any(ref.get("uid") == uid for ref in o.get("metadata", {}).get("ownerReferences") or [])]

    # --- writes ------------------------------------------------------------------------------------------------
    def _log(self, kind, resource, namespace, obj):
        self.events.append((self.rv, kind, resource, namespace, copy.deepcopy(obj)))
        if len(self.events) > self.history:
            del self.events[:len(self.events) - self.history]
        self.changed.notify_all()

    def create(self, resource, namespace, obj, dry_run=False):
        """Store a new object: uid, creationTimestamp, generation 1, a new resourceVersion. 409 if the name is taken."""
        with self.lock:
            meta = obj.setdefault("metadata", {})
            name = meta.get("name")
            if (resource, namespace, name) in self.objects:
                raise StoreError(409, "AlreadyExists", '%s "%s" already exists' % (resource, name),
                                 {"name": name})
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if namespace is not None:
                meta["namespace"] = namespace
            if "spec" in obj and resource not in NO_GENERATION:
                meta["generation"] = 1
            if dry_run:
                meta.pop("resourceVersion", None)
                return copy.deepcopy(obj)
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            self.objects[(resource, namespace, name)] = copy.deepcopy(obj)
            self._log("ADDED", resource, namespace, obj)
            return copy.deepcopy(obj)

    def update(self, resource, namespace, obj, dry_run=False, check_rv=True):
        """Replace a stored object. uid and creationTimestamp are kept; generation goes up when spec changes.

        A resourceVersion in obj that is not the stored one is a 409 Conflict (optimistic concurrency), as in the API.
        An update that changes nothing keeps the resourceVersion and logs no event, as in the API.
        """
        with self.lock:
            meta = obj.setdefault("metadata", {})
            name = meta.get("name")
            old = self.objects.get((resource, namespace, name))
            if old is None:
                raise StoreError(404, "NotFound", '%s "%s" not found' % (resource, name), {"name": name})
            old_meta = old["metadata"]
            given_rv = meta.get("resourceVersion")
            if check_rv and given_rv and given_rv != old_meta.get("resourceVersion"):
                raise StoreError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has been modified;'
                                 ' please apply your changes to the latest version and try again' % (resource, name),
                                 {"name": name})
            for key in ("uid", "creationTimestamp"):
                meta[key] = old_meta[key]
            if namespace is not None:
                meta["namespace"] = namespace
            if "generation" in old_meta:
                meta["generation"] = old_meta["generation"] + (1 if obj.get("spec") != old.get("spec") else 0)
            meta["resourceVersion"] = old_meta.get("resourceVersion")
            if obj == old:
                return copy.deepcopy(obj)
            if dry_run:
                return copy.deepcopy(obj)
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            self.objects[(resource, namespace, name)] = copy.deepcopy(obj)
            self._log("MODIFIED", resource, namespace, obj)
            return copy.deepcopy(obj)

    def delete(self, resource, namespace, name, dry_run=False):
        """Remove an object, and (like the garbage collector, at once) every object it owns. Returns the removed object."""
        with self.lock:
            obj = self.objects.get((resource, namespace, name))
            if obj is None:
                raise StoreError(404, "NotFound", '%s "%s" not found' % (resource, name), {"name": name})
            if dry_run:
                return copy.deepcopy(obj)
            del self.objects[(resource, namespace, name)]
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self._log("DELETED", resource, namespace, obj)
            for key in self.owned_by(obj["metadata"]["uid"]):
                if key in self.objects:
                    self.delete(*key)
            return copy.deepcopy(obj)

    # --- watch -------------------------------------------------------------------------------------------------
    def events_after(self, rv, resource, namespace=None):
        """Events of one resource after resourceVersion rv. None when rv is older than the kept history (410 Gone)."""
        with self.lock:
            if self.events and rv < self.events[0][0] - 1 and len(self.events) >= self.history:
                return None
            return [(erv, kind, copy.deepcopy(obj)) for erv, kind, res, ns, obj in self.events
                    if erv > rv and res == resource and (namespace is None or ns == namespace)]

    def wait(self, rv, timeout):
        """Block until the resourceVersion passes rv, the store is closed, or timeout seconds pass."""
        with self.lock:
            if self.rv <= rv and not self.closed:
                self.changed.wait(timeout)
            return self.rv

    def close(self):
        with self.lock:
            self.closed = True
            self.changed.notify_all()
