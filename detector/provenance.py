"""Evidence beyond the model: what an image's own bytes say about where it came from.

    provenance.read(data) -> Provenance (findings)   never raises
    provenance.reconcile(prov, verdict) -> (code, text)

Read from the bytes as received (never the decoded pixels, which have lost the metadata):

* C2PA Content Credentials, read and validated by the CAI's own `c2pa-python` (the Rust
  c2pa SDK): the outcome is one of none / trusted (valid, signer on the trust list) /
  untrusted (valid, signer not on the trust list) / invalid (tampered: the validation codes
  say what failed) / unreadable; with the claim generator, the signer, the actions (e.g.
  c2pa.created with its digitalSourceType) and the ingredients.
* IPTC/XMP DigitalSourceType (trainedAlgorithmicMedia, compositeWithTrainedAlgorithmicMedia,
  ...) and generator names in XMP (CreatorTool and the like).
* PNG text chunks where generators write their parameters: AUTOMATIC1111 `parameters`,
  ComfyUI `prompt` / `workflow`, NovelAI-style `Software` / `Comment`.
* EXIF Software, Make/Model, UserComment (JPEG, WebP, PNG eXIf) where generators write them.

Why a separate reader and not the model: a generator that declares itself, or a camera that
signs its pictures, is evidence the pixels cannot give. Its absence says nothing: most
platforms strip metadata on upload. Every reader is bounded (`MAX_XMP`, `MAX_TEXT`,
`MAX_C2PA`) and wrapped: a malformed or huge block becomes a finding "unreadable: why",
never an exception, so one hostile file never stops a batch.

Trust list: by default the c2pa library's own default settings, which ship no trust anchors,
so a valid credential is reported "signer not on the trust list" unless anchors are
configured. Point `DEEPFAKE_LAB_C2PA_TRUST_ANCHORS` at a PEM file of trusted roots (e.g. the
C2PA conformance trust list), or pass `trust_anchors=` to `read`; `trust_list_name()` says
which list was used, and the UI and reports show it.
"""
from __future__ import annotations

import io
import json
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

# --- limits: what a reader will look at before calling a block unreadable ---------------------
MAX_XMP = 1024 ** 2          # one XMP packet (bytes)
MAX_TEXT = 1024 ** 2         # one PNG text chunk, decompressed (bytes)
MAX_C2PA = 16 * 1024 ** 2    # the C2PA manifest store of one file (bytes)
MAX_SHOWN = 300              # characters of a parameter/prompt string kept in a finding

# --- outcomes ----------------------------------------------------------------------------------
NONE, TRUSTED, UNTRUSTED, INVALID, UNREADABLE = "none", "trusted", "untrusted", "invalid", "unreadable"
C2PA_TEXT = {
    NONE: "no Content Credentials",
    TRUSTED: "Content Credentials valid (signer on the trust list)",
    UNTRUSTED: "Content Credentials valid, but the signer is not on the trust list",
    INVALID: "Content Credentials INVALID (tampered or broken)",
    UNREADABLE: "Content Credentials unreadable",
}

# IPTC digital source types (http://cv.iptc.org/newscodes/digitalsourcetype/), by what they declare.
AI_SOURCE_TYPES = {"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"}
CAPTURE_SOURCE_TYPES = {"digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print"}
IPTC_PREFIX = "http://cv.iptc.org/newscodes/digitalsourcetype/"

# Generator names that tools write into Software / CreatorTool / Make / comments.
GENERATOR_RE = re.compile(
    r"stable[\s_-]?diffusion|midjourney|\bdall[\s·.-]?e\b|\bfirefly\b|novelai|comfyui|automatic1111|"
    r"invokeai|fooocus|\bimagen\b|\bflux\b|leonardo\.?ai|ideogram|dreamstudio|nightcafe|craiyon|"
    r"bing image creator|image creator from microsoft|gpt-4o|\bsora\b|\brunway\s?ml\b|made with ai|ai[\s-]generated",
    re.IGNORECASE)
