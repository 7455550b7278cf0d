"""The package's layers, read from its source: imports point down, no cycles, no private names.

The layers are those of docs/architecture.md. Each test parses every module of
``optctl/`` with :mod:`ast` (nothing is imported), so a violation names the file, the
line and the import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "optctl"

# Bottom to top. A module may import its own layer and the layers below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("optctl.errors", "optctl.validate", "optctl.versions", "optctl.theory", "optctl.spec",
              "optctl.schedules", "optctl.table", "optctl.search")),
    ("figures", ("optctl.plots",)),
    ("model", ("optctl.model",)),
    ("baselines", ("optctl.baselines",)),
    ("solver", ("optctl.solver",)),
    ("analysis", ("optctl.analysis",)),
    ("calibrate", ("optctl.calibrate",)),
    ("io", ("optctl.io",)),
    ("studies", ("optctl.studies",)),
    ("cli", ("optctl.cli",)),
    ("adapters", ("optctl.torch", "optctl.optax")),
]
# Heavy or optional dependencies that a function may import when it needs them.
LAZY_OK = ("torch", "dask", "distributed", "optax", "matplotlib", "jax", "scipy.special", "scipy.optimize",
           "numba", "optctl.plots")
# The command line validates its input before it loads the numerical stack (CasADi, jax,
# matplotlib) that the command needs, so its functions may import any optctl module.
LAZY_OK_IN = {"optctl.cli": ("optctl",)}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _layer(module: str) -> int | None:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _imports(tree: ast.AST, module: str) -> list[tuple[int, str, list[str], bool]]:
    """``(line, imported module, names, inside a function)`` for every import in ``tree``."""
    out: list[tuple[int, str, list[str], bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((child.lineno, a.name, [], inside) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                assert child.level == 0, f"{module}:{child.lineno}: use absolute imports"
                base = child.module or ""
                names = [a.name for a in child.names]
                # `from optctl import plots` imports the module optctl.plots
                subs = [n for n in names if _is_module(f"{base}.{n}")]
                out.extend((child.lineno, f"{base}.{n}", [], inside) for n in subs)
                if len(subs) < len(names):
                    out.append((child.lineno, base, [n for n in names if n not in subs], inside))
            visit(child, inside)

    visit(tree, False)
    return out


def _graph() -> dict[str, list[tuple[int, str, list[str], bool]]]:
    return {_module_name(p): _imports(ast.parse(p.read_text()), _module_name(p))
            for p in sorted(PACKAGE.rglob("*.py"))}


GRAPH = _graph()


def test_modules_do_not_import_the_package_face() -> None:
    """``optctl/__init__.py`` re-exports names lazily for users; modules import from where
    a name is defined, so the face can stay on top of every layer."""
    bad = [f"{m}:{line} imports {names} from optctl" for m, imps in GRAPH.items()
           for line, t, names, _ in imps if t == "optctl" and m != "optctl"]
    assert not bad, "\n".join(bad)


def test_every_module_has_a_layer() -> None:
    missing = [m for m in GRAPH if m != "optctl" and _layer(m) is None]
    assert not missing, f"modules outside every layer of docs/architecture.md: {missing}"


def test_imports_point_down_the_layers() -> None:
    up = []
    for module, imports in GRAPH.items():
        own = _layer(module)
        for line, target, _, _ in imports:
            theirs = _layer(target) if target.startswith("optctl") else None
            if own is not None and theirs is not None and theirs > own:
                up.append(f"{module}:{line} imports {target} ({LAYERS[own][0]} -> {LAYERS[theirs][0]})")
    assert not up, "imports that point up a layer:\n" + "\n".join(up)


def test_no_import_cycles() -> None:
    edges = {m: {t for _, t, _, _ in imps if t in GRAPH and t != m} for m, imps in GRAPH.items()
             if m != "optctl"}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node] - {"optctl"}):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                dfs(nxt, [*stack, nxt])
        state[node] = 2

    for m in sorted(edges):
        if m not in state:
            dfs(m, [m])
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_imports_a_private_name_of_another() -> None:
    bad = [f"{m}:{line} imports {n} from {t}" for m, imps in GRAPH.items() for line, t, names, _ in imps
           if t.startswith("optctl") and t != m for n in names if n.startswith("_") and n != "__version__"]
    assert not bad, "\n".join(bad)


def test_functions_import_only_heavy_or_optional_dependencies() -> None:
    def allowed(module: str, target: str) -> bool:
        ok = LAZY_OK + next((v for k, v in LAZY_OK_IN.items() if module.startswith(k + ".")), ())
        return any(target == o or target.startswith(o + ".") for o in ok)

    bad = [f"{m}:{line} imports {t} inside a function" for m, imps in GRAPH.items()
           for line, t, _, inside in imps if inside and not allowed(m, t)]
    assert not bad, "\n".join(bad)


def test_the_checks_see_a_violation() -> None:
    """The parser finds an upward, a private and a function-level import in a sample."""
    sample = ast.parse(textwrap.dedent("""
        from optctl.cli.main import main
        from optctl.spec import _digest
        def f():
            import optctl.solver.solve
    """))
    found = _imports(sample, "optctl.model.replay")
    assert (2, "optctl.cli.main", ["main"], False) in found
    assert (3, "optctl.spec", ["_digest"], False) in found
    assert (5, "optctl.solver.solve", [], True) in found


@pytest.mark.parametrize("with_torch", [False, True])
def test_tables_export_and_torch_work_without_casadi_or_jax(tmp_path: Path, small_result,  # type: ignore[no-untyped-def]
                                                            with_torch: bool) -> None:
    """``load_table`` and ``optctl export`` of an existing table (and, where torch is
    installed, ``optctl.torch``) in a process where importing casadi, jax or jaxlib
    raises (so none of them is needed)."""
    blocked = ("casadi", "jax", "jaxlib")
    if with_torch:
        pytest.importorskip("torch")
    from optctl.io.tables import export_table

    table = export_table(small_result, tmp_path / "t.npz")
    scheduler = textwrap.dedent("""
        import torch
        from optctl.torch import TableScheduler
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
        sched = TableScheduler(opt, table)
        for _ in range(3):
            opt.step()
            sched.step()
        print("torch lr:", opt.param_groups[0]["lr"] == table.lr[3])
    """) if with_torch else ""
    code = textwrap.dedent(f"""
        import sys

        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError(f"{{name}} is blocked in this test")
                return None

        sys.meta_path.insert(0, Refuse())
        import optctl
        from optctl.io.tables import load_table
        table = load_table(sys.argv[1])
        print(table.content_hash)
    """) + scheduler + textwrap.dedent(f"""
        from optctl.cli.main import main
        code = main(["export", sys.argv[1], "--out", sys.argv[2]])
        print("blocked still absent:", not any(m.split(".")[0] in {blocked!r} for m in sys.modules))
        sys.exit(code)
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "t.npz"), str(tmp_path / "t.csv")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == table.content_hash
    assert ("torch lr: True" in lines) == with_torch
    assert "blocked still absent: True" in lines
    assert (tmp_path / "t.csv").exists()
