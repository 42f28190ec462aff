"""Server folders: off unless the operator names data roots, and confined to them.

The dashboard's folder boxes (Detect's server folder, Compare's labelled folder, the Training
page's audit, learning-curve and runs boxes) read folders on the machine that serves the app,
for whoever can open it. So they are opt-in: the operator names the folders that may be read
(the *data roots*, `DEEPFAKE_LAB_ROOTS=path1:path2`, and/or `[deepfake_lab] roots = [...]` in
`.streamlit/secrets.toml`, which the app passes here), and every typed path is resolved
(`~`, `..`, symlinks) and refused unless it lies inside one. Every refusal reads the same
(`REFUSED`): the answer never tells whether a path outside the roots exists. The command line
(`python -m detector ...`) does not use this module: it keeps full access, as its user already
has a shell. Pure Python, no Streamlit.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

ENV = "DEEPFAKE_LAB_ROOTS"
REFUSED = ("This folder cannot be used: it is not a folder inside the data roots this server allows "
           "(or it does not exist).")
OFF = (f"Server folders are off: the operator enables them by naming data roots ({ENV}=path1:path2, "
       "or `[deepfake_lab] roots = [...]` in .streamlit/secrets.toml; see the README).")


class FolderRefused(ValueError):
    """A typed folder that may not be read; its message is always `REFUSED`."""

    def __init__(self):
        super().__init__(REFUSED)


def configured(env: str | None = None, extra: Iterable[str | os.PathLike] | None = None) -> list[Path]:
    """The data roots: the entries of `env` (default: the DEEPFAKE_LAB_ROOTS variable; split
    on os.pathsep) then `extra` (e.g. the secrets' list), each with `~` expanded and resolved
    (symlinks, `..`), relative ones from the working folder. Only existing folders count;
    duplicates once. Empty: server folders are off."""
    text = os.environ.get(ENV, "") if env is None else env
    names = [t for t in text.split(os.pathsep) if t.strip()]
    if isinstance(extra, (str, os.PathLike)):
        extra = [extra]
    names += [str(e) for e in (extra or []) if str(e).strip()]
    out: list[Path] = []
    for name in names:
        try:
            root = Path(name.strip()).expanduser().resolve()
        except (OSError, RuntimeError):
            continue
        if root.is_dir() and root not in out:
            out.append(root)
    return out


def confine(text: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> Path:
    """The folder a user typed, resolved, if it is a folder inside one of `roots`; else
    FolderRefused (one message for every reason: no roots, outside them, a symlink that
    leads out, missing, not a folder). `~` is expanded; a relative path is taken from the
    first root."""
    roots = [Path(r).resolve() for r in roots]
    raw = str(text).strip()
    if not roots or not raw or "\x00" in raw:
        raise FolderRefused()
    try:
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = roots[0] / path
        resolved = path.resolve()  # symlinks and `..` followed to where they really lead
    except (OSError, RuntimeError, ValueError):
        raise FolderRefused() from None
    if not any(resolved == r or resolved.is_relative_to(r) for r in roots):
        raise FolderRefused()
    try:
        if not resolved.is_dir():
            raise FolderRefused()
    except OSError:
        raise FolderRefused() from None
    return resolved


LINK_OUT = "a link to a file outside this folder (not read)"
"""What a reader of a confined folder says of a file below it whose real location (links
followed) is outside it: the file is listed with this reason, never read."""


def inside(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> bool:
    """Whether a file or folder really lies inside one of `roots` (symlinks followed): for
    code that reads files found below a confined folder (`comparison.read_labelled_folder`,
    `inputs.read_folder`, `data.scan(confine=True)` under the audit and the learning curve);
    such a file elsewhere is not read and is reported as `LINK_OUT`."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return any(resolved.is_relative_to(Path(r).resolve()) for r in roots)
