"""Issue 9, reliability: NaN/Inf stops with the layer and the step and keeps the last good
checkpoint; a checkpoint that does not fit the net names the layers and shapes; bad data files
are one line naming the file (and never run code); out of memory prints what each layer needs.

The helpers here (synthetic CIFAR batches, small nets, running convnet-train as a subprocess) are
shared by test_reliability_stop.py (Ctrl-C, SIGKILL, exact resume) and
test_reliability_fuzz.py (the cfg parser and the checkpoint loader under fuzzing).
"""
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

import convnet
from convnet.apps.cli import main
from convnet.apps.memory import ShapesOnlyNet, memory_table, out_of_memory_message
from convnet.data.datasets import write_cifar_batch, write_cifar_meta, write_idx
from convnet.engine.config import read_cfg
from convnet.training.checkpoint import checkpoint_paths, load_latest_checkpoint, read_metrics

from cfg_texts import data_layers, softmax_logreg

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# A softmax regression: tiny compute, so checkpoint writes dominate a step (the kill test wants
# its kills to land inside them). With --inner-size set, declare that imgSize instead.
TINY_LAYERS = data_layers(3, 32) + """\
[fc10]
type=fc
inputs=data
outputs=10
initW=0.001

""" + softmax_logreg("fc10")

TINY_PARAMS = """\
[fc10]
epsW=0.000001
epsB=0.002
momW=0.9
momB=0.9
wc=0.004

[logprob]
coeff=1
"""

# conv + pool + fc + dropout on 24x24 crops: the data order, the crops and flips, and the
# dropout masks are all random, so an exact resume must restore all three.
DROPOUT_LAYERS = data_layers(3, 24) + """\
[conv1]
type=conv
inputs=data
filters=8
filterSize=5
padding=2
initW=0.01
neuron=relu

[pool1]
type=pool
pool=max
inputs=conv1
sizeX=3
stride=2

[fc32]
type=fc
inputs=pool1
outputs=32
initW=0.01
neuron=relu

[drop]
type=dropout
inputs=fc32

[fc10]
type=fc
inputs=drop
outputs=10
initW=0.01

""" + softmax_logreg("fc10")

DROPOUT_PARAMS = """\
[conv1]
epsW=0.00001
epsB=0.0002
momW=0.9
momB=0.9
wc=0.004

[fc32]
epsW=0.00001
epsB=0.0002
momW=0.9
momB=0.9
wc=0.004

[drop]
keep=0.5

[fc10]
epsW=0.0001
epsB=0.002
momW=0.9
momB=0.9
wc=0.004

[logprob]
coeff=1
"""


def write_cifar(folder, per_batch=40, seed=0):
    """Six CIFAR-10 python batches (1-5 train, 6 test) of `per_batch` images, and the meta."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for b in range(1, 7):
        labels = rng.integers(0, 10, per_batch)
        images = rng.integers(0, 256, (per_batch, 3, 32, 32)).astype(np.float64)
        images[:, 0] = np.clip(images[:, 0] * 0.5 + labels[:, None, None] * 12, 0, 255)
        name = "test_batch" if b == 6 else f"data_batch_{b}"
        write_cifar_batch(folder / name, images.astype(np.uint8).reshape(per_batch, -1),
                          labels.tolist())
    write_cifar_meta(folder / "batches.meta", [f"class{i}" for i in range(10)])
    return folder


def write_net(folder, layers, params, name="net"):
    folder.mkdir(parents=True, exist_ok=True)
    lp, pp = folder / f"{name}.cfg", folder / f"{name}-params.cfg"
    lp.write_text(layers)
    pp.write_text(params)
    return str(lp), str(pp)


def subprocess_env():
    """convnet-train from this checkout, one BLAS thread (same sums in every process)."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               CONVNET_BACKEND="numpy", PYTHONUNBUFFERED="1")
    env.pop("CI", None)
    return env


