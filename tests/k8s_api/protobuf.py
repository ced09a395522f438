"""Reads the few protobuf request bodies kubectl sends to the Kubernetes API test double (not a Kubernetes
implementation).

kubectl's typed commands (`kubectl create configmap|secret|namespace|deployment`) send
application/vnd.kubernetes.protobuf, whatever the server prefers. This decodes those bodies into the JSON form the
double stores: ConfigMap, Secret, Namespace, and of a Deployment what `kubectl create deployment` sets (replicas,
selector, template labels, containers with name, image, command, args, workingDir, ports, env). Of ObjectMeta: name,
generateName, namespace, labels and annotations. A field the double does not read is refused (415), never dropped:
the Go side sends every unset field as an empty value, and only those are skipped. Answers are always JSON (kubectl
accepts it).
"""
import base64

MAGIC = b"k8s\x00"


class ProtobufError(Exception):
    pass


def _varint(data, pos):
    shift = value = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def fields(data):
    """(field number, wire type, value) of one message; value is an int (varint) or bytes (length-delimited)."""
    pos, out = 0, []
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ProtobufError("unsupported wire type %d" % wire)
        out.append((number, wire, value))
    return out


def values(data):
    """(field number, value) of one message."""
    return [(number, value) for number, _wire, value in fields(data)]


def _map_entry(data):
    entry = dict(values(data))
    return entry.get(1, b"").decode(), entry.get(2, b"")


# field number -> (JSON name, how): "str", "int" (zero is unset), "ptr" (a pointer: present is set, even 0),
# "bool", "strs" (repeated string), "map" (map<string, string>), "skip" (set by the server), a schema (a message),
# or ("list", schema) (a repeated message).
OBJECT_META = {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"), 4: ("selfLink", "skip"),
               5: ("uid", "skip"), 6: ("resourceVersion", "skip"), 7: ("generation", "skip"),
               8: ("creationTimestamp", "skip"), 9: ("deletionTimestamp", "skip"),
               10: ("deletionGracePeriodSeconds", "skip"), 11: ("labels", "map"), 12: ("annotations", "map")}
CONTAINER_PORT = {1: ("name", "str"), 2: ("hostPort", "int"), 3: ("containerPort", "int"), 4: ("protocol", "str"),
                  5: ("hostIP", "str")}
ENV_VAR = {1: ("name", "str"), 2: ("value", "str")}
CONTAINER = {1: ("name", "str"), 2: ("image", "str"), 3: ("command", "strs"), 4: ("args", "strs"), 5: ("workingDir", "str"),
             6: ("ports", ("list", CONTAINER_PORT)), 7: ("env", ("list", ENV_VAR))}
POD_SPEC = {2: ("containers", ("list", CONTAINER))}
POD_TEMPLATE = {1: ("metadata", OBJECT_META), 2: ("spec", POD_SPEC)}
LABEL_SELECTOR = {1: ("matchLabels", "map")}
STRATEGY = {1: ("type", "str")}
DEPLOYMENT_SPEC = {1: ("replicas", "ptr"), 2: ("selector", LABEL_SELECTOR), 3: ("template", POD_TEMPLATE),
                   4: ("strategy", STRATEGY), 5: ("minReadySeconds", "int"), 6: ("revisionHistoryLimit", "ptr"),
                   7: ("paused", "bool"), 9: ("progressDeadlineSeconds", "ptr")}
DEPLOYMENT = {1: ("metadata", OBJECT_META), 2: ("spec", DEPLOYMENT_SPEC), 3: ("status", "skip")}


def message(data, schema, what):
    """Decode one message by its schema; refuses a set field the schema does not know."""
    obj = {}
    for number, value in values(data):
        if number not in schema:
            if value in (b"", 0):
                continue
            raise ProtobufError("the test double does not read field %d of %s" % (number, what))
        name, how = schema[number]
        if how == "skip":
            continue
        if how == "str":
            if value:
                obj[name] = value.decode()
        elif how in ("int", "bool"):
            if value:
                obj[name] = value if how == "int" else True
        elif how == "ptr":
            obj[name] = value
        elif how == "strs":
            obj.setdefault(name, []).append(value.decode())
        elif how == "map":
            key, val = _map_entry(value)
            obj.setdefault(name, {})[key] = val.decode()
        elif isinstance(how, tuple):
            obj.setdefault(name, []).append(message(value, how[1], name))
        else:
            sub = message(value, how, name)
            if sub:
                obj[name] = sub
    return obj


def _object_meta(data):
    return message(data, OBJECT_META, "metadata")


def _configmap(data):
    obj = {}
    for number, value in values(data):
        if number == 1:
            obj["metadata"] = _object_meta(value)
        elif number == 2:
            key, val = _map_entry(value)
            obj.setdefault("data", {})[key] = val.decode()
        elif number == 3:
            key, val = _map_entry(value)
            obj.setdefault("binaryData", {})[key] = base64.b64encode(val).decode()
        elif number == 4:
            obj["immutable"] = bool(value)
    return obj


def _secret(data):
    obj = {}
    for number, value in values(data):
        if number == 1:
            obj["metadata"] = _object_meta(value)
        elif number == 2:
            key, val = _map_entry(value)
            obj.setdefault("data", {})[key] = base64.b64encode(val).decode()
        elif number == 3 and value:
            obj["type"] = value.decode()
        elif number == 4:
            obj["stringData"] = obj.get("stringData", {})
            key, val = _map_entry(value)
            obj["stringData"][key] = val.decode()
        elif number == 5:
            obj["immutable"] = bool(value)
    return obj


def _namespace(data):
    return {"metadata": _object_meta(v) for n, v in values(data) if n == 1}


def _deployment(data):
    return message(data, DEPLOYMENT, "Deployment")


DECODERS = {"ConfigMap": _configmap, "Secret": _secret, "Namespace": _namespace, "Deployment": _deployment}


def decode(body):
    """A protobuf-encoded Kubernetes object (with its k8s\\0 envelope) -> a JSON-style dict."""
    if not body.startswith(MAGIC):
        raise ProtobufError("not a Kubernetes protobuf body")
    envelope = dict(values(body[len(MAGIC):]))
    type_meta = {n: v.decode() for n, v in values(envelope.get(1, b""))}
    api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
    if kind not in DECODERS:
        raise ProtobufError("the test double reads protobuf only for %s, not %r" % (", ".join(sorted(DECODERS)), kind))
    obj = DECODERS[kind](envelope.get(2, b""))
    obj.update(apiVersion=api_version, kind=kind)
    return obj
