"""The three patch kinds of the Kubernetes API, for the API test double (not a Kubernetes implementation).

- JSON patch (RFC 6902, application/json-patch+json): add, remove, replace, move, copy, test.
- JSON merge patch (RFC 7386, application/merge-patch+json): maps merge, null deletes, lists are replaced.
- Strategic merge patch (application/strategic-merge-patch+json), SIMPLIFIED: the lists in MERGE_KEYS are merged
  element by element on their key (containers, volumes, env ... by name); every other list is replaced, as in a
  merge patch. The directives kubectl sends are honoured: "$patch": "delete" / "replace" / "merge",
  "$setElementOrder/<list>", "$retainKeys" and "$deleteFromPrimitiveList/<list>". The real server reads merge keys
  and strategies from the Go types; this table covers the fields of the workloads the tests use.
"""
import copy
import json

# list field name -> merge key (the real patchMergeKey of the Go types for these fields)
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
}


class PatchError(Exception):
    """A patch that cannot be applied (the API answers 422 or 400)."""


# --- JSON patch ------------------------------------------------------------------------------------------------
def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError("invalid JSON pointer %r" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc, parts):
    node = doc
    for part in parts[:-1]:
        if isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                raise PatchError("path element %r not found" % part) from None
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise PatchError("path element %r not found" % part)
    return node


def _get(doc, parts):
    if not parts:
        return doc
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, list):
        try:
            return parent[int(last)]
        except (ValueError, IndexError):
            raise PatchError("index %r out of range" % last) from None
    if not isinstance(parent, dict) or last not in parent:
        raise PatchError("path %r not found" % "/".join(parts))
    return parent[last]


def _remove(doc, parts):
    value = _get(doc, parts)
    parent = _parent(doc, parts)
    if isinstance(parent, list):
        del parent[int(parts[-1])]
    else:
        del parent[parts[-1]]
    return value


def _add(doc, parts, value, replace=False):
    if not parts:
        return value
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
            return doc
        try:
            index = int(last)
        except ValueError:
            raise PatchError("invalid list index %r" % last) from None
        if index < 0 or index > len(parent) - (1 if replace else 0):
            raise PatchError("index %r out of range" % last)
        if replace:
            parent[index] = value
        else:
            parent.insert(index, value)
    elif isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError("replace operation does not apply: doc is missing key: /%s" % "/".join(parts))
        parent[last] = value
    else:
        raise PatchError("cannot add to a scalar at %r" % "/".join(parts))
    return doc


def json_patch(doc, operations):
    """Apply an RFC 6902 operation list to a copy of doc."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError("invalid JSON patch operation %r" % (op,))
        kind, parts = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "replace":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")), replace=True)
        elif kind == "remove":
            _remove(doc, parts)
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_get(doc, source))
            doc = _add(doc, parts, value)
        elif kind == "test":
            if _get(doc, parts) != op.get("value"):
                raise PatchError("testing value %s failed" % op["path"])
        else:
            raise PatchError("unknown JSON patch operation %r" % kind)
    return doc


# --- merge patch -----------------------------------------------------------------------------------------------
def merge_patch(doc, patch):
    """RFC 7386: returns a new document."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- strategic merge patch (simplified) ------------------------------------------------------------------------
def _strategic_map(doc, patch):
    if not isinstance(doc, dict):
        doc = {}
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise PatchError("unknown patch directive %r" % directive)
    result = copy.deepcopy(doc)
    orders = {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _strategic_map(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and key in MERGE_KEYS:
            result[key] = _strategic_list(result.get(key), value, MERGE_KEYS[key])
        else:
            result[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if isinstance(result.get(field), list) and field in MERGE_KEYS:
            result[field] = _ordered(result[field], order, MERGE_KEYS[field])
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain or k not in doc}
    return result


def _strategic_list(current, patch, key):
    current = copy.deepcopy(current) if isinstance(current, list) else []
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and p.get("$patch") == "replace")]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError("map in a list must have the merge key %r: %r" % (key, item))
        index = next((i for i, c in enumerate(current) if isinstance(c, dict) and c.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del current[index]
        elif index is None:
            current.append(_strategic_map({}, item))
        else:
            current[index] = _strategic_map(current[index], item)
    return current


def _ordered(items, order, key):
    wanted = [o.get(key) for o in order if isinstance(o, dict)]
    rank = {value: i for i, value in enumerate(wanted)}
    listed = sorted((i for i in items if i.get(key) in rank), key=lambda i: rank[i.get(key)])
    return listed + [i for i in items if i.get(key) not in rank]


def strategic_merge_patch(doc, patch):
    """Strategic merge patch with the simplifications described in the module docstring."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    result = _strategic_map(doc, patch)
    return result if result is not None else {}


def apply(doc, content_type, body):
    """Apply body (bytes) of the given Content-Type to doc. Raises PatchError; returns the new document."""
    try:
        patch = json.loads(body or b"null")
    except ValueError as exc:
        raise PatchError("the patch is not valid JSON: %s" % exc) from None
    kind = (content_type or "").split(";")[0].strip()
    if kind == "application/json-patch+json":
        return json_patch(doc, patch)
    if kind == "application/merge-patch+json":
        if not isinstance(patch, dict):
            raise PatchError("a merge patch must be a JSON object")
        return merge_patch(doc, patch)
    if kind == "application/strategic-merge-patch+json":
        return strategic_merge_patch(doc, patch)
    raise PatchError("unsupported patch type %r" % kind)
