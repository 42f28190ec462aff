"""User-controlled text made harmless before it is shown or exported.

File names, zip member names, folder names and EXIF fields come from whoever supplied the
files. Rendered as Markdown they could draw a remote image (a tracking beacon:
``![x](http://host/beacon.png)``), a link, a fake verdict badge (Streamlit's
``:green-badge[REAL]`` directive), colours, icons or LaTeX; opened in a spreadsheet, a CSV
cell starting with ``=`` ``+`` ``-`` ``@`` is a formula (CSV injection). These helpers are the
one place that neutralises both; the pages call them for every such string (`app/ui.py`
``safe_md`` / ``code_md`` / ``csv_download``). Pure Python, no Streamlit.
"""
from __future__ import annotations

import re

import pandas as pd

# Every ASCII punctuation character that Markdown, GitHub-flavoured Markdown or Streamlit's
# extensions give a meaning (emphasis, code, links and images, headings, lists, tables, HTML,
# strikethrough, directives and emoji shortcodes ':', LaTeX '$', autolinks '.' '@'). CommonMark
# lets any ASCII punctuation be backslash-escaped, and an escaped character is shown as itself.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&@=^\"'])")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP: what makes a spreadsheet cell a formula

JOINER = "\u2060"
"""WORD JOINER: invisible and unbreakable. Streamlit's renderer (remark-gfm) turns a bare URL,
``www.host`` or ``name@host.tld`` into a link *after* backslash escapes are resolved, so
escaping cannot stop it; a joiner inside ``://``, ``www.`` and after ``@`` does (a copied URL
then holds the joiner, which is what a defanged URL should do)."""
_AUTOLINK = re.compile(r"(?i)(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)")


def md_escape(text) -> str:
    """`text` as Markdown that renders exactly as the text: every Markdown / Streamlit
    special character backslash-escaped, line breaks as spaces (no block structure), and a
    word joiner (`JOINER`, invisible) where GitHub-flavoured Markdown would start an autolink,
    so a name cannot become an image, a link, a badge, a heading or a formula."""
    flat = re.sub(r"[\r\n\t\v\f]+", " ", str(text))
    return _MD_SPECIAL.sub(r"\\\1", _AUTOLINK.sub(JOINER, flat))


def md_code(text) -> str:
    """`text` as a Markdown code span (shown literally, in a monospaced font), fenced with
    more backticks than any run of backticks inside it, on one line."""
    flat = re.sub(r"[\r\n\t\v\f]+", " ", str(text))
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat.strip() else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def csv_cell(value):
    """A text cell that a spreadsheet would run as a formula, prefixed with a quote (shown
    as text); anything else unchanged (numbers, negative ones included, stay numbers)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text cells (and column names) cannot start a formula."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(csv_cell)
    out.columns = [csv_cell(c) for c in out.columns]
    return out


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """`frame` as CSV bytes (no index) with formula prefixes neutralised."""
    return csv_safe(frame).to_csv(index=False).encode()
