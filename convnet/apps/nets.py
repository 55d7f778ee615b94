"""The shipped nets: `layers/` in a checkout, `convnet/nets/` in an installed wheel (CMake
installs layers/*.cfg there), so `convnet-train fashion` and the README's
`convnet-train layers/fashion.cfg layers/fashion-params.cfg` work from any directory.

    shipped_dir()      the folder holding the shipped nets
    shipped_nets()     {name: first line of its layers file's header}
    expand(files)      a command's LAYERS PARAMS with names and layers/... paths resolved
"""
import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
PARAMS_SUFFIX = "-params.cfg"


def shipped_dir():
    """convnet/nets (a wheel) or the checkout's layers/ beside the package (editable, source)."""
    for folder in (PACKAGE / "nets", PACKAGE.parent / "layers"):
        if folder.is_dir() and any(folder.glob(f"*{PARAMS_SUFFIX}")):
            return folder
    return None


def shipped_nets():
    folder = shipped_dir()
    if folder is None:
        return {}
    nets = {}
    for params in sorted(folder.glob(f"*{PARAMS_SUFFIX}")):
        name = params.name[:-len(PARAMS_SUFFIX)]
        files = pair(folder, name)
        if files:
            nets[name] = summary(files[0].read_text(encoding="utf-8"))
    return nets


def pair(folder, name):
    """(layers file, params file) of the shipped net `name`, or None when either is missing."""
    files = folder / f"{name}.cfg", folder / f"{name}{PARAMS_SUFFIX}"
    return files if all(f.is_file() for f in files) else None


def summary(text):
    """The first sentence (or the words before its first colon) of a cfg's opening comment."""
    words = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        words.append(line[1:].strip())
    head = " ".join(words)
    end = min((i for i in (head.find(". "), head.find(": ")) if i >= 0), default=len(head))
    return head[:end].rstrip(".")


def expand(files):
    """[NAME] -> the shipped net's two files; a path that does not exist here but names a
    shipped file as layers/FILE -> that file. Everything else is returned as given."""
    folder = shipped_dir()
    if folder is None:
        return list(files)
    named = (len(files) == 1 and not os.path.exists(files[0]) and os.sep not in files[0]
             and pair(folder, files[0]))
    if named:  # two stat calls, not a read of every shipped net's header
        return [str(f) for f in named]
    out = []
    for f in files:
        parts = Path(f).parts
        if not os.path.exists(f) and len(parts) == 2 and parts[0] == "layers" and \
                (folder / parts[1]).is_file():
            f = str(folder / parts[1])
        out.append(f)
    return out


def list_text():
    nets = shipped_nets()
    if not nets:
        return "no shipped nets found (neither convnet/nets nor a checkout's layers/)"
    width = max(map(len, nets))
    lines = [f"{name:{width}}  {header}" for name, header in nets.items()]
    return "\n".join(lines + [f"(in {shipped_dir()}; run one: convnet-train NAME)"])
