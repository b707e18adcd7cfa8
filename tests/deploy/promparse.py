"""A strict parser of the Prometheus text exposition format (0.0.4).

Stricter than Prometheus itself, so that what drift serves is clean for
every scraper: each family has exactly one # HELP and one # TYPE, before
its samples; a family's samples are contiguous; names match the format's
grammar and start with a given prefix; label values use only the escapes
\\\\, \\" and \\n; no series appears twice; counters end in _total and are
>= 0; a histogram has, per label set, cumulative _bucket{le=...} series in
increasing le order ending with le="+Inf", then _sum and _count, with
_count equal to the +Inf bucket. Any violation raises ParseError naming
the line.

parse(text) -> {family name: Family}, Family.samples a list of
(sample name, labels dict, value).
"""
import math
import re

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class ParseError(ValueError):
    pass


class Family:
    def __init__(self, name):
        self.name = name
        self.help = None
        self.type = None
        self.samples = []

    def value(self, **labels):
        """The value of the one sample with exactly these labels (for
        counters and gauges), None if there is none."""
        for name, lab, v in self.samples:
            if name == self.name and lab == labels:
                return v
        return None


def _value(s, where):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise ParseError("%s: bad value %r" % (where, s))
    return float(s)


def _labels(s, i, where):
    """Parses {a="x",...} starting at s[i] == '{'; returns (dict, end)."""
    labels = {}
    i += 1
    if i < len(s) and s[i] == "}":
        return labels, i + 1
    while True:
        m = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(s, i)
        if not m:
            raise ParseError("%s: bad label name at %d" % (where, i))
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ParseError("%s: expected =\" after label %s" %
                             (where, name))
        i += 2
        out = []
        while True:
            if i >= len(s):
                raise ParseError("%s: unterminated label value" % where)
            c = s[i]
            if c == "\\":
                e = s[i + 1:i + 2]
                if e not in ("\\", '"', "n"):
                    raise ParseError("%s: bad escape \\%s" % (where, e))
                out.append("\n" if e == "n" else e)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise ParseError("%s: newline in label value" % where)
            else:
                out.append(c)
                i += 1
        if name in labels:
            raise ParseError("%s: label %s twice" % (where, name))
        if name.startswith("__"):
            raise ParseError("%s: reserved label name %s" % (where, name))
        labels[name] = "".join(out)
        if i < len(s) and s[i] == ",":
            i += 1
            if i < len(s) and s[i] == "}":
                return labels, i + 1
            continue
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        raise ParseError("%s: expected , or } in labels" % where)