def start_train(args, **kw):
    """Start `python -m convnet.apps.cli ARGS` with its output in pipes."""
    return subprocess.Popen([sys.executable, "-m", "convnet.apps.cli", *map(str, args)],
                            env=subprocess_env(), cwd=os.getcwd(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def comparable(records):
    """metrics.jsonl records without the wall-clock fields."""
    return [{k: v for k, v in r.items() if k not in ("elapsed_s", "images_per_s")}
            for r in records]


def assert_same_checkpoint(run_a, run_b):
    """Both runs' newest checkpoints: same step, epoch, batch and bit-identical arrays."""
    step_a, arrays_a, state_a = load_latest_checkpoint(run_a)
    step_b, arrays_b, state_b = load_latest_checkpoint(run_b)
    assert (step_a, state_a["epoch"], state_a["batch"]) == \
        (step_b, state_b["epoch"], state_b["batch"])
    assert sorted(arrays_a) == sorted(arrays_b)
    for name in arrays_a:
        assert arrays_a[name].tobytes() == arrays_b[name].tobytes(), name
    return step_a, arrays_a


def one_error_line(err):
    """The single stderr line of a failed run (warnings excluded); fails on a traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines()
             if not line.startswith("convnet-train: warning:")]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------ NaN and Inf

@pytest.fixture
def tiny_run(tmp_path):
    """A one-epoch run of the tiny net (5 steps over CIFAR batch 1) and its good checkpoint."""
    cifar = write_cifar(tmp_path / "cifar")
    layers, params = write_net(tmp_path / "net", TINY_LAYERS, TINY_PARAMS)
    run = tmp_path / "run"
    common = ["--data-provider", "cifar", "--data-path", str(cifar), "--mini", "8",
              "--train-range", "1", "--backend", "numpy"]
    assert main([layers, params, "--save-path", str(run), "--epochs", "1", *common]) == 0
    return run, layers, params, common


def resume_with_lr(tiny_run, capsys, eps_w, *extra):
    run, layers, params, common = tiny_run
    before = load_latest_checkpoint(run)
    hot = params.replace("-params.cfg", "-hot.cfg")
    with open(hot, "w") as f:
        f.write(TINY_PARAMS.replace("epsW=0.000001", f"epsW={eps_w}"))
    capsys.readouterr()
    status = main([hot, "--load-file", str(run), "--epochs", "2", *common, *extra])
    return status, one_error_line(capsys.readouterr().err), before


def test_train_nan_cost_from_huge_learning_rate_stops_naming_layer_and_step(tiny_run, capsys):
    """The cuda-convnet workflow gone wrong: resume with epsW=1e33. The first update leaves the
    weights huge but finite; on the next step fc10's outputs overflow and the cost is NaN.
    Training stops there naming the step and the output of fc10, exits 1, and the checkpoint
    from before the edit is still the newest and still loads."""
    status, line, before = resume_with_lr(tiny_run, capsys, "1e33")
    run = tiny_run[0]
    assert status == 1
    assert "step 6 (epoch 2, batch 2): the cost of 'logprob' is nan" in line, line
    assert "the output of layer 'fc10' holds NaN or Inf" in line, line
    assert "last good checkpoint (step 5) is kept" in line, line
    after = load_latest_checkpoint(run)
    assert after[0] == before[0] == 5
    assert sorted(os.listdir(run)) == ["ckpt-000000005.json", "ckpt-000000005.npz",
                                       "metrics.jsonl"]
    for name, value in before[1].items():
        assert np.isfinite(value).all() and value.tobytes() == after[1][name].tobytes()


def test_train_inf_weights_stop_before_the_checkpoint_is_written(tiny_run, capsys):
    """epsW=1e38: the first update itself overflows fc10's weights to Inf while that step's
    cost was still finite. With a checkpoint due after every step, the weight check before the
    save catches it: nothing non-finite is ever written."""
    status, line, before = resume_with_lr(tiny_run, capsys, "1e38", "--save-interval", "0")
    assert status == 1
    assert "step 6 " in line and "weights fc10.w0 of layer 'fc10'" in line, line
    assert "last good checkpoint (step 5) is kept" in line, line
    step, arrays, _ = load_latest_checkpoint(tiny_run[0])
    assert step == 5 and all(np.isfinite(a).all() for a in arrays.values())
    assert len(read_metrics(tiny_run[0])) == 1  # no test of the broken weights was recorded


def test_trainer_nan_bias_names_its_layer(tmp_path):
    """Python API: a NaN planted in a bias stops Trainer.run at step 0, naming that bias and its
    layer (not the layers its gradient would have reached); the weights are left as they were,
    and the checkpoint written before is the newest."""
    from convnet.data.provider import Provider
    from convnet.engine.net import Net
    from convnet.training.train import Trainer, TrainingStopped

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (16, 3, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 4, 16)
    provider = Provider("synthetic", images, labels, images[:4], labels[:4],
                        [f"c{i}" for i in range(4)])
    net = Net([dict(name="data", type="data", dataIdx=0, channels=3, imgSize=8),
               dict(name="labels", type="data", dataIdx=1),
               dict(name="hidden", type="fc", inputs="data", outputs=6, neuron="relu",
                    epsW=1e-4, epsB=1e-3, momW=0.9, momB=0.9, wc=0),
               dict(name="out", type="fc", inputs="hidden", outputs=4,
                    epsW=1e-4, epsB=1e-3, momW=0.9, momB=0.9, wc=0),
               dict(name="probs", type="softmax", inputs="out"),
               dict(name="cost", type="cost.logreg", inputs="labels,probs")])
    trainer = Trainer(net, provider, str(tmp_path), epochs=1, batch_size=4)
    trainer.save()
    net["out"].bias.value[2] = np.nan
    with pytest.raises(TrainingStopped) as info:
        trainer.run()
    message = str(info.value)
    assert message.startswith("step 0 (epoch 1, batch 1): the cost of 'cost' is nan"), message
    assert "the weights out.b of layer 'out' hold NaN or Inf" in message, message
    assert np.isfinite(net["hidden"].weights[0].value).all()  # no update after the NaN cost
    assert load_latest_checkpoint(tmp_path)[0] == 0


# ------------------------------------------------------------------------ checkpoint vs cfg

def test_train_checkpoint_not_matching_layers_names_layers_and_shapes(tiny_run, capsys):
    """Resuming with a layers.cfg whose shapes differ from the checkpoint: one line naming the
    checkpoint file, every mismatched parameter with both shapes, the missing and the extra
    layers; exit 2; the run folder is untouched."""
    run, _, params, common = tiny_run
    listing = sorted(os.listdir(run))
    changed = TINY_LAYERS.replace("[fc10]\ntype=fc\ninputs=data",
                                  "[hid]\ntype=fc\ninputs=data\noutputs=16\n\n"
                                  "[fc10]\ntype=fc\ninputs=hid")
    with open(params, "a") as f:
        f.write("\n[hid]\nepsW=0.01\nepsB=0.01\nmomW=0\nmomB=0\nwc=0\n")
    layers2, _ = write_net(run.parent / "net2", changed, "")
    capsys.readouterr()
    assert main([layers2, params, "--load-file", str(run), "--epochs", "2", *common]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{checkpoint_paths(run, 5)[0]}: the checkpoint does not match the net" in line
    assert "fc10.w0: checkpoint (3072, 10) vs net (16, 10)" in line, line
    assert "hid.w0: missing from the checkpoint" in line and "hid.b: missing" in line, line
    assert sorted(os.listdir(run)) == listing

    # a layer the checkpoint has but the net lacks is named too
    renamed = TINY_LAYERS.replace("fc10", "fcX")
    layers3, params3 = write_net(run.parent / "net3", renamed, TINY_PARAMS.replace("fc10", "fcX"))
    assert main([layers3, params3, "--load-file", str(run), "--epochs", "2", *common]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "fc10.w0: in the checkpoint (3072, 10) but not in the net" in line, line
    assert "fcX.w0: missing from the checkpoint" in line, line


# ------------------------------------------------------------------------ bad data files

FASHION_LAYERS = TINY_LAYERS.replace("channels=3\nimgSize=32", "channels=1\nimgSize=28")


def write_fashion(folder, rng, train=12, test=4):
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte", rng.integers(0, 256, (train, 28, 28)))
    write_idx(folder / "train-labels-idx1-ubyte", rng.integers(0, 10, train))
    write_idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 256, (test, 28, 28)))
    write_idx(folder / "t10k-labels-idx1-ubyte", rng.integers(0, 10, test))
    return folder


def train_on(tmp_path, capsys, provider, data, layers=TINY_LAYERS):
    lp, pp = write_net(tmp_path / "net", layers, TINY_PARAMS)
    capsys.readouterr()
    status = main([lp, pp, "--data-provider", provider, "--data-path", str(data), "--mini", "4",
                   "--epochs", "1", "--save-path", str(tmp_path / "run")])
    return status, one_error_line(capsys.readouterr().err)


def _truncate(path):
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) - 100])


def _bad_magic(path):
    raw = bytearray(open(path, "rb").read())
    raw[3] = 0x05
    open(path, "wb").write(bytes(raw))


def _label_ten(path):
    write_idx(path, np.full(12, 10))


@pytest.mark.parametrize("file,damage,words", [
    ("train-images-idx3-ubyte", _truncate, "truncated"),
    ("t10k-labels-idx1-ubyte", _bad_magic, "bad idx magic"),
    ("train-labels-idx1-ubyte", _label_ten, "label 10 out of range"),
])
def test_train_bad_fashion_idx_file_is_one_line_naming_it(tmp_path, capsys, rng, file, damage,
                                                          words):
    data = write_fashion(tmp_path / "fashion", rng)
    damage(data / file)
    status, line = train_on(tmp_path, capsys, "fashion-mnist", data, FASHION_LAYERS)
    assert status == 2 and str(data / file) in line and words in line, line
    assert not (tmp_path / "run").exists() or not os.listdir(tmp_path / "run")


class _Touch:
    """Unpickling this would create a file: the restricted unpickler must refuse it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar_truncated(path, marker):
    _truncate(path)


def _cifar_label_out_of_range(path, marker):
    write_cifar_batch(path, np.zeros((40, 3072), np.uint8), [3] * 39 + [12])


def _cifar_fractional_labels(path, marker):
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((40, 3072), np.uint8), b"labels": [3.7] * 40}, f)


