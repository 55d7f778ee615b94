"""The layer graph: built from cuda-convnet's two cfg files or from Python layer specs; forward in
topological order, backward in reverse (summing gradients where a layer feeds several), the
paper's update on every parameter. Each layer runs on its logical device (gpu=); where an edge
crosses devices, the activation goes over by an explicit copy and its gradient comes back the same
way (devices.py), and `copied` counts the bytes of the last step per edge."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import check_precision, get_backend
from .config import ConfigError, Section, read_cfg
from .devices import placement
from .layer_types import LAYER_TYPES
from .replicas import schedule
from .layers_cc2 import CropLayer, CrossMapPoolLayer, SumLayer
from .layers import (DataLayer, DropoutLayer, FcLayer, NeuronLayer, NormLayer, PoolLayer,
                     SoftmaxLayer, CostLayer, layer_keys)
from .sections import parse_section, specs_to_sections, split_list

ONE_INPUT = (PoolLayer, NormLayer, NeuronLayer, DropoutLayer, SoftmaxLayer, CrossMapPoolLayer,
             SumLayer, CropLayer)


@dataclass
class Context:
    """What a pass needs besides its inputs: training or test, the dropout RNG's key, and the
    first row of the minibatch this pass holds (a data-parallel rank's; 0 otherwise)."""
    train: bool = True
    seed: int = 0
    step: int = 0
    row0: int = 0

    def offset(self, shape):
        """The stream offset of this pass's first element in the whole minibatch's draw of an
        array of `shape` (rows first): its rows of the single-process mask or noise."""
        return self.row0 * int(np.prod(shape[1:], dtype=np.int64))


class Net:
    """A convnet. Build it with Net.from_cfg(layers_path, params_path) or Net(specs)."""

    def __init__(self, specs: Sequence[Mapping[str, Any]] | None = None,
                 backend: str | None = "numpy", dtype: Any = np.float32, seed: int = 0,
                 data_shapes: Mapping[str, tuple[int, ...]] | None = None,
                 layer_sections: dict | None = None, param_sections: dict | None = None,
                 params_file: str | None = None, gpus: Sequence[int] | None = None,
                 precision: str = "fp32") -> None:
        """`gpus`: physical GPU of each logical device (the cuda backend; see devices.py);
        `precision`: the conv and local layers' (fp32, tf32, bf16) where their precision= is
        unset (convnet/backend/precision.py)."""
        if specs is not None:
            layer_sections, param_sections = specs_to_sections(specs)
        self.B = get_backend(backend)
        self.dtype = np.dtype(dtype)
        self.seed = seed
        self.params_file = params_file
        self.precision = check_precision("Net", precision)
        self.layers = self.build(layer_sections, param_sections, data_shapes or {})
        self.schedule = schedule(self.layers)  # cc2's replicas: slices, passes, update periods
        self.dev = placement(self.B, self.layers, gpus)
        self.copied = {}  # {(producer, consumer): {"forward": bytes, "backward": bytes}}
        self.auto_step = 0  # the next training pass's step when forward() is given none
        self.row0 = 0  # the first minibatch row a data-parallel rank's passes hold
        self.init_params(seed)

    @classmethod
    def from_cfg(cls, layers_path: str, params_path: str, **kw: Any) -> Net:
        return cls(layer_sections=read_cfg(layers_path), param_sections=read_cfg(params_path),
                   params_file=params_path, **kw)

    # ---------------------------------------------------------------- building
    def build(self, sections, psections, data_shapes):
        if not sections:
            raise ConfigError("defines no layers", getattr(psections, "file", None))
        layers = {}
        for index, (name, sec) in enumerate(sections.items()):
            if "type" not in sec.entries:
                raise sec.error("missing required key 'type'")
            ltype = sec.entries["type"].value
            cls = LAYER_TYPES.get(ltype)
            if cls is None:
                raise sec.error(f"unknown layer type '{ltype}' (known: "
                                f"{', '.join(sorted(LAYER_TYPES))})", "type")
            n_inputs = len(split_list(sec.entries["inputs"].value)) if "inputs" in sec.entries else 0
            cfg = parse_section(sec, layer_keys(cls), n_inputs, f"type {ltype}")
            psec = psections.get(name)
            if psec is None:
                if cls.needs_params_section:
                    raise sec.error(f"no [{name}] section in the params file "
                                    f"({self.params_file or 'layer params'})")
                psec = Section(name, sec.file, sec.line)
            pcfg = parse_section(psec, cls.PARAMS, n_inputs, f"the params of type {ltype}")
            layers[name] = cls(name, cfg, pcfg, sec, index)
            layers[name].psection = psec
            if "precision" in cls.PARAMS:
                self.set_precision(layers[name])
        for name, psec in psections.items():
            if name not in layers:
                raise psec.error("this params section matches no layer in the layers file")
        order = self.topological_order(layers)
        self.place(order, layers)
        self.shape_layers(order, layers, data_shapes)
        self.link(layers)
        return order

    def set_precision(self, layer):
        """A conv or local layer's precision: its precision= or the net's; tf32 and bf16 round
        float32 operands, so a float64 net (gradient checks) takes fp32 only."""
        layer.precision = layer.pcfg["precision"] or self.precision
        if layer.precision != "fp32" and self.dtype != np.float32:
            raise layer.error(f"precision={layer.precision} rounds float32 operands; this net is "
                              f"{self.dtype} (fp32 only)", "precision")

    @staticmethod
    def place(order, layers):
        """cuda-convnet2's layer.py: a layer without gpu= takes its first input's devices (a
        data layer's: device 0); a layer's replica count divides each of its inputs'. A layer
        runs on the first device it lists; its replicas are passes over slices of the minibatch
        (replicas.py for when, convnet/training/replicas.py for how)."""
        for layer in order:
            if layer.replicas is None:
                layer.replicas = layers[layer.inputs[0]].replicas if layer.inputs else (0,)
            layer.gpu = layer.replicas[0]
            for src in layer.inputs:
                theirs = layers[src].replicas
                if not isinstance(layers[src], DataLayer) and len(theirs) % len(layer.replicas):
                    raise layer.error(
                        f"gpu={','.join(map(str, layer.replicas))}: {len(layer.replicas)} "
                        f"replicas must divide the {len(theirs)} of input '{src}' (gpu="
                        f"{','.join(map(str, theirs))}), as cuda-convnet2 requires", "gpu")

    @property
    def replicated(self):
        """The layers with replicas (gpu=0,1): [(name, replicas)]; self.schedule says when they
        run and update."""
        return [(layer.name, layer.replicas) for layer in self.layers if len(layer.replicas) > 1]

    @staticmethod
    def topological_order(layers):
        for layer in layers.values():
            for src in layer.inputs:
                if src not in layers:
                    raise layer.error(f"unknown input layer '{src}'", "inputs")
                if isinstance(layers[src], CostLayer):
                    raise layer.error(f"input '{src}' is a cost layer, which has no output",
                                      "inputs")
            if not isinstance(layer, DataLayer) and not layer.inputs:
                raise layer.error("needs inputs=", "inputs")
        order, state = [], {}
        for root in layers.values():  # depth first, with a stack: a chain of any length
            if state.get(root.name) == "done":
                continue
            state[root.name], path = "active", [(root, iter(root.inputs))]
            while path:
                layer, inputs = path[-1]
                src = next(inputs, None)
                if src is None:
                    state[layer.name] = "done"
                    order.append(layer)
                    path.pop()
                elif state.get(src) == "active":
                    names = [p.name for p, _ in path]
                    cycle = " -> ".join(names[names.index(src):] + [src])
                    raise layers[src].error(f"the inputs form a cycle: {cycle}", "inputs")
                elif state.get(src) != "done":
                    state[src] = "active"
                    path.append((layers[src], iter(layers[src].inputs)))
        return order

    def shape_layers(self, order, layers, data_shapes):
        for layer in order:
            if isinstance(layer, DataLayer):
                declared = layer.declared_shape()
                given = data_shapes.get(layer.name)
                if given is not None and layer.cfg["dataIdx"] == 0:
                    given = tuple(given)
                    if declared is not None and declared != given:
                        raise layer.error(f"declares shape {declared} but the data provider "
                                          f"gives {given}")
                    declared = given
                if declared is None:
                    raise layer.error("declares no shape and no data provider gives one: add "
                                      "channels= and imgSize= (or outputs=)")
                layer.out_shape = declared
                continue
            for src in layer.inputs:  # before setup, which expects image or vector inputs
                if layers[src].out_shape == () and not getattr(layer, "takes_labels", False):
                    raise layer.error(f"input '{src}' is a label layer", "inputs")
            if isinstance(layer, ONE_INPUT) and len(layer.inputs) != 1:
                raise layer.error(f"type {layer.type} takes one input, got "
                                  f"{len(layer.inputs)}", "inputs")
            layer.out_shape = layer.setup([layers[s].out_shape for s in layer.inputs])

    def link(self, layers):
        """Consumers, weight sharing, and the fused softmax + logreg gradient."""
        self.consumers = {name: [] for name in layers}
        for layer in layers.values():
            for src in layer.inputs:
                self.consumers[src].append(layer)
        for layer in layers.values():
            if getattr(layer, "fuses_softmax", False):
                probs = layers[layer.inputs[1]]
                if isinstance(probs, SoftmaxLayer) and len(self.consumers[probs.name]) == 1:
                    probs.fused_into_cost = layer.fused = True
            if isinstance(layer, FcLayer):
                for i, src, j in layer.weight_sources():
                    other = layers.get(src)
                    if not isinstance(other, FcLayer) or j >= len(other.weights) or other is layer:
                        raise layer.error(f"weightSource '{src}' is not another fc layer's "
                                          "input", "weightSource")
                    if other.weights[j].shape != layer.weights[i].shape:
                        raise layer.error(f"weightSource '{src}' has shape "
                                          f"{other.weights[j].shape}, this input needs "
                                          f"{layer.weights[i].shape}", "weightSource")
                    layer.params[i] = other.params[j]
                    layer.params[i].shared = True
        self.by_name = layers

    def init_params(self, seed):
        rng = np.random.default_rng(seed)
        for layer, p in self.owned_params():
            if layer.name in self.schedule.update_passes:
                p.period = self.schedule.step_period(layer.name)
            with self.dev.on(layer.gpu):
                p.init(self.B, rng, self.dtype)
        for layer in self.layers:  # after every weight: a net without buffers draws as before
            layer.draw_buffers(rng)

    def owned_params(self):
        """(layer, param) for every learned array once: the first layer holding it owns it."""
        seen = set()
        for layer in self.layers:
            for p in layer.params:
                if id(p) not in seen:
                    seen.add(id(p))
                    yield layer, p

    def unique_params(self):
        return [p for _, p in self.owned_params()]

    # ---------------------------------------------------------------- passes
    @property
    def data_layers(self):
        return [layer for layer in self.layers if isinstance(layer, DataLayer)]

    @property
    def cost_layers(self):
        return [layer for layer in self.layers if isinstance(layer, CostLayer)]

    def forward(self, data: Mapping[str | int, Any], train: bool = False, step: int | None = None,
                changed: Any = None) -> dict[str, Any]:
        """Run the net on `data` ({data layer name or dataIdx: array}); return the outputs.

        Returns {layer name: output}; cost layers' statistics are in each cost layer's .stats.
        `step` keys the dropout masks and other noise of a training pass (seed, layer, step):
        without it, each training pass takes the next step of the net's own count, so a loop
        of forward/backward/update draws fresh masks, as a PyTorch module in train mode does.
        With `changed` (layer names whose parameters changed since the last forward on the same
        data), only those layers and the layers downstream of them are recomputed.
        """
        if step is None:
            step = 0
            if train:
                step, self.auto_step = self.auto_step, self.auto_step + 1
        acts, xs, ready = {}, {}, {}  # outputs, inputs on the layer's device, producers' events
        if changed is not None:
            dirty = set(changed)
            for layer in self.layers:
                if dirty.intersection(layer.inputs):
                    dirty.add(layer.name)
            acts = {name: out for name, out in self.acts.items() if name not in dirty}
            xs = {name: x for name, x in self.xs.items() if name not in dirty}
        for layer in self.data_layers:  # all present before anything runs
            if layer.name not in acts and self.data_for(layer, data) is None:
                raise ValueError(f"no data for data layer '{layer.name}' "
                                 f"(dataIdx={layer.cfg['dataIdx']})")
        self.copied = {}
        ctx = Context(train, self.seed, step, self.row0)
        with self.dev.fenced():
            for layer in self.layers:
                if layer.name in acts:
                    continue
                with self.dev.on(layer.gpu):
                    if isinstance(layer, DataLayer):
                        acts[layer.name] = self.read_data(layer, data)
                    else:
                        moved = {s: self.move(acts[s], s, layer.name, "forward", ready.get(s))
                                 for s in dict.fromkeys(layer.inputs)}  # an input named twice: once
                        xs[layer.name] = [moved[src] for src in layer.inputs]
                        acts[layer.name] = layer.forward(self.B, xs[layer.name], ctx)
                    ready[layer.name] = self.dev.record(layer.gpu)
        self.acts, self.xs = acts, xs
        return acts

    @staticmethod
    def data_for(layer, data):
        return data.get(layer.name, data.get(layer.cfg["dataIdx"]))

    def read_data(self, layer, data):
        value = self.data_for(layer, data)
        return self.B.asarray(value, self.dtype if layer.out_shape != () else np.int64)

    def move(self, a, producer, consumer, direction, ready):
        """`a` (the producer's output going forward, or its gradient coming back) for the other
        end of the edge: copied there after the event `ready` when the two layers' devices
        differ, and its bytes counted in `copied`."""
        p, c = self.by_name[producer].gpu, self.by_name[consumer].gpu
        if p == c:
            return a
        tally = self.copied.setdefault((producer, consumer), {"forward": 0, "backward": 0})
        tally[direction] += a.nbytes
        src, dst = (p, c) if direction == "forward" else (c, p)
        return self.dev.copy(a, src, dst, ready)

    def backward(self, data_grads: bool = False,
                 on_layer: Callable[[Any], None] | None = None) -> dict[str, Any]:
        """Back-propagate the cost layers' gradients (coeff * batch mean) from the last forward.

        Returns the gradients reaching data layers when data_grads is set (else {}).
        on_layer(layer), on the layer's device, after each layer has added its parameters'
        gradients (a data-parallel job starts reducing them there)."""
        grads = {}
        with self.dev.fenced():
            for layer in reversed(self.layers):
                if isinstance(layer, DataLayer):
                    continue
                dy = grads.pop(layer.name, None)
                if dy is None and not isinstance(layer, CostLayer):
                    continue  # nothing downstream depends on this layer
                need = [data_grads or not isinstance(self.by_name[s], DataLayer)
                        for s in layer.inputs]
                with self.dev.on(layer.gpu):
                    dxs = layer.backward(self.B, dy, self.xs[layer.name], self.acts[layer.name],
                                         need)
                    back = {}  # per input: an input named twice sends one summed gradient back
                    for src, dx in zip(layer.inputs, dxs):
                        if dx is not None:
                            back[src] = dx if src not in back else back[src] + dx
                    ready = self.dev.record(layer.gpu)
                    if on_layer is not None:
                        on_layer(layer)
                for src, dx in back.items():
                    with self.dev.on(self.by_name[src].gpu):
                        dx = self.move(dx, src, layer.name, "backward", ready)
                        grads[src] = dx if src not in grads else grads[src] + dx
        return grads

    def update(self, progress: float) -> None:
        with self.dev.fenced():
            for layer, p in self.owned_params():
                with self.dev.on(layer.gpu):
                    p.update(self.B, progress)

    def train_step(self, data: Mapping[str | int, Any], step: int, progress: float,
                   check: Callable[[dict], None] | None = None) -> dict[str, dict[str, float]]:
        """Forward, backward, update; returns the cost statistics. `check(stats)` runs after
        the forward pass, before anything changes: raising there leaves the weights as they
        were (the trainer's NaN/Inf check). One pass over the whole minibatch: a net with
        cuda-convnet2's replicas trains in slices and passes through
        convnet.training.replicas.ReplicaStep (the Trainer uses it)."""
        self.forward(data, train=True, step=step)
        if check is not None:
            check(self.cost_stats())
        self.backward()
        self.update(progress)
        return self.cost_stats()

    def cost_stats(self) -> dict[str, dict[str, float]]:
        return {layer.name: dict(layer.stats) for layer in self.cost_layers}

    def objective(self):
        """The scalar the gradients descend: sum of coeff * mean cost over the cost layers."""
        total = 0.0
        for layer in self.cost_layers:
            total += layer.pcfg["coeff"] * layer.stats["cost"] / layer.stats["cases"]
        return total

    # ---------------------------------------------------------------- parameters
    def host_copies(self, attr):
        """{param name: NumPy copy of its `attr`} ("value" or "grad"), shared ones once."""
        out = {}
        for layer, p in self.owned_params():
            if getattr(p, attr) is not None:
                with self.dev.on(layer.gpu):
                    out[p.name] = np.array(self.B.to_numpy(getattr(p, attr)))
        return out

    def get_params(self) -> dict[str, np.ndarray]:
        """{param name: NumPy copy} of every learned array (shared ones once)."""
        return self.host_copies("value")

    def set_params(self, arrays: Mapping[str, np.ndarray]) -> None:
        params = {p.name: (layer, p) for layer, p in self.owned_params()}
        for name, value in arrays.items():
            if name not in params:
                raise KeyError(f"no parameter named {name!r}")
            layer, p = params[name]
            if tuple(value.shape) != p.shape:
                raise ValueError(f"{name}: shape {tuple(value.shape)} does not match {p.shape}")
            with self.dev.on(layer.gpu):
                p.value[...] = self.B.asarray(value, self.dtype)

    def get_grads(self) -> dict[str, np.ndarray]:
        return self.host_copies("grad")

    def zero_grads(self):
        for p in self.unique_params():
            p.grad = None

    def __getitem__(self, name):
        return self.by_name[name]