# AUTOMATIC1111 / Forge parameter text (PNG `parameters`, JPEG UserComment).
A1111_RE = re.compile(r"\bSteps:\s*\d+.*\bSampler:", re.DOTALL)

# Reconciled codes (report.results_frame's `reconciled` column).
DECLARED_AI, DECLARED_CAPTURE, CONFLICT, NO_CLAIM = "declared_ai", "declared_capture", "conflict", "none"
STRIPPED_NOTE = "most platforms strip metadata on upload"


@dataclass
class Finding:
    """One thing the bytes say: `source` (c2pa, xmp, png, exif), a one-line `text`, and what
    it declares: "ai" (AI-generated), "capture" (camera capture), or None."""
    source: str
    text: str
    declares: str | None = None


@dataclass
class Credential:
    """The active C2PA manifest, as shown to a person. `state` is one of TRUSTED, UNTRUSTED,
    INVALID; `codes` the failure codes of the validation (empty when valid and trusted)."""
    state: str
    claim_generator: str = ""
    signer: str = ""
    actions: list[dict] = field(default_factory=list)   # {"action", "digitalSourceType", "softwareAgent"}
    ingredients: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    source_types: list[str] = field(default_factory=list)  # short IPTC names found in the actions


@dataclass
class Provenance:
    """Everything `read` found in one file: the C2PA outcome (NONE/TRUSTED/UNTRUSTED/INVALID/
    UNREADABLE), the credential (when one was read), every finding, and the trust list used."""
    c2pa: str = NONE
    credential: Credential | None = None
    findings: list[Finding] = field(default_factory=list)
    trust_list: str = ""

    @property
    def declares_ai(self) -> bool:
        return any(f.declares == "ai" for f in self.findings)

    @property
    def declares_capture(self) -> bool:
        """A camera-capture claim from a valid credential (trusted or not); metadata alone
        (EXIF Make/Model) never counts: anyone can write it."""
        return self.c2pa in (TRUSTED, UNTRUSTED) and any(
            f.declares == "capture" and f.source == "c2pa" for f in self.findings)

    def summary(self) -> str:
        """All findings on one line, "; "-separated (the table's `provenance` column)."""
        return "; ".join(f.text for f in self.findings) if self.findings else "no provenance metadata"


# --------------------------------------------------------------------------------------------
# Trust list
# --------------------------------------------------------------------------------------------
TRUST_ENV = "DEEPFAKE_LAB_C2PA_TRUST_ANCHORS"


def _trust_anchors(trust_anchors: str | None) -> tuple[str | None, str]:
    """(PEM text or None, the name of the list) from the argument, else the environment."""
    if trust_anchors:
        return trust_anchors, "trust anchors given by the caller"
    path = os.environ.get(TRUST_ENV, "").strip()
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read(), f"trust anchors from {os.path.basename(path)} (${TRUST_ENV})"
        except OSError as exc:
            return None, f"c2pa library defaults (no trust anchors); ${TRUST_ENV} unreadable: {exc.strerror or exc}"
    return None, "c2pa library defaults (no trust anchors configured: no signer is on the trust list)"


def trust_list_name(trust_anchors: str | None = None) -> str:
    """Which trust list a `read` with these arguments uses, in words (shown in the UI)."""
    return _trust_anchors(trust_anchors)[1]


