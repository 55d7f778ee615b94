"""A saved run: what a run folder's checkpoints hold and how a run is rebuilt from them.

Training (resume), convnet-train (--load-file) and convnet-show / convnet-retrieve read the same
format, defined here once:

* arrays: ``param/<layer>.<w0|w1|..|b>`` (a parameter's value) and ``momentum/<...>`` (its
  momentum), float32 or float64, one pair per parameter of the net (``param_arrays``);
* state: the Trainer's position (epoch, batch, step, elapsed_s, since_test, metrics_records;
  ``check_checkpoint``) and what convnet-train adds so the run can be rebuilt: the layers cfg
  text, its file name, the params file's path and text, and the seed (``run_config``,
  ``check_resumable``); ``saved_params`` picks the params a resumed or shown run uses.

The files themselves (npz + json, digests, atomic writes, metrics.jsonl) are checkpoint.py's.
"""
import math
import os

import numpy as np

from ..data import make_provider
from ..engine.config import read_cfg, read_cfg_text
from ..engine.net import Net
from ..engine.sections import data_shapes, declared_image_size, split_list
from .checkpoint import load_latest_checkpoint


def array_key(name, kind="param"):
    """The checkpoint array of parameter `name` (e.g. conv1.w0): kind "param" or "momentum"."""
    return f"{kind}/{name}"


def param_arrays(net):
    """The arrays a checkpoint keeps of `net`: each parameter's value and momentum (NumPy), and
    the layers' fixed buffers (randSparse's channel tables)."""
    arrays = {}
    for p in net.unique_params():
        arrays[array_key(p.name)] = np.asarray(net.B.to_numpy(p.value))
        arrays[array_key(p.name, "momentum")] = np.asarray(net.B.to_numpy(p.velocity))
    for layer in net.layers:
        for name, value in layer.buffers().items():
            arrays[array_key(name, "buffer")] = np.array(value)
    return arrays


def restore_arrays(net, arrays):
    """Put checkpointed weights and momenta back; a mismatch names every layer and shape.

    Nothing is changed unless every array fits: a parameter or buffer missing from the
    checkpoint, one of another shape (or a randSparse table that is not permutations), or a
    checkpoint array that the net does not take is a ValueError.
    """
    problems, assign, used = [], [], set()
    for layer, p in net.owned_params():
        for kind, target in (("param", "value"), ("momentum", "velocity")):
            key = array_key(p.name, kind)
            value = arrays.get(key)
            used.add(key)
            if value is None:
                problems.append(f"{p.name}: missing from the checkpoint")
            elif tuple(value.shape) != p.shape:
                problems.append(f"{p.name}: checkpoint {tuple(value.shape)} vs net {p.shape}")
            else:
                assign.append((layer, p, target, value))
    buffers = []
    for layer in net.layers:
        for name in layer.buffers():
            key = array_key(name, "buffer")
            used.add(key)
            try:
                if key not in arrays:
                    raise ValueError(f"{name}: missing from the checkpoint")
                buffers.append((layer, name, layer.check_buffer(name, np.asarray(arrays[key]))))
            except ValueError as e:
                problems.append(str(e))
    for key in arrays:
        if key not in used:
            name = key.split("/", 1)[-1]
            problems.append(f"{name}: in the checkpoint {tuple(np.shape(arrays[key]))} but not "
                            f"in the net")
    if problems:
        raise ValueError("the checkpoint does not match the net: " + "; ".join(sorted(set(problems))))
    for layer, name, value in buffers:
        layer.set_buffer(name, value)
    for layer, p, target, value in assign:
        with net.dev.on(layer.gpu):  # the array lives on its layer's GPU
            getattr(p, target)[...] = net.B.asarray(value, net.dtype)


def _is_int(value, low=0):
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_checkpoint(step, arrays, state):
    """Raise ValueError unless a loaded checkpoint is one a Trainer can resume from.

    The state must carry epoch >= 1, batch >= 0, step (the file's) and elapsed_s of the right
    types; every array must be a finite float32 or float64 array. Pass it as
    load_latest_checkpoint's `check`, so that a checkpoint failing it is skipped like a corrupt one.
    """
    if not _is_int(state.get("epoch"), 1) or not _is_int(state.get("batch")):
        raise ValueError(f"bad epoch/batch in the state ({state.get('epoch')!r}, "
                         f"{state.get('batch')!r})")
    if state.get("step") != step or not _is_int(step):
        raise ValueError(f"the state's step {state.get('step')!r} is not the file's {step}")
    elapsed = state.get("elapsed_s")
    if not _is_number(elapsed) or elapsed < 0:
        raise ValueError(f"bad elapsed_s {elapsed!r} in the state")
    since = state.get("since_test", [0.0, 0, 0])
    if not (isinstance(since, list) and len(since) == 3 and _is_number(since[0])
            and _is_int(since[1]) and _is_int(since[2])):
        raise ValueError(f"bad since_test {since!r} in the state")
    if "minibatch" in state and not _is_int(state["minibatch"], 1):
        raise ValueError(f"bad minibatch {state['minibatch']!r} in the state")
    if not _is_int(state.get("metrics_records", 0)):
        raise ValueError(f"bad metrics_records {state.get('metrics_records')!r} in the state")
    for name, value in arrays.items():
        if value.dtype not in (np.float32, np.float64):
            raise ValueError(f"array {name} has dtype {value.dtype}, not float32 or float64")
        if not np.isfinite(value).all():
            raise ValueError(f"array {name} holds NaN or Inf")


# What `filters` means beside `groups` in the saved layers cfg: "per group" (both originals,
# layer.py's filters * groups, and this project from issue 16 on). Checkpoints saved before
# carry no "filters" field; their cfg counted all of a layer's filters.
FILTERS_MEANING = "per group"


