"""What every command's options share, written once: the parser (one-line errors, defaults in
--help, --version), cuda-convnet's booleans, --backend and --data-provider."""
import argparse
import sys

from ..backend import BACKENDS
from ..data import PROVIDER_NAMES
from . import add_version

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def flag(text):
    """A boolean option's value: 1/0 (cuda-convnet's), true/false, yes/no, on/off."""
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected 0 or 1, got {text!r}")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, except where it has none or is off."""

    def _get_help_string(self, action):
        default = action.default
        if default is None or default is False or default == [] or "%(default)" in action.help:
            return action.help
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """A command's parser: a bad option is one line on stderr (exit 2) instead of the whole
    usage, --help shows the defaults, --version says the version and whether CUDA is built."""

    def __init__(self, prog, description):
        super().__init__(prog=prog, description=description, formatter_class=HelpFormatter)
        self.flags = set()
        add_version(self)

    def parse_known_args(self, args=None, namespace=None):
        return super().parse_known_args(self.spell_flags(sys.argv[1:] if args is None
                                                         else list(args)), namespace)

    def spell_flags(self, argv):
        """Booleans as `--name=VALUE`: a bare `--name` is `--name=1`, `--name 0` (a boolean
        word next) is `--name=0`, so a bare boolean never takes the positional after it."""
        out, i = [], 0
        while i < len(argv):
            token = str(argv[i])
            if token == "--":
                return out + argv[i:]
            if token in self.flags:
                following = str(argv[i + 1]).lower() if i + 1 < len(argv) else None
                if following in TRUE + FALSE:
                    token, i = f"{token}={following}", i + 1
                else:
                    token = f"{token}=1"
            out.append(token)
            i += 1
        return out

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def add_flag(self, name, help, default=False):
        """A boolean: `--name` or `--name=1` turn it on, `--name=0` off (also true/false,
        yes/no, on/off; `--name 0` as cuda-convnet's getopt took it)."""
        self.flags.add(name)
        return self.add_argument(name, type=flag, default=default, metavar="[0|1]", help=help)

    def add_backend(self):
        """--backend, the same rule in every command: $CONVNET_BACKEND when set, else auto."""
        return self.add_argument(
            "--backend", default=None, type=str.lower, choices=BACKENDS,
            help="auto: cuda when convnet is built with CUDA and a GPU is usable, else numpy "
                 "(default: $CONVNET_BACKEND if set, else auto)")

    def add_data_provider(self, more=""):
        """--data-provider, its help listing every data set (`more`: what the command adds)."""
        return self.add_argument(
            "--data-provider", default=PROVIDER_NAMES[0],
            help=f"the data set: {', '.join(PROVIDER_NAMES)} (image: a folder made by "
                 f"convnet-prepare){more}")
