"""Properties of payload parsing and query encoding, over generated input."""

import contextlib
import json
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.payload import InvalidPayload, payload_parse
from server.services.delivery import query_params

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=8)


@given(st.binary(max_size=512))
def test_any_bytes_parse_to_an_object_or_raise_invalid_payload(body):
    """No byte string makes the parser raise anything but InvalidPayload."""
    with contextlib.suppress(InvalidPayload):
        text, data = payload_parse(body=body, content_type="application/json", charset=None)
        assert text.encode("utf-8") == body
        assert isinstance(data, dict)


@given(json_objects)
def test_any_json_object_is_parsed_back_exactly(data):
    """Every JSON object survives the parser unchanged."""
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    assert payload_parse(body=body, content_type="application/json", charset="utf-8") == (body.decode(), data)


@given(json_objects)
def test_query_encoding_loses_nothing(data):
    """Decoding the query string gives back every key, and every value (strings as is, others as JSON)."""
    decoded = parse_qsl(urlencode(query_params(data)), keep_blank_values=True)
    assert [key for key, _ in decoded] == list(data)
    for (_, text), original in zip(decoded, data.values(), strict=True):
        assert (text if isinstance(original, str) else json.loads(text)) == original


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (rb'{"emoji": "\ud83d\ude00"}', {"emoji": "\U0001f600"}),
        (rb'{"text": "\\ud800"}', {"text": "\\ud800"}),  # an escaped backslash: plain text, no surrogate
    ],
    ids=["surrogate-pair", "escaped-backslash"],
)
def test_surrogate_escapes_that_make_text_are_accepted(body, expected):
    """A pair of surrogate escapes, or text that only looks like one, parses to what it says."""
    assert payload_parse(body=body, content_type="application/json", charset=None) == (
        body.decode(),
        expected,
    )


@pytest.mark.parametrize(
    "body", [rb'{"a": "\uDC00"}', rb'{"a": ["x", {"b": "\ud83d"}]}'], ids=["low", "nested-high"]
)
def test_lone_surrogate_escapes_are_refused(body):
    """A lone surrogate escape, in any case and at any depth, is not text: InvalidPayload."""
    with pytest.raises(InvalidPayload):
        payload_parse(body=body, content_type="application/json", charset=None)
