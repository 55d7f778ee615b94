"""convnet-show on runs saved by convnet-train: cost curves, filter grids (greyscale, several
channels, RGB split by tower), predictions; the filter mosaic's layout; --tensorboard; and
the one-line errors."""
import os

import numpy as np
import pytest
from PIL import Image

from convnet.apps.cli import main as train_main
from convnet.apps.show import (COST_SIZE, PRED_CELL, TITLE_BAND, epoch_positions, main,
                               moving_average)
from convnet.data.datasets import write_idx
from convnet.engine.config import read_cfg
from convnet.engine.filters import filter_mosaic, graph_from_sections, towers_of
from convnet.training.checkpoint import load_latest_checkpoint, read_metrics

from cfg_texts import data_layers, softmax_logreg
from cifar_files import write_cifar_folder

LAYERS_DIR = os.path.join(os.path.dirname(__file__), "..", "layers")
SIZE = 12  # tiny "Fashion-MNIST" images

TINY_LAYERS = f"""
[data]
type=data
dataIdx=0
channels=1
imgSize={SIZE}

[labels]
type=data
dataIdx=1

[conv1]
type=conv
inputs=data
filters=8
filterSize=3
padding=1
initW=0.01
neuron=relu

[pool1]
type=pool
pool=max
inputs=conv1
sizeX=2
stride=2

[conv2]
type=conv
inputs=pool1
filters=6
filterSize=3
padding=1
initW=0.05
neuron=relu

[fc3]
type=fc
inputs=conv2
outputs=16
initW=0.05
initB=0.1
neuron=relu

[fc4]
type=fc
inputs=fc3
outputs=10
initW=0.05

[probs]
type=softmax
inputs=fc4

[logprob]
type=cost.logreg
inputs=labels,probs
"""

TINY_PARAMS = "".join(f"""
[{name}]
epsW=0.001
epsB=0.002
momW=0.9
momB=0.9
wc=0.0005
""" for name in ("conv1", "conv2", "fc3", "fc4")) + "\n[logprob]\ncoeff=1\n"


def class_images(labels, rng, size=SIZE):
    """uint8 images whose class shows as a bright horizontal bar at row `label`."""
    images = rng.integers(0, 60, (len(labels), size, size))
    for i, label in enumerate(labels):
        images[i, label % size, :] = 250
    return images.astype(np.uint8)


def write_tiny_fashion(folder, seed=0, train=120, test=40):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    train_labels, test_labels = np.arange(train) % 10, rng.permutation(np.arange(test) % 10)
    write_idx(os.path.join(folder, "train-images-idx3-ubyte"), class_images(train_labels, rng))
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte"), train_labels)
    write_idx(os.path.join(folder, "t10k-images-idx3-ubyte"), class_images(test_labels, rng))
    write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte"), test_labels)
    return folder


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory):
    """A tiny Fashion-MNIST-format data set and a 2-epoch run on it (tests every 4 batches)."""
    root = tmp_path_factory.mktemp("fashion")
    data = write_tiny_fashion(str(root / "data"))
    (root / "tiny.cfg").write_text(TINY_LAYERS)
    (root / "tiny-params.cfg").write_text(TINY_PARAMS)
    run = root / "run"
    assert train_main([str(root / "tiny.cfg"), str(root / "tiny-params.cfg"), "--data-path", data,
                       "--save-path", str(run), "--epochs", "2", "--mini", "10",
                       "--test-freq", "4", "--backend", "numpy"]) == 0
    return {"root": root, "data": data, "run": str(run)}


def png(path):
    """The PNG as an (H, W, 3) uint8 array; asserts it is a real, non-blank picture."""
    assert os.path.isfile(path), path
    image = np.asarray(Image.open(path).convert("RGB"))
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10, f"{path} is (nearly) blank"
    return image


def show(*argv):
    return main([str(a) for a in argv])


# ----------------------------------------------------------------------------- cost

