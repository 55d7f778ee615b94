"""The build: convnet._C imports, says how it was built, and fails clearly where it cannot run.

CONVNET_CPU_ONLY_TARGET may name a directory holding a CPU-only build (.ci/run makes one with
`CONVNET_CUDA=OFF pip install --no-deps --target DIR .`); its launchers are checked too.
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import convnet

ROOT = Path(__file__).resolve().parents[1]

# A call of every launcher with null pointers and small sizes, each op at least once.
LAUNCHER_CALLS = {
    "conv_forward": (0, 0, 0, 1, 1, 3, 3, 1, 3, 1, 1, 1, 0, 1, 0, 0),
    "conv_backward_data": (0, 0, 0, 1, 1, 3, 3, 1, 3, 1, 1, 1, 0, 1, 0, 0),
    "conv_backward_filter": (0, 0, 0, 1, 1, 3, 3, 1, 3, 1, 1, 1, 0, 1, 0, 0),
    "local_forward": (0, 0, 0, 1, 1, 3, 3, 1, 3, 1, 1, 1, 0, 1, 0, 0),
    "local_backward_data": (0, 0, 0, 1, 1, 3, 3, 1, 3, 1, 1, 1, 0, 1, 0, 0),
    "local_backward_filter": (0, 0, 0, 1, 1, 3, 3, 1, 3, 1, 1, 1, 0, 1, 0, 0),
    "neuron_forward": (0, 0, 4, 1, 0.0, 0.0, 0),
    "neuron_backward": (0, 0, 0, 0, 4, 1, 0.0, 0.0, 0),
    "bias_forward": (0, 0, 0, 2, 3, 4, 0),
    "bias_backward": (0, 0, 0, 2, 3, 4, 0),
    "sum2_forward": (0, 0, 0, 2, 3, 0),
    "sum2_backward": (0, 0, 4, 1.0, 0),
    "maxpool_forward": (0, 0, 1, 1, 4, 4, 2, 2, 2, 2, 0, 0),
    "maxpool_backward": (0, 0, 0, 0, 1, 1, 4, 4, 2, 2, 2, 2, 0, 0),
    "avgpool_forward": (0, 0, 1, 1, 4, 4, 2, 2, 2, 2, 0, 0),
    "avgpool_backward": (0, 0, 1, 1, 4, 4, 2, 2, 2, 2, 0, 0),
    "lrn_forward": (0, 0, 1, 3, 2, 2, 3, 1e-4, 0.75, 2.0, 0),
    "lrn_backward": (0, 0, 0, 0, 0, 1, 3, 2, 2, 3, 1e-4, 0.75, 2.0, 0),
    "rnorm_forward": (0, 0, 1, 3, 2, 2, 3, 1e-4, 0.75, 2.0, 0),
    "rnorm_backward": (0, 0, 0, 0, 0, 1, 3, 2, 2, 3, 1e-4, 0.75, 2.0, 0),
    "cnorm_forward": (0, 0, 0, 1, 3, 2, 2, 3, 1e-4, 0.75, 2.0, 0),
    "cnorm_backward": (0, 0, 0, 0, 0, 1, 3, 2, 2, 3, 1e-4, 0.75, 2.0, 0),
    "dropout_mask": (0, 8, 0, 0.5, 1, 2, 3, 0),  # mask, n, offset, keep, seed, layer, step
    "random_normal": (0, 8, 0, 1, 2, 3, 0),
    "dropout_forward": (0, 0, 0, 8, 0.5, 0),
    "dropout_backward": (0, 0, 0, 8, 0.5, 0),
    "softmax_forward": (0, 0, 2, 3, 0),
    "softmax_backward": (0, 0, 0, 2, 3, 0),
    "logreg_forward": (0, 0, 0, 0, 0, 2, 3, 1, 0),
    "logreg_backward": (0, 0, 0, 2, 3, 1.0, 0),
    "softmax_logreg_backward": (0, 0, 0, 2, 3, 1.0, 0),
    "sgd_update": (0, 0, 0, 4, 0.01, 0.9, 5e-6, 0),
    "maxnorm": (0, 0, 1, 2, 3, 1.0, 0),
    "cmpool_forward": (0, 0, 1, 5, 2, 4, 3, 2, 0, 0),
    "cmpool_backward": (0, 0, 0, 0, 1, 5, 2, 4, 3, 2, 0, 0),
    "sum_forward": (0, 0, 2, 3, 2, 4, 0),
    "sum_backward": (0, 0, 2, 3, 2, 4, 0),
    "crop_forward": (0, 0, 2, 4, 4, 2, 2, 1, 1, 0),
    "crop_backward": (0, 0, 2, 4, 4, 2, 2, 1, 1, 0),
    "crossent_forward": (0, 0, 0, 0, 2, 3, 0),
    "crossent_backward": (0, 0, 0, 6, 1.0, 0),
    "softmax_crossent_backward": (0, 0, 0, 2, 3, 1.0, 0),
    "bce_forward": (0, 0, 0, 0, 0, 2, 3, 1.0, 0),
    "bce_backward": (0, 0, 0, 6, 1.0, 1.0, 0),
    "logistic_bce_backward": (0, 0, 0, 6, 1.0, 1.0, 0),
    "dce_forward": (0, 0, 0, 0, 0, 2, 3, 1.0, 0),
    "dce_backward": (0, 0, 0, 6, 1.0, 1.0, 0),
}


def _installed_C():
    if convnet._C is None:
        pytest.fail("convnet._C did not import: build it with `pip install -e .`")
    return convnet._C


def _load_extension(directory):
    """Import the convnet._C found under `directory` (a pip --target tree) as its own module."""
    found = sorted(Path(directory, "convnet").glob("_C.*"))
    assert found, f"no convnet/_C.* under {directory}"
    spec = importlib.util.spec_from_file_location("_C", found[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _default_archs():
    text = (ROOT / "CMakeLists.txt").read_text()
    match = re.search(r'set\(CONVNET_DEFAULT_CUDA_ARCHS\s+"([^"]*)"\)', text)
    assert match, "CMakeLists.txt sets no CONVNET_DEFAULT_CUDA_ARCHS"
    return match.group(1).split(";")


def test_build_extension_imports_and_reports_cuda():
    C = _installed_C()
    assert isinstance(C.built_with_cuda, bool)
    assert convnet.built_with_cuda() is C.built_with_cuda
    assert isinstance(C.cuda_architectures, str)
    assert bool(C.cuda_architectures) == C.built_with_cuda


def test_build_cuda_available_never_raises():
    available = convnet.cuda_available()
    assert isinstance(available, bool)
    if not convnet.built_with_cuda() or _installed_C().cuda_device_count() == 0:
        assert available is False


def test_build_neuron_kinds_match_the_reference():
    from convnet.backend.numpy_neuron import NEURON_KINDS

    assert tuple(_installed_C().neuron_kinds) == tuple(NEURON_KINDS)


def test_build_every_launcher_is_bound():
    C = _installed_C()
    missing = [name for name in LAUNCHER_CALLS if not callable(getattr(C, name, None))]
    assert not missing, f"convnet._C lacks {missing}"


def _check_launchers_refuse(C, pattern):
    for name, args in LAUNCHER_CALLS.items():
        with pytest.raises(RuntimeError, match=pattern) as info:
            getattr(C, name)(*args)
        assert str(info.value).startswith(f"{name}: "), str(info.value)


def test_build_cpu_only_launchers_raise_built_without_cuda():
    C = _installed_C()
    if C.built_with_cuda:
        pytest.skip("this convnet._C has CUDA; see test_build_cpu_only_target")
    _check_launchers_refuse(C, "convnet was built without CUDA")


def test_build_cpu_only_target():
    target = os.environ.get("CONVNET_CPU_ONLY_TARGET")
    if not target:
        pytest.skip("CONVNET_CPU_ONLY_TARGET names no CPU-only build (.ci/run sets it)")
    C = _load_extension(target)
    assert C.built_with_cuda is False
    assert C.cuda_device_count() == 0
    _check_launchers_refuse(C, "convnet was built without CUDA")


def test_build_cuda_launchers_without_a_gpu_raise_runtime_error():
    C = _installed_C()
    if not C.built_with_cuda or C.cuda_device_count() > 0:
        pytest.skip("needs a CUDA build on a machine without a usable GPU")
    for name in ("neuron_forward", "maxpool_forward", "softmax_forward", "sgd_update",
                 "dropout_mask", "bias_backward", "lrn_backward", "random_normal"):
        with pytest.raises(RuntimeError, match=rf"^{name}: ") as info:
            getattr(C, name)(*LAUNCHER_CALLS[name])
        assert "cuda" in str(info.value).lower()


def test_build_bad_arguments_raise_value_error_before_any_launch():
    C = _installed_C()
    if not C.built_with_cuda:
        pytest.skip("the CPU-only launchers refuse every call")
    with pytest.raises(ValueError, match="neuron_forward: unknown neuron kind 99"):
        C.neuron_forward(0, 0, 4, 99, 0.0, 0.0, 0)
    with pytest.raises(ValueError, match="dropout_mask: keep"):
        C.dropout_mask(0, 8, 0, 1.5, 1, 2, 3, 0)


def test_build_default_archs_include_hopper_and_never_native():
    archs = _default_archs()
    numbers = [int(re.match(r"(\d+)", a).group(1)) for a in archs]
    assert 90 in numbers
    assert all(a != "native" and "all" not in a for a in archs)
    assert min(numbers) >= 75, "CUDA 13 accepts nothing older than 75"
    assert any(a == "90" or a.endswith("-virtual") for a in archs), \
        "no PTX in the list for GPUs newer than the newest SASS"
    C = _installed_C()
    if C.built_with_cuda:  # the list it was built with (CONVNET_CUDA_ARCHS may override it)
        built = C.cuda_architectures.split(",")
        assert built and all(re.fullmatch(r"\d+[a-z]?(-real|-virtual)?", a) for a in built), built


def test_build_pyproject_declares_the_package():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = config["project"]
    assert project["name"] == "cuda-convnet"  # PyPI's `convnet` is another project
    floors = dict(re.fullmatch(r"([a-z]+)>=([\d.]+)", d).groups() for d in project["dependencies"])
    assert set(floors) == {"numpy", "matplotlib", "pillow", "tqdm"}, floors
    assert floors["pillow"] >= "9.1"  # Image.Resampling
    extras = project["optional-dependencies"]
    assert extras["cuda13"] == ["cupy-cuda13x[ctk]>=14"]  # ctk: the runtime and cuBLAS
    assert extras["cuda12"] == ["cupy-cuda12x[ctk]>=14"]
    assert project["scripts"]["convnet-train"] == "convnet.apps.cli:main"
    assert project["scripts"]["convnet-show"] == "convnet.apps.show:main"
    pytest_config = config["tool"]["pytest"]["ini_options"]
    assert pytest_config["testpaths"] == ["tests"]
    assert any(m.startswith("cuda:") for m in pytest_config["markers"])
    defines = config["tool"]["scikit-build"]["cmake"]["define"]
    assert defines["CONVNET_CUDA"] == {"env": "CONVNET_CUDA", "default": "AUTO"}


def _configure(tmp_path, cuda, extra_env):
    """Run CMake's configure step alone with CONVNET_CUDA=cuda; (exit code, output)."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("no cmake on PATH")
    import pybind11

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVNET_")}
    env.update(extra_env)
    result = subprocess.run(
        [cmake, "-S", str(ROOT), "-B", str(tmp_path / "build"), f"-DCONVNET_CUDA={cuda}",
         f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}"],
        env=env, capture_output=True, text=True, timeout=300)
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def test_build_cuda_on_without_nvcc_is_a_clear_configure_error(tmp_path):
    pytest.importorskip("pybind11")
    # A CUDA compiler that does not exist stands for a machine without nvcc.
    code, output = _configure(tmp_path, "ON", {"CUDACXX": str(tmp_path / "no-nvcc")})
    assert code != 0
    assert "CONVNET_CUDA=ON but no CUDA compiler (nvcc) was found" in output


