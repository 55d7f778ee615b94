"""cuda-convnet's two config files: an INI reader that keeps line numbers, and value parsers.

layers.cfg holds one [section] per layer; layer-params.cfg holds the learning hyper-parameters
of the same layers. Every error is a ConfigError whose text is `FILE:LINE: message`.
"""
import math
import re
from dataclasses import dataclass, field

from ..backend import PRECISIONS
from ..backend.contract import NEURON_KINDS, NEURON_PARAMS


class ConfigError(Exception):
    """A bad config file; str() is the one-line `FILE:LINE: message` a user sees."""

    def __init__(self, message, file=None, line=None):
        self.message, self.file, self.line = message, file, line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(where + message)


@dataclass
class Entry:
    value: str
    line: int


@dataclass
class Section:
    name: str
    file: str
    line: int
    entries: dict = field(default_factory=dict)

    def error(self, message, key=None):
        """A ConfigError pointing at `key`'s line, or at the section header."""
        line = self.entries[key].line if key in self.entries else self.line
        return ConfigError(f"layer '{self.name}': {message}", self.file, line)


MAX_CFG_BYTES = 16 << 20  # cuda-convnet's largest cfg files are a few KiB


def shown(text, limit=60):
    """`text` quoted for an error message: whole when short, else its start and its length."""
    text = str(text)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def read_cfg_text(path):
    """A cfg file's text: UTF-8 (a byte-order mark allowed), at most MAX_CFG_BYTES (a device
    or a huge file is refused after reading that much, never read whole)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CFG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", path) from None
    if len(raw) > MAX_CFG_BYTES:
        raise ConfigError(f"larger than {MAX_CFG_BYTES >> 20} MiB, the most a cfg file may be "
                          f"(not a cfg file?)", path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError("not a text file (invalid UTF-8)", path) from None


def read_cfg(path, text=None):
    """Read an INI file into an ordered {name: Section}. `#` and `;` start comments."""
    if text is None:
        text = read_cfg_text(path)
    text = text[1:] if text.startswith("\ufeff") else text  # a BOM, in a saved cfg's text
    sections, current = {}, None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise ConfigError(f"bad section header {shown(line)}", path, lineno)
            name = line[1:-1].strip()
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
                raise ConfigError(f"bad layer name {shown(name)} (letters, digits, _ . - only)",
                                  path, lineno)
            if name in sections:
                raise ConfigError(f"section [{name}] defined twice (first at line "
                                  f"{sections[name].line})", path, lineno)
            current = sections[name] = Section(name, path, lineno)
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if sep < 0:
            raise ConfigError(f"expected 'key=value' or a [section], got {shown(line)}", path, lineno)
        if current is None:
            raise ConfigError("key outside any [section]", path, lineno)
        key, value = line[:sep].strip(), line[sep + 1:].strip()
        if key in current.entries:
            raise ConfigError(f"layer '{current.name}': key '{key}' given twice", path, lineno)
        current.entries[key] = Entry(value, lineno)
    return sections


# --- value parsers: each takes the text and returns the value or raises ValueError ---

def parse_int(text):
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {shown(text)}") from None


def parse_float(text):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {shown(text)}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {shown(text)}")
    return value


def parse_momentum(text):
    """A momentum (momW, momB): a number in [0, 1); 1 or more makes the step grow forever."""
    value = parse_float(text)
    if not 0 <= value < 1:
        raise ValueError(f"a momentum must be in [0, 1), got {shown(text)}")
    return value


def parse_bool(text):
    if text.strip().lower() in ("1", "true", "yes"):
        return True
    if text.strip().lower() in ("0", "false", "no"):
        return False
    raise ValueError(f"expected 0 or 1, got {shown(text)}")


def parse_precision(text):
    """A conv or local layer's precision= (convnet/backend/precision.py): fp32, tf32 or bf16."""
    value = text.strip().lower()
    if value not in PRECISIONS:
        raise ValueError(f"expected one of {', '.join(PRECISIONS)}, got {shown(text)}")
    return value