def _cifar_string_labels(path, marker):
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((40, 3072), np.uint8), b"labels": ["3"] * 40}, f)


def _cifar_no_images(path, marker):
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, f)


def _cifar_float_data(path, marker):
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((40, 3072), np.float32), b"labels": [0] * 40}, f)


def _cifar_code(path, marker):
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((40, 3072), np.uint8), b"labels": [0] * 40,
                     b"batch_label": _Touch(marker)}, f, protocol=2)


def _cifar_eval(path, marker):
    payload = (b"cbuiltins\neval\n(V__import__('os').system('touch " + str(marker).encode()
               + b"')\ntR.")
    open(path, "wb").write(payload)


@pytest.mark.parametrize("damage,words", [
    (_cifar_truncated, "truncated or malformed"), (_cifar_label_out_of_range, "label 12 out of"),
    (_cifar_float_data, "uint8"), (_cifar_fractional_labels, "labels must be integers"),
    (_cifar_string_labels, "labels must be integers"), (_cifar_no_images, "holds no images"), (_cifar_code, "refused: the pickle refers to posix.system"),
    (_cifar_eval, "refused: the pickle refers to builtins.eval"),
])
def test_train_bad_cifar_batch_is_one_line_naming_it_and_runs_nothing(tmp_path, capsys, damage,
                                                                      words):
    data = write_cifar(tmp_path / "cifar")
    marker = tmp_path / "executed"
    damage(data / "data_batch_3", marker)
    status, line = train_on(tmp_path, capsys, "cifar", data)
    assert status == 2 and str(data / "data_batch_3") in line, line
    assert words in line.replace("nt.system", "posix.system"), line
    assert not marker.exists()


