"""The four commands: convnet-train (cli), convnet-show (show), convnet-retrieve (retrieve) and
convnet-prepare (prepare, with prepare_source and prepare_images), the feature folders
convnet-train writes for convnet-retrieve (features), and what the figures share (figures).
Nothing else in the package imports from convnet.apps.
"""
