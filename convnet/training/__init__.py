"""Training a Net: the loop (train), checkpoint files and metrics.jsonl (checkpoint), what a
saved run holds and how it is rebuilt (saved_run: the format that resume, convnet-show and
convnet-retrieve share), and the TensorBoard logger (tensorboard).

Builds on convnet.engine (the net) and convnet.data (the providers); convnet.apps uses it.
"""