# ------------------------------------------------------------------------ out of memory

MEMORY_LAYERS = data_layers(3, 32) + """\
[conv1]
type=conv
inputs=data
filters=8
filterSize=5
padding=2

[pool1]
type=pool
pool=max
inputs=conv1
sizeX=2
stride=2

[fc10]
type=fc
inputs=pool1
outputs=10

""" + softmax_logreg("fc10")

MEMORY_PARAMS = """\
[conv1]
epsW=0.01
epsB=0.01
momW=0.9
momB=0.9
wc=0

[fc10]
epsW=0.01
epsB=0.01
momW=0.9
momB=0.9
wc=0

[logprob]
coeff=1
"""


def memory_net(layers=MEMORY_LAYERS):
    return ShapesOnlyNet(layer_sections=read_cfg("m.cfg", text=layers),
                         param_sections=read_cfg("p.cfg", text=MEMORY_PARAMS))


def test_memory_table_counts_each_layer_at_the_minibatch_size():
    table, need = memory_table(memory_net(), 10)
    rows = {line.split()[0]: line for line in table.splitlines()}
    # data: 3*32*32 floats x 10 images = 122,880 B; labels: 10 int64
    assert re.search(r"^data\s+data\s+3x32x32\s+120\.0 KiB\s+0 B$", rows["data"])
    assert re.search(r"^labels\s+data\s+-\s+80 B\s+0 B$", rows["labels"])
    # conv1: 8x32x32 outputs x 10 = 327,680 B; (8*3*5*5 + 8) params x 4 B x 3 = 7,296 B
    assert re.search(r"^conv1\s+conv\s+8x32x32\s+320\.0 KiB\s+7\.1 KiB$", rows["conv1"])
    assert re.search(r"^pool1\s+pool\s+8x16x16\s+80\.0 KiB\s+0 B$", rows["pool1"])
    # fc10: (2048*10 + 10) x 12 B = 245,880 B
    assert re.search(r"^fc10\s+fc\s+10\s+400 B\s+240\.1 KiB$", rows["fc10"])
    assert re.search(r"^logprob\s+cost.logreg\s+-\s+0 B\s+0 B$", rows["logprob"])
    activations = 122_880 + 80 + 327_680 + 81_920 + 400 + 400
    assert need == 2 * activations + 7_296 + 245_880
    assert "--mini 10" in table.splitlines()[0]
    # twice the minibatch, twice the activations, the same parameters
    assert memory_table(memory_net(), 20)[1] == 4 * activations + 7_296 + 245_880