def _help(s, where):
    """A HELP text: only \\\\ and \\n are escapes there."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\":
            e = s[i + 1:i + 2]
            if e not in ("\\", "n"):
                raise ParseError("%s: bad escape in HELP" % where)
            out.append("\n" if e == "n" else "\\")
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _family_of(sample, families, current):
    """The family a sample name belongs to: itself, or a histogram's
    base for _bucket/_sum/_count."""
    if current is not None:
        if sample == current.name:
            return current
        if current.type == "histogram":
            for suf in ("_bucket", "_sum", "_count"):
                if sample == current.name + suf:
                    return current
    return None


def parse(text, prefix="drift_"):
    if not text.endswith("\n"):
        raise ParseError("the exposition does not end with a newline")
    families = {}
    order = []
    current = None
    seen = set()
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d" % n
        if line == "":
            raise ParseError("%s: empty line" % where)
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[0] != "#" or \
                    parts[1] not in ("HELP", "TYPE"):
                raise ParseError("%s: a comment that is not HELP or TYPE"
                                 % where)
            name = parts[2]
            if not NAME.match(name) or not name.startswith(prefix):
                raise ParseError("%s: bad metric name %r" % (where, name))
            fam = families.get(name)
            if fam is None:
                fam = families[name] = Family(name)
                order.append(name)
            elif fam is not current or fam.samples:
                raise ParseError("%s: family %s is not contiguous" %
                                 (where, name))
            rest = parts[3] if len(parts) == 4 else ""
            if parts[1] == "HELP":
                if fam.help is not None:
                    raise ParseError("%s: second HELP for %s" %
                                     (where, name))
                fam.help = _help(rest, where)
            else:
                if fam.type is not None:
                    raise ParseError("%s: second TYPE for %s" %
                                     (where, name))
                if rest not in TYPES:
                    raise ParseError("%s: bad type %r" % (where, rest))
                fam.type = rest
            current = fam
            continue
        m = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*").match(line)
        if not m:
            raise ParseError("%s: bad sample name" % where)
        sname = m.group(0)
        i = m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = _labels(line, i, where)
        if i >= len(line) or line[i] != " ":
            raise ParseError("%s: expected a space before the value" % where)
        fields = line[i + 1:].split(" ")
        if len(fields) not in (1, 2) or fields[0] == "":
            raise ParseError("%s: expected VALUE [TIMESTAMP]" % where)
        v = _value(fields[0], where)
        if len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1]):
            raise ParseError("%s: bad timestamp" % where)
        fam = _family_of(sname, families, current)
        if fam is None:
            raise ParseError("%s: sample %s outside its family (every "
                             "family needs HELP and TYPE first)" %
                             (where, sname))
        if fam.help is None or fam.type is None:
            raise ParseError("%s: family %s lacks HELP or TYPE" %
                             (where, fam.name))
        key = (sname, tuple(sorted(labels.items())))
        if key in seen:
            raise ParseError("%s: series %s%s twice" % (where, sname,
                                                         labels))
        seen.add(key)
        if fam.type == "histogram" and "le" in labels and \
                sname != fam.name + "_bucket":
            raise ParseError("%s: le label outside _bucket" % where)
        if fam.type != "histogram" and "le" in labels:
            raise ParseError("%s: le label on a %s" % (where, fam.type))
        if fam.type == "counter":
            if not fam.name.endswith("_total"):
                raise ParseError("%s: counter %s does not end in _total" %
                                 (where, fam.name))
            if not v >= 0:
                raise ParseError("%s: negative or NaN counter" % where)
        fam.samples.append((sname, labels, v))
    for name in order:
        fam = families[name]
        if fam.help is None or fam.type is None:
            raise ParseError("family %s lacks HELP or TYPE" % name)
        if fam.type == "histogram":
            _check_histogram(fam)
    return families


def _check_histogram(fam):
    groups = {}
    for sname, labels, v in fam.samples:
        base = {k: x for k, x in labels.items() if k != "le"}
        key = tuple(sorted(base.items()))
        g = groups.setdefault(key, {"buckets": [], "sum": None,
                                    "count": None, "done": False})
        if sname == fam.name + "_bucket":
            if g["sum"] is not None or g["count"] is not None:
                raise ParseError("%s%s: bucket after _sum/_count" %
                                 (fam.name, base))
            if "le" not in labels:
                raise ParseError("%s%s: bucket without le" %
                                 (fam.name, base))
            g["buckets"].append((_value(labels["le"], fam.name), v))
        elif sname == fam.name + "_sum":
            g["sum"] = v
        elif sname == fam.name + "_count":
            g["count"] = v
        else:
            raise ParseError("%s: plain sample in a histogram" % fam.name)
    for key, g in groups.items():
        b = g["buckets"]
        what = "%s%s" % (fam.name, dict(key))
        if not b or b[-1][0] != math.inf:
            raise ParseError("%s: no le=\"+Inf\" bucket last" % what)
        for (le0, c0), (le1, c1) in zip(b, b[1:]):
            if not le1 > le0:
                raise ParseError("%s: le not increasing" % what)
            if c1 < c0:
                raise ParseError("%s: buckets not cumulative" % what)
        if g["sum"] is None or g["count"] is None:
            raise ParseError("%s: missing _sum or _count" % what)
        if g["count"] != b[-1][1]:
            raise ParseError("%s: _count %s != +Inf bucket %s" %
                             (what, g["count"], b[-1][1]))
