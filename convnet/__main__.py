"""`python -m convnet COMMAND [options]`: the four commands without their scripts on PATH
(train, show, retrieve, prepare: convnet-train, convnet-show, ...)."""
import sys

COMMANDS = {"train": "cli", "show": "show", "retrieve": "retrieve", "prepare": "prepare"}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        if argv and argv[0] in ("--version", "-V"):
            from . import __version__

            print(f"convnet {__version__} (cuda-convnet)")
            return 0
        print("usage: python -m convnet {train,show,retrieve,prepare} [options]  (each command's "
              "--help lists its options)", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    import importlib

    module = importlib.import_module(f"convnet.apps.{COMMANDS[argv[0]]}")
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
