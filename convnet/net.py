"""`convnet.net` for users' imports: the layer graph lives in convnet/engine/net.py now (and the
cfg-section helpers in convnet/engine/sections.py). New code imports from convnet.engine.net."""
from .engine.net import Context, Net
from .engine.sections import specs_to_sections, split_list

__all__ = ["Context", "Net", "specs_to_sections", "split_list"]
