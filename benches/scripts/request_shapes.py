"""request_shapes: bid requests of a chosen shape, made from the real samples, for the cost
curves of cpu-per-auction.py (issue 19): `size:BYTES` (about that many bytes each) and
`imps:N` (N impressions each, every DSP bidding on each).

- `size:B` below a sample's size keeps what an auction reads (the first impression's format,
  floor and ids; the site or app; the device's UA, IP and country; the user's id; tmax and
  currencies) and drops the rest: the smallest realistic request, about 0.6 KB.
- `size:B` above it adds audience segments (`user.data[].segment`, as a DMP would) until the
  request reaches B bytes: many small objects, not one long string, so the parser works as it
  would on a real 10 KB request.
- `imps:N` repeats the sample's first impression N times with distinct ids (and tagids); the
  rest of the request is kept, so the size grows with N too (reported with each run).
"""
import copy
import json
from pathlib import Path

KEEP_IMP = ("id", "banner", "video", "native", "audio", "bidfloor", "bidfloorcur", "tagid",
            "secure", "pmp")
KEEP_SITE = ("id", "domain", "page", "publisher", "cat")
KEEP_APP = ("id", "bundle", "name", "publisher", "cat")
KEEP_TOP = ("id", "tmax", "cur", "at", "test")


def _trim(req):
    out = {k: req[k] for k in KEEP_TOP if k in req}
    imp = req["imp"][0]
    out["imp"] = [{k: imp[k] for k in KEEP_IMP if k in imp}]
    for key, keep in (("site", KEEP_SITE), ("app", KEEP_APP)):
        if key in req:
            out[key] = {k: req[key][k] for k in keep if k in req[key]}
    dev = req.get("device", {})
    out["device"] = {k: dev[k] for k in ("ua", "ip") if k in dev}
    if "country" in dev.get("geo", {}):
        out["device"]["geo"] = {"country": dev["geo"]["country"]}
    if "id" in req.get("user", {}):
        out["user"] = {"id": req["user"]["id"]}
    return out


def _pad(req, size):
    out = copy.deepcopy(req)
    user = out.setdefault("user", {})
    data = user.setdefault("data", [])
    segments = []
    data.append({"id": "dmp-shape", "name": "dmp.example", "segment": segments})
    i = 0
    while len(json.dumps(out, separators=(",", ":"))) < size:
        segments.append({"id": f"s{i:05d}", "name": f"segment-{i:05d}", "value": "1"})
        i += 1
    return out


def _imps(req, n):
    out = copy.deepcopy(req)
    first = req["imp"][0]
    out["imp"] = []
    for i in range(n):
        imp = copy.deepcopy(first)
        imp["id"] = str(i + 1)
        if "tagid" in imp:
            imp["tagid"] = f"{imp['tagid']}-{i + 1}"
        out["imp"].append(imp)
    return out


def shape_one(req, spec):
    """`req` (a parsed bid request) in the shape `spec` (`size:B` or `imps:N`)."""
    kind, _, value = spec.partition(":")
    n = int(value)
    if kind == "imps":
        return _imps(req, n)
    if kind == "size":
        if len(json.dumps(req, separators=(",", ":"))) > n:
            return _trim(req)
        return _pad(req, n)
    raise ValueError(f"unknown shape {spec!r}: size:BYTES or imps:N")


def shaped_bodies(bodies, spec, out_dir):
    """Writes each of `bodies` (files of one-line JSON) in the shape `spec` to `out_dir`; the
    new files and their mean size in bytes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for i, path in enumerate(bodies):
        shaped = shape_one(json.loads(Path(path).read_bytes()), spec)
        p = out_dir / f"{i:02d}.json"
        p.write_text(json.dumps(shaped, separators=(",", ":")))
        files.append(p)
    mean = sum(p.stat().st_size for p in files) / len(files)
    return files, mean
