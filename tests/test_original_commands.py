"""cuda-convnet's own command lines (issue 16): convnet.py / gpumodel.py's --layer-def,
--layer-params, -f, --test-one, --crop-border, --data-provider cifar-cropped, and shownet.py's
--show-cost=LAYER, --show-filters=LAYER, --show-preds=SOFTMAX, --only-errors=1, each the same
run as today's spelling."""
import pytest

from convnet.apps.cli import main as train_main
from convnet.apps.show import main as show_main
from convnet.training.checkpoint import read_metrics

from cifar_files import write_cifar_folder
from test_original_syntax import V1_PARAMS, V1_SIZELESS

# a v1-style CIFAR net (the data layer carries no size: the provider gives it), small weights
LAYERS = V1_SIZELESS.replace("filters=16", "filters=4").replace("initW=0.01", "initW=0.0001")
PARAMS = V1_PARAMS.replace("epsW=0.001", "epsW=0.00001")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(layers.cfg, params.cfg, a CIFAR folder of six 20-image batches)."""
    root = tmp_path_factory.mktemp("v1")
    data = write_cifar_folder(root / "cifar", 20, seed=3)
    (root / "layers.cfg").write_text(LAYERS)
    (root / "params.cfg").write_text(PARAMS)
    return str(root / "layers.cfg"), str(root / "params.cfg"), str(data)


def conv1_row(out):
    return next(r for r in out.splitlines() if r.startswith("conv1 "))


def error_line(capsys, status):
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    return err[0]


def test_layer_def_and_layer_params_are_the_two_files(files, capsys):
    layers, params, _ = files
    assert train_main([layers, params, "--describe", "--data-provider", "cifar"]) == 0
    plain = capsys.readouterr().out
    assert train_main([f"--layer-def={layers}", f"--layer-params={params}", "--describe",
                       "--data-provider=cifar"]) == 0
    assert capsys.readouterr().out == plain


@pytest.mark.parametrize("argv,words", [
    (["LAYERS", "PARAMS", "--layer-def", "LAYERS", "--layer-params", "PARAMS"], ["not both"]),
    (["--layer-def", "LAYERS"], ["--layer-def needs --layer-params"]),
    (["--crop-border", "4", "--inner-size", "20"], ["--inner-size 20", "--crop-border 4"]),
    (["--crop-border", "16"], ["--crop-border must be in 0..15"]),
    (["--crop-border", "4", "--data-provider", "fashion-mnist"], ["cifar-cropped", "--inner-size"]),
])
def test_bad_original_options_are_one_line(files, capsys, argv, words):
    layers, params, _ = files
    argv = [{"LAYERS": layers, "PARAMS": params}.get(a, a) for a in argv]
    if "--layer-def" not in argv:
        argv = [layers, params, *argv]
    if "--data-provider" not in argv:
        argv += ["--data-provider", "cifar"]
    err = error_line(capsys, train_main([*argv, "--describe"]))
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("argv,side", [
    (["--data-provider", "cifar-cropped"], 24),  # cuda-convnet's default --crop-border 4
    (["--data-provider", "cifar-cropped", "--crop-border", "2"], 28),
    (["--data-provider", "cifar", "--crop-border=6"], 20),
    (["--data-provider", "cifar-cropped", "--crop-border", "4", "--inner-size", "24"], 24),
])
def test_cifar_cropped_describes_the_crop(files, capsys, argv, side):
    layers, params, _ = files
    assert train_main([layers, params, "--describe", *argv]) == 0
    assert f"4x{side}x{side}" in conv1_row(capsys.readouterr().out)


def strip_times(records):
    return [{k: v for k, v in r.items() if k not in ("elapsed_s", "images_per_s")}
            for r in records]


def test_cifar_cropped_trains_as_inner_size_and_f_resumes(files, tmp_path, capsys):
    """v1's cifar-cropped --crop-border 4 is today's cifar --inner-size 24, batch for batch; -f
    is --load-file and --test-one=1 on a one-batch test range changes nothing."""
    layers, params, data = files
    common = ["--data-path", data, "--train-range", "1", "--epochs", "1", "--mini", "10",
              "--backend", "numpy"]
    assert train_main([layers, params, "--data-provider", "cifar", "--inner-size", "24",
                       "--save-path", str(tmp_path / "a"), *common]) == 0
    assert train_main([f"--layer-def={layers}", f"--layer-params={params}", "--data-provider",
                       "cifar-cropped", "--crop-border", "4", "--test-one=1", "--save-path",
                       str(tmp_path / "b"), *common]) == 0
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert len(a) == 1 and strip_times(a) == strip_times(b)
    capsys.readouterr()
    assert train_main(["-f", str(tmp_path / "b"), "--test-only=1", "--data-provider",
                       "cifar-cropped", "--data-path", data]) == 0
    via_f = capsys.readouterr().out
    assert train_main(["--load-file", str(tmp_path / "b"), "--test-only", "--data-provider",
                       "cifar", "--inner-size", "24", "--data-path", data]) == 0
    line = [r for r in via_f.splitlines() if r.startswith("test cost")]
    assert line and line == [r for r in capsys.readouterr().out.splitlines()
                             if r.startswith("test cost")]


def test_test_one_on_a_range_of_batches_says_all_are_tested(files, capsys):
    layers, params, data = files
    with pytest.warns(UserWarning, match="--test-one: each test scores all of --test-range 5-6"):
        assert train_main([layers, params, "--data-provider", "cifar", "--data-path", data,
                           "--test-range", "5-6", "--test-one", "--describe"]) == 0


@pytest.fixture(scope="module")
def run(files, tmp_path_factory):
    layers, params, data = files
    folder = tmp_path_factory.mktemp("run") / "run"
    assert train_main([layers, params, "--data-provider", "cifar", "--data-path", data,
                       "--train-range", "1", "--epochs", "1", "--mini", "10", "--backend",
                       "numpy", "--save-path", str(folder)]) == 0
    return str(folder)


def test_shownet_spellings_draw_todays_figures(files, run, tmp_path, capsys):
    data = files[2]
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    assert show_main([run, "--out", str(out_a), "--show-cost", "--show-filters", "conv1",
                      "--show-preds", "--only-errors", "--data-provider", "cifar",
                      "--data-path", data]) == 0
    assert show_main(["-f", run, "--out", str(out_b), "--show-cost=logprob",
                      "--show-filters=conv1", "--show-preds=probs", "--only-errors=1",
                      "--data-provider=cifar", f"--data-path={data}"]) == 0
    capsys.readouterr()
    for name in ("cost.png", "filters-conv1.png", "preds-errors.png"):
        assert (out_a / name).read_bytes() == (out_b / name).read_bytes(), name


@pytest.mark.parametrize("argv,words", [
    (["--show-cost=probs"], ["--show-cost=probs", "not a cost layer", "logprob"]),
    (["--show-preds=fc10"], ["--show-preds=fc10", "no softmax layer 'fc10'"]),
    (["--show-preds", "--only-errors=maybe"], ["--only-errors", "expected 0 or 1"]),
    (["-f", "elsewhere", "--show-cost"], ["two run folders"]),
])
def test_bad_shownet_options_are_one_line(files, run, tmp_path, capsys, argv, words):
    argv = [run, "--out", str(tmp_path), "--data-provider", "cifar", "--data-path", files[2],
            *argv]
    try:
        status = show_main(argv)
    except SystemExit as e:  # argparse's own errors: usage line + message, exit 2
        status = e.code
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert status == 2
    else:
        err = error_line(capsys, status)
    for w in words:
        assert w in err, err


def test_replicas_train_with_one_line(files, tmp_path, capsys):
    """cuda-convnet2's gpu=0,1 (imagenet-2gpu-data): trained in slices, and said so once."""
    layers, params, data = files
    replicated = tmp_path / "layers.cfg"
    replicated.write_text(LAYERS.replace("[conv1]\n", "[conv1]\ngpu=0,1\n"))
    assert train_main([str(replicated), params, "--data-provider", "cifar", "--data-path", data,
                       "--train-range", "1", "--epochs", "1", "--mini", "10", "--backend",
                       "numpy", "--save-path", str(tmp_path / "run")]) == 0
    lines = [r for r in capsys.readouterr().out.splitlines() if "replicas" in r]
    assert len(lines) == 1 and lines[0].startswith(
        "convnet: replicas: 3 layers have 2 (gpu=0,1,...: cuda-convnet2's data parallelism): "
        "each minibatch in 2 slices"), lines
