"""Every cfg layer type and its class: cuda-convnet's (layers.py) and cuda-convnet2's
(layers_cc2.py)."""
from .layers import CORE_LAYER_TYPES
from .layers_cc2 import CC2_LAYER_TYPES

LAYER_TYPES = {**CORE_LAYER_TYPES, **CC2_LAYER_TYPES}
