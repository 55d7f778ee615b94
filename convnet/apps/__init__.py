"""The four commands: convnet-train (cli), convnet-show (show), convnet-retrieve (retrieve) and
convnet-prepare (prepare), and the feature folders convnet-train writes for convnet-retrieve
(features). Nothing below convnet.apps imports from it.
"""
