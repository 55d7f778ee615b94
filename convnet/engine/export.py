"""A net's weights for PyTorch: a state_dict-shaped {name: NumPy array} in torch's names and
orientations, for `module.load_state_dict({k: torch.from_numpy(v) for k, v in d.items()})`.

    conv  -> "<layer>.weight" (out, in / groups, k, k) and "<layer>.bias", as torch.nn.Conv2d
             (the same orientation as convnet's)
    fc    -> "<layer>.weight" (out, in) and "<layer>.bias", as torch.nn.Linear: convnet keeps
             (in, out), cuda-convnet's orientation; an fc of several inputs becomes one Linear
             over torch.cat of the inputs, each flattened as (C, H, W), in `inputs` order

cuda-convnet's conv output size rounds up (1 + ceil((2 pad + size - filter) / stride)); where
that division is not exact, torch's Conv2d with the same padding gives one row and column fewer
(pad the bottom and right by one more). Layers with no torch module of the same meaning (local,
randSparse conv, conv of several inputs) are a ValueError naming them, unless skip=True leaves
them out.
"""
from __future__ import annotations

import numpy as np

from .net import Net


def torch_state_dict(net: Net, skip: bool = False) -> dict[str, np.ndarray]:
    params = net.get_params()
    out, unmapped = {}, []
    for layer in net.layers:
        if not layer.params:
            continue
        weights = [params[p.name] for p in layer.weights]
        if layer.type == "fc":
            out[f"{layer.name}.weight"] = np.ascontiguousarray(
                np.concatenate([w.T for w in weights], axis=1))
        elif layer.type == "conv" and len(weights) == 1 and layer.conns[0] is None:
            out[f"{layer.name}.weight"] = weights[0]
        else:
            notes = [layer.type]
            if any(c is not None for c in getattr(layer, "conns", ())):
                notes.append("randSparse")
            if len(weights) > 1:
                notes.append(f"{len(weights)} inputs")
            unmapped.append(f"{layer.name} ({', '.join(notes)})")
            continue
        out[f"{layer.name}.bias"] = params[layer.bias.name]
    if unmapped and not skip:
        raise ValueError(f"no torch module means what these layers do: {', '.join(unmapped)} "
                         "(torch_state_dict(net, skip=True) leaves them out)")
    return out