def test_show_cost_writes_the_curves(fashion_run, tmp_path, capsys):
    assert show(fashion_run["run"], "--show-cost", "--out", tmp_path) == 0
    image = png(tmp_path / "cost.png")
    assert image.shape == (COST_SIZE[1], COST_SIZE[0], 3)
    assert f"wrote {tmp_path / 'cost.png'}" in capsys.readouterr().out
    # the four series' colours are drawn: blue, orange, red, purple (matplotlib tab: colours)
    for rgb in ((31, 119, 180), (255, 127, 14), (214, 39, 40), (148, 103, 189)):
        assert (np.abs(image.astype(int) - rgb).sum(axis=2) < 30).sum() > 50, rgb


def test_show_cost_smooth_and_default_out(fashion_run, tmp_path, monkeypatch):
    """Without --out the figures go to RUN-figures in the current folder, never into the run."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(open(os.path.join(fashion_run["run"],
                                                         "metrics.jsonl")).read())
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert show(run, "--show-cost", "--smooth", "3") == 0
    assert png(here / "run-figures" / "cost.png").shape == (COST_SIZE[1], COST_SIZE[0], 3)
    assert sorted(os.listdir(run)) == ["metrics.jsonl"]


def test_show_cost_epoch_positions_follow_batches():
    records = [{"epoch": 1, "batch": 4}, {"epoch": 1, "batch": 8}, {"epoch": 1, "batch": 12},
               {"epoch": 2, "batch": 6}, {"epoch": 2, "batch": 12}]
    assert np.allclose(epoch_positions(records), [1 / 3, 2 / 3, 1, 1.5, 2])


def test_show_cost_moving_average_is_a_trailing_mean(rng):
    values = rng.standard_normal(11)
    smooth = moving_average(values, 4)
    for i in range(len(values)):
        assert np.isclose(smooth[i], values[max(0, i - 3):i + 1].mean())
    assert np.array_equal(moving_average(values, 1), values)


def test_show_cost_run_records_every_test(fashion_run):
    records = read_metrics(fashion_run["run"])
    # 12 batches per epoch, a test every 4: batches 4, 8 and the epoch's end, for 2 epochs
    assert [(r["epoch"], r["batch"]) for r in records] == [(1, 4), (1, 8), (1, 12),
                                                          (2, 4), (2, 8), (2, 12)]


# ----------------------------------------------------------------------------- filters

def test_filter_mosaic_places_each_normalized_filter(rng):
    w = rng.standard_normal((20, 1, 4, 4))
    mosaic, info = filter_mosaic(w)
    cols, pitch = 16, 5
    assert mosaic.shape == (2 * pitch + 1, cols * pitch + 1) and info["shown"] == 20
    scaled = (w - w.min()) / (w.max() - w.min())
    for i in range(20):
        y, x = 1 + (i // cols) * pitch, 1 + (i % cols) * pitch
        assert np.allclose(mosaic[y:y + 4, x:x + 4], scaled[i, 0])
    assert mosaic[0].min() == 1 and mosaic[:, 0].min() == 1  # white gaps
    each, _ = filter_mosaic(w, norm_each=True)
    for i in (0, 7, 19):
        y, x = 1 + (i // cols) * pitch, 1 + (i % cols) * pitch
        tile = each[y:y + 4, x:x + 4]
        assert np.isclose(tile.min(), 0) and np.isclose(tile.max(), 1)


def test_filter_mosaic_rgb_towers_stack_with_a_band(rng):
    w = rng.standard_normal((12, 3, 5, 5))
    mosaic, info = filter_mosaic(w, towers=2)
    pitch, rows = 6, 1
    assert mosaic.shape == (2 * (rows * pitch + 1) + 2, 6 * pitch + 1, 3)
    top2 = info["tower_rows"][1][0]
    assert np.all(mosaic[top2 - 2:top2] == 0)  # the dark band between the towers
    scaled = (w - w.min()) / (w.max() - w.min())
    # filter 6 is the first of tower 2: top-left tile of the lower block, channels last
    assert np.allclose(mosaic[top2 + 1:top2 + 6, 1:6], scaled[6].transpose(1, 2, 0))


def test_filter_mosaic_several_channels_one_row_per_filter(rng):
    w = rng.standard_normal((5, 40, 3, 3))
    mosaic, info = filter_mosaic(w, max_channels=32)
    assert info["channels_shown"] == 32 and mosaic.shape == (5 * 4 + 1, 32 * 4 + 1)
    scaled = (w[:, :32] - w[:, :32].min()) / (w[:, :32].max() - w[:, :32].min())
    assert np.allclose(mosaic[1 + 2 * 4:1 + 2 * 4 + 3, 1 + 7 * 4:1 + 7 * 4 + 3], scaled[2, 7])


def test_filter_mosaic_rejects_bad_towers(rng):
    with pytest.raises(ValueError, match="towers"):
        filter_mosaic(rng.standard_normal((10, 1, 3, 3)), towers=3)


def test_towers_of_alexnet_splits_like_figure_3():
    graph = graph_from_sections(read_cfg(os.path.join(LAYERS_DIR, "alexnet.cfg")))
    # conv1 has groups=1, but conv2 (groups=2) reads its maps in two towers
    assert [towers_of(graph, name) for name in ("conv1", "conv2", "conv3", "conv4", "conv5")] \
        == [2, 2, 2, 2, 2]
    fashion = graph_from_sections(read_cfg(os.path.join(LAYERS_DIR, "fashion.cfg")))
    assert towers_of(fashion, "conv1") == 1 and towers_of(fashion, "conv2") == 1


def test_show_filters_greyscale_conv1(fashion_run, tmp_path):
    assert show(fashion_run["run"], "--show-filters", "conv1", "--out", tmp_path) == 0
    image = png(tmp_path / "filters-conv1.png")
    # 8 tiles 3x3 in one row: mosaic 5 x 33, upscaled x16 (the largest scale) = 80 x 528,
    # under a 50-pixel title band, with 20-pixel margins
    assert image.shape == (80 + 50 + 20, 528 + 40, 3)
    body = image[50:-20, 20:-20].astype(int)
    assert np.array_equal(body[..., 0], body[..., 1]) and np.array_equal(body[..., 1],
                                                                         body[..., 2])


def test_show_filters_conv2_rows_of_channels_normalized(fashion_run, tmp_path):
    assert show(fashion_run["run"], "--show-filters", "conv2", "--norm-filters",
                "--out", tmp_path) == 0
    # 6 filters x 8 channels of 3x3: mosaic 25 x 33, upscaled x16 = 400 x 528; the subtitle
    # (80 characters) wraps at 75 into a second line, 14 pixels more
    assert png(tmp_path / "filters-conv2.png").shape == (400 + 50 + 14 + 20, 528 + 40, 3)


RGB_LAYERS = "\n" + data_layers(3, 32) + """\
[conv1]
type=conv
inputs=data
filters=16
filterSize=5
stride=2
initW=0.01
neuron=relu

