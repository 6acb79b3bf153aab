"""Minimal GGUF v3 reader/writer in pure Python (no numpy), for scripts/gpu.

It copies the metadata (architecture keys, the embedded tokenizer) of an
existing duet model and writes new tensors beside it, so that a model trained
outside duet carries exactly duet's tokenizer. Layout (GGUF v3): magic, version,
n_tensors, n_kv, the key/values, the tensor infos, padding to the alignment,
then the tensor data, each tensor at an aligned offset.
"""
import struct

GGUF_MAGIC = b"GGUF"
# value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
           BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# ggml tensor types used here
GGML_F32, GGML_F16 = 0, 1


class _Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.p)[0]
        self.p += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.d[self.p:self.p + n].decode("utf-8")
        self.p += n
        return s

    def value(self, t):
        if t in _SCALAR:
            return self.take(_SCALAR[t])
        if t == STRING:
            return self.string()
        if t == ARRAY:
            et, n = self.take("<I"), self.take("<Q")
            return (et, [self.value(et) for _ in range(n)])
        raise ValueError("GGUF: unknown value type %d" % t)


def read(path):
    """Returns (kvs, tensors): kvs a list of [key, type, value] in file order
    (arrays as (elem_type, list)), tensors a list of dicts name/type/ne/data."""
    with open(path, "rb") as f:
        data = f.read()
    r = _Reader(data)
    if data[:4] != GGUF_MAGIC:
        raise ValueError("%s: not a GGUF file" % path)
    r.p = 4
    version, n_tensors, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
    if version != 3:
        raise ValueError("%s: GGUF version %d (3 expected)" % (path, version))
    kvs = []
    for _ in range(n_kv):
        k = r.string()
        t = r.take("<I")
        kvs.append([k, t, r.value(t)])
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take("<I")
        ne = [r.take("<Q") for _ in range(nd)]
        infos.append((name, ne, r.take("<I"), r.take("<Q")))
    align = dict((k, v) for k, _, v in kvs).get("general.alignment", 32)
    base = (r.p + align - 1) // align * align
    tensors = []
    for i, (name, ne, t, off) in enumerate(infos):
        end = infos[i + 1][3] if i + 1 < len(infos) else len(data) - base
        tensors.append({"name": name, "type": t, "ne": ne, "data": data[base + off:base + end]})
    return kvs, tensors


def _pack_value(t, v):
    if t in _SCALAR:
        return struct.pack(_SCALAR[t], v)
    if t == STRING:
        b = v.encode("utf-8")
        return struct.pack("<Q", len(b)) + b
    if t == ARRAY:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(_pack_value(et, x) for x in items)
    raise ValueError("GGUF: unknown value type %d" % t)


def set_kv(kvs, key, t, value):
    """Replaces key's value (keeping its position) or appends it."""
    for kv in kvs:
        if kv[0] == key:
            kv[1], kv[2] = t, value
            return
    kvs.append([key, t, value])


def get_kv(kvs, key, default=None):
    for k, _, v in kvs:
        if k == key:
            return v
    return default


def write(path, kvs, tensors, align=32):
    """tensors: dicts name/type/ne/data (data: bytes of exactly the tensor)."""
    out = [GGUF_MAGIC, struct.pack("<IQQ", 3, len(tensors), len(kvs))]
    for k, t, v in kvs:
        out.append(_pack_value(STRING, k) + struct.pack("<I", t) + _pack_value(t, v))
    off = 0
    offsets = []
    for tn in tensors:
        offsets.append(off)
        out.append(_pack_value(STRING, tn["name"]) + struct.pack("<I", len(tn["ne"])) +
                   b"".join(struct.pack("<Q", n) for n in tn["ne"]) + struct.pack("<IQ", tn["type"], off))
        off += (len(tn["data"]) + align - 1) // align * align
    head = b"".join(out)
    head += b"\0" * ((-len(head)) % align)
    with open(path, "wb") as f:
        f.write(head)
        for tn in tensors:
            f.write(tn["data"])
            f.write(b"\0" * ((-len(tn["data"])) % align))
