"""The package's layout (issue 15): sub-packages that show the stack, read from each module's
`import` and `from` statements with `ast`.

    backend      the ops (NumPy reference, cuda)                  imports only backend
    engine       cfg reader, layers, net, devices                 + backend
    data         providers, image pipeline, prepared-set format   + backend (the GPU stager)
    parallel     ranks and collectives (MPI, NCCL)                imports only parallel
    training     loop, checkpoints, saved runs, TensorBoard       + engine, data
    apps         the four commands, feature folders               + training

A module imports its own sub-package and the ones above it in this list, never one below it;
engine, data and parallel do not import each other. The root package (convnet/__init__.py: _C,
cuda_available) may be imported from anywhere. The top-level modules net, train, config and
checkpoint only re-export for users' imports; no module of the package imports them. There is
no import circle, and no import of a convnet module inside a function, except of a module that
needs CuPy (an optional dependency, imported only when the cuda backend is used).
"""
import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "convnet"
RANKS = {"backend": 0, "engine": 1, "data": 1, "parallel": 1, "training": 2, "apps": 3}
SHIMS = {"convnet.net": "convnet.engine.net", "convnet.train": "convnet.training.train",
         "convnet.config": "convnet.engine.config",
         "convnet.checkpoint": "convnet.training.checkpoint"}