def test_out_of_memory_message_has_table_and_hint():
    exc = MemoryError("Out of memory allocating 1,073,741,824 bytes")
    text = out_of_memory_message(memory_net(), 128, exc, "cuda")
    assert text.startswith("out of memory on the GPU (MemoryError: Out of memory allocating")
    assert "conv1" in text and "fc10" in text and "training needs about" in text
    assert text.splitlines()[-1].startswith("hint:") and "--mini 64" in text


def test_train_out_of_host_memory_prints_table_not_traceback(tmp_path, capsys):
    """A net far too large for any machine (an fc layer of 10^13 outputs): numpy refuses the
    allocation at once; convnet-train prints the per-layer table and the hint, exit 1."""
    cifar = write_cifar(tmp_path / "cifar", per_batch=8)
    huge = MEMORY_LAYERS.replace("outputs=10\n", "outputs=10000000000000\n") \
        .replace("[probs]\ntype=softmax\ninputs=fc10", "[fc2]\ntype=fc\ninputs=fc10\n"
                 "outputs=10\n\n[probs]\ntype=softmax\ninputs=fc2")
    params = MEMORY_PARAMS + "\n[fc2]\nepsW=0.01\nepsB=0.01\nmomW=0.9\nmomB=0.9\nwc=0\n"
    lp, pp = write_net(tmp_path / "net", huge, params)
    status = main([lp, pp, "--data-provider", "cifar", "--data-path", str(cifar),
                   "--backend", "numpy", "--mini", "8", "--save-path", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    assert err.startswith("convnet-train: out of memory on this machine"), err
    assert re.search(r"^fc10\s+fc\s+10000000000000\s", err, re.M), err
    assert "hint:" in err and "--mini 4" in err


# A net whose activations alone exceed any GPU at --mini 1000: 1x1 conv to 1024 maps of 32x32
# (4 MiB per image, 4 GiB per layer at 1000 images), then 48 ReLU layers of the same size.
GPU_HOG_LAYERS = MEMORY_LAYERS.split("[conv1]")[0] + """\
[conv1]
type=conv
inputs=data
filters=1024
filterSize=1
""" + "".join(f"""
[relu{i}]
type=neuron
inputs={'conv1' if i == 0 else f'relu{i - 1}'}
neuron=relu
""" for i in range(48)) + """
[pool]
type=pool
pool=avg
inputs=relu47
sizeX=32
stride=32

[fc10]
type=fc
inputs=pool
outputs=10

[probs]
type=softmax
inputs=fc10

[logprob]
type=cost.logreg
inputs=labels,probs
"""


@pytest.mark.cuda
@pytest.mark.skipif(not convnet.cuda_available(), reason="needs a GPU, CuPy and the kernels")
def test_train_gpu_out_of_memory_prints_table_and_hint(tmp_path):
    cifar = write_cifar(tmp_path / "cifar", per_batch=200)
    lp, pp = write_net(tmp_path / "net", GPU_HOG_LAYERS, MEMORY_PARAMS)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "convnet.apps.cli", lp, pp, "--backend", "cuda",
                           "--data-provider", "cifar", "--data-path", str(cifar), "--mini",
                           "1000", "--epochs", "1", "--save-path", str(tmp_path / "run")],
                          env=env, cwd=os.getcwd(), capture_output=True, text=True, timeout=300)
    err = done.stderr
    assert done.returncode == 1 and "Traceback" not in err, err
    assert err.startswith("convnet-train: out of memory on the GPU"), err
    assert re.search(r"^relu47\s+neuron\s+1024x32x32\s+3\.9 GiB\s", err, re.M), err
    assert "hint:" in err and "--mini 500" in err
    assert not os.path.exists(tmp_path / "run") or \
        load_latest_checkpoint(tmp_path / "run") is None


def test_train_diverged_but_finite_weights_never_become_the_last_good_checkpoint(tiny_run,
                                                                                 capsys):
    """epsW=1e6: the weights stay finite but the test cost comes out infinite; training stops
    there (exit 1) naming a layer, the test record is kept in metrics.jsonl, and the newest
    checkpoint is still the one from before the edit."""
    status, line, before = resume_with_lr(tiny_run, capsys, "1e6", "--save-interval", "0")
    assert status == 1, line
    assert "layer '" in line and "last good checkpoint (step 5) is kept" in line, line
    step, arrays, _ = load_latest_checkpoint(tiny_run[0])
    assert step == 5
    for name, value in before[1].items():
        assert value.tobytes() == arrays[name].tobytes()
