"""The layer graph: cfg files -> layers -> a Net on its devices (forward, backward, update).

config (cuda-convnet's cfg reader and value parsers), layers (one class per layer type),
net (the graph), devices (logical GPUs), describe (a net as a table), gradcheck (numeric
gradients). It runs on a backend (convnet.backend) and knows nothing of data sets, training
or the commands.
"""
