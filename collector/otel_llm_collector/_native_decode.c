/*
 * Native trace decoder: OTLP ExportTraceServiceRequest bytes -> CallRecord objects, in one walk.
 *
 * Why: in Python, reading ~15 attributes per span through protobuf objects costs ~20 us per span, which
 * caps one collector process near 30,000 spans/s. This walks the wire format once, looks each attribute
 * key up in the same table as `decode.py` (mapping.ATTRIBUTE_TABLE), converts values with the same rules,
 * and builds the same CallRecord values.
 *
 * Contract (see native_decode.py): `TraceDecoder.decode(payload, max_attributes)` returns
 *   (calls: list[CallRecord], spans_seen, skipped, truncated, bad_trace_id, bad_span_id, end_before_start)
 * or None. None means "take the reference path" (protobuf parse + decode.decode_traces): the payload is
 * malformed, or uses something this walker leaves to the reference on purpose (evaluation events on
 * spans, duplicated singular messages that protobuf would merge, several oneof members in one AnyValue,
 * string-table indexes, groups, deep nesting). So malformed input gets the reference path's exact error,
 * and anything unusual gets its exact records. The walker validates everything it accepts as upb would:
 * field structure, lengths, wire types of known fields, UTF-8 of every known string field.
 *
 * The records must equal decode.decode_traces's; tests/collector/test_native_decode.py checks that on
 * generated and recorded spans, and on mutated bytes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 32
#define MAX_STRING_CHARS 256
#define MAX_STRS_ITEMS 64
#define MAX_SEGMENTS 8
#define NSLOTS 29
#define KEY_CACHE_SIZE 2048 /* power of two */
#define KEY_CACHE_MAX_FILL (KEY_CACHE_SIZE / 2)
#define MAX_PROBES 16
#define STATUS_CODE_ERROR 2

/* Slots: must equal mapping.py's numbers (checked at construction against the table's values). */
enum {
    S_OPERATION = 0, S_PROVIDER, S_REQUEST_MODEL, S_RESPONSE_MODEL, S_RESPONSE_ID, S_FINISH_REASONS,
    S_TTFC, S_INPUT_TOKENS, S_OUTPUT_TOKENS, S_TOTAL_TOKENS, S_CACHE_READ, S_CACHE_CREATION, S_REASONING,
    S_COST, S_CONTEXT_DOCUMENTS, S_CONTEXT_TOKENS, S_TOOL_CALL_COUNT, S_TOOL_CALL_NAMES, S_INPUT_HASH,
    S_OUTPUT_HASH, S_ERROR_TYPE, S_PROMPT_NAME, S_PROMPT_VERSION, S_FEATURE, S_OPENINFERENCE_KIND,
    S_LLM_REQUEST_TYPE, S_APPLICATION_NAME, S_ENVIRONMENT, S_OI_MODEL
};
enum { K_STR = 0, K_INT = 1, K_FLOAT = 2, K_STRS = 3 };

/* CallRecord fields, in the order native_decode.py passes their names. */
enum {
    F_SERIES = 0, F_END_TIME_NS, F_DURATION_S, F_TRACE_ID, F_SPAN_ID, F_SERVICE_VERSION, F_PROVIDER,
    F_OPERATION, F_REQUEST_MODEL, F_RESPONSE_MODEL, F_RESPONSE_ID, F_ERROR_TYPE, F_TTFC, F_INPUT_TOKENS,
    F_OUTPUT_TOKENS, F_CACHE_READ, F_CACHE_CREATION, F_REASONING, F_COST, F_CONTEXT_DOCUMENTS,
    F_CONTEXT_TOKENS, F_TOOL_CALL_COUNT, F_TOOL_CALL_NAMES, F_FINISH_REASONS, F_INPUT_HASH, F_OUTPUT_HASH,
    F_INSTRUMENTATION, F_SEGMENTS, F_EVALUATIONS, NFIELDS
};

/* ---- wire format ------------------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Buf;

/* 0 on success; -1 on a malformed varint. */
static inline int read_varint(Buf *b, uint64_t *out) {
    uint64_t v = 0;
    int shift = 0;
    while (b->p < b->end) {
        uint8_t byte = *b->p++;
        if (shift == 63 && byte > 1) return -1;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = v;
            return 0;
        }
        shift += 7;
        if (shift > 63) return -1;
    }
    return -1;
}

static inline int read_fixed64(Buf *b, uint64_t *out) {
    if (b->end - b->p < 8) return -1;
    memcpy(out, b->p, 8); /* little-endian hosts only: checked at module init */
    b->p += 8;
    return 0;
}

/* Reads a tag; 0 on success. Field number 0 and groups are refused (upb refuses the first; the second
 * never occurs in OTLP and is left to the reference path). */
static inline int read_tag(Buf *b, uint32_t *field, int *wire) {
    uint64_t tag;
    if (read_varint(b, &tag) < 0) return -1;
    if (tag > 0xFFFFFFFFu) return -1;
    *field = (uint32_t)(tag >> 3);
    *wire = (int)(tag & 7);
    if (*field == 0) return -1;
    if (*wire == 3 || *wire == 4 || *wire > 5) return -1;
    return 0;
}

static inline int read_len(Buf *b, Buf *inner) {
    uint64_t n;
    if (read_varint(b, &n) < 0) return -1;
    if (n > (uint64_t)(b->end - b->p)) return -1;
    inner->p = b->p;
    inner->end = b->p + n;
    b->p += n;
    return 0;
}