def parse_str(text):
    if not text:
        raise ValueError("expected a value, got nothing")
    return text


def parse_neuron(text):
    """`relu`, `tanh[1.7159,0.6666]`, `brelu[6]` -> (kind, (a, b))."""
    m = re.fullmatch(r"\s*([a-z]+)\s*(?:\[([^\]]*)\])?\s*", text)
    if not m:
        raise ValueError(f"bad neuron {shown(text)}: expected e.g. relu or tanh[1,1]")
    kind, args = m.group(1), m.group(2)
    known = tuple(NEURON_KINDS) + ("nrelu",)
    if kind not in known:
        raise ValueError(f"unknown neuron '{kind}': known are {', '.join(known)}")
    names = NEURON_PARAMS.get(kind, ())
    values = [parse_float(a) for a in args.split(",")] if args else []
    if len(values) != len(names):
        want = f"[{','.join(names)}]" if names else "no parameters"
        raise ValueError(f"neuron '{kind}' takes {want}, got {shown(text)}")
    values += [0.0] * (2 - len(values))
    return kind, tuple(values)


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule over training progress p in [0, 1] (cuda-convnet2's lrs)."""
    kind: str
    base: float
    tgt_factor: float = 1.0
    num_steps: int = 1

    def __call__(self, progress):
        p = min(max(progress, 0.0), 1.0)
        if self.kind == "const":
            return self.base
        if self.kind == "linear":
            return self.base * (1 - p) + self.base / self.tgt_factor * p
        if self.kind == "exp":
            return self.base * self.tgt_factor ** -p
        # dexp: numSteps plateaus from base down to base / tgtFactor
        step = min(self.num_steps - 1, int(p * self.num_steps))
        return self.base * self.tgt_factor ** (-step / max(1, self.num_steps - 1))


SCHEDULE_ARGS = {"const": ("base",), "linear": ("base", "tgtFactor"),
                 "exp": ("base", "tgtFactor"), "dexp": ("base", "tgtFactor", "numSteps")}


def parse_schedule(text):
    """`0.01`, `const[base=0.01]`, `dexp[base=0.01;tgtFactor=250;numSteps=4]` -> Schedule."""
    m = re.fullmatch(r"\s*([a-z]+)\s*\[([^\]]*)\]\s*", text)
    if not m:
        return Schedule("const", parse_float(text))
    kind, body = m.groups()
    if kind not in SCHEDULE_ARGS:
        raise ValueError(f"unknown schedule '{kind}': known are {', '.join(SCHEDULE_ARGS)}")
    args = {}
    for part in filter(None, (p.strip() for p in body.split(";"))):
        name, eq, value = part.partition("=")
        if not eq or name.strip() not in SCHEDULE_ARGS[kind]:
            raise ValueError(f"schedule {kind}[...] takes {';'.join(SCHEDULE_ARGS[kind])}, "
                             f"got {shown(part)}")
        args[name.strip()] = parse_float(value)
    missing = [a for a in SCHEDULE_ARGS[kind] if a not in args]
    if missing:
        raise ValueError(f"schedule {kind}[...] is missing {', '.join(missing)}")
    if args.get("tgtFactor", 1.0) <= 0:
        raise ValueError("schedule tgtFactor must be > 0")
    steps = int(args.get("numSteps", 1))
    if steps < 1 or steps != args.get("numSteps", 1):
        raise ValueError("schedule numSteps must be a whole number >= 1")
    return Schedule(kind, args["base"], args.get("tgtFactor", 1.0), steps)


def parse_rate(text):
    """A learning rate (epsW, epsB): a schedule (or number) whose base is >= 0."""
    schedule = parse_schedule(text)
    if schedule.base < 0:
        raise ValueError(f"a learning rate must be >= 0, got {shown(text)}")
    return schedule