# --------------------------------------------------------------------------------------------
# Containers: bounded walkers over JPEG segments, PNG chunks and RIFF (WebP) chunks
# --------------------------------------------------------------------------------------------
def _kind(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "other"


MIME = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def _jpeg_segments(data: bytes):
    """(marker, payload) of each JPEG segment up to the image data (SOS)."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no metadata after this
            return
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        yield marker, data[i + 4:i + 2 + length]
        i += 2 + length


def _png_chunks(data: bytes):
    i = 8
    while i + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[i:i + 8])
        yield ctype, data[i + 8:i + 8 + length]
        if ctype == b"IEND":
            return
        i += 12 + length


def _riff_chunks(data: bytes):
    i = 12
    while i + 8 <= len(data):
        ctype, length = data[i:i + 4], struct.unpack("<I", data[i + 4:i + 8])[0]
        yield ctype, data[i + 8:i + 8 + length]
        i += 8 + length + (length & 1)


XMP_STD = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXT = b"http://ns.adobe.com/xmp/extension/\x00"


class Unreadable(Exception):
    """A block that cannot be read: its message says why (shown as "unreadable: why")."""


def _xmp_packets(data: bytes, kind: str) -> list[bytes]:
    """The XMP packets of a file (JPEG standard + extended XMP joined, PNG iTXt, WebP XMP),
    raising Unreadable when one is larger than MAX_XMP."""
    packets: list[bytes] = []
    if kind == "jpeg":
        std, ext_total, ext = None, 0, []
        for marker, payload in _jpeg_segments(data):
            if marker != 0xE1:
                continue
            if payload.startswith(XMP_STD):
                std = payload[len(XMP_STD):]
            elif payload.startswith(XMP_EXT):
                ext_total += len(payload) - len(XMP_EXT) - 40  # GUID (32) + full length + offset
                if ext_total > MAX_XMP:
                    raise Unreadable(f"XMP is over {_mb(MAX_XMP)} (extended XMP segments), above the read limit")
                ext.append(payload[len(XMP_EXT) + 40:])
        if std is not None:
            packets.append(std)
        if ext:
            packets.append(b"".join(ext))
    elif kind == "png":
        for ctype, payload in _png_chunks(data):
            if ctype == b"iTXt" and payload.startswith(b"XML:com.adobe.xmp\x00"):
                packets.append(_png_text(ctype, payload)[1].encode("utf-8", "replace"))
    elif kind == "webp":
        for ctype, payload in _riff_chunks(data):
            if ctype == b"XMP ":
                packets.append(payload)
    for p in packets:
        if len(p) > MAX_XMP:
            raise Unreadable(f"XMP packet is {_mb(len(p))}, above the {_mb(MAX_XMP)} read limit")
    return packets


def _mb(n: int) -> str:
    return f"{n / 1024 ** 2:.1f} MB"


def _inflate(blob: bytes) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(blob, MAX_TEXT + 1)
    if len(out) > MAX_TEXT:
        raise Unreadable(f"a compressed PNG text chunk inflates past {_mb(MAX_TEXT)}")
    return out


def _png_text(ctype: bytes, payload: bytes) -> tuple[str, str]:
    """(keyword, text) of a tEXt / zTXt / iTXt chunk; Unreadable when too large or broken."""
    if len(payload) > MAX_TEXT:
        raise Unreadable(f"PNG text chunk is {_mb(len(payload))}, above the {_mb(MAX_TEXT)} read limit")
    key, _, rest = payload.partition(b"\x00")
    keyword = key.decode("latin-1")
    if ctype == b"tEXt":
        return keyword, rest.decode("latin-1")
    if ctype == b"zTXt":
        return keyword, _inflate(rest[1:]).decode("latin-1")
    # iTXt: compression flag, method, language\0, translated keyword\0, text
    flag = rest[:1]
    _, _, rest = rest[2:].partition(b"\x00")
    _, _, text = rest.partition(b"\x00")
    if flag == b"\x01":
        text = _inflate(text)
    return keyword, text.decode("utf-8", "replace")


def _short(text: str, n: int = MAX_SHOWN) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 3] + "..."


def _source_type_name(value: str) -> str:
    """"http://cv.iptc.org/.../trainedAlgorithmicMedia" -> "trainedAlgorithmicMedia"."""
    return str(value).rstrip("/").rsplit("/", 1)[-1].split(":")[-1]


def _declares(source_type: str) -> str | None:
    name = _source_type_name(source_type)
    return "ai" if name in AI_SOURCE_TYPES else "capture" if name in CAPTURE_SOURCE_TYPES else None


# --------------------------------------------------------------------------------------------
# C2PA
# --------------------------------------------------------------------------------------------
def _has_c2pa_box(data: bytes, kind: str) -> bool:
    """Whether the container carries a C2PA/JUMBF block (JPEG APP11 "JP", PNG caBX, RIFF C2PA)."""
    if kind == "jpeg":
        return any(m == 0xEB and p[:2] == b"JP" for m, p in _jpeg_segments(data))
    if kind == "png":
        return any(c == b"caBX" for c, _ in _png_chunks(data))
    if kind == "webp":
        return any(c == b"C2PA" for c, _ in _riff_chunks(data))
    return False


def _c2pa_context(anchors: str | None):
    import c2pa

    if not anchors:
        return None  # the library's default context
    return c2pa.Context(c2pa.Settings.from_dict({"trust": {"trust_anchors": anchors},
                                                "verify": {"verify_trust": True}}))


def read_c2pa(data: bytes, kind: str, trust_anchors: str | None = None) -> Credential | None:
    """The active manifest validated by c2pa-python, None when the file has none; raises
    Unreadable when a C2PA block is present but cannot be parsed."""
    boxed = _has_c2pa_box(data, kind)
    if kind not in MIME:
        return None
    try:
        import c2pa
    except ImportError:  # without the SDK a present block cannot be checked; an absent one is no finding
        if boxed:
            raise Unreadable("a C2PA block is present but c2pa-python is not installed") from None
        return None

    anchors, _ = _trust_anchors(trust_anchors)
    try:
        context = _c2pa_context(anchors)
        kwargs = {"context": context} if context is not None else {}
        reader = c2pa.Reader.try_create(MIME[kind], io.BytesIO(data), **kwargs)
        if reader is None:
            if boxed:
                raise Unreadable("a C2PA block is present but holds no readable manifest")
            return None
        with reader:
            store_json = reader.json()
    except Unreadable:
        raise
    except Exception as exc:  # c2pa.C2paError and anything the native side raises
        if not boxed and "ManifestNotFound" in type(exc).__name__:
            return None
        raise Unreadable(f"C2PA block could not be parsed ({type(exc).__name__.lstrip('_')}: {_short(exc, 160)})")
    if len(store_json) > MAX_C2PA:
        raise Unreadable(f"C2PA manifest store is {_mb(len(store_json))}, above the {_mb(MAX_C2PA)} read limit")
    return _credential(json.loads(store_json))


def _credential(store: dict) -> Credential:
    state = str(store.get("validation_state") or "").lower()
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failures = [f.get("code", "") for f in results.get("failure") or []]
    if not results:  # older store layout: validation_status holds the failures
        failures = [f.get("code", "") for f in store.get("validation_status") or []]
    untrusted_only = failures and all(c.startswith("signingCredential.untrusted") for c in failures)
    if state == "trusted":
        outcome = TRUSTED
    elif state == "valid" or (state == "" and (not failures or untrusted_only)):
        outcome = UNTRUSTED
    else:
        outcome = INVALID
    manifest = (store.get("manifests") or {}).get(store.get("active_manifest") or "", {})
    gen_info = manifest.get("claim_generator_info") or []
    generator = ", ".join(" ".join(str(g.get(k, "")) for k in ("name", "version")).strip()
                          for g in gen_info if isinstance(g, dict)) or str(manifest.get("claim_generator", ""))
    sig = manifest.get("signature_info") or {}
    signer = " / ".join(str(sig[k]) for k in ("common_name", "issuer") if sig.get(k))
    actions, types = [], []
    for a in manifest.get("assertions") or []:
        if str(a.get("label", "")).startswith("c2pa.actions"):
            for act in (a.get("data") or {}).get("actions") or []:
                agent = act.get("softwareAgent")
                agent = agent.get("name", "") if isinstance(agent, dict) else agent or ""
                dst = act.get("digitalSourceType") or ""
                actions.append({"action": act.get("action", ""), "digitalSourceType": _source_type_name(dst) if dst else "",
                                "softwareAgent": str(agent)})
                if dst:
                    types.append(_source_type_name(dst))
    ingredients = [str(i.get("title") or i.get("instance_id") or "?") + (f" ({i['relationship']})" if i.get("relationship") else "")
                   for i in manifest.get("ingredients") or []]
    return Credential(outcome, generator, signer, actions, ingredients,
                      [c for c in failures if outcome != TRUSTED], types)


def _credential_findings(cred: Credential) -> list[Finding]:
    head = C2PA_TEXT[cred.state]
    bits = [f"generator {cred.claim_generator}" if cred.claim_generator else "",
            f"signed by {cred.signer}" if cred.signer else ""]
    if cred.state == INVALID and cred.codes:
        bits.append("codes " + ", ".join(sorted(set(cred.codes))))
    out = [Finding("c2pa", head + (": " + "; ".join(b for b in bits if b) if any(bits) else ""))]
    if cred.state == INVALID:
        return out  # a tampered credential declares nothing that can be relied on
    for act in cred.actions:
        dst = act["digitalSourceType"]
        text = f"C2PA action {act['action']}" + (f" ({dst})" if dst else "") \
            + (f" by {act['softwareAgent']}" if act["softwareAgent"] else "")
        out.append(Finding("c2pa", text, _declares(dst) if dst else None))
    if cred.ingredients:
        out.append(Finding("c2pa", "C2PA ingredients: " + ", ".join(cred.ingredients[:10])))
    return out


# --------------------------------------------------------------------------------------------
# XMP, PNG text, EXIF
# --------------------------------------------------------------------------------------------
_DST_RE = re.compile(rb"DigitalSourceType(?:=\"|>|\s*=\s*')\s*([^\"'<\s]+)")
_TOOL_RE = re.compile(rb"(CreatorTool|softwareAgent|Software|Credit|CreditText)(?:=\"|>)([^\"<]{1,300})")


def _xmp_findings(packets: list[bytes]) -> list[Finding]:
    out, seen = [], set()
    for p in packets:
        for m in _DST_RE.finditer(p):
            name = _source_type_name(m.group(1).decode("utf-8", "replace"))
            if name not in seen:
                seen.add(name)
                out.append(Finding("xmp", f"XMP DigitalSourceType {name}", _declares(name)))
        for m in _TOOL_RE.finditer(p):
            value = m.group(2).decode("utf-8", "replace").strip()
            if GENERATOR_RE.search(value) and value not in seen:
                seen.add(value)
                out.append(Finding("xmp", f"XMP {m.group(1).decode()} names a generator: {_short(value, 120)}", "ai"))
    return out


def _png_findings(data: bytes) -> list[Finding]:
    out = []
    for ctype, payload in _png_chunks(data):
        if ctype not in (b"tEXt", b"zTXt", b"iTXt") or payload.startswith(b"XML:com.adobe.xmp\x00"):
            continue
        try:
            key, text = _png_text(ctype, payload)
        except Unreadable as exc:
            out.append(Finding("png", f"unreadable: {exc}"))
            continue
        except Exception as exc:
            out.append(Finding("png", f"unreadable: PNG text chunk is broken ({type(exc).__name__})"))
            continue
        low = key.lower()
        if low == "parameters" and text.strip():
            tool = "AUTOMATIC1111-style" if A1111_RE.search(text) else "generation"
            out.append(Finding("png", f"PNG '{key}' chunk: {tool} parameters: {_short(text)}", "ai"))
        elif low in ("prompt", "workflow") and _looks_like_comfy(text):
            out.append(Finding("png", f"PNG '{key}' chunk: ComfyUI {low} ({_comfy_summary(text)})", "ai"))
        elif low in ("software", "source", "comment", "description", "title", "generation time") and text.strip():
            ai = GENERATOR_RE.search(text) or (low == "comment" and _looks_like_novelai(text))
            if ai:
                out.append(Finding("png", f"PNG '{key}' chunk: {_short(text, 160)}", "ai"))
    return out


def _looks_like_comfy(text: str) -> bool:
    try:
        obj = json.loads(text)
    except ValueError:
        return False
    if isinstance(obj, dict) and "nodes" in obj:
        return True  # workflow
    return isinstance(obj, dict) and any(isinstance(v, dict) and "class_type" in v for v in obj.values())


def _comfy_summary(text: str) -> str:
    obj = json.loads(text)
    if "nodes" in obj:
        types = [n.get("type", "?") for n in obj.get("nodes") or [] if isinstance(n, dict)]
    else:
        types = [v.get("class_type", "?") for v in obj.values() if isinstance(v, dict)]
    return f"{len(types)} nodes: " + _short(", ".join(sorted(set(types))), 160)


def _looks_like_novelai(text: str) -> bool:
    try:
        obj = json.loads(text)
    except ValueError:
        return False
    return isinstance(obj, dict) and "prompt" in obj and any(k in obj for k in ("steps", "sampler", "seed", "scale"))


_EXIF_TAGS = {0x010F: "Make", 0x0110: "Model", 0x0131: "Software", 0x010E: "ImageDescription", 0x013B: "Artist"}
_USER_COMMENT = 0x9286


def _user_comment(value: Any) -> str:
    if isinstance(value, bytes):
        head, body = value[:8], value[8:]
        if head.startswith(b"UNICODE"):
            # piexif (A1111) writes UTF-16 big-endian; others little-endian: take the readable one
            be, le = body.decode("utf-16-be", "replace"), body.decode("utf-16-le", "replace")
            return be if be.isprintable() or be.count("\ufffd") <= le.count("\ufffd") else le
        if head.startswith(b"ASCII") or head == b"\x00" * 8:
            return body.decode("latin-1").strip("\x00 ")
        return value.decode("utf-8", "replace").strip("\x00 ")
    return str(value or "")


def _exif_findings(data: bytes) -> list[Finding]:
    from PIL import ExifTags, Image

    from detector.forensics import _PIL_FORMATS

    try:
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as img:
            exif = img.getexif()
            if not exif:
                return []
            fields = {name: exif.get(tag) for tag, name in _EXIF_TAGS.items() if exif.get(tag)}
            try:
                comment = exif.get_ifd(ExifTags.IFD.Exif).get(_USER_COMMENT)
            except Exception:
                comment = None
    except Exception as exc:
        return [Finding("exif", f"unreadable: EXIF block is broken ({type(exc).__name__})")]
    out = []
    for name, value in fields.items():
        text = _short(str(value).strip("\x00 "), 160)
        if GENERATOR_RE.search(text):
            out.append(Finding("exif", f"EXIF {name} names a generator: {text}", "ai"))
        elif name in ("Make", "Model", "Software"):
            out.append(Finding("exif", f"EXIF {name}: {text}"))
    if comment:
        text = _user_comment(comment)
        if A1111_RE.search(text):
            out.append(Finding("exif", f"EXIF UserComment holds generation parameters: {_short(text)}", "ai"))
        elif GENERATOR_RE.search(text):
            out.append(Finding("exif", f"EXIF UserComment names a generator: {_short(text, 160)}", "ai"))
    return out


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------
def read(data: bytes, *, trust_anchors: str | None = None) -> Provenance:
    """Every provenance finding in a file's bytes as received. Never raises: each reader's
    failure becomes a finding "unreadable: why" and the others still run."""
    prov = Provenance(trust_list=trust_list_name(trust_anchors))
    try:
        data = bytes(data or b"")
        kind = _kind(data)
    except Exception as exc:  # not bytes at all
        prov.findings.append(Finding("file", f"unreadable: {type(exc).__name__}"))
        return prov
    try:
        cred = read_c2pa(data, kind, trust_anchors)
        if cred is not None:
            prov.c2pa, prov.credential = cred.state, cred
            prov.findings += _credential_findings(cred)
    except Unreadable as exc:
        prov.c2pa = UNREADABLE
        prov.findings.append(Finding("c2pa", f"unreadable: {exc}"))
    except Exception as exc:
        prov.c2pa = UNREADABLE
        prov.findings.append(Finding("c2pa", f"unreadable: C2PA reader failed ({type(exc).__name__})"))
    try:
        prov.findings += _xmp_findings(_xmp_packets(data, kind))
    except Unreadable as exc:
        prov.findings.append(Finding("xmp", f"unreadable: {exc}"))
    except Exception as exc:
        prov.findings.append(Finding("xmp", f"unreadable: XMP is broken ({type(exc).__name__})"))
    if kind == "png":
        try:
            prov.findings += _png_findings(data)
        except Exception as exc:
            prov.findings.append(Finding("png", f"unreadable: PNG chunks are broken ({type(exc).__name__})"))
    try:
        if kind != "other":
            prov.findings += _exif_findings(data)
    except Exception as exc:
        prov.findings.append(Finding("exif", f"unreadable: EXIF is broken ({type(exc).__name__})"))
    return prov


def reconcile(prov: Provenance | None, verdict: str) -> tuple[str, str]:
    """The model verdict and the provenance findings on one line: (code, text). The rules, in
    order (docs/evidence.md):

    1. A valid credential (trusted or not) or metadata that declares AI generation ->
       DECLARED_AI "declared AI-generated", whatever the score: a generator that says so is
       believed (nobody gains by falsely declaring AI).
    2. A valid credential that declares a camera capture and a FAKE verdict -> CONFLICT
       "conflict: review" (the credential vouches for the capture, the model disagrees).
    3. A valid camera credential and a REAL / UNCERTAIN verdict -> DECLARED_CAPTURE.
    4. Anything else (no credential, stripped metadata, an invalid or unreadable credential)
       -> NO_CLAIM: the provenance says nothing either way, and the text says why."""
    from detector.inference import FAKE

    if prov is None:
        return NO_CLAIM, "provenance not read"
    untrusted = prov.c2pa == UNTRUSTED
    signer_note = " (signer not on the trust list)" if untrusted else ""
    if prov.declares_ai:
        where = "; ".join(f.text for f in prov.findings if f.declares == "ai")
        return DECLARED_AI, f"declared AI-generated by its own metadata ({_short(where, 200)}), whatever the score"
    if prov.declares_capture:
        if verdict == FAKE:
            return CONFLICT, (f"conflict: review: a valid Content Credential{signer_note} declares a camera "
                              "capture but the model says FAKE")
        return DECLARED_CAPTURE, (f"declared camera capture by a valid Content Credential{signer_note}; "
                                  f"the model says {verdict}")
    if prov.c2pa == INVALID:
        return NO_CLAIM, ("Content Credentials are invalid (tampered after signing): their claims cannot be "
                          f"relied on; the model verdict stands alone ({verdict})")
    if prov.c2pa == UNREADABLE or any(f.text.startswith("unreadable") for f in prov.findings):
        return NO_CLAIM, f"some metadata is unreadable; nothing declared either way; the model verdict stands alone ({verdict})"
    if prov.c2pa in (TRUSTED, UNTRUSTED):
        return NO_CLAIM, (f"valid Content Credentials{signer_note} declare neither AI generation nor a camera "
                          f"capture; the model verdict stands alone ({verdict})")
    return NO_CLAIM, (f"no Content Credentials or generator metadata: says nothing either way ({STRIPPED_NOTE}); "
                      f"the model verdict stands alone ({verdict})")
