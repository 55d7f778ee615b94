"""Training a Net: the loop (train), checkpoints and metrics.jsonl (checkpoint).

Builds on convnet.engine (the net) and convnet.data (the providers); the commands in
convnet.apps use it.
"""
