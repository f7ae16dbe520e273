"""The shape of the house, read from the source with ast: which module imports which (function-local imports
included), no import circle, scripts on top, moge_kernels/ a leaf, the model free of data and scoring, files short."""
import ast
import importlib.metadata as md
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LINES = 560
# entry points: nothing imports them, except that the benchmarks time train.py's TrainStep
SCRIPTS = {"train", "eval", "rl", "rft", "ask", "bench", "bench_gpu", "learning", "transfer", "traces"}
ALLOWED_SCRIPT_IMPORTS = {("bench", "train"), ("bench_gpu", "train"), ("bench", "bench_gpu")}
# the network knows no data, loop or scoring: model.py reaches only these project modules
MODEL_DEPS = {"decode", "smollm", "tokenizer"}


def _modules():
    """{module name: path} of the repository's own Python modules (moge_kernels/ as kernels.*)."""
    mods = {f[:-3]: os.path.join(ROOT, f) for f in os.listdir(ROOT) if f.endswith(".py")}
    for f in os.listdir(os.path.join(ROOT, "moge_kernels")):
        if f.endswith(".py"):
            name = "moge_kernels" if f == "__init__.py" else f"moge_kernels.{f[:-3]}"
            mods[name] = os.path.join(ROOT, "moge_kernels", f)
    return mods


def _imports(path, known):
    """The project modules a file imports anywhere in it (top level or inside functions)."""
    tree = ast.parse(open(path).read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom):  # relative, inside moge_kernels/
            names = [f"moge_kernels.{node.module}" if node.module else "moge_kernels"]
        else:
            continue
        out |= {n for n in names if n in known}
    return out


@pytest.fixture(scope="module")
def graph():
    mods = _modules()
    return {m: _imports(p, set(mods)) - {m} for m, p in mods.items()}


def _circle(graph):
    """One import circle as [a, b, ..., a], or None (depth-first search)."""
    state, path = {}, []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                return path[path.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        path.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_circle(graph):
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]  # the search finds one
    assert _circle({"a": {"b"}, "b": set()}) is None
    assert _circle(graph) is None, "import circle: " + " -> ".join(_circle(graph))


def test_scripts_are_on_top(graph):
    bad = [(m, d) for m, deps in graph.items() for d in deps if d in SCRIPTS and (m, d) not in ALLOWED_SCRIPT_IMPORTS]
    assert not bad, f"modules importing scripts: {bad}"
    assert not graph["rl"] & {"train", "eval"}


def test_kernels_are_a_leaf(graph):
    for m, deps in graph.items():
        if m.startswith("moge_kernels"):
            assert all(d.startswith("moge_kernels") for d in deps), (m, deps)


def test_model_knows_no_data_or_scoring(graph):
    assert graph["model"] <= MODEL_DEPS, graph["model"] - MODEL_DEPS


def test_files_are_short():
    long = {m: n for m, p in _modules().items() if (n := sum(1 for _ in open(p))) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_the_checker_sees_local_imports(tmp_path):
    """The reader counts an import inside a function (the kind that would hide a circle)."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    import eval\n    from model import TINY\n")
    assert _imports(str(f), {"eval", "model"}) == {"eval", "model"}


def test_no_module_shadows_an_installed_package():
    """Scripts and notebooks run from the repository root see our modules first on sys.path, so none of ours
    may share a top-level name with an installed distribution (HF's `kernels`, which transformers imports at
    start-up, was shadowed by a `kernels/` folder here)."""
    installed = {n.replace("-", "_").lower() for d in md.distributions()
                 for n in [d.metadata["Name"] or ""] + (d.read_text("top_level.txt") or "").split()}
    ours = {m.split(".")[0] for m in _modules()}
    assert not ours & installed, ours & installed


def test_transformers_imports_from_the_repository_root(repo):
    pytest.importorskip("transformers")  # a dev requirement
    p = subprocess.run([sys.executable, "-c", "from transformers import LlamaForCausalLM"], cwd=repo,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