def run_config(layers_text, layers_file, params_file, seed, params_text=None):
    """What convnet-train keeps in every checkpoint's state besides the Trainer's position:
    the params file's path and its text too, so a moved run folder still rebuilds its net."""
    config = {"layers_cfg": layers_text, "layers_file": layers_file,
              "params_file": os.path.abspath(params_file), "seed": seed,
              "filters": FILTERS_MEANING}
    if params_text is not None:
        config["params_cfg"] = params_text
    return config


def saved_params(state, where):
    """(params file path, its text, the line saying which) of a saved run given no params
    file: the file the run names, re-read when it is there (cuda-convnet's edit-and-resume:
    edit the learning rates, resume), else the text its checkpoint keeps. `where`: the run
    folder, for the error when neither is there (a checkpoint older than the saved text)."""
    path = state["params_file"]
    if os.path.isfile(path):
        return path, read_cfg_text(path), f"params: re-reading {path} (edit-and-resume)"
    text = state.get("params_cfg")
    if text is None:
        raise ValueError(f"{where}: the run's params file {path} is missing and its checkpoint "
                         f"holds no copy of it; pass the params file")
    return path, text, f"params: {path} is gone; using the copy saved in the checkpoint"


def total_filters_to_per_group(text, name="layers.cfg"):
    """A layers cfg written when `filters` counted all of a conv/local layer's filters, in
    today's meaning (per group): each grouped layer's filters=F line becomes F / groups (one
    value per input where the inputs' groups differ). Other lines are kept as written."""
    lines = text.splitlines(keepends=True)
    for sec in read_cfg(name, text=text).values():
        e = sec.entries
        if "type" not in e or e["type"].value not in ("conv", "local") or "groups" not in e \
                or "filters" not in e:
            continue
        try:
            total = int(e["filters"].value)
            groups = [int(g) for g in split_list(e["groups"].value)]
        except ValueError:
            continue  # the layer's own parser reports it, with its line
        if all(g == 1 for g in groups) or any(g < 1 or total % g for g in groups):
            continue  # nothing to convert, or a net that never built
        value = ",".join(dict.fromkeys(str(total // g) for g in groups)) \
            if len(set(groups)) == 1 else ",".join(str(total // g) for g in groups)
        i = e["filters"].line - 1
        raw = lines[i]
        indent = raw[:len(raw) - len(raw.lstrip())]
        newline = raw[len(raw.rstrip("\r\n")):]
        lines[i] = f"{indent}filters={value}{newline}"
    return "".join(lines)


def in_todays_meaning(state):
    """`state` (a checkpoint's) with its layers cfg in today's meaning of filters: an older
    state's cfg is converted and marked, so that the run rebuilds the net it trained and the
    checkpoints it writes next say which meaning they hold."""
    if state.get("filters") == FILTERS_MEANING or not isinstance(state.get("layers_cfg"), str):
        return state
    state = dict(state)
    state["layers_cfg"] = total_filters_to_per_group(state["layers_cfg"],
                                                     state.get("layers_file") or "layers.cfg")
    state["filters"] = FILTERS_MEANING
    return state


def check_resumable(step, arrays, state):
    """check_checkpoint plus the fields convnet-train keeps in the state."""
    check_checkpoint(step, arrays, state)
    for key in ("layers_cfg", "layers_file", "params_file"):
        if not isinstance(state.get(key), str) or not state[key]:
            raise ValueError(f"bad {key} {state.get(key)!r} in the state")
        if key != "layers_cfg" and not state[key].isprintable():
            raise ValueError(f"bad {key} {state[key]!r} in the state (not a file name)")
    if "params_cfg" in state and not isinstance(state["params_cfg"], str):
        raise ValueError(f"bad params_cfg {state['params_cfg']!r} in the state")
    seed = state.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2 ** 63:
        raise ValueError(f"bad seed {seed!r} in the state")


def load_run(run_dir, data_provider="fashion-mnist", data_path=None, test_range=None,
             inner_size=None, backend="numpy", params_file=None):
    """Rebuild a run's net from its newest checkpoint: (net, provider, step, state).

    The net comes from the layers cfg text saved in the checkpoint and the params file it names
    (or `params_file`); the weights are the checkpoint's. The provider serves `test_range`.
    """
    step, arrays, state = newest_checkpoint(run_dir)
    layer_sections = read_cfg(state.get("layers_file") or "layers.cfg", text=state["layers_cfg"])
    if params_file is not None:
        params_path, params_text = params_file, read_cfg_text(params_file)
    elif state.get("params_file"):
        params_path, params_text, _ = saved_params(state, f"{run_dir} (give --params-file)")
    else:
        raise ValueError(f"{run_dir}: the checkpoint names no params file; pass --params-file")
    if inner_size is None:
        inner_size = declared_image_size(layer_sections)
    provider = make_provider(data_provider, data_path, test_range=test_range,
                             inner_size=inner_size)
    net = Net(layer_sections=layer_sections, param_sections=read_cfg(params_path, params_text),
              params_file=params_path, backend=backend,
              data_shapes=data_shapes(layer_sections, provider))
    restore_arrays(net, arrays)
    return net, provider, step, state


def newest_checkpoint(run_dir):
    """(step, arrays, state) of run_dir's newest good checkpoint; ValueError when none."""
    if not os.path.isdir(run_dir):
        raise ValueError(f"run folder {run_dir} does not exist")
    found = load_latest_checkpoint(run_dir)
    if found is None:
        raise ValueError(f"{run_dir}: no checkpoint (train with --save-path {run_dir} first)")
    step, arrays, state = found
    if "layers_cfg" not in state:
        raise ValueError(f"{run_dir}: the checkpoint does not record the net's layers cfg")
    return step, arrays, in_todays_meaning(state)