[rnorm1]
type=cmrnorm
inputs=conv1
size=5

[conv2]
type=conv
inputs=rnorm1
filters=4
filterSize=3
groups=2
initW=0.05
neuron=relu

[fc3]
type=fc
inputs=conv2
outputs=10
initW=0.01

""" + softmax_logreg("fc3")


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    """Tiny CIFAR-10 batches and a 1-epoch run of a net whose conv2 splits conv1 in towers."""
    root = tmp_path_factory.mktemp("cifar")
    data = write_cifar_folder(root / "data", 20, seed=1)
    (root / "rgb.cfg").write_text(RGB_LAYERS)
    (root / "rgb-params.cfg").write_text("".join(
        f"[{n}]\nepsW=0.0001\nepsB=0.002\nmomW=0.9\nmomB=0.9\nwc=0.0005\n\n"
        for n in ("conv1", "conv2", "fc3"))
        + "[rnorm1]\nscale=0.001\npow=0.75\n\n[logprob]\ncoeff=1\n")
    run = root / "run"
    assert train_main([str(root / "rgb.cfg"), str(root / "rgb-params.cfg"), "--data-provider",
                       "cifar", "--data-path", str(data), "--save-path", str(run), "--epochs",
                       "1", "--train-range", "1", "--mini", "10", "--backend", "numpy"]) == 0
    return {"root": root, "data": str(data), "run": str(run)}


def test_show_filters_rgb_split_by_tower(cifar_run, tmp_path):
    assert show(cifar_run["run"], "--show-filters", "conv1", "--out", tmp_path) == 0
    image = png(tmp_path / "filters-conv1.png").astype(int)
    # 2 towers of 8 RGB 5x5 filters: mosaic (2 * 7 + 2) x 49, upscaled x16 = 256 x 784,
    # with a 60-pixel band on the left for the tower labels
    assert image.shape == (256 + 50 + 20, 784 + 60 + 40, 3)
    body = image[50:-20, 80:-20]
    assert (np.abs(body[..., 0] - body[..., 1]) > 20).sum() > 1000  # coloured, not grey
    band = body[7 * 16 + 2:9 * 16 - 2, 2:-2]  # the dark band between tower 1 and tower 2
    assert band.max() < 40


def test_show_preds_with_top5_bars(fashion_run, tmp_path):
    assert show(fashion_run["run"], "--show-preds", "--num-preds", "6", "--data-path",
                fashion_run["data"], "--out", tmp_path) == 0
    image = png(tmp_path / "preds.png")
    assert image.shape == (2 * PRED_CELL[1] + TITLE_BAND, 4 * PRED_CELL[0], 3)
    red = (np.abs(image.astype(int) - (214, 39, 40)).sum(axis=2) < 30).sum()
    blue = (np.abs(image.astype(int) - (31, 119, 180)).sum(axis=2) < 30).sum()
    assert red > 50 and blue > 50  # true-class bars (all six are in a top-5 of 10) and others


def test_show_preds_only_errors_shows_misclassified_images(fashion_run, tmp_path, capsys):
    from convnet.apps.show import predict
    from convnet.training.saved_run import load_run

    net, provider, _, _ = load_run(fashion_run["run"], data_path=fashion_run["data"])
    index, probs = predict(net, provider, 5, only_errors=True, seed=3, batch_size=7)
    assert len(index) > 0
    assert np.all(probs.argmax(axis=1) != provider.test_labels[index])
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert show(fashion_run["run"], "--show-preds", "--only-errors", "--num-preds", "5",
                "--seed", "3", "--data-path", fashion_run["data"], "--out", tmp_path) == 0
    cols = min(4, len(index))
    rows = -(-len(index) // cols)
    assert png(tmp_path / "preds-errors.png").shape == (
        rows * PRED_CELL[1] + TITLE_BAND, cols * PRED_CELL[0], 3)


def test_show_preds_rebuilds_the_saved_net(fashion_run):
    """The rebuilt net carries the newest checkpoint's weights and gives its test cost."""
    from convnet.training.saved_run import load_run
    from convnet.training.train import evaluate

    net, provider, step, _ = load_run(fashion_run["run"], data_path=fashion_run["data"])
    saved_step, arrays, _ = load_latest_checkpoint(fashion_run["run"])
    assert step == saved_step
    assert np.array_equal(net.get_params()["conv1.w0"], arrays["param/conv1.w0"])
    last = read_metrics(fashion_run["run"])[-1]
    assert np.isclose(evaluate(net, provider, 10, "logprob")["test_cost"], last["test_cost"],
                      rtol=1e-5)


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("argv, message", [
    (["--show-filters", "nope"], "unknown layer 'nope'"),
    (["--show-filters", "fc3"], "layer 'fc3' (type fc) has no filters"),
    ([], "nothing to show"),
    (["--show-preds", "--num-preds", "0"], "--num-preds must be >= 1"),
])
def test_show_errors_are_one_line(fashion_run, tmp_path, capsys, argv, message):
    assert show(fashion_run["run"], *argv, "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("convnet-show: ")


def test_show_missing_run_dir_is_an_error(tmp_path, capsys):
    assert show(tmp_path / "nowhere", "--show-cost") == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1


def test_show_run_without_metrics_or_checkpoint(tmp_path, capsys):
    assert show(tmp_path, "--show-cost") == 2
    assert "no metrics.jsonl records" in capsys.readouterr().err
    assert show(tmp_path, "--show-filters", "conv1") == 2
    assert "no checkpoint" in capsys.readouterr().err


# ----------------------------------------------------------------------------- TensorBoard

def read_events(folder):
    """The Event protos of every tfevents file in `folder` (TFRecord framing: length, crc,
    data, crc)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    events = []
    for name in sorted(os.listdir(folder)):
        if "tfevents" not in name:
            continue
        raw = open(os.path.join(folder, name), "rb").read()
        pos = 0
        while pos < len(raw):
            (length,) = struct.unpack("<Q", raw[pos:pos + 8])
            events.append(Event.FromString(raw[pos + 12:pos + 12 + length]))
            pos += 12 + length + 4
    return events


def test_tensorboard_writes_scalars_and_filter_images(fashion_run, tmp_path):
    pytest.importorskip("tensorboardX")
    root = fashion_run["root"]
    logs = tmp_path / "tb"
    assert train_main([str(root / "tiny.cfg"), str(root / "tiny-params.cfg"), "--data-path",
                       fashion_run["data"], "--save-path", str(tmp_path / "run"), "--epochs",
                       "1", "--mini", "20", "--test-freq", "3", "--backend", "numpy",
                       "--tensorboard", str(logs)]) == 0
    records = read_metrics(tmp_path / "run")
    scalars, images = {}, {}
    for event in read_events(logs):
        for value in event.summary.value:
            if value.HasField("image"):
                images.setdefault(value.tag, []).append((event.step, value.image))
            else:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    assert len(records) == 2  # 6 batches, a test every 3
    for key in ("train_cost", "test_cost", "top1_error", "top5_error"):
        assert [step for step, _ in scalars[key]] == [r["step"] for r in records]
        assert np.allclose([v for _, v in scalars[key]], [r[key] for r in records], rtol=1e-6)
    assert set(images) == {"filters/conv1", "filters/conv2"}
    step, image = images["filters/conv1"][-1]
    assert step == records[-1]["step"] and image.width > 300 and image.height > 50


def test_tensorboard_missing_is_a_one_line_error(fashion_run, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if it were not installed
    root = fashion_run["root"]
    assert train_main([str(root / "tiny.cfg"), str(root / "tiny-params.cfg"), "--data-path",
                       fashion_run["data"], "--epochs", "1", "--backend", "numpy",
                       "--tensorboard", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err
    assert "needs tensorboardX" in err and err.count("\n") == 1


def test_drawing_leaves_pyplots_backend_alone(tmp_path):
    """A notebook's backend stays what it chose: the figures draw on their own Agg canvas."""
    script = (
        "import matplotlib; matplotlib.use('svg')\n"
        "from convnet.apps.show import plot_cost, COST_SIZE\n"
        "records = [dict(epoch=1, batch=1, step=1, train_cost=2.0, test_cost=1.5,\n"
        "                top1_error=0.5, top5_error=0.1, topk=5)]\n"
        f"plot_cost(records, {str(tmp_path / 'cost.png')!r})\n"
        "print(matplotlib.get_backend())\n")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "svg"
    assert png(tmp_path / "cost.png").shape[:2] == (COST_SIZE[1], COST_SIZE[0])
