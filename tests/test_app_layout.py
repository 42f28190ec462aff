"""The dashboard's layout (#26 item 4): page files in app/pages/, run by st.navigation only;
no pages/ folder beside streamlit_app.py (Streamlit would switch to its legacy multipage mode
and serve a direct link without the router); the library never imports Streamlit or the app."""
import ast
import re

from conftest import REPO_ROOT

APP = REPO_ROOT / "app"


def _imports(path) -> set[str]:
    """Top-level package names a file imports (imports inside functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_no_legacy_pages_folder_beside_the_router():
    """Streamlit 1.67 (PagesManager) turns on its legacy mode when a pages/ folder sits beside
    the main script: a direct link then runs the page alone, without the router's set-up."""
    assert not (REPO_ROOT / "pages").exists()


def test_app_pages_holds_exactly_the_pages_the_router_runs():
    router = (REPO_ROOT / "streamlit_app.py").read_text()
    routed = set(re.findall(r'st\.Page\("([^"]+)"', router))
    on_disk = {p.relative_to(REPO_ROOT).as_posix() for p in (APP / "pages").glob("*.py")}
    assert routed == on_disk == {"app/pages/detect.py", "app/pages/compare.py", "app/pages/training.py"}
    assert not (APP / "pages" / "__init__.py").exists()  # page files only, not a package


def test_pages_are_run_never_imported():
    """A page is a script st.navigation runs; shared code lives in app/*.py or detector/."""
    for path in [REPO_ROOT / "streamlit_app.py", *APP.rglob("*.py"), *(REPO_ROOT / "tests").glob("*.py")]:
        text = path.read_text()
        assert not re.search(r"^\s*(from app\.pages|import app\.pages)", text, re.M), path


def test_the_library_never_imports_streamlit_or_the_app():
    offenders = {p.name: sorted(_imports(p) & {"streamlit", "app"}) for p in (REPO_ROOT / "detector").glob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_only_session_expiry_touches_streamlit_private_internals():
    """Private Streamlit names (streamlit.runtime.*, attributes starting with an underscore on
    its objects) are confined to app/session_expiry.py, which a test runs against the pinned
    version; the pages and ui use the public API."""
    private = re.compile(r"streamlit\.runtime\.|PagesManager|_session_mgr|_session_storage|_storage_lock")
    for path in [REPO_ROOT / "streamlit_app.py", *APP.rglob("*.py")]:
        if path.name == "session_expiry.py":
            continue
        assert not private.search(path.read_text()), path