static inline int skip_value(Buf *b, int wire) {
    uint64_t ignored;
    Buf inner;
    switch (wire) {
    case 0: return read_varint(b, &ignored);
    case 1: if (b->end - b->p < 8) return -1; b->p += 8; return 0;
    case 2: return read_len(b, &inner);
    case 5: if (b->end - b->p < 4) return -1; b->p += 4; return 0;
    default: return -1;
    }
}

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF), as protobuf requires of string fields. */
static int utf8_valid(const uint8_t *s, Py_ssize_t n) {
    const uint8_t *end = s + n;
    while (s < end) {
        /* ASCII fast path, eight bytes at a time */
        while (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if (w & 0x8080808080808080ull) break;
            s += 8;
        }
        if (s >= end) break;
        uint8_t c = *s;
        if (c < 0x80) { s++; continue; }
        if (c < 0xC2) return 0;
        if (c < 0xE0) {
            if (end - s < 2 || (s[1] & 0xC0) != 0x80) return 0;
            s += 2;
        } else if (c < 0xF0) {
            if (end - s < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
            if (c == 0xE0 && s[1] < 0xA0) return 0;
            if (c == 0xED && s[1] >= 0xA0) return 0;
            s += 3;
        } else if (c < 0xF5) {
            if (end - s < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
                return 0;
            if (c == 0xF0 && s[1] < 0x90) return 0;
            if (c == 0xF4 && s[1] >= 0x90) return 0;
            s += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* A length-delimited string field: read and validate. */
static inline int read_string(Buf *b, int wire, Buf *out) {
    if (wire != 2) return -1;
    if (read_len(b, out) < 0) return -1;
    return utf8_valid(out->p, out->end - out->p) ? 0 : -1;
}

/* ---- AnyValue / KeyValue ---------------------------------------------------------------------------- */

enum { V_NONE = 0, V_STRING = 1, V_BOOL = 2, V_INT = 3, V_DOUBLE = 4, V_ARRAY = 5, V_KVLIST = 6, V_BYTES = 7 };

typedef struct {
    int which;
    Buf data;    /* string bytes, or the ArrayValue / KeyValueList message */
    uint64_t u;  /* bool, int (two's complement), or double bits */
} AnyVal;

static int validate_keyvalue(Buf kv, int depth);

static int parse_anyvalue(Buf b, int depth, AnyVal *out) {
    uint32_t field = 0;
    int wire = 0, members = 0;
    out->which = V_NONE;
    if (depth > MAX_DEPTH) return -1;
    while (b.p < b.end) {
        if (read_tag(&b, &field, &wire) < 0) return -1;
        switch (field) {
        case 1:
            if (read_string(&b, wire, &out->data) < 0) return -1;
            out->which = V_STRING; members++;
            break;
        case 2: case 3:
            if (wire != 0 || read_varint(&b, &out->u) < 0) return -1;
            out->which = field == 2 ? V_BOOL : V_INT; members++;
            break;
        case 4:
            if (wire != 1 || read_fixed64(&b, &out->u) < 0) return -1;
            out->which = V_DOUBLE; members++;
            break;
        case 5: case 6: {
            Buf inner, walk;
            uint32_t f2;
            int w2;
            if (wire != 2 || read_len(&b, &inner) < 0) return -1;
            walk = inner;
            while (walk.p < walk.end) {
                if (read_tag(&walk, &f2, &w2) < 0) return -1;
                if (f2 == 1) {
                    Buf item;
                    if (w2 != 2 || read_len(&walk, &item) < 0) return -1;
                    if (field == 5) {
                        AnyVal nested;
                        if (parse_anyvalue(item, depth + 1, &nested) < 0) return -1;
                    } else if (validate_keyvalue(item, depth + 1) < 0) {
                        return -1;
                    }
                } else if (skip_value(&walk, w2) < 0) {
                    return -1;
                }
            }
            out->data = inner;
            out->which = field == 5 ? V_ARRAY : V_KVLIST; members++;
            break;
        }
        case 7:
            if (wire != 2 || read_len(&b, &out->data) < 0) return -1;
            out->which = V_BYTES; members++;
            break;
        case 8:
            return -1; /* string_value_strindex: left to the reference path */
        default:
            if (skip_value(&b, wire) < 0) return -1;
        }
    }
    /* Several oneof members: protobuf keeps the last, merging repeated messages; leave it to the
     * reference path rather than reproduce those rules. */
    return members > 1 ? -1 : 0;
}

/* A KeyValue: key bytes (validated) and its value. A missing value reads as an unset AnyValue. */
static int parse_keyvalue(Buf b, int depth, Buf *key, AnyVal *value) {
    uint32_t field = 0;
    int wire = 0, values = 0;
    key->p = key->end = b.p;
    value->which = V_NONE;
    while (b.p < b.end) {
        if (read_tag(&b, &field, &wire) < 0) return -1;
        if (field == 1) {
            if (read_string(&b, wire, key) < 0) return -1;
        } else if (field == 2) {
            Buf inner;
            if (wire != 2 || read_len(&b, &inner) < 0) return -1;
            if (++values > 1) return -1; /* protobuf would merge the two values */
            if (parse_anyvalue(inner, depth + 1, value) < 0) return -1;
        } else if (field == 3) {
            return -1; /* key_strindex */
        } else if (skip_value(&b, wire) < 0) {
            return -1;
        }
    }
    return 0;
}

static int validate_keyvalue(Buf kv, int depth) {
    Buf key;
    AnyVal value;
    return parse_keyvalue(kv, depth, &key, &value);
}

/* Validates a message whose fields are all either strings (bit set in `string_fields`), repeated
 * KeyValues (field `kv_field`), or scalars we ignore. */
static int validate_simple(Buf b, uint32_t string_fields, uint32_t kv_field) {
    uint32_t field = 0;
    int wire = 0;
    while (b.p < b.end) {
        if (read_tag(&b, &field, &wire) < 0) return -1;
        if (field < 32 && (string_fields >> field) & 1) {
            Buf s;
            if (read_string(&b, wire, &s) < 0) return -1;
        } else if (field == kv_field) {
            Buf inner;
            if (wire != 2 || read_len(&b, &inner) < 0) return -1;
            if (validate_keyvalue(inner, 0) < 0) return -1;
        } else if (skip_value(&b, wire) < 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- the decoder object ----------------------------------------------------------------------------- */

enum { KEY_UNMAPPED = 0, KEY_MAPPED = 1, KEY_OWN = 2, KEY_SEGMENT = 3, KEY_SERVICE_NAME = 4, KEY_SERVICE_VERSION = 5 };

typedef struct {
    uint64_t hash;
    uint8_t *bytes;      /* NULL: empty entry */
    Py_ssize_t len;
    int cls;
    int slot, priority, kind, marker;
    PyObject *segment;   /* KEY_SEGMENT: the segment's name */
} KeyEntry;

/* A value string cache: models, features, prompt versions and the like repeat on every span, so one
 * str object per distinct value saves the allocation, and its cached hash makes every later dict lookup
 * (series keys, windows) cheaper. High-cardinality values (response ids, hashes) are not interned. */
#define STR_CACHE_SIZE 4096 /* power of two */
#define STR_CACHE_MAX_FILL (STR_CACHE_SIZE / 2)
#define STR_INTERN_MAX_BYTES 128

typedef struct {
    uint64_t hash;
    uint8_t *bytes; /* NULL: empty entry */
    Py_ssize_t len;
    PyObject *value;
} StrEntry;

typedef struct {
    PyObject_HEAD
    PyObject *table;             /* dict: name -> (slot, priority, kind, marker) */
    PyTypeObject *record_type;   /* CallRecord */
    Py_ssize_t offsets[NFIELDS];
    PyObject *series_key;        /* callable(service, feature, prompt_name, prompt_version, model) */
    PyObject *series_cache;      /* its cache: dict (the five parts) -> SeriesKey, read here first */
    PyObject *instrumentation;   /* callable(markers, scope_name) -> str */
    PyObject *model_operations;  /* frozenset */
    PyObject *request_type_operations; /* dict */
    PyObject *openinference_operations; /* dict */
    PyObject *own_prefix, *segment_prefix, *tenant_key, *tenant_name;
    PyObject *service_name_key, *service_version_key;
    PyObject *evaluation_event;  /* bytes */
    PyObject *empty, *str_true, *str_false, *empty_tuple, *other_error, *class_prefix, *strip_chars;
    PyObject *unknown_service, *environment;
    int own_marker;
    KeyEntry *keys;
    Py_ssize_t keys_used;
    StrEntry *strings;           /* interned values of low-cardinality slots */
    Py_ssize_t strings_used;
    uint32_t intern_slots;       /* bit per slot whose string values are interned */
} TraceDecoder;

static void clear_keys(TraceDecoder *self) {
    if (!self->keys) return;
    for (Py_ssize_t i = 0; i < KEY_CACHE_SIZE; i++) {
        PyMem_Free(self->keys[i].bytes);
        Py_CLEAR(self->keys[i].segment);
    }
    memset(self->keys, 0, sizeof(KeyEntry) * KEY_CACHE_SIZE);
    self->keys_used = 0;
}

/* A word-at-a-time hash (FxHash-like). Not collision-resistant; probes are capped (MAX_PROBES) and a
 * crowded table is cleared rather than searched, so crafted collisions cost a re-decode, never a long scan. */
static uint64_t hash_bytes(const uint8_t *s, Py_ssize_t n) {
    const uint64_t k = 0x517CC1B727220A95ull;
    uint64_t h = (uint64_t)n * k, w;
    while (n >= 8) {
        memcpy(&w, s, 8);
        h = (((h << 5) | (h >> 59)) ^ w) * k;
        s += 8;
        n -= 8;
    }
    if (n > 0) {
        w = 0;
        memcpy(&w, s, (size_t)n);
        h = (((h << 5) | (h >> 59)) ^ w) * k;
    }
    return h ^ (h >> 32);
}

static void clear_strings(TraceDecoder *self) {
    if (!self->strings) return;
    for (Py_ssize_t i = 0; i < STR_CACHE_SIZE; i++) {
        PyMem_Free(self->strings[i].bytes);
        Py_CLEAR(self->strings[i].value);
    }
    memset(self->strings, 0, sizeof(StrEntry) * STR_CACHE_SIZE);
    self->strings_used = 0;
}

/* A new reference to the str of these (short) bytes, from the cache or decoded and cached. */
static PyObject *interned_str(TraceDecoder *self, Buf s) {
    Py_ssize_t n = s.end - s.p;
    uint64_t h = hash_bytes(s.p, n);
    size_t i = (size_t)h & (STR_CACHE_SIZE - 1);
    for (int probe = 0; probe < MAX_PROBES; probe++) {
        StrEntry *e = &self->strings[i];
        if (!e->bytes) break;
        if (e->hash == h && e->len == n && memcmp(e->bytes, s.p, (size_t)n) == 0) return Py_NewRef(e->value);
        i = (i + 1) & (STR_CACHE_SIZE - 1);
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)s.p, n, "strict");
    if (!text) return NULL;
    if (self->strings_used >= STR_CACHE_MAX_FILL) clear_strings(self); /* values come from clients */
    uint8_t *copy = PyMem_Malloc(n > 0 ? (size_t)n : 1);
    if (!copy) return text; /* not cached this time */
    memcpy(copy, s.p, (size_t)n);
    i = (size_t)h & (STR_CACHE_SIZE - 1);
    for (int probe = 0; self->strings[i].bytes; probe++) {
        if (probe == MAX_PROBES) { /* crowded: start afresh */
            clear_strings(self);
            i = (size_t)h & (STR_CACHE_SIZE - 1);
            break;
        }
        i = (i + 1) & (STR_CACHE_SIZE - 1);
    }
    self->strings[i].hash = h;
    self->strings[i].bytes = copy;
    self->strings[i].len = n;
    self->strings[i].value = Py_NewRef(text);
    self->strings_used++;
    return text;
}

/* Classifies a key (already UTF-8-valid): one dict lookup and a few prefix tests, then cached by its
 * bytes so the next span pays one hash and one memcmp. Returns NULL with an exception set on failure. */
static KeyEntry *lookup_key(TraceDecoder *self, Buf key) {
    Py_ssize_t n = key.end - key.p;
    uint64_t h = hash_bytes(key.p, n);
    size_t i = (size_t)h & (KEY_CACHE_SIZE - 1);
    for (int probe = 0; probe < MAX_PROBES; probe++) {
        KeyEntry *e = &self->keys[i];
        if (!e->bytes) break;
        if (e->hash == h && e->len == n && memcmp(e->bytes, key.p, (size_t)n) == 0) return e;
        i = (i + 1) & (KEY_CACHE_SIZE - 1);
    }
    PyObject *name = PyUnicode_DecodeUTF8((const char *)key.p, n, "strict");
    if (!name) return NULL;
    KeyEntry entry;
    memset(&entry, 0, sizeof entry);
    PyObject *row = PyDict_GetItemWithError(self->table, name);
    if (row) {
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 4) {
            Py_DECREF(name);
            PyErr_SetString(PyExc_TypeError, "attribute table rows must be 4-tuples");
            return NULL;
        }
        entry.cls = KEY_MAPPED;
        entry.slot = (int)PyLong_AsLong(PyTuple_GET_ITEM(row, 0));
        entry.priority = (int)PyLong_AsLong(PyTuple_GET_ITEM(row, 1));
        entry.kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(row, 2));
        entry.marker = (int)PyLong_AsLong(PyTuple_GET_ITEM(row, 3));
        if (PyErr_Occurred() || entry.slot < 0 || entry.slot >= NSLOTS || entry.kind < 0 || entry.kind > 3) {
            Py_DECREF(name);
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "attribute table row out of range");
            return NULL;
        }
    } else if (PyErr_Occurred()) {
        Py_DECREF(name);
        return NULL;
    } else if (PyUnicode_Tailmatch(name, self->own_prefix, 0, PY_SSIZE_T_MAX, -1) == 1) {
        int is_tenant = PyUnicode_Compare(name, self->tenant_key) == 0;
        if (is_tenant) {
            entry.cls = KEY_SEGMENT;
            entry.segment = Py_NewRef(self->tenant_name);
        } else if (PyUnicode_Tailmatch(name, self->segment_prefix, 0, PY_SSIZE_T_MAX, -1) == 1) {
            entry.cls = KEY_SEGMENT;
            entry.segment = PyUnicode_Substring(name, PyUnicode_GET_LENGTH(self->segment_prefix),
                                                PyUnicode_GET_LENGTH(name));
            if (!entry.segment) {
                Py_DECREF(name);
                return NULL;
            }
        } else {
            entry.cls = KEY_OWN;
        }
    } else if (PyUnicode_Compare(name, self->service_name_key) == 0) {
        entry.cls = KEY_SERVICE_NAME;
    } else if (PyUnicode_Compare(name, self->service_version_key) == 0) {
        entry.cls = KEY_SERVICE_VERSION;
    } else {
        entry.cls = KEY_UNMAPPED;
    }
    Py_DECREF(name);
    if (self->keys_used >= KEY_CACHE_MAX_FILL) clear_keys(self); /* keys come from clients: stay bounded */
    uint8_t *copy = PyMem_Malloc(n > 0 ? (size_t)n : 1);
    if (!copy) {
        Py_XDECREF(entry.segment);
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, key.p, (size_t)n);
    entry.bytes = copy;
    entry.len = n;
    entry.hash = h;
    i = (size_t)h & (KEY_CACHE_SIZE - 1);
    for (int probe = 0; self->keys[i].bytes; probe++) {
        if (probe == MAX_PROBES) { /* crowded: start afresh */
            clear_keys(self);
            i = (size_t)h & (KEY_CACHE_SIZE - 1);
            break;
        }
        i = (i + 1) & (KEY_CACHE_SIZE - 1);
    }
    self->keys[i] = entry;
    self->keys_used++;
    return &self->keys[i];
}

/* ---- value conversions: decode.py's _any_str / _any_int / _any_float / _any_strs -------------------- */

static PyObject *decode_str(Buf s, int truncate) {
    PyObject *text = PyUnicode_DecodeUTF8((const char *)s.p, s.end - s.p, "strict");
    if (!text || !truncate || PyUnicode_GET_LENGTH(text) <= MAX_STRING_CHARS) return text;
    PyObject *cut = PyUnicode_Substring(text, 0, MAX_STRING_CHARS);
    Py_DECREF(text);
    return cut;
}

static inline double as_double(uint64_t bits) {
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

static PyObject *value_str(TraceDecoder *self, const AnyVal *v, int intern) {
    switch (v->which) {
    case V_STRING:
        if (intern && v->data.end - v->data.p <= STR_INTERN_MAX_BYTES) return interned_str(self, v->data);
        return decode_str(v->data, 1);
    case V_INT: {
        PyObject *n = PyLong_FromLongLong((long long)(int64_t)v->u);
        if (!n) return NULL;
        PyObject *s = PyObject_Str(n);
        Py_DECREF(n);
        return s;
    }
    case V_DOUBLE: {
        PyObject *d = PyFloat_FromDouble(as_double(v->u));
        if (!d) return NULL;
        PyObject *s = PyObject_Repr(d);
        Py_DECREF(d);
        return s;
    }
    case V_BOOL: return Py_NewRef(v->u ? self->str_true : self->str_false);
    default: return Py_NewRef(self->empty);
    }
}

static PyObject *value_int(const AnyVal *v) {
    switch (v->which) {
    case V_INT: return PyLong_FromLongLong((long long)(int64_t)v->u);
    case V_DOUBLE: {
        double d = as_double(v->u);
        if (!isfinite(d)) Py_RETURN_NONE;
        return PyLong_FromDouble(d);
    }
    case V_STRING: {
        PyObject *text = decode_str(v->data, 0);
        if (!text) return NULL;
        PyObject *n = PyLong_FromUnicodeObject(text, 10);
        Py_DECREF(text);
        if (!n && PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        return n;
    }
    default: Py_RETURN_NONE;
    }
}

static PyObject *value_float(const AnyVal *v) {
    double d;
    switch (v->which) {
    case V_DOUBLE: d = as_double(v->u); break;
    case V_INT: d = (double)(int64_t)v->u; break;
    case V_STRING: {
        PyObject *text = decode_str(v->data, 0);
        if (!text) return NULL;
        PyObject *f = PyFloat_FromString(text);
        Py_DECREF(text);
        if (!f) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                Py_RETURN_NONE;
            }
            return NULL;
        }
        d = PyFloat_AS_DOUBLE(f);
        Py_DECREF(f);
        break;
    }
    default: Py_RETURN_NONE;
    }
    if (!isfinite(d)) Py_RETURN_NONE;
    return PyFloat_FromDouble(d);
}

static PyObject *value_strs(TraceDecoder *self, const AnyVal *v) {
    if (v->which == V_STRING) {
        PyObject *s = decode_str(v->data, 1);
        if (!s) return NULL;
        PyObject *t = PyTuple_Pack(1, s);
        Py_DECREF(s);
        return t;
    }
    if (v->which != V_ARRAY) return Py_NewRef(self->empty_tuple);
    PyObject *items = PyList_New(0);
    if (!items) return NULL;
    Buf walk = v->data;
    uint32_t field = 0;
    int wire = 0;
    while (walk.p < walk.end && PyList_GET_SIZE(items) < MAX_STRS_ITEMS) {
        if (read_tag(&walk, &field, &wire) < 0) goto fail;
        if (field != 1) {
            if (skip_value(&walk, wire) < 0) goto fail;
            continue;
        }
        Buf item;
        AnyVal nested;
        if (read_len(&walk, &item) < 0 || parse_anyvalue(item, 0, &nested) < 0) goto fail;
        PyObject *s = value_str(self, &nested, 1);
        if (!s) goto fail;
        int rc = PyList_Append(items, s);
        Py_DECREF(s);
        if (rc < 0) goto fail;
    }
    PyObject *t = PyList_AsTuple(items);
    Py_DECREF(items);
    return t;
fail:
    Py_DECREF(items);
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "malformed array value");
    return NULL;
}

static PyObject *convert(TraceDecoder *self, int kind, const AnyVal *v, int intern) {
    switch (kind) {
    case K_STR: return value_str(self, v, intern);
    case K_INT: return value_int(v);
    case K_FLOAT: return value_float(v);
    default: return value_strs(self, v);
    }
}

/* ---- spans ------------------------------------------------------------------------------------------ */

/* Failure modes of the walk: BAIL (take the reference path, no exception) and ERROR (exception set). */
#define BAIL (-1)
#define ERROR (-2)

typedef struct {
    PyObject *service;          /* str */
    PyObject *service_version;  /* str */
    PyObject *scope_name;       /* str */
    PyObject *instrumentation[16];
    PyObject *calls;            /* list */
    Py_ssize_t seen, skipped, truncated, bad_trace, bad_span, end_before_start;
    Py_ssize_t max_attributes;
} Walk;

static PyObject *hex_of(Buf id) {
    static const char digits[] = "0123456789abcdef";
    Py_ssize_t n = id.end - id.p;
    PyObject *s = PyUnicode_New(n * 2, 127);
    if (!s) return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(s);
    for (Py_ssize_t i = 0; i < n; i++) {
        out[2 * i] = (Py_UCS1)digits[id.p[i] >> 4];
        out[2 * i + 1] = (Py_UCS1)digits[id.p[i] & 15];
    }
    return s;
}

static int all_zero(Buf id) {
    for (const uint8_t *q = id.p; q < id.end; q++)
        if (*q) return 0;
    return 1;
}

static PyObject *get_or(PyObject **found, int slot, PyObject *fallback) {
    return found[slot] ? found[slot] : fallback;
}

static PyObject *instrumentation_for(TraceDecoder *self, Walk *w, int markers) {
    PyObject **cached = &w->instrumentation[markers & 15];
    if (!*cached) {
        PyObject *m = PyLong_FromLong(markers);
        if (!m) return NULL;
        *cached = PyObject_CallFunctionObjArgs(self->instrumentation, m, w->scope_name, NULL);
        Py_DECREF(m);
    }
    return *cached;
}

/* decode.py's operation_of: the normalised operation (borrowed str), or NULL when not a model call. */
static PyObject *operation_of(TraceDecoder *self, PyObject **found, int *error) {
    *error = 0;
    if (found[S_OPERATION]) {
        int in = PySet_Contains(self->model_operations, found[S_OPERATION]);
        if (in < 0) *error = 1;
        return in == 1 ? found[S_OPERATION] : NULL;
    }
    PyObject *table = NULL, *key = NULL;
    if (found[S_LLM_REQUEST_TYPE]) {
        table = self->request_type_operations;
        key = found[S_LLM_REQUEST_TYPE];
    } else if (found[S_OPENINFERENCE_KIND]) {
        table = self->openinference_operations;
        key = found[S_OPENINFERENCE_KIND];
    } else {
        return NULL;
    }
    PyObject *op = PyDict_GetItemWithError(table, key);
    if (!op && PyErr_Occurred()) *error = 1;
    if (op && PyUnicode_Check(op) && PyUnicode_GET_LENGTH(op) == 0) return NULL;
    return op;
}

/* decode.py's _call: derived fields, then the record built by storing its slots directly (the frozen
 * dataclass's __init__ costs several microseconds per call in setattr calls). */
static int build_call(TraceDecoder *self, Walk *w, PyObject **found, PyObject *operation, int markers,
                      PyObject *segments, uint64_t start, uint64_t end, Buf trace_id, Buf span_id,
                      int status_code) {
    PyObject *v[NFIELDS];
    memset(v, 0, sizeof v);
    int rc = ERROR;
    PyObject *oi_model = get_or(found, S_OI_MODEL, self->empty);
    PyObject *request_model = get_or(found, S_REQUEST_MODEL, self->empty);
    PyObject *response_model = get_or(found, S_RESPONSE_MODEL, self->empty);
    if (PyObject_IsTrue(request_model) == 0) request_model = oi_model;
    if (PyObject_IsTrue(response_model) == 0) response_model = oi_model;
    PyObject *service = w->service;
    if (PyUnicode_GET_LENGTH(service) == 0 ||
        PyUnicode_Tailmatch(service, self->unknown_service, 0, PY_SSIZE_T_MAX, -1) == 1) {
        PyObject *app = get_or(found, S_APPLICATION_NAME, self->empty);
        if (PyObject_IsTrue(app) == 1) service = app;
    }
    PyObject *environment = found[S_ENVIRONMENT];
    if (environment && PyObject_IsTrue(environment) == 1) {
        PyObject *pair = PyTuple_Pack(2, self->environment, environment);
        if (!pair) goto done;
        if (!segments) {
            segments = PyList_New(0);
            if (!segments) { Py_DECREF(pair); goto done; }
        } else {
            Py_INCREF(segments);
        }
        int appended = PyList_Append(segments, pair);
        Py_DECREF(pair);
        if (appended < 0) { Py_DECREF(segments); goto done; }
    } else {
        Py_XINCREF(segments);
    }
    /* from here on `segments` is an owned reference (or NULL) */
    PyObject *error_type = Py_NewRef(get_or(found, S_ERROR_TYPE, self->empty));
    if (PyUnicode_Check(error_type) &&
        PyUnicode_Tailmatch(error_type, self->class_prefix, 0, PY_SSIZE_T_MAX, -1) == 1) {
        PyObject *rest = PyUnicode_Substring(error_type, 8, PyUnicode_GET_LENGTH(error_type));
        Py_DECREF(error_type);
        if (!rest) { Py_XDECREF(segments); goto done; }
        error_type = PyObject_CallMethod(rest, "rstrip", "O", self->strip_chars);
        Py_DECREF(rest);
        if (!error_type) { Py_XDECREF(segments); goto done; }
    }
    if (PyObject_IsTrue(error_type) == 0 && status_code == STATUS_CODE_ERROR) {
        Py_SETREF(error_type, Py_NewRef(self->other_error));
    }
    v[F_ERROR_TYPE] = error_type;
    PyObject *input_tokens = get_or(found, S_INPUT_TOKENS, Py_None);
    PyObject *output_tokens = Py_NewRef(get_or(found, S_OUTPUT_TOKENS, Py_None));
    v[F_OUTPUT_TOKENS] = output_tokens;
    if (output_tokens == Py_None && input_tokens != Py_None) {
        PyObject *total = get_or(found, S_TOTAL_TOKENS, Py_None);
        if (total != Py_None) {
            int ge = PyObject_RichCompareBool(total, input_tokens, Py_GE);
            if (ge < 0) { Py_XDECREF(segments); goto done; }
            if (ge) {
                PyObject *diff = PyNumber_Subtract(total, input_tokens);
                if (!diff) { Py_XDECREF(segments); goto done; }
                Py_SETREF(v[F_OUTPUT_TOKENS], diff);
            }
        }
    }
    PyObject *tool_names = get_or(found, S_TOOL_CALL_NAMES, self->empty_tuple);
    PyObject *tool_count = get_or(found, S_TOOL_CALL_COUNT, Py_None);
    if (tool_count == Py_None) {
        v[F_TOOL_CALL_COUNT] = PyLong_FromSsize_t(PyObject_Length(tool_names));
        if (!v[F_TOOL_CALL_COUNT]) { Py_XDECREF(segments); goto done; }
    } else {
        v[F_TOOL_CALL_COUNT] = Py_NewRef(tool_count);
    }
    PyObject *model = PyObject_IsTrue(response_model) == 1 ? response_model : request_model;
    PyObject *args[5] = {service, get_or(found, S_FEATURE, self->empty), get_or(found, S_PROMPT_NAME, self->empty),
                         get_or(found, S_PROMPT_VERSION, self->empty), model};
    PyObject *parts = PyTuple_New(5);
    if (!parts) { Py_XDECREF(segments); goto done; }
    for (int i = 0; i < 5; i++) PyTuple_SET_ITEM(parts, i, Py_NewRef(args[i]));
    PyObject *series = PyDict_GetItemWithError(self->series_cache, parts);
    Py_DECREF(parts);
    v[F_SERIES] = series ? Py_NewRef(series) : PyObject_Vectorcall(self->series_key, args, 5, NULL);
    if (!v[F_SERIES]) { Py_XDECREF(segments); goto done; }
    if (segments && PyList_GET_SIZE(segments) > 0) {
        v[F_SEGMENTS] = PyList_AsTuple(segments);
        Py_DECREF(segments);
        if (!v[F_SEGMENTS]) goto done;
    } else {
        Py_XDECREF(segments);
        v[F_SEGMENTS] = Py_NewRef(self->empty_tuple);
    }
    PyObject *instrumentation = instrumentation_for(self, w, markers);
    if (!instrumentation) goto done;
    v[F_INSTRUMENTATION] = Py_NewRef(instrumentation);
    v[F_END_TIME_NS] = PyLong_FromUnsignedLongLong(end);
    v[F_DURATION_S] = PyFloat_FromDouble((double)(end - start) / 1e9);
    v[F_TRACE_ID] = hex_of(trace_id);
    v[F_SPAN_ID] = hex_of(span_id);
    if (!v[F_END_TIME_NS] || !v[F_DURATION_S] || !v[F_TRACE_ID] || !v[F_SPAN_ID]) goto done;
    v[F_SERVICE_VERSION] = Py_NewRef(w->service_version);
    v[F_PROVIDER] = Py_NewRef(get_or(found, S_PROVIDER, self->empty));
    v[F_OPERATION] = Py_NewRef(operation);
    v[F_REQUEST_MODEL] = Py_NewRef(request_model);
    v[F_RESPONSE_MODEL] = Py_NewRef(response_model);
    v[F_RESPONSE_ID] = Py_NewRef(get_or(found, S_RESPONSE_ID, self->empty));
    v[F_TTFC] = Py_NewRef(get_or(found, S_TTFC, Py_None));
    v[F_INPUT_TOKENS] = Py_NewRef(input_tokens);
    v[F_CACHE_READ] = Py_NewRef(get_or(found, S_CACHE_READ, Py_None));
    v[F_CACHE_CREATION] = Py_NewRef(get_or(found, S_CACHE_CREATION, Py_None));
    v[F_REASONING] = Py_NewRef(get_or(found, S_REASONING, Py_None));
    v[F_COST] = Py_NewRef(get_or(found, S_COST, Py_None));
    v[F_CONTEXT_DOCUMENTS] = Py_NewRef(get_or(found, S_CONTEXT_DOCUMENTS, Py_None));
    v[F_CONTEXT_TOKENS] = Py_NewRef(get_or(found, S_CONTEXT_TOKENS, Py_None));
    v[F_TOOL_CALL_NAMES] = Py_NewRef(tool_names);
    v[F_FINISH_REASONS] = Py_NewRef(get_or(found, S_FINISH_REASONS, self->empty_tuple));
    v[F_INPUT_HASH] = Py_NewRef(get_or(found, S_INPUT_HASH, self->empty));
    v[F_OUTPUT_HASH] = Py_NewRef(get_or(found, S_OUTPUT_HASH, self->empty));
    v[F_EVALUATIONS] = Py_NewRef(self->empty_tuple);
    PyObject *record = self->record_type->tp_alloc(self->record_type, 0);
    if (!record) goto done;
    for (int i = 0; i < NFIELDS; i++) {
        *(PyObject **)((char *)record + self->offsets[i]) = v[i]; /* steals */
        v[i] = NULL;
    }
    rc = PyList_Append(w->calls, record);
    Py_DECREF(record);
    rc = rc < 0 ? ERROR : 0;
done:
    for (int i = 0; i < NFIELDS; i++) Py_XDECREF(v[i]);
    return rc;
}

/* One span: validate everything, then (for a valid span) read its attributes and build its record. */
static int walk_span(TraceDecoder *self, Walk *w, Buf span) {
    Buf b = span, trace_id = {span.p, span.p}, span_id = {span.p, span.p};
    uint64_t start = 0, end = 0;
    int status_code = 0, statuses = 0;
    Py_ssize_t attributes = 0;
    uint32_t field = 0;
    int wire = 0;
    while (b.p < b.end) {
        if (read_tag(&b, &field, &wire) < 0) return BAIL;
        Buf inner;
        uint64_t u;
        switch (field) {
        case 1: case 2: case 4:
            if (wire != 2 || read_len(&b, &inner) < 0) return BAIL;
            if (field == 1) trace_id = inner;
            else if (field == 2) span_id = inner;
            break;
        case 3: case 5:
            if (read_string(&b, wire, &inner) < 0) return BAIL;
            break;
        case 6: case 10: case 12: case 14:
            if (wire != 0 || read_varint(&b, &u) < 0) return BAIL;
            break;
        case 7: case 8:
            if (wire != 1 || read_fixed64(&b, &u) < 0) return BAIL;
            if (field == 7) start = u; else end = u;
            break;
        case 16:
            if (wire != 5 || b.end - b.p < 4) return BAIL;
            b.p += 4;
            break;
        case 9: /* validated in the second pass, which reads them */
            if (wire != 2 || read_len(&b, &inner) < 0) return BAIL;
            attributes++;
            break;
        case 11: { /* Event: time(1), name(2), attributes(3), dropped(4) */
            if (wire != 2 || read_len(&b, &inner) < 0) return BAIL;
            Buf e = inner;
            uint32_t f2;
            int w2;
            while (e.p < e.end) {
                if (read_tag(&e, &f2, &w2) < 0) return BAIL;
                Buf x;
                if (f2 == 1) {
                    if (w2 != 1 || read_fixed64(&e, &u) < 0) return BAIL;
                } else if (f2 == 2) {
                    if (read_string(&e, w2, &x) < 0) return BAIL;
                    Py_ssize_t n = x.end - x.p;
                    if (n == PyBytes_GET_SIZE(self->evaluation_event) &&
                        memcmp(x.p, PyBytes_AS_STRING(self->evaluation_event), (size_t)n) == 0)
                        return BAIL; /* evaluation records: the reference path builds them */
                } else if (f2 == 3) {
                    if (w2 != 2 || read_len(&e, &x) < 0 || validate_keyvalue(x, 0) < 0) return BAIL;
                } else if (f2 == 4) {
                    if (w2 != 0 || read_varint(&e, &u) < 0) return BAIL;
                } else if (skip_value(&e, w2) < 0) {
                    return BAIL;
                }
            }
            break;
        }
        case 13: { /* Link: trace_id(1), span_id(2), trace_state(3), attributes(4), dropped(5), flags(6) */
            if (wire != 2 || read_len(&b, &inner) < 0) return BAIL;
            Buf l = inner;
            uint32_t f2;
            int w2;
            while (l.p < l.end) {
                if (read_tag(&l, &f2, &w2) < 0) return BAIL;
                Buf x;
                if (f2 == 1 || f2 == 2) {
                    if (w2 != 2 || read_len(&l, &x) < 0) return BAIL;
                } else if (f2 == 3) {
                    if (read_string(&l, w2, &x) < 0) return BAIL;
                } else if (f2 == 4) {
                    if (w2 != 2 || read_len(&l, &x) < 0 || validate_keyvalue(x, 0) < 0) return BAIL;
                } else if (f2 == 5) {
                    if (w2 != 0 || read_varint(&l, &u) < 0) return BAIL;
                } else if (f2 == 6) {
                    if (w2 != 5 || l.end - l.p < 4) return BAIL;
                    l.p += 4;
                } else if (skip_value(&l, w2) < 0) {
                    return BAIL;
                }
            }
            break;
        }
        case 15: { /* Status: message(2), code(3) */
            if (wire != 2 || read_len(&b, &inner) < 0) return BAIL;
            if (++statuses > 1) return BAIL; /* protobuf would merge them */
            Buf s = inner;
            uint32_t f2;
            int w2;
            while (s.p < s.end) {
                if (read_tag(&s, &f2, &w2) < 0) return BAIL;
                Buf x;
                if (f2 == 2) {
                    if (read_string(&s, w2, &x) < 0) return BAIL;
                } else if (f2 == 3) {
                    if (w2 != 0 || read_varint(&s, &u) < 0) return BAIL;
                    status_code = (int32_t)(uint32_t)u;
                } else if (skip_value(&s, w2) < 0) {
                    return BAIL;
                }
            }
            break;
        }
        default:
            if (skip_value(&b, wire) < 0) return BAIL;
        }
    }
    w->seen++;
    Py_ssize_t *rejected = NULL;
    if (trace_id.end - trace_id.p != 16 || all_zero(trace_id)) rejected = &w->bad_trace;
    else if (span_id.end - span_id.p != 8 || all_zero(span_id)) rejected = &w->bad_span;
    else if (end < start) rejected = &w->end_before_start;
    if (rejected) {
        for (b = span; b.p < b.end;) {
            Buf inner = {NULL, NULL};
            read_tag(&b, &field, &wire); /* the structure was checked above */
            if (field != 9) {
                skip_value(&b, wire);
                continue;
            }
            read_len(&b, &inner);
            if (validate_keyvalue(inner, 0) < 0) return BAIL;
        }
        (*rejected)++;
        return 0;
    }
    if (attributes > w->max_attributes) w->truncated++;

    PyObject *found[NSLOTS];
    int alternates[NSLOTS];
    memset(found, 0, sizeof found);
    memset(alternates, 0, sizeof alternates);
    int markers = 0, rc = ERROR;
    PyObject *segments = NULL;
    Py_ssize_t taken = 0;
    b = span;
    while (b.p < b.end) {
        read_tag(&b, &field, &wire); /* the structure was checked above */
        if (field != 9) {
            skip_value(&b, wire);
            continue;
        }
        Buf inner = {NULL, NULL}, key;
        AnyVal value;
        read_len(&b, &inner);
        if (parse_keyvalue(inner, 0, &key, &value) < 0) {
            rc = BAIL;
            goto done;
        }
        if (taken++ >= w->max_attributes) continue; /* read past the limit only to validate */
        KeyEntry *entry = lookup_key(self, key);
        if (!entry) goto done;
        /* Copy what we need before allocating anything: an allocation may run the garbage collector, a
         * finaliser may let another thread decode, and that may clear the cache this entry lives in. */
        int cls = entry->cls, slot = entry->slot, priority = entry->priority, kind = entry->kind;
        int marker = entry->marker;
        if (cls == KEY_MAPPED) {
            if (priority) {
                if (found[slot] && alternates[slot] <= priority) continue;
                alternates[slot] = priority;
            } else {
                alternates[slot] = 0;
            }
            markers |= marker;
            PyObject *converted = convert(self, kind, &value, (self->intern_slots >> slot) & 1);
            if (!converted) goto done;
            Py_XSETREF(found[slot], converted);
        } else if (cls == KEY_OWN || cls == KEY_SEGMENT) {
            markers |= self->own_marker;
            if (cls == KEY_SEGMENT) {
                PyObject *name = Py_NewRef(entry->segment);
                if (!segments && !(segments = PyList_New(0))) {
                    Py_DECREF(name);
                    goto done;
                }
                if (PyList_GET_SIZE(segments) < MAX_SEGMENTS) {
                    PyObject *text = value_str(self, &value, 1);
                    PyObject *pair = text ? PyTuple_Pack(2, name, text) : NULL;
                    Py_XDECREF(text);
                    Py_DECREF(name);
                    if (!pair) goto done;
                    int appended = PyList_Append(segments, pair);
                    Py_DECREF(pair);
                    if (appended < 0) goto done;
                } else {
                    Py_DECREF(name);
                }
            }
        }
    }
    int op_error;
    PyObject *operation = operation_of(self, found, &op_error);
    if (op_error) goto done;
    if (!operation) {
        w->skipped++;
        rc = 0;
        goto done;
    }
    rc = build_call(self, w, found, operation, markers, segments, start, end, trace_id, span_id, status_code);
done:
    for (int i = 0; i < NSLOTS; i++) Py_XDECREF(found[i]);
    Py_XDECREF(segments);
    return rc;
}

/* Resource: service.name and service.version (last one wins, as in decode.py), entity refs validated. */
static int walk_resource(TraceDecoder *self, Walk *w, Buf b) {
    uint32_t field = 0;
    int wire = 0;
    while (b.p < b.end) {
        if (read_tag(&b, &field, &wire) < 0) return BAIL;
        Buf inner;
        if (field == 1) {
            Buf key;
            AnyVal value;
            if (wire != 2 || read_len(&b, &inner) < 0 || parse_keyvalue(inner, 0, &key, &value) < 0)
                return BAIL;
            KeyEntry *entry = lookup_key(self, key);
            if (!entry) return ERROR;
            int cls = entry->cls;
            if (cls == KEY_SERVICE_NAME || cls == KEY_SERVICE_VERSION) {
                PyObject *text = value_str(self, &value, 0);
                if (!text) return ERROR;
                Py_SETREF(*(cls == KEY_SERVICE_NAME ? &w->service : &w->service_version), text);
            }
        } else if (field == 3) { /* EntityRef: four string fields */
            if (wire != 2 || read_len(&b, &inner) < 0) return BAIL;
            if (validate_simple(inner, (1u << 1) | (1u << 2) | (1u << 3) | (1u << 4), 0) < 0) return BAIL;
        } else if (field == 2) {
            uint64_t u;
            if (wire != 0 || read_varint(&b, &u) < 0) return BAIL;
        } else if (skip_value(&b, wire) < 0) {
            return BAIL;
        }
    }
    return 0;
}

static void reset_scope(Walk *w) {
    for (int i = 0; i < 16; i++) Py_CLEAR(w->instrumentation[i]);
}

static int walk_scope_spans(TraceDecoder *self, Walk *w, Buf b) {
    /* pass 1: the scope (its name decides the instrumentation) and validation of the other fields */
    Buf walk = b, scope = {NULL, NULL};
    uint32_t field = 0;
    int wire = 0, scopes = 0;
    while (walk.p < walk.end) {
        if (read_tag(&walk, &field, &wire) < 0) return BAIL;
        Buf inner;
        if (field == 1) {
            if (wire != 2 || read_len(&walk, &inner) < 0) return BAIL;
            if (++scopes > 1) return BAIL;
            scope = inner;
        } else if (field == 2) {
            if (wire != 2 || read_len(&walk, &inner) < 0) return BAIL;
        } else if (field == 3) {
            if (read_string(&walk, wire, &inner) < 0) return BAIL;
        } else if (skip_value(&walk, wire) < 0) {
            return BAIL;
        }
    }
    Buf name = {NULL, NULL};
    if (scope.p) {
        /* InstrumentationScope: name(1), version(2), attributes(3), dropped(4) */
        if (validate_simple(scope, (1u << 1) | (1u << 2), 3) < 0) return BAIL;
        Buf s = scope;
        while (s.p < s.end) {
            read_tag(&s, &field, &wire);
            if (field == 1) read_len(&s, &name);
            else skip_value(&s, wire);
        }
    }
    reset_scope(w);
    PyObject *scope_name = name.p ? decode_str(name, 0) : PyUnicode_FromStringAndSize("", 0);
    if (!scope_name) return ERROR;
    Py_XSETREF(w->scope_name, scope_name);
    /* pass 2: the spans, in order */
    walk = b;
    while (walk.p < walk.end) {
        read_tag(&walk, &field, &wire);
        if (field != 2) {
            skip_value(&walk, wire);
            continue;
        }
        Buf span = {NULL, NULL};
        read_len(&walk, &span);
        int rc = walk_span(self, w, span);
        if (rc < 0) return rc;
    }
    return 0;
}

static int walk_resource_spans(TraceDecoder *self, Walk *w, Buf b) {
    Buf walk = b, resource = {NULL, NULL};
    uint32_t field = 0;
    int wire = 0, resources = 0;
    while (walk.p < walk.end) {
        if (read_tag(&walk, &field, &wire) < 0) return BAIL;
        Buf inner;
        if (field == 1) {
            if (wire != 2 || read_len(&walk, &inner) < 0) return BAIL;
            if (++resources > 1) return BAIL;
            resource = inner;
        } else if (field == 2) {
            if (wire != 2 || read_len(&walk, &inner) < 0) return BAIL;
        } else if (field == 3) {
            if (read_string(&walk, wire, &inner) < 0) return BAIL;
        } else if (skip_value(&walk, wire) < 0) {
            return BAIL;
        }
    }
    Py_SETREF(w->service, Py_NewRef(self->empty));
    Py_SETREF(w->service_version, Py_NewRef(self->empty));
    if (resource.p) {
        int rc = walk_resource(self, w, resource);
        if (rc < 0) return rc;
    }
    walk = b;
    while (walk.p < walk.end) {
        read_tag(&walk, &field, &wire);
        if (field != 2) {
            skip_value(&walk, wire);
            continue;
        }
        Buf scope_spans = {NULL, NULL};
        read_len(&walk, &scope_spans);
        int rc = walk_scope_spans(self, w, scope_spans);
        if (rc < 0) return rc;
    }
    return 0;
}

static PyObject *TraceDecoder_decode(TraceDecoder *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t max_attributes;
    if (!PyArg_ParseTuple(args, "y*n", &view, &max_attributes)) return NULL;
    Walk w;
    memset(&w, 0, sizeof w);
    w.max_attributes = max_attributes < 0 ? 0 : max_attributes;
    w.calls = PyList_New(0);
    w.service = Py_NewRef(self->empty);
    w.service_version = Py_NewRef(self->empty);
    PyObject *result = NULL;
    int rc = w.calls ? 0 : ERROR;
    Buf b = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
    uint32_t field = 0;
    int wire = 0;
    while (rc == 0 && b.p < b.end) {
        if (read_tag(&b, &field, &wire) < 0) { rc = BAIL; break; }
        if (field == 1) {
            Buf inner;
            if (wire != 2 || read_len(&b, &inner) < 0) { rc = BAIL; break; }
            rc = walk_resource_spans(self, &w, inner);
        } else if (skip_value(&b, wire) < 0) {
            rc = BAIL;
        }
    }
    if (rc == 0) {
        result = Py_BuildValue("(Onnnnnn)", w.calls, w.seen, w.skipped, w.truncated, w.bad_trace,
                               w.bad_span, w.end_before_start);
    } else if (rc == BAIL || PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        result = Py_NewRef(Py_None);
    }
    reset_scope(&w);
    Py_XDECREF(w.scope_name);
    Py_XDECREF(w.service);
    Py_XDECREF(w.service_version);
    Py_XDECREF(w.calls);
    PyBuffer_Release(&view);
    return result;
}

/* ---- construction ----------------------------------------------------------------------------------- */

static int store_str(PyObject **slot, PyObject *config, const char *name) {
    PyObject *v = PyDict_GetItemString(config, name);
    if (!v || !PyUnicode_Check(v)) {
        PyErr_Format(PyExc_TypeError, "config[%s] must be a str", name);
        return -1;
    }
    *slot = Py_NewRef(v);
    return 0;
}

static int TraceDecoder_init(TraceDecoder *self, PyObject *args, PyObject *kwargs) {
    PyObject *config, *fields;
    static char *kwlist[] = {"config", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!", kwlist, &PyDict_Type, &config)) return -1;
    PyObject *table = PyDict_GetItemString(config, "table");
    PyObject *record_type = PyDict_GetItemString(config, "record_type");
    fields = PyDict_GetItemString(config, "record_fields");
    PyObject *series_key = PyDict_GetItemString(config, "series_key");
    PyObject *series_cache = PyDict_GetItemString(config, "series_cache");
    PyObject *instrumentation = PyDict_GetItemString(config, "instrumentation");
    PyObject *model_ops = PyDict_GetItemString(config, "model_operations");
    PyObject *request_ops = PyDict_GetItemString(config, "request_type_operations");
    PyObject *oi_ops = PyDict_GetItemString(config, "openinference_operations");
    PyObject *evaluation_event = PyDict_GetItemString(config, "evaluation_event");
    PyObject *own_marker = PyDict_GetItemString(config, "own_marker");
    if (!table || !PyDict_Check(table) || !record_type || !PyType_Check(record_type) || !fields ||
        !PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) != NFIELDS || !series_key ||
        !PyCallable_Check(series_key) || !series_cache || !PyDict_Check(series_cache) || !instrumentation || !PyCallable_Check(instrumentation) ||
        !model_ops || !PyAnySet_Check(model_ops) || !request_ops || !PyDict_Check(request_ops) || !oi_ops ||
        !PyDict_Check(oi_ops) || !evaluation_event || !PyBytes_Check(evaluation_event) || !own_marker ||
        !PyLong_Check(own_marker)) {
        PyErr_SetString(PyExc_TypeError, "TraceDecoder: incomplete or mistyped config");
        return -1;
    }
    /* The record's slots, by name, in our field order: a renamed or added field refuses to construct. */
    PyTypeObject *type = (PyTypeObject *)record_type;
    if (type->tp_itemsize != 0) {
        PyErr_SetString(PyExc_TypeError, "record_type must be a slotted class");
        return -1;
    }
    Py_ssize_t slots = 0;
    for (PyMemberDef *m = type->tp_members; m && m->name; m++) slots++;
    if (slots != NFIELDS) {
        PyErr_Format(PyExc_TypeError, "record_type has %zd slots, the native decoder knows %d", slots, NFIELDS);
        return -1;
    }
    for (int i = 0; i < NFIELDS; i++) {
        PyObject *name = PyTuple_GET_ITEM(fields, i);
        PyObject *descr = PyObject_GetAttr(record_type, name);
        if (!descr) return -1;
        if (!Py_IS_TYPE(descr, &PyMemberDescr_Type) ||
            ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
            Py_DECREF(descr);
            PyErr_Format(PyExc_TypeError, "record_type.%U is not an object slot", name);
            return -1;
        }
        self->offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
    }
    self->table = Py_NewRef(table);
    self->record_type = (PyTypeObject *)Py_NewRef(record_type);
    self->series_key = Py_NewRef(series_key);
    self->series_cache = Py_NewRef(series_cache);
    self->instrumentation = Py_NewRef(instrumentation);
    self->model_operations = Py_NewRef(model_ops);
    self->request_type_operations = Py_NewRef(request_ops);
    self->openinference_operations = Py_NewRef(oi_ops);
    self->evaluation_event = Py_NewRef(evaluation_event);
    self->own_marker = (int)PyLong_AsLong(own_marker);
    if (store_str(&self->own_prefix, config, "own_prefix") < 0 ||
        store_str(&self->segment_prefix, config, "segment_prefix") < 0 ||
        store_str(&self->tenant_key, config, "tenant_key") < 0 ||
        store_str(&self->tenant_name, config, "tenant_name") < 0 ||
        store_str(&self->service_name_key, config, "service_name_key") < 0 ||
        store_str(&self->service_version_key, config, "service_version_key") < 0 ||
        store_str(&self->other_error, config, "other_error") < 0 ||
        store_str(&self->unknown_service, config, "unknown_service") < 0 ||
        store_str(&self->environment, config, "environment") < 0)
        return -1;
    self->empty = PyUnicode_FromString("");
    self->str_true = PyUnicode_FromString("true");
    self->str_false = PyUnicode_FromString("false");
    self->empty_tuple = PyTuple_New(0);
    self->class_prefix = PyUnicode_FromString("<class '");
    self->strip_chars = PyUnicode_FromString("'>");
    PyObject *intern = PyDict_GetItemString(config, "intern_slots");
    if (!intern || !PyTuple_Check(intern)) {
        PyErr_SetString(PyExc_TypeError, "config[intern_slots] must be a tuple of slots");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(intern); i++) {
        long slot = PyLong_AsLong(PyTuple_GET_ITEM(intern, i));
        if (slot < 0 || slot >= NSLOTS) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "intern_slots: slot out of range");
            return -1;
        }
        self->intern_slots |= 1u << slot;
    }
    self->strings = PyMem_Calloc(STR_CACHE_SIZE, sizeof(StrEntry));
    self->keys = PyMem_Calloc(KEY_CACHE_SIZE, sizeof(KeyEntry));
    if (!self->empty || !self->str_true || !self->str_false || !self->empty_tuple || !self->class_prefix ||
        !self->strip_chars || !self->keys || !self->strings) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void TraceDecoder_dealloc(TraceDecoder *self) {
    clear_keys(self);
    PyMem_Free(self->keys);
    clear_strings(self);
    PyMem_Free(self->strings);
    Py_XDECREF(self->table);
    Py_XDECREF(self->record_type);
    Py_XDECREF(self->series_key);
    Py_XDECREF(self->series_cache);
    Py_XDECREF(self->instrumentation);
    Py_XDECREF(self->model_operations);
    Py_XDECREF(self->request_type_operations);
    Py_XDECREF(self->openinference_operations);
    Py_XDECREF(self->own_prefix);
    Py_XDECREF(self->segment_prefix);
    Py_XDECREF(self->tenant_key);
    Py_XDECREF(self->tenant_name);
    Py_XDECREF(self->service_name_key);
    Py_XDECREF(self->service_version_key);
    Py_XDECREF(self->evaluation_event);
    Py_XDECREF(self->empty);
    Py_XDECREF(self->str_true);
    Py_XDECREF(self->str_false);
    Py_XDECREF(self->empty_tuple);
    Py_XDECREF(self->other_error);
    Py_XDECREF(self->class_prefix);
    Py_XDECREF(self->strip_chars);
    Py_XDECREF(self->unknown_service);
    Py_XDECREF(self->environment);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef TraceDecoder_methods[] = {
    {"decode", (PyCFunction)TraceDecoder_decode, METH_VARARGS,
     "decode(payload, max_attributes) -> (calls, seen, skipped, truncated, bad_trace_id, bad_span_id, "
     "end_before_start), or None for the reference path"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TraceDecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "otel_llm_collector._native_decode.TraceDecoder",
    .tp_basicsize = sizeof(TraceDecoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Decodes OTLP trace export requests straight from their bytes into CallRecords.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)TraceDecoder_init,
    .tp_dealloc = (destructor)TraceDecoder_dealloc,
    .tp_methods = TraceDecoder_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native_decode", "Native OTLP trace decoder (see native_decode.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__native_decode(void) {
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "the native decoder supports little-endian hosts only");
        return NULL;
    }
    if (PyType_Ready(&TraceDecoderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "TraceDecoder", (PyObject *)&TraceDecoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
