"""The YAML emitter: what it writes reads back as the same data, with no type surprises."""

from __future__ import annotations

import pytest

from hardflow.deploy.yamlout import dump, dump_all

yaml = pytest.importorskip("yaml")


def test_round_trip_keeps_types_and_order() -> None:
    doc = {
        "on": {"no": "yes", "list": ["08", "1.10", "true", "null", "~", "", "a: b", "#x"]},
        "numbers": [1, 0, -3, 1.5],
        "flags": [True, False, None],
        "empty": {"map": {}, "list": []},
        "nested": [{"a": [{"b": "c"}], "d": 1}, ["x", ["y"]]],
        "text": 'quote " backslash \\ newline \n tab \t unicode é',
    }
    text = dump(doc, "header line one\nline two")
    assert text.startswith("# header line one\n# line two\n")
    loaded = yaml.safe_load(text)
    assert loaded == doc
    assert list(loaded) == list(doc)


def test_strings_are_always_quoted() -> None:
    text = dump({"a": "no", "b": "0600"})
    assert 'a: "no"' in text and 'b: "0600"' in text


def test_dump_all_separates_documents() -> None:
    docs = [{"kind": "A"}, {"kind": "B", "x": [1]}]
    assert list(yaml.safe_load_all(dump_all(docs))) == docs


def test_rejects_values_it_cannot_write() -> None:
    with pytest.raises(TypeError):
        dump({"a": object()})
    with pytest.raises(TypeError):
        dump({1: "x"})  # type: ignore[dict-item]


def test_tagged_values() -> None:
    from hardflow.deploy.yamlout import Tagged

    text = dump({"healthcheck": {"test": Tagged("!override", ["CMD", 'a "b"', 1])}})
    assert 'test: !override ["CMD", "a \\"b\\"", 1]' in text

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!override", lambda loader, node: loader.construct_sequence(node))
    assert yaml.load(text, Loader=Loader) == {"healthcheck": {"test": ["CMD", 'a "b"', 1]}}
    with pytest.raises(ValueError, match="expected !name"):
        Tagged("override", [])
    with pytest.raises(TypeError):
        dump({"x": Tagged("!t", object())})
