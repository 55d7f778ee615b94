"""The four commands: convnet-train (cli), convnet-show (show), convnet-retrieve (retrieve) and
convnet-prepare (prepare, with prepare_source and prepare_images), the feature folders
convnet-train writes for convnet-retrieve (features), what the figures share (figures) and the
shipped nets (nets). Nothing else in the package imports from convnet.apps.
"""
from .. import __version__


def add_version(parser):
    """--version on a command: its name, convnet's version and whether the kernels are built."""
    from .. import built_with_cuda

    kernels = "with the CUDA kernels" if built_with_cuda() else "without CUDA kernels (CPU only)"
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {__version__} (cuda-convnet), {kernels}")
    return parser
