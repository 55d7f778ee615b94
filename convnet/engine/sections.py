"""Cfg sections and what a Net is built from: cuda-convnet's comma lists, a section parsed by a
layer's key table, Python layer specs as sections, and what the data layers declare (the crop
size a provider should serve, the shapes it gives the net)."""
from .config import ConfigError, Entry, Section
from .layer_types import LAYER_TYPES
from .layers import REQUIRED


def split_list(text):
    """Split on commas that are not inside [...] (neuron and schedule arguments)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def parse_section(section, table, n_inputs, what):
    """Parse `section`'s entries with `table`; unknown or missing keys are errors."""
    for key in section.entries:
        if key not in table:
            raise section.error(f"unknown key '{key}' for {what} (known: "
                                f"{', '.join(sorted(table))})", key)
    out = {}
    for key, (parser, default, per_input) in table.items():
        if key not in section.entries:
            if default is REQUIRED:
                raise section.error(f"missing required key '{key}' for {what}")
            out[key] = [default] if per_input and key != "inputs" else default
            continue
        text = section.entries[key].value
        try:
            if per_input:
                values = [parser(v) for v in split_list(text)]
                if key != "inputs" and len(values) not in (1, n_inputs):
                    raise ValueError(f"gives {len(values)} values for {n_inputs} inputs")
                out[key] = values
            else:
                out[key] = parser(text)
        except ValueError as e:
            raise section.error(f"{key}: {e}", key) from None
    return out


def specs_to_sections(specs):
    """Layer specs (dicts with cfg and params keys, Python or string values) -> cfg sections."""
    layers, params = {}, {}
    for i, spec in enumerate(specs):
        spec = dict(spec)
        name = spec.pop("name", None)
        if not name:
            raise ConfigError(f"layer spec #{i} has no 'name'", "<specs>")
        cls = LAYER_TYPES.get(spec.get("type"))
        param_keys = set(cls.PARAMS) if cls else set()
        lsec = Section(name, "<specs>", i + 1)
        psec = Section(name, "<specs>", i + 1)
        for key, value in spec.items():
            text = to_cfg_text(value)
            (psec if key in param_keys else lsec).entries[key] = Entry(text, i + 1)
        if name in layers:
            raise ConfigError(f"layer '{name}' defined twice", "<specs>", i + 1)
        layers[name] = lsec
        params[name] = psec  # one dict holds both files' keys: its params section always exists
    return layers, params


def to_cfg_text(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(to_cfg_text(v) for v in value)
    return str(value)


def _data_layers(sections):
    """The sections of the dataIdx=0 data layers (the images; dataIdx=1 is the labels)."""
    for name, sec in sections.items():
        e = sec.entries
        if e.get("type") and e["type"].value == "data" and e.get("dataIdx") \
                and e["dataIdx"].value.strip() == "0":
            yield name, sec


def declared_image_size(sections):
    """The imgSize a dataIdx=0 data layer declares: a provider whose images are larger trains
    on random crops of that size (and tests on the centre crop), as --inner-size would."""
    for _, sec in _data_layers(sections):
        if sec.entries.get("imgSize"):
            try:
                return int(sec.entries["imgSize"].value)
            except ValueError:
                return None  # the layer's own parser reports it with its line
    return None


def data_shapes(sections, provider):
    """{data layer: the provider's image shape} for Net(data_shapes=...)."""
    return {name: provider.image_shape for name, _ in _data_layers(sections)}


def undeclared_data_shapes(sections, image_shape):
    """{data layer: image_shape()} for the dataIdx=0 data layers that declare no size (no
    imgSize or outputs; the originals' data layers never do, their provider gives it).
    image_shape is called only where one such layer exists: a net that declares its sizes
    describes without a provider (alexnet.cfg's 224 is no Fashion-MNIST crop)."""
    names = [name for name, sec in _data_layers(sections)
             if "imgSize" not in sec.entries and "outputs" not in sec.entries]
    shape = tuple(image_shape()) if names else None
    return {name: shape for name in names}
