"""Bad cfg files of every kind give one line `FILE:LINE: message` and exit status 2."""
import re

import pytest

from convnet.apps.cli import main
from convnet.engine.config import ConfigError, parse_neuron, parse_schedule, read_cfg
from convnet.engine.net import Net

from cfg_texts import data_layers, softmax_logreg

GOOD_LAYERS = data_layers(3, 16) + """\
[conv1]
type=conv
inputs=data
filters=8
filterSize=5
padding=2
neuron=relu

[pool1]
type=pool
pool=max
inputs=conv1
sizeX=3
stride=2

[fc2]
type=fc
inputs=pool1
outputs=10

""" + softmax_logreg("fc2")

GOOD_PARAMS = """\
[conv1]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.9
wc=0.0005

[fc2]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.9
wc=0.0005

[logprob]
coeff=1
"""


def run_describe(tmp_path, capsys, layers=GOOD_LAYERS, params=GOOD_PARAMS):
    lp, pp = tmp_path / "layers.cfg", tmp_path / "params.cfg"
    lp.write_text(layers)
    pp.write_text(params)
    status = main([str(lp), str(pp), "--describe"])
    out, err = capsys.readouterr()
    return status, out, err, lp, pp


def line_of(text, needle):
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_good_pair_describes(tmp_path, capsys):
    status, out, err, _, _ = run_describe(tmp_path, capsys)
    assert status == 0, err
    assert "conv1" in out and "8x16x16" in out and "total" in out
    # conv1: 8*3*5*5 weights + 8 biases
    assert re.search(r"conv1\s+conv\s+8x16x16\s+2,048\s+608\s", out)


LAYER_BREAKAGES = [
    # (what, old text, new text, needle marking the expected line, words in the message)
    ("unknown type", "type=pool", "type=poool", "type=poool", ["unknown layer type", "poool"]),
    ("unknown key", "filterSize=5", "filterSize=5\nfilterSise=3", "filterSise",
     ["unknown key", "filterSise"]),
    ("missing key", "outputs=10\n", "\n", "[fc2]", ["missing required key", "outputs"]),
    ("unknown input", "inputs=pool1", "inputs=pool9", "inputs=pool9", ["unknown input", "pool9"]),
    ("cycle", "inputs=conv1\nsizeX", "inputs=fc2\nsizeX", "inputs=fc2", ["cycle"]),
    ("channels mismatch", "filters=8", "filters=8\nchannels=4", "channels=4",
     ["channels=4", "has 3"]),
    ("filter too large", "filterSize=5\npadding=2", "filterSize=25\npadding=2", "filterSize=25",
     ["larger than the padded image"]),
    ("bad integer", "filters=8", "filters=eight", "filters=eight", ["integer"]),
    ("bad neuron", "neuron=relu", "neuron=rleu", "neuron=rleu", ["unknown neuron"]),
    ("neuron args", "neuron=relu", "neuron=tanh[1]", "neuron=tanh", ["tanh"]),
    ("groups", "filters=8", "filters=8\ngroups=2", "groups=2", ["groups=2"]),
    ("duplicate section", "[probs]", "[pool1]", "[pool1]\ntype=softmax", ["defined twice"]),
    ("duplicate key", "sizeX=3", "sizeX=3\nsizeX=4", "sizeX=4", ["given twice"]),
    ("garbage line", "sizeX=3", "sizeX=3\nthis is not a key", "this is not", ["key=value"]),
    ("bad pool", "pool=max", "pool=median", "pool=median", ["max or avg"]),
]


@pytest.mark.parametrize("what,old,new,needle,words", LAYER_BREAKAGES,
                         ids=[b[0] for b in LAYER_BREAKAGES])
def test_config_bad_layers_file(tmp_path, capsys, what, old, new, needle, words):
    assert old in GOOD_LAYERS
    text = GOOD_LAYERS.replace(old, new, 1)
    status, out, err, lp, _ = run_describe(tmp_path, capsys, layers=text)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    line = line_of(text, needle.split("\n")[0]) if "\n" not in needle else \
        line_of(text, needle.split("\n")[0])
    assert f"{lp}:" in lines[0]
    got_line = int(re.search(rf"{re.escape(str(lp))}:(\d+):", lines[0]).group(1))
    if what == "duplicate section":
        line = [i for i, t in enumerate(text.splitlines(), 1) if t == "[pool1]"][1]
    assert got_line == line, lines[0]
    for w in words:
        assert w in lines[0]


PARAM_BREAKAGES = [
    ("stray section", "[logprob]", "[fc3]\nepsW=1\n\n[logprob]", ["fc3", "matches no layer"]),
    ("missing key", "wc=0.0005\n\n[fc2]", "\n[fc2]", ["missing required key", "wc"]),
    ("unknown key", "coeff=1", "coef=1", ["unknown key", "coef"]),
    ("bad schedule", "epsW=0.01\nepsB=0.02\nmomW=0.9\nmomB=0.9\nwc=0.0005\n\n[fc2]",
     "epsW=dexp[base=0.01;tgtFactor=250]\nepsB=0.02\nmomW=0.9\nmomB=0.9\nwc=0.0005\n\n[fc2]",
     ["numSteps"]),
    ("bad number", "momW=0.9", "momW=high", ["number"]),
]


