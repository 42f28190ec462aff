"""detector/textsafe.py: user-controlled names and EXIF text neutralised for Markdown and CSV.

The Markdown is rendered here with markdown-it (CommonMark, the grammar Streamlit's renderer
follows) where available; the Streamlit-specific directives are checked as text."""
from __future__ import annotations

import io
import re

import pandas as pd
import pytest

from detector import textsafe

HOSTILE = ["![x](http://example.com/beacon.png)", ":green-badge[REAL]", "[click](javascript:alert(1))",
           "# heading", "<img src=x onerror=alert(1)>", "**bold** _it_ `code`", "$x^2$", ":material/check:",
           "line\n\n- item", "www.example.com", "a|b|c", "~~gone~~", "1. one"]


@pytest.mark.parametrize("name", HOSTILE)
def test_md_escape_renders_the_text_itself(name):
    out = textsafe.md_escape(name)
    assert "\n" not in out
    assert not re.search(r"(?<!\\)[!\[\]():$*_<>~`#|]", out), out  # every special character escaped
    markdown_it = pytest.importorskip("markdown_it")
    html = markdown_it.MarkdownIt("commonmark").enable("table").enable("strikethrough").render(out)
    for tag in ("<img", "<a ", "<h1", "<strong", "<em", "<code", "<li", "<table", "<s>", "<del"):
        assert tag not in html, (name, html)
    assert " ".join(name.split()) in " ".join(
        html.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("&quot;", '"')
        .replace(textsafe.JOINER, "").removeprefix("<p>").removesuffix("</p>\n").split())


# What remark-gfm (Streamlit's Markdown renderer) turns into a link in a text *after* its
# backslash escapes are resolved (mdast-util-gfm-autolink-literal): escaping cannot stop these.
GFM_AUTOLINK = re.compile(r"(?i)(https?://|www(?=\.))[-.\w]+|[-.\w+]+@[-\w]+(?:\.[-\w]+)+")


def rendered_text(markdown: str) -> str:
    """The text a reader sees of `markdown` (CommonMark: escapes resolved, tags dropped)."""
    import html as html_mod

    from markdown_it import MarkdownIt

    return html_mod.unescape(re.sub(r"<[^>]+>", "", MarkdownIt("commonmark").render(markdown)))


def autolinked(markdown: str) -> list[str]:
    """The bare URLs, www. hosts and e-mail addresses GFM would link in `markdown`."""
    return [m.group(0) for m in GFM_AUTOLINK.finditer(rendered_text(markdown))]


@pytest.mark.parametrize("text", ["https://evil.example", "see http://evil.example/x?y=1 now", "www.evil.example",
                                  "_www.evil.example", "mail me: someone@evil.example", "mailto:a@evil.example",
                                  "[click](http://evil.example)", "ftp://evil.example"])
def test_md_escape_leaves_nothing_for_gfm_to_autolink(text):
    """Streamlit links a bare URL even when its ':' and '.' are escaped (the old md_escape
    did only that): md_escape puts an invisible word joiner where an autolink would start,
    and the text reads the same."""
    pytest.importorskip("markdown_it")
    old = textsafe._MD_SPECIAL.sub(r"\\\1", text)  # backslashes alone, as md_escape did before
    assert autolinked(old) != [] or text.startswith("ftp"), old  # the check sees what GFM would link
    out = textsafe.md_escape(text)
    assert autolinked(out) == [], out
    assert rendered_text(out).strip().replace(textsafe.JOINER, "") == text


def test_md_code_is_one_literal_span():
    assert textsafe.md_code("a.jpg") == "`a.jpg`"
    assert textsafe.md_code("a`b") == "``a`b``"
    assert textsafe.md_code("`x`") == "`` `x` ``"
    assert "\n" not in textsafe.md_code("a\nb")
    markdown_it = pytest.importorskip("markdown_it")
    html = markdown_it.MarkdownIt("commonmark").render(textsafe.md_code("x`](http://e.com/b.png) ![y"))
    assert html.count("<code>") == 1 and "<img" not in html and "<a " not in html


def test_csv_cells_that_would_be_formulas_become_text():
    frame = pd.DataFrame({"file": ["=HYPERLINK(\"http://e.com\")", "+1", "-2+3", "@SUM(A1)", "\tx", "ok.jpg"],
                          "p_fake": [0.1, -0.5, 0.3, 0.4, 0.5, 0.6]})
    back = pd.read_csv(io.BytesIO(textsafe.csv_bytes(frame)))
    assert list(back["file"]) == ["'=HYPERLINK(\"http://e.com\")", "'+1", "'-2+3", "'@SUM(A1)", "'\tx", "ok.jpg"]
    assert list(back["p_fake"]) == [0.1, -0.5, 0.3, 0.4, 0.5, 0.6]  # numbers stay numbers
    assert list(textsafe.csv_safe(pd.DataFrame({"=x": [1]})).columns) == ["'=x"]
