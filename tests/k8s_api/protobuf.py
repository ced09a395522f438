"""Reads the few protobuf request bodies kubectl sends to the Kubernetes API test double (not a Kubernetes
implementation).

kubectl's typed commands (`kubectl create configmap|secret|namespace`) send application/vnd.kubernetes.protobuf,
whatever the server prefers. This decodes those bodies, for ConfigMap, Secret and Namespace and the ObjectMeta fields
name, generateName, namespace, labels and annotations, into the JSON form the double stores. Answers are always JSON
(kubectl accepts it).
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


def _object_meta(data):
    meta = {}
    names = {1: "name", 2: "generateName", 3: "namespace"}
    for number, value in values(data):
        if number in names and value:  # proto3 sends empty strings for unset fields
            meta[names[number]] = value.decode()
        elif number in (11, 12):
            key, val = _map_entry(value)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = val.decode()
    return meta


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


DECODERS = {"ConfigMap": _configmap, "Secret": _secret, "Namespace": _namespace}


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
