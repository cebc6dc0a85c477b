"""The package's shape, read from its source: imports point down the layers only, no two modules
import each other, and imports sit at module top level except the lazy ones listed here.

A module may import from its own package and from packages in lower layers. The CLI sits on top;
`mmtok/__init__.py` imports nothing of its own at import time (see LAZY_OWN)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmtok"

# Lowest first. Same-layer packages do not import each other.
LAYERS = [
    ("mmtok.atomic",),  # atomic file writes
    ("mmtok.tokenizer",),  # text, codecs, vocabulary layout, serializations, audio I/O
    ("mmtok.codec", "mmtok.data"),  # codec fitting; manifest -> shards -> packed batches
    ("mmtok.model", "mmtok.optim"),  # the Transformer; optimizer and LR schedule
    ("mmtok.config", "mmtok.loss"),  # the run config tree; the per-token loss
    ("mmtok.checkpoint",),  # save / load / resolve / load for inference
    ("mmtok.generate", "mmtok.export"),  # decoding, captioning, music; HF export
    ("mmtok.eval",),  # caption metrics, attribute accuracy, perplexity, reports
    ("mmtok.training",),  # the loop, parallelism, metrics, logging, eval callbacks
    ("mmtok.demo",),  # the embedded demo: corpus, rendering, caption grammar, pipeline, report
    ("mmtok.cli",),  # `mmtok ...`
    ("mmtok.__main__",),  # `python -m mmtok`
]

# Third-party modules that may be imported inside functions: heavy or only needed on one path.
LAZY_THIRD_PARTY = {
    "wandb",  # ~1 s, only rank 0 of a training run logs
    "xformers",  # ~2 s, its kernels run on CUDA only
    "transformers",  # ~2 s, only the HF export and parity checks need it
    "music21", "mido",  # only the demo corpus parses scores
    "matplotlib",  # only the demo report draws
    "pycocoevalcap",  # only caption metrics (and it starts Java for METEOR)
    "encodec", "torchaudio",  # only codecs of the EnCodec family need them, not text tokenization
}


def layer_of(module: str) -> int | None:
    for i, group in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in group):
            return i
    return None


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, at top level?, line) for every import statement of a source file."""
    tree = ast.parse(path.read_text())
    me = module_name(path)
    top = {id(n) for n in tree.body}
    typing_only = set()
    for node in tree.body:  # try blocks at top level count as top level
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            typing_only |= {id(n) for n in ast.walk(node)}  # annotations only: not imported at run time
        elif isinstance(node, ast.Try):
            top |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me.split(".")[: len(me.split(".")) - node.level + (path.name == "__init__.py")]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            out.append((name, id(node) in top, node.lineno))
    return out


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def layer_violations(files) -> list[str]:
    problems = []
    for path in files:
        me = module_name(path)
        mine = layer_of(me)
        for name, _, line in imports_of(path):
            if not name.startswith("mmtok.") or package_of(name) == package_of(me):
                continue
            theirs = layer_of(name)
            if mine is None or theirs is None:
                problems.append(f"{path.name}:{line}: {me} or {name} is in no layer of tests/test_layers.py")
            elif theirs >= mine:
                problems.append(f"{me}:{line} imports {name} (layer {theirs}, not below {mine})")
    return problems


def test_every_module_has_a_layer_and_imports_point_down():
    assert all(layer_of(module_name(p)) is not None or module_name(p) == "mmtok" for p in sources())
    assert layer_violations(p for p in sources() if module_name(p) != "mmtok") == []


def test_a_planted_upward_import_is_caught(tmp_path):
    planted = PACKAGE / "model" / "_planted_for_test.py"  # never committed: removed below
    planted.write_text("from mmtok.training.loop import train\n")
    try:
        problems = layer_violations([planted])
    finally:
        planted.unlink()
    assert problems == ["mmtok.model._planted_for_test:1 imports mmtok.training.loop (layer 8, not below 3)"]


def test_no_two_modules_import_each_other():
    graph = {module_name(p): {n for n, _, _ in imports_of(p) if n.startswith("mmtok")} for p in sources()}
    for a, deps in graph.items():
        for b in deps:
            assert a not in graph.get(b, ()), f"{a} and {b} import each other"
    # and no longer circle either: a depth-first search over the module graph
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in graph.get(m, ()):
            if state.get(d) == 1:
                pytest.fail("import circle: " + " -> ".join([*path, m, d]))
            if d in graph and not state.get(d):
                visit(d, [*path, m])
        state[m] = 2

    for m in graph:
        if not state.get(m):
            visit(m, [])


def test_imports_are_at_top_level_except_the_lazy_ones():
    """Inside functions: only LAZY_THIRD_PARTY, and in the CLI (whose handlers import the library
    so that `mmtok --help` stays fast) anything. mmtok/__init__.py loads names on first use."""
    problems = []
    for path in sources():
        me = module_name(path)
        if me == "mmtok" or package_of(me) == "mmtok.cli":
            continue
        for name, at_top, line in imports_of(path):
            if not at_top and name.split(".")[0] not in LAZY_THIRD_PARTY:
                problems.append(f"{me}:{line}: `import {name}` inside a function")
    assert problems == []


def test_the_loop_imports_no_evaluation_code():
    loop = PACKAGE / "training" / "loop.py"
    names = {n for n, _, _ in imports_of(loop)}
    assert not {n for n in names if n.startswith(("mmtok.eval", "mmtok.generate", "mmtok.training.evals"))}


def test_import_mmtok_stays_light():
    code = ("import sys, mmtok; from mmtok import MultimodalTokenizer; "
            "print(','.join(m for m in ('wandb', 'webdataset', 'xformers', 'transformers', 'music21', "
            "'matplotlib', 'encodec', 'mmtok.training', 'mmtok.model') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout
    bare = subprocess.run([sys.executable, "-c", "import sys, mmtok; print('torch' in sys.modules)"],
                          capture_output=True, text=True, check=True)
    assert bare.stdout.strip() == "False"


@pytest.mark.parametrize("old, new", [("mmtok.training.checkpoint", "mmtok.checkpoint"),
                                      ("mmtok.tokenizer.codec_fit", "mmtok.codec"),
                                      ("mmtok.data.corpus", "mmtok.demo.corpus")])
def test_old_module_paths_name_their_new_place(old, new):
    import importlib

    with pytest.raises(ModuleNotFoundError, match=f"{old} has moved: import from {new}"):
        importlib.import_module(old)
