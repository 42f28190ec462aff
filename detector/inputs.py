"""Batch inputs of the Detect page, turned into (name, bytes) entries (no Streamlit here).

* `expand`: uploads, where a `.zip` is opened IN MEMORY (never written to disk) and each of
  its image files becomes an entry named `archive.zip/inner/path.jpg`. Guards against zip
  bombs and junk: at most `MAX_MEMBERS` files are read, `MAX_MEMBER_BYTES` each and
  `MAX_TOTAL_BYTES` in all (sizes as read, not as the zip's headers claim); folders,
  `__MACOSX/` and dot-files are skipped silently; a corrupt zip, a non-image file, an
  encrypted or oversized member each give one entry with an error message instead of bytes.
* `list_folder` / `read_folder`: the images of a folder on this machine (recursive, sorted,
  capped at `MAX_LISTED`), with the known label of each: an image below a folder named
  `real` or `fake` (any case, any depth: `data.label_of`, the one labelling rule)
  carries that label. A capped listing is a balanced, deterministic sample across the labels
  (`balanced_sample`), never the first files in order: a folder with fake/ before real/ would
  otherwise list only fakes.
* `sample_labels`: the known labels of the sample gallery (`sample_images/LABELS.csv`).

Decoding stays in `detector.images` (the one decoder): entries hold bytes, not pixels.
"""
from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterable, NamedTuple

from detector import images, roots
from detector.data import is_junk, label_of

MAX_MEMBERS = 500                    # files read from one zip
MAX_MEMBER_BYTES = 64 * 1024 ** 2    # one file (zip member or folder file), uncompressed
MAX_TOTAL_BYTES = 1024 ** 3          # all the files of one zip, uncompressed
MAX_LISTED = 200                     # images listed from one folder
MAX_WALKED = 50_000                  # folder entries looked at before giving up (a typo like "/")


class Entry(NamedTuple):
    """One input file. `data` is None when it could not be read; then `error` says why."""

    name: str
    data: bytes | None
    error: str = ""
    label: str = ""   # "real" / "fake" when a folder in its path says so, else ""


def known_label(path: str) -> str:
    """"real" / "fake" from a real/ or fake/ folder in a relative path, else ""."""
    found = label_of(path)
    return found[0] if found else ""


skipped = is_junk  # folders' junk that is not a user's file: `__MACOSX/...`, dot-files, dot-folders


