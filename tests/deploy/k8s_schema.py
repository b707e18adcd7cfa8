"""Checks Kubernetes objects against the API schema of their kind.

The schema is the generated models of Debian's python3-kubernetes: each
model class has openapi_types (attribute -> type: 'str', 'int', 'bool',
'object' for int-or-string, 'list[T]', 'dict(str, T)' or another model)
and attribute_map (attribute -> JSON key), and the setter of a required
field refuses None. k8s-api-additions.json adds what those models (the
1.22 API) predate and the enumerations of the fields used.

validate(obj) -> list of errors, each "Kind/name: path: what": an unknown
field, a missing required field, a wrong type, a value outside an enum,
a bad resource quantity.
"""
import inspect
import json
import os
import re

from kubernetes import client

_HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_HERE, "k8s-api-additions.json")) as _f:
    _ADD = json.load(_f)

# A resource quantity (the API's serialization format): a signed decimal,
# then a binary (Ki..Ei) or decimal (n u m k M G T P E) suffix or an
# exponent.
_QUANTITY = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)"
                       r"([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?\Z")


class _Model:
    """One model's fields: JSON key -> (attribute, type), the required
    JSON keys."""

    def __init__(self, fields, required):
        self.fields = fields
        self.required = required


_cache = {}


def _model(name):
    if name in _cache:
        return _cache[name]
    m = None
    if name in _ADD["types"]:
        t = _ADD["types"][name]
        m = _Model({k: tuple(v) for k, v in t["fields"].items()},
                   set(t["required"]))
    else:
        cls = getattr(client, name, None)
        if cls is not None and hasattr(cls, "openapi_types"):
            fields = {cls.attribute_map[a]: (a, t)
                      for a, t in cls.openapi_types.items()}
            required = set()
            for a in cls.openapi_types:
                setter = getattr(cls, a).fset
                if "must not be `None`" in inspect.getsource(setter):
                    required.add(cls.attribute_map[a])
            for key, (attr, t) in _ADD["fields"].get(name, {}).items():
                fields[key] = (attr, t)
            m = _Model(fields, required)
    _cache[name] = m
    return m


def model_for(api_version, kind):
    """The model class name of an object: V1StatefulSet for apps/v1
    StatefulSet, V1PodDisruptionBudget for policy/v1 ..."""
    version = api_version.split("/")[-1]
    return version[0].upper() + version[1:] + kind


def _check(value, t, path, errors, owner=None):
    if t == "object":
        # int-or-string and free-form fields.
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            errors.append("%s: expected an int or a string, got %r" %
                          (path, value))
        return
    if t in ("str", "datetime"):
        if not isinstance(value, str):
            errors.append("%s: expected a string, got %s %r" %
                          (path, type(value).__name__, value))
        else:
            allowed = _ADD["enums"].get(owner)
            if allowed is not None and value not in allowed:
                errors.append("%s: %r is not one of %s" %
                              (path, value, ", ".join(allowed)))
        return
    if t == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append("%s: expected an integer, got %s %r" %
                          (path, type(value).__name__, value))
        return
    if t == "bool":
        if not isinstance(value, bool):
            errors.append("%s: expected true or false, got %r" %
                          (path, value))
        return
    if t == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append("%s: expected a number, got %r" % (path, value))
        return
    m = re.fullmatch(r"list\[(.+)\]", t)
    if m:
        if not isinstance(value, list):
            errors.append("%s: expected a list, got %s" %
                          (path, type(value).__name__))
            return
        for i, v in enumerate(value):
            _check(v, m.group(1), "%s[%d]" % (path, i), errors, owner)
        return
    m = re.fullmatch(r"dict\(str, (.+)\)", t)
    if m:
        if not isinstance(value, dict):
            errors.append("%s: expected a map, got %s" %
                          (path, type(value).__name__))
            return
        for k, v in value.items():
            if not isinstance(k, str):
                errors.append("%s: key %r is not a string" % (path, k))
            _check(v, m.group(1), "%s.%s" % (path, k), errors, owner)
        return
    model = _model(t)
    if model is None:
        errors.append("%s: no schema for type %s" % (path, t))
        return
    if not isinstance(value, dict):
        errors.append("%s: expected an object (%s), got %s" %
                      (path, t, type(value).__name__))
        return
    for key in sorted(model.required):
        if key not in value or value[key] is None:
            errors.append("%s: missing required field %s" % (path, key))
    for key, v in value.items():
        if key not in model.fields:
            errors.append("%s: unknown field %s (%s has %s)" %
                          (path, key, t, ", ".join(sorted(model.fields))))
            continue
        attr, ft = model.fields[key]
        sub = "%s.%s" % (path, key) if path else key
        if v is None:
            continue
        _check(v, ft, sub, errors, "%s.%s" % (t, attr))
        if t == "V1ResourceRequirements" and isinstance(v, dict):
            for rk, q in v.items():
                if isinstance(q, str) and not _QUANTITY.match(q):
                    errors.append("%s.%s: %r is not a quantity" %
                                  (sub, rk, q))


def validate(obj):
    if not isinstance(obj, dict):
        return ["not an object: %r" % (obj,)]
    kind, api = obj.get("kind"), obj.get("apiVersion")
    name = (obj.get("metadata") or {}).get("name", "?")
    where = "%s/%s" % (kind, name)
    if not isinstance(kind, str) or not isinstance(api, str):
        return ["%s: apiVersion and kind are required" % where]
    t = model_for(api, kind)
    if _model(t) is None:
        return ["%s: no schema for %s %s" % (where, api, kind)]
    errors = []
    _check(obj, t, "", errors)
    return ["%s: %s" % (where, e) for e in errors]