@pytest.mark.parametrize("what,old,new,words", PARAM_BREAKAGES, ids=[b[0] for b in PARAM_BREAKAGES])
def test_config_bad_params_file(tmp_path, capsys, what, old, new, words):
    assert old in GOOD_PARAMS
    text = GOOD_PARAMS.replace(old, new, 1)
    status, out, err, lp, pp = run_describe(tmp_path, capsys, params=text)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.search(rf"({re.escape(str(pp))}|{re.escape(str(lp))}):\d+: ", lines[0]), lines[0]
    for w in words:
        assert w in lines[0]


def test_config_missing_params_section_names_the_layer(tmp_path, capsys):
    text = "\n".join(line for line in GOOD_PARAMS.split("\n\n") if not line.startswith("[fc2]"))
    status, _, err, lp, _ = run_describe(tmp_path, capsys, params=text)
    assert status == 2
    assert f"{lp}:{line_of(GOOD_LAYERS, '[fc2]')}:" in err
    assert "no [fc2] section" in err


def test_config_unreadable_and_binary_files(tmp_path, capsys):
    status = main([str(tmp_path / "nope.cfg"), str(tmp_path / "nope2.cfg"), "--describe"])
    err = capsys.readouterr().err
    assert status == 2 and "nope.cfg" in err and len(err.strip().splitlines()) == 1
    binary = tmp_path / "bin.cfg"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    params = tmp_path / "p.cfg"
    params.write_text(GOOD_PARAMS)
    status = main([str(binary), str(params), "--describe"])
    err = capsys.readouterr().err
    assert status == 2 and f"{binary}:" in err and len(err.strip().splitlines()) == 1


def test_read_cfg_keeps_line_numbers():
    secs = read_cfg("x.cfg", text="# c\n[a]\nk = v\n\n[b]\nq: 1\n")
    assert secs["a"].line == 2 and secs["a"].entries["k"].line == 3
    assert secs["a"].entries["k"].value == "v" and secs["b"].entries["q"].value == "1"
    with pytest.raises(ConfigError, match=r"^x.cfg:1: key outside"):
        read_cfg("x.cfg", text="k=v\n")


def test_parse_neuron_forms():
    assert parse_neuron("relu") == ("relu", (0.0, 0.0))
    assert parse_neuron("tanh[1.7159,0.6666]") == ("tanh", (1.7159, 0.6666))
    assert parse_neuron("brelu[6]") == ("brelu", (6.0, 0.0))
    assert parse_neuron("nrelu") == ("nrelu", (0.0, 0.0))
    for bad in ("relu[1]", "tanh", "foo", "tanh[a,b]"):
        with pytest.raises(ValueError):
            parse_neuron(bad)


def test_parse_schedule_values():
    assert parse_schedule("0.01")(0.7) == 0.01
    lin = parse_schedule("linear[base=0.01;tgtFactor=10]")
    assert lin(0) == pytest.approx(0.01) and lin(1) == pytest.approx(0.001)
    assert lin(0.5) == pytest.approx(0.0055)
    exp = parse_schedule("exp[base=0.01;tgtFactor=100]")
    assert exp(0.5) == pytest.approx(0.001)
    dexp = parse_schedule("dexp[base=0.01;tgtFactor=250;numSteps=4]")
    # four plateaus from 0.01 down to 0.01/250, geometrically spaced
    assert [dexp(p) for p in (0.0, 0.3, 0.6, 0.99)] == pytest.approx(
        [0.01, 0.01 / 250 ** (1 / 3), 0.01 / 250 ** (2 / 3), 0.01 / 250])
    for bad in ("dexp[base=0.01]", "foo[base=1]", "exp[base=1;tgtFactor=0]", "x"):
        with pytest.raises(ValueError):
            parse_schedule(bad)


def test_a_bad_params_value_is_reported_at_the_params_files_line(tmp_path):
    """keep=0 in layer-params.cfg is that file's line, not the layer's line in layers.cfg."""
    layers = tmp_path / "layers.cfg"
    params = tmp_path / "params.cfg"
    layers.write_text("[data]\ntype=data\ndataIdx=0\noutputs=6\n\n[labels]\ntype=data\n"
                      "dataIdx=1\n\n[drop]\ntype=dropout\ninputs=data\n\n[fc]\ntype=fc\n"
                      "inputs=drop\noutputs=3\n\n[probs]\ntype=softmax\ninputs=fc\n\n"
                      "[cost]\ntype=cost.logreg\ninputs=labels,probs\n")
    params.write_text("[drop]\n\nkeep=0\n\n[fc]\nepsW=0.01\nepsB=0.01\nmomW=0.9\nmomB=0.9\n"
                      "wc=0\n\n[cost]\ncoeff=1\n")
    with pytest.raises(ConfigError, match=f"{params}:3: layer 'drop': keep=0.0 must be in"):
        Net.from_cfg(str(layers), str(params))