OPTIONAL = ("cupy", "cupyx")  # the optional dependency a convnet module may be deferred for


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(node, importer, is_package):
    """The absolute name of a `from` statement's module."""
    if not node.level:
        return node.module
    package = importer if is_package else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports(name):
    """[(imported module, inside a function, line)] of module `name`: every module it imports,
    convnet's or not (a package that is one of its own parents is left out: Python has run it
    before the module itself)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
    found = []

    def visit(node, local):
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, inner, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(child, name, path.name == "__init__.py")
                subs = [f"{base}.{a.name}" for a in child.names if f"{base}.{a.name}" in MODULES]
                found.extend((sub, inner, child.lineno) for sub in subs)
                if base not in parents and len(subs) < len(child.names):
                    found.append((base, inner, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return found


IMPORTS = {name: imports(name) for name in MODULES}


def internal(name, local=None):
    """The convnet modules `name` imports (at the top: local=False; in functions: True)."""
    return [(target, line) for target, inner, line in IMPORTS[name]
            if target in MODULES and target != name and local in (None, inner)]


def needs_cupy(name, seen=()):
    """True when importing `name` imports CuPy (itself, or through a convnet module it imports)."""
    if any(t.split(".")[0] in OPTIONAL for t, inner, _ in IMPORTS[name] if not inner):
        return True
    return any(needs_cupy(t, seen + (name,)) for t, _ in internal(name, local=False)
               if t not in seen)


def subpackage(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANKS) else None


def test_every_module_imports():
    have_cupy = importlib.util.find_spec("cupy") is not None
    for name in MODULES:
        if needs_cupy(name) and not have_cupy:
            continue
        importlib.import_module(name)


def test_there_is_no_import_circle():
    graph = {name: sorted({t for t, _ in internal(name)}) for name in MODULES}
    state, circles = {}, []

    def visit(name, path):
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            circles.append(" -> ".join(path[path.index(name):] + [name]))
            return
        state[name] = "active"
        for target in graph[name]:
            visit(target, path + [name])
        state[name] = "done"

    for name in graph:
        visit(name, [])
    assert not circles, circles


def test_each_subpackage_imports_only_itself_and_the_ones_above():
    wrong = []
    for name in MODULES:
        own = subpackage(name)
        for target, line in internal(name):
            where = f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}"
            if target in SHIMS:
                if name not in SHIMS:
                    wrong.append(f"{where}, a re-export module for users")
                continue
            theirs = subpackage(target)
            if own is None or theirs is None or theirs == own:
                continue  # the root package, a re-export module, or the same sub-package
            if RANKS[theirs] >= RANKS[own]:
                wrong.append(f"{where} ({own} may not import {theirs})")
    assert not wrong, "\n".join(wrong)


def test_engine_and_data_import_nothing_from_training_or_apps():
    for name in MODULES:
        if subpackage(name) in ("engine", "data", "parallel"):
            assert not [t for t, _ in internal(name) if subpackage(t) in ("training", "apps")]


def test_parallel_imports_no_other_subpackage():
    """The collectives know nothing of nets or data: the trainer hands them arrays."""
    wrong = [f"{name} imports {t}" for name in MODULES if subpackage(name) == "parallel"
             for t, _ in internal(name) if subpackage(t) not in (None, "parallel")]
    assert not wrong, wrong


# what the stack above the backend may import of it: the interface, never an implementation file
BACKEND_INTERFACE = {"convnet.backend", "convnet.backend.contract", "convnet.backend.algos",
                     "convnet.backend.numpy_backend", "convnet.backend.cuda_backend"}


def test_only_the_backend_interface_is_imported_from_above():
    wrong = [f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}"
             for name in MODULES if subpackage(name) not in (None, "backend")
             for target, line in internal(name)
             if subpackage(target) == "backend" and target not in BACKEND_INTERFACE]
    assert not wrong, "\n".join(wrong)


def test_convnet_modules_are_imported_at_the_top():
    local = [f"{MODULES[name].relative_to(ROOT)}:{line} imports {target} in a function"
             for name in MODULES for target, line in internal(name, local=True)
             if target != "convnet" and not needs_cupy(target)]
    assert not local, "\n".join(local)


def test_the_re_export_modules_only_re_export():
    for shim, home in SHIMS.items():
        tree = ast.parse(MODULES[shim].read_text(encoding="utf-8"))
        body = tree.body[1:] if ast.get_docstring(tree) else tree.body
        *imports_, names = body
        assert isinstance(names, ast.Assign) and names.targets[0].id == "__all__", shim
        sources = {}
        for node in imports_:
            assert isinstance(node, ast.ImportFrom) and node.level == 1, shim
            sources.update((a.name, _resolve(node, shim, False)) for a in node.names)
        assert home in sources.values()
        module = importlib.import_module(shim)
        assert sorted(module.__all__) == sorted(sources), shim
        for name, source in sources.items():
            assert getattr(module, name) is getattr(importlib.import_module(source), name)


def test_users_imports_keep_working():
    from convnet import checkpoint, config, data, net, train
    from convnet.data import datasets, image_provider, provider
    from convnet.engine import config as engine_config, net as engine_net
    from convnet.training import checkpoint as training_checkpoint, train as training_train

    assert net.Net is engine_net.Net
    assert (train.Trainer, train.TrainingStopped, train.evaluate) == (
        training_train.Trainer, training_train.TrainingStopped, training_train.evaluate)
    assert (config.read_cfg, config.ConfigError) == (engine_config.read_cfg,
                                                     engine_config.ConfigError)
    for name in checkpoint.__all__:
        assert getattr(checkpoint, name) is getattr(training_checkpoint, name)
    assert data.make_provider is provider.make_provider and data.Provider is provider.Provider
    assert data.ImageProvider is image_provider.ImageProvider
    assert data.write_cifar_batch is datasets.write_cifar_batch
    assert issubclass(data.DataError, Exception)
    for name in data.__all__:
        assert hasattr(data, name)


def test_console_scripts_are_the_apps():
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"convnet-train", "convnet-show", "convnet-retrieve",
                            "convnet-prepare"}
    for target in scripts.values():
        module, _, attr = target.partition(":")
        assert module.startswith("convnet.apps.")
        assert callable(getattr(importlib.import_module(module), attr))


def test_no_module_of_the_package_is_left_out_of_the_wheel():
    """scikit-build-core leaves files that .gitignore or sdist.exclude match out of the wheel
    (a `data/` pattern once dropped convnet/data)."""
    pathspec = pytest.importorskip("pathspec")
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lines = (ROOT / ".gitignore").read_text().splitlines()
    lines += config["tool"]["scikit-build"].get("sdist", {}).get("exclude", [])
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    left_out = [str(p.relative_to(ROOT)) for p in MODULES.values()
                if spec.match_file(str(p.relative_to(ROOT)))]
    assert not left_out, left_out


def test_the_package_is_typed_and_the_marker_ships():
    """PEP 561: convnet/py.typed is in the package (the wheel carries the whole package folder
    but what .gitignore or sdist.exclude match), and the public API's annotations resolve."""
    import typing

    pathspec = pytest.importorskip("pathspec")
    tomllib = pytest.importorskip("tomllib")
    marker = ROOT / "convnet" / "py.typed"
    assert marker.is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["scikit-build"]["wheel"]["packages"] == ["convnet"]
    lines = (ROOT / ".gitignore").read_text().splitlines()
    lines += config["tool"]["scikit-build"].get("sdist", {}).get("exclude", [])
    assert not pathspec.GitIgnoreSpec.from_lines(lines).match_file("convnet/py.typed")

    from convnet.data import ImageProvider, Provider, make_provider
    from convnet.engine.export import torch_state_dict
    from convnet.engine.net import Net
    from convnet.training.train import Trainer, evaluate

    api = [Net.__init__, Net.from_cfg, Net.forward, Net.backward, Net.train_step, Net.update,
           Net.get_params, Net.set_params, Trainer.__init__, Trainer.run, Trainer.resume,
           evaluate, Provider.__init__, Provider.train_batches, Provider.test_batches,
           ImageProvider.__init__, make_provider, torch_state_dict]
    for function in api:
        hints = typing.get_type_hints(function)
        assert "return" in hints, function.__qualname__
    assert typing.get_type_hints(Net.from_cfg)["return"] is Net
