"""The package's layers point one way (docs/architecture.md):

    core -> model -> serve -> pipelines -> app (CLI)

A module may import its own layer and the layers below it, never one above: serving a model
must not load the training code, and the run-folder format must not depend on who writes it.
Imports inside functions count too: they are how the old import circle hid (inference ->
experts -> training -> novelty -> robustness -> inference), and they run all the same.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "detector"

LAYERS: dict[str, tuple[str, ...]] = {
    "core": ("images", "faces", "evaluation", "significance", "runfolder", "data", "degrade", "selfblend",
             "memory", "forensics", "jobs", "roots", "textsafe", "summaries", "__init__"),
    "model": ("layers", "zoo", "pretrained", "novelty", "probes", "batching", "store", "foundation", "clip_expert"),
    "serve": ("inference", "fastpath", "explain", "report", "provenance", "custody", "stability", "evidence",
              "pdf_report", "warmup", "batch", "live"),
    "pipelines": ("training", "experts", "recipes", "robustness", "bench", "learning_curve", "generalization",
                  "audit", "comparison", "inputs", "scale"),
    "app": ("__main__",),
}
RANK = {module: i for i, modules in enumerate(LAYERS.values()) for module in modules}
LAYER_OF = {module: name for name, modules in LAYERS.items() for module in modules}
TRAINING_SIDE = ("detector.training", "detector.experts", "detector.robustness", "detector.probes")


def detector_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every `detector.X` this file imports, at the top or inside a function:
    `import detector.x`, `from detector import x`, `from detector.x import y`, `from . import x`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("detector.")]
            found += [(node.lineno, n.split(".")[1]) for n in names]
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module == "detector":
                if node.module and node.module != "detector":
                    found.append((node.lineno, node.module.split(".")[-1]))
                else:
                    found += [(node.lineno, a.name) for a in node.names]
            elif node.module and node.module.startswith("detector."):
                found.append((node.lineno, node.module.split(".")[1]))
    return found


def modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py"))


def graph() -> dict[str, set[str]]:
    return {m: {t for _, t in detector_imports(PACKAGE / f"{m}.py") if t != m} for m in modules()}


def test_every_module_has_a_layer():
    """A new module must be placed in the map (and in docs/architecture.md) before it can be
    checked; an unmapped one would slip past the one-way rule."""
    unmapped = [m for m in modules() if m not in RANK]
    assert not unmapped, f"add these detector modules to LAYERS in tests/test_layers.py: {unmapped}"


def test_no_upward_imports():
    """No module imports a layer above its own, at the top of the file or inside a function."""
    upward = []
    for m in modules():
        if m not in RANK:
            continue
        for line, target in detector_imports(PACKAGE / f"{m}.py"):
            if target in RANK and RANK[target] > RANK[m]:
                upward.append(f"detector/{m}.py:{line} ({LAYER_OF[m]}) imports {target} ({LAYER_OF[target]})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles():
    """The module graph (function-level imports included) has no cycle, within a layer either."""
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack
                              else f"{node} -> {nxt}")
            elif nxt in edges and not state.get(nxt):
                visit(nxt, stack + [node])
        state[node] = 2

    for m in edges:
        if not state.get(m):
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_scan_sees_imports_inside_functions(tmp_path):
    """The scanner itself: imports inside functions and every import spelling are found, so the
    tests above cannot pass by not looking."""
    src = tmp_path / "x.py"
    src.write_text("import detector.a\nfrom detector import b, c\nfrom detector.d import e\n"
                   "def f():\n    from detector import training\n    from . import g\n")
    assert sorted(t for _, t in detector_imports(src)) == ["a", "b", "c", "d", "g", "training"]


@pytest.mark.slow
def test_serving_a_model_does_not_load_the_training_side(tmp_path):
    """Constructing the Detector on the default model (an experts model: the router path) in a
    fresh interpreter imports none of the training-side modules."""
    code = ("import json, sys\nfrom detector.inference import Detector\nDetector()\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m in {list(TRAINING_SIDE)!r})))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"serving imported {loaded}"


@pytest.mark.parametrize("module", ["detector.store", "detector.runfolder"])
def test_reading_run_folders_needs_no_tensorflow(module):
    """The compare and training pages read cards and tables through store/runfolder without
    TensorFlow (they draw before any model loads)."""
    code = f"import sys, {module}\nprint('tensorflow' in sys.modules or 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