def test_build_auto_without_nvcc_configures_the_cpu_only_module(tmp_path):
    pytest.importorskip("pybind11")
    code, output = _configure(tmp_path, "AUTO", {"CUDACXX": str(tmp_path / "no-nvcc")})
    assert code == 0, output
    assert "no nvcc found; building the CPU-only module" in output
    cache = (tmp_path / "build" / "CMakeCache.txt").read_text()
    assert "CMAKE_CUDA_COMPILER:FILEPATH=/" not in cache


def test_build_bad_convnet_cuda_value_is_rejected(tmp_path):
    pytest.importorskip("pybind11")
    code, output = _configure(tmp_path, "MAYBE", {})
    assert code != 0
    assert "CONVNET_CUDA must be AUTO, ON or OFF" in output


def test_the_sdist_holds_tracked_files_only(tmp_path):
    """scikit-build-core's sdist of this checkout: a run's outputs in the tree stay out (a
    stray probs.npy and feats/ are planted), every file is tracked by git or lies in a source
    folder (a new file not yet committed, in a working checkout; none in CI's clean clone), and
    it holds what a build from it needs."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    tracked = set(subprocess.run([git, "ls-files"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split("\n")) - {""}
    strays = [ROOT / "probs.npy", ROOT / "feats" / "features.npy"]  # --test-out, features
    made = [s for s in strays if not s.exists()]
    for s in made:
        s.parent.mkdir(exist_ok=True)
        s.touch()
    try:
        done = subprocess.run(
            [sys.executable, "-c", "import sys, scikit_build_core.build as b; "
             "print(b.build_sdist(sys.argv[1]))", str(tmp_path)],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        for s in made:
            s.unlink()
            if s.parent != ROOT and not any(s.parent.iterdir()):
                s.parent.rmdir()
    assert done.returncode == 0, done.stderr
    import tarfile

    with tarfile.open(tmp_path / done.stdout.strip().splitlines()[-1]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    files = {n for n in names if not any(m.startswith(n + "/") for m in names)}
    files -= {"PKG-INFO"}
    sources = ("convnet/", "csrc/", "layers/", "tests/", "tools/", "benchmarks/")
    untracked = {f for f in files - tracked if not f.startswith(sources)}
    assert not untracked, f"untracked files in the sdist: {sorted(untracked)[:10]}"
    assert "probs.npy" not in files and "feats/features.npy" not in files
    for needed in ("pyproject.toml", "CMakeLists.txt", "LICENSE", "NOTICE", "README.md",
                   "csrc/conv.cu", "convnet/__init__.py", "layers/fashion.cfg"):
        assert needed in files, needed
