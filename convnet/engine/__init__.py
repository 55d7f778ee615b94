"""The layer graph: cfg files -> layers -> a Net on its devices (forward, backward, update).

config (cuda-convnet's cfg reader and value parsers, learning-rate schedules among them),
sections (comma lists, key tables, Python specs, what the data layers declare), layers (one
class per layer type), net (the graph), devices (logical GPUs), describe (a net as a table),
filters (a layer's filters as an image, by tower), gradcheck (numeric gradients). It runs on a
backend (convnet.backend) and imports nothing from data, training or the commands.
"""