def is_image_name(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in images.IMAGE_EXTENSIONS


def is_zip_name(name: str) -> bool:
    return name.lower().endswith(".zip")


def _not_an_image(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower() or "no extension"
    return (f"not an image file ({suffix}); images are read by their extension: "
            + ", ".join(images.IMAGE_EXTENSIONS))


def _mb(n: int) -> str:
    return f"{n / 1024 ** 2:.0f} MB"


_READ_ERRORS = (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, OSError, ValueError, EOFError)
_CHUNK = 1024 ** 2


def _checked_size(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> int:
    """A member's size as read (up to `limit` + 1), streamed in chunks and not kept: reading
    to the end makes zipfile check its CRC, so a member that passes reads back the same."""
    size = 0
    with archive.open(info) as fh:
        while size <= limit and (chunk := fh.read(min(_CHUNK, limit + 1 - size))):
            size += len(chunk)
        if size <= limit:
            fh.read(1)  # at the end: zipfile checks the CRC here
    return size


class _Member(NamedTuple):
    """Where a zip member's bytes are: the zip's own bytes (already held: the upload) and the
    member's name; `read` decompresses it again."""

    blob: bytes
    filename: str
    limit: int

    def read(self) -> bytes | None:
        try:
            with zipfile.ZipFile(io.BytesIO(self.blob)) as archive, archive.open(self.filename) as fh:
                data = fh.read(self.limit + 1)
        except _READ_ERRORS:  # it read once in expand_zip: only a changed blob gets here
            return None
        return data if len(data) <= self.limit else None


class _ZipEntry(Entry):
    """An `Entry` of a zip member whose `data` is read from the zip on each access (not kept)."""

    __slots__ = ()

    @property
    def data(self) -> bytes | None:  # type: ignore[override]
        return tuple.__getitem__(self, 1).read()


def expand_zip(name: str, blob: bytes, *, max_members: int = MAX_MEMBERS,
               max_member_bytes: int = MAX_MEMBER_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES) -> list[Entry]:
    """A zip's files as entries `name/inner/path`, read in memory, in the zip's order.

    Images carry their bytes (and a label from a real/ or fake/ folder); every other file
    that is not skipped junk gets an error entry. Each image is read through once here (its
    size as read, its CRC), not kept: its `data` decompresses it again when asked, so the
    entries of a large zip hold no more than the zip itself. A zip that cannot be opened is one error
    entry named `name`; so is the note that files beyond `max_members` were not read."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        return [Entry(name, None, f"not a readable zip file ({exc})")]
    out: list[Entry] = []
    files = [i for i in archive.infolist() if not i.is_dir() and not skipped(i.filename)]
    total = 0
    with archive:
        for info in files[:max_members]:
            inner = info.filename.replace("\\", "/").lstrip("/")
            entry = f"{name}/{inner}"
            label = known_label(inner)
            if not is_image_name(inner):
                out.append(Entry(entry, None, _not_an_image(inner), label))
                continue
            if info.file_size > max_member_bytes:
                out.append(Entry(entry, None, f"file too large ({_mb(info.file_size)} uncompressed; "
                                              f"the limit is {_mb(max_member_bytes)})", label))
                continue
            if total + info.file_size > max_total_bytes:
                out.append(Entry(entry, None, f"skipped: the zip holds more than {_mb(max_total_bytes)} "
                                              "of files (uncompressed)", label))
                continue
            try:
                size = _checked_size(archive, info, max_member_bytes)  # never trust the header's size
            except _READ_ERRORS as exc:  # corrupt member (bad CRC, bad deflate data), encrypted, unknown method
                out.append(Entry(entry, None, f"cannot read it from the zip ({exc})", label))
                continue
            total += size
            if size > max_member_bytes:
                out.append(Entry(entry, None, f"file too large (over {_mb(max_member_bytes)} uncompressed)", label))
                continue
            # the bytes are read again when used, one member at a time: a batch never holds all
            # of a zip's decompressed files at once (up to MAX_TOTAL_BYTES)
            out.append(_ZipEntry(entry, _Member(blob, info.filename, max_member_bytes), "", label))
    if len(files) > max_members:
        out.append(Entry(name, None, f"the zip holds {len(files)} files: only the first {max_members} "
                                     f"were read ({len(files) - max_members} left out)"))
    elif not files:
        out.append(Entry(name, None, "the zip holds no files"))
    return out


def expand(uploads: Iterable[tuple[str, bytes]], **limits) -> list[Entry]:
    """(name, bytes) uploads -> entries: a `.zip` is expanded (`expand_zip`), a file whose
    name is not an image's (`.txt`, `.pdf`...) is an error entry saying so, an image is passed
    on as it is (the decoder judges its bytes)."""
    out: list[Entry] = []
    for name, data in uploads:
        if is_zip_name(name):
            out += expand_zip(name, data, **limits)
        elif not is_image_name(name):  # the uploader takes any file, so a rejected one is listed with why
            out.append(Entry(name, None, _not_an_image(name)))
        else:
            out.append(Entry(name, data))
    return out


def _label_counts(labels: list[str]) -> dict[str, int]:
    return {"real": labels.count("real"), "fake": labels.count("fake"), "unlabelled": labels.count("")}


class Listing(NamedTuple):
    """The images found in a folder: `files` relative to `root` (posix, sorted), `labels`
    aligned with them, `truncated` when the folder holds more than were listed; `found`:
    how many images of each label the folder holds (`counts` keys), listed or not."""

    root: Path
    files: list[str]
    labels: list[str]
    truncated: bool
    found: dict[str, int] | None = None

    def counts(self) -> dict[str, int]:
        """Listed images per label: real, fake, unlabelled."""
        return _label_counts(self.labels)


def balanced_sample(files: list[str], labels: list[str], limit: int) -> list[str]:
    """At most `limit` of `files`, shared as evenly as the labels allow (a label with fewer
    files than its share gives the rest to the others), each label's files picked evenly
    spaced through its sorted list (so every sub-folder is reached), returned sorted.
    Deterministic: the same folder always gives the same sample."""
    if len(files) <= limit:
        return sorted(files)
    groups: dict[str, list[str]] = {}
    for f, lab in zip(files, labels):
        groups.setdefault(lab, []).append(f)
    quota, left = {}, limit
    for i, (lab, members) in enumerate(sorted(groups.items(), key=lambda kv: (len(kv[1]), kv[0]))):
        quota[lab] = min(len(members), left // (len(groups) - i))
        left -= quota[lab]
    out = []
    for lab, members in groups.items():
        members, k = sorted(members), quota[lab]
        if k:
            out += [members[round(j * (len(members) - 1) / (k - 1))] if k > 1 else members[0] for j in range(k)]
    return sorted(out)


def list_folder(folder: str | os.PathLike, limit: int = MAX_LISTED, max_walked: int = MAX_WALKED) -> Listing:
    """The images under `folder` (recursive, sorted by folder then name; dot-files,
    dot-folders and `__MACOSX` skipped; links to folders not followed): all of them, or, when
    there are more than `limit`, a balanced sample of `limit` across their labels
    (`balanced_sample`, `truncated` set). At most `max_walked` entries are looked at.

    Raises FileNotFoundError / NotADirectoryError for a bad folder and ValueError (with a
    message to show) when it holds no image files."""
    text = str(folder).strip()
    if not text:
        raise FileNotFoundError("no folder given")
    root = Path(text).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    found: list[str] = []
    walked, truncated = 0, False
    for here, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not skipped(d))
        rel_dir = Path(here).relative_to(root)
        for n in sorted(names):
            walked += 1
            rel = (rel_dir / n).as_posix()
            if skipped(rel) or not is_image_name(rel):
                continue
            found.append(rel)
        walked += len(dirs)
        if walked > max_walked:
            truncated = True
            break
    if not found:
        raise ValueError(f"no image files ({', '.join(images.IMAGE_EXTENSIONS)}) in {root}")
    labels = [known_label(f) for f in found]
    listed = balanced_sample(found, labels, limit)
    label_of_file = dict(zip(found, labels))
    return Listing(root, listed, [label_of_file[f] for f in listed], truncated or len(listed) < len(found),
                   _label_counts(labels))


def sample_labels(folder: str | os.PathLike) -> dict[str, str]:
    """{file name: "real" / "fake"} from the gallery's `LABELS.csv` (columns file, label);
    {} when there is none. Samples without a row (no face, nothing to be right about) have no label."""
    import csv

    path = Path(folder) / "LABELS.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return {r["file"].strip(): r["label"].strip().lower() for r in csv.DictReader(fh)
                if r.get("file") and (r.get("label") or "").strip().lower() in ("real", "fake")}


def read_folder(listing: Listing, chosen: Iterable[str], max_bytes: int = MAX_MEMBER_BYTES) -> list[Entry]:
    """The chosen files of a listing as entries named `<folder name>/<relative path>`
    (a file that cannot be read, or is over `max_bytes`, gets an error entry)."""
    labels = dict(zip(listing.files, listing.labels))
    out = []
    for rel in chosen:
        name, path = f"{listing.root.name or listing.root}/{rel}", listing.root / rel
        label = labels.get(rel, known_label(rel))
        try:
            if not roots.inside(path, [listing.root]):  # a link out of the folder (or `..`): not read
                out.append(Entry(name, None, roots.LINK_OUT, label))
                continue
            size = path.stat().st_size
            if size > max_bytes:
                out.append(Entry(name, None, f"file too large ({_mb(size)}; the limit is {_mb(max_bytes)})", label))
                continue
            out.append(Entry(name, path.read_bytes(), "", label))
        except OSError as exc:
            out.append(Entry(name, None, f"cannot read file ({exc.strerror or exc})", label))
    return out
