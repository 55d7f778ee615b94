"""The options every command shares (convnet/apps/options.py): one boolean style that takes
cuda-convnet's =0/1, defaults in --help, --data-provider's list, the same --backend default."""
import argparse

import pytest

from convnet.apps import cli, prepare, retrieve, show
from convnet.data import PROVIDER_NAMES

# every boolean option of every command, with the positional arguments its parser needs
BOOLEANS = [
    (cli, [], ["--test-only", "--test-one", "--multiview-test", "--check-grads", "--describe",
               "--list-nets"]),
    (show, ["run"], ["--only-errors", "--norm-filters"]),
    (retrieve, ["feats"], ["--precision"]),
    (prepare, ["src", "dst"], ["--progress"]),
]
STYLES = [([], True), (["=1"], True), (["=0"], False), (["=true"], True), (["=false"], False),
          (["=yes"], True), (["=no"], False), ([" 1"], True), ([" 0"], False)]


def parse(module, argv):
    return module.build_parser().parse_args(argv)


def spelled(option, style):
    if not style:
        return [option]
    if style[0].startswith(" "):
        return [option, style[0].strip()]
    return [option + style[0]]


@pytest.mark.parametrize("module,positional,options", BOOLEANS,
                         ids=[m.__name__.rsplit(".", 1)[1] for m, _, _ in BOOLEANS])
@pytest.mark.parametrize("style,value", STYLES, ids=[s[0].strip() if s else "bare"
                                                      for s, _ in STYLES])
def test_every_boolean_takes_every_style(module, positional, options, style, value):
    for option in options:
        args = parse(module, spelled(option, style) + positional)
        assert getattr(args, option[2:].replace("-", "_")) is value, (option, style)

    # a bare boolean before the positionals never takes one as its value
    args = parse(module, options + positional)
    assert all(getattr(args, o[2:].replace("-", "_")) is True for o in options)


@pytest.mark.parametrize("module,positional,options", BOOLEANS,
                         ids=[m.__name__.rsplit(".", 1)[1] for m, _, _ in BOOLEANS])
def test_a_boolean_refuses_other_values_in_one_line(module, positional, options, capsys):
    with pytest.raises(SystemExit) as exit:
        parse(module, [options[0] + "=maybe"] + positional)
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "expected 0 or 1, got 'maybe'" in err, err


def test_booleans_off_by_default():
    args = parse(cli, [])
    assert args.test_only is False and args.multiview_test is False and args.describe is False
    assert parse(show, ["run"]).only_errors is False
    assert parse(prepare, ["s", "d"]).progress is None  # None: a bar when stderr is a terminal


@pytest.mark.parametrize("module", [cli, show, retrieve, prepare])
def test_help_shows_the_defaults(module, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # no hyphenated word broken across lines
    text = " ".join(module.build_parser().format_help().split())
    expected = {cli: ["--epochs EPOCHS total epochs (a resumed run stops at this epoch) "
                      "(default: 10)", "(default: 128)", "(default: fashion-mnist)"],
                show: ["(default: 16)", "(default: fashion-mnist)"],
                retrieve: ["(default: retrieval.png)", "(default: 4096)"],
                prepare: ["(default: 256)", "(default: 0.1)"]}[module]
    for piece in expected:
        assert piece in text, piece
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.parametrize("module", [cli, show])
def test_data_provider_help_lists_every_provider(module, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    text = " ".join(module.build_parser().format_help().split())
    assert "image" in PROVIDER_NAMES
    assert f"the data set: {', '.join(PROVIDER_NAMES)}" in text


@pytest.mark.parametrize("module,positional", [(cli, []), (show, ["run"]),
                                               (retrieve, ["feats"])])
def test_the_same_backend_rule_everywhere(module, positional, monkeypatch):
    """Every command leaves --backend unset by default: $CONVNET_BACKEND, else auto
    (convnet.backend.resolve_backend_name), decided in one place."""
    from convnet.backend import resolve_backend_name

    assert parse(module, positional).backend is None
    assert parse(module, ["--backend", "NumPy"] + positional).backend == "numpy"
    monkeypatch.setenv("CONVNET_BACKEND", "numpy")
    assert resolve_backend_name(parse(module, positional).backend) == "numpy"
    with pytest.raises(SystemExit):
        parse(module, ["--backend", "torch"] + positional)


def test_flag_type_is_the_one_helper():
    from convnet.apps.options import flag

    assert flag("1") is True and flag("OFF") is False
    with pytest.raises(argparse.ArgumentTypeError):
        flag("2")
