from __future__ import annotations

import asyncio
import enum
import threading
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from refrag_agent.errors import InvalidInput
from refrag_agent.tools import Tool, Toolbox, as_tool, tool


class Unit(enum.Enum):
    CELSIUS = "C"
    FAHRENHEIT = "F"


class Address(BaseModel):
    city: str
    zip_code: int | None = None


@tool
def book(
    room: int,
    guest: str,
    note: str | None = None,
    size: Literal["single", "double"] = "single",
    unit: Unit = Unit.CELSIUS,
    address: Address | None = None,
    nights: Annotated[int, Field(ge=1, description="how many nights")] = 1,
) -> dict[str, Any]:
    """Book a hotel room.

    Checks availability first.

    Args:
        room: the room number,
            as printed on the door.
        guest (str): the guest's full name.

    Returns:
        the booking.
    """
    return {"room": room, "guest": guest, "address": address}


def test_schema_from_a_typed_function() -> None:
    schema = book.schema()
    assert schema["type"] == "function"
    function = schema["function"]
    assert function["name"] == "book"
    assert function["description"] == "Book a hotel room. Checks availability first."
    params = function["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["room", "guest"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert list(props) == ["room", "guest", "note", "size", "unit", "address", "nights"]
    assert props["room"] == {
        "type": "integer",
        "description": "the room number, as printed on the door.",
    }
    assert props["guest"] == {"type": "string", "description": "the guest's full name."}
    assert props["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert props["size"] == {"type": "string", "enum": ["single", "double"], "default": "single"}
    assert props["unit"] == {"$ref": "#/$defs/Unit", "default": "C"}
    assert params["$defs"]["Unit"] == {"type": "string", "enum": ["C", "F"]}
    assert props["address"] == {
        "anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}],
        "default": None,
    }
    assert params["$defs"]["Address"] == {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "zip_code": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        },
        "required": ["city"],
    }
    # Annotated constraints and descriptions survive; no pydantic titles anywhere.
    assert props["nights"] == {
        "type": "integer",
        "minimum": 1,
        "default": 1,
        "description": "how many nights",
    }
    assert "title" not in repr(params)


def test_validation_coerces_and_keeps_nested_models() -> None:
    kwargs = book.validate({"room": "12", "guest": "Ada", "address": {"city": "Oslo"}, "unit": "F"})
    assert kwargs["room"] == 12
    assert kwargs["unit"] is Unit.FAHRENHEIT
    assert kwargs["address"] == Address(city="Oslo")
    assert kwargs["nights"] == 1


@pytest.mark.parametrize(
    ("arguments", "loc"),
    [
        ({"room": "twelve", "guest": "Ada"}, ["room"]),
        ({"guest": "Ada"}, ["room"]),
        ({"room": 1, "guest": "Ada", "size": "suite"}, ["size"]),
        ({"room": 1, "guest": "Ada", "nights": 0}, ["nights"]),
        ({"room": 1, "guest": "Ada", "address": {"zip_code": 1}}, ["address", "city"]),
        ({"room": 1, "guest": "Ada", "pets": 2}, ["pets"]),
    ],
)
def test_validation_errors_name_the_field(arguments: dict[str, Any], loc: list[Any]) -> None:
    with pytest.raises(InvalidInput) as info:
        book.validate(arguments)
    assert info.value.context["tool"] == "book"
    assert loc in [e["loc"] for e in info.value.context["errors"]]


def test_a_tool_still_calls_like_its_function() -> None:
    assert book(3, "Ada")["room"] == 3
    assert book.__name__ == "book"
    assert isinstance(book, Tool)
    assert not book.is_async


async def test_decorator_with_options_and_async_tools() -> None:
    @tool(name="weather", description="Today's weather.", timeout_s=2)
    async def get_weather(city: str) -> str:
        """Ignored: the description option wins."""
        return f"sunny in {city}"

    assert get_weather.name == "weather"
    assert get_weather.description == "Today's weather."
    assert get_weather.timeout_s == 2
    assert get_weather.is_async
    assert await get_weather.call({"city": "Oslo"}) == "sunny in Oslo"
    assert await get_weather("Rome") == "sunny in Rome"


async def test_no_argument_tool_and_no_docstring() -> None:
    @tool
    def ping() -> str:
        return "pong"

    assert ping.description == ""
    assert ping.parameters == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }
    assert await ping.call({}) == "pong"


def test_parameters_that_shadow_basemodel_attributes() -> None:
    @tool
    def store(json: str, model_config: int, schema: bool = False) -> str:
        return f"{json}{model_config}{schema}"

    assert list(store.parameters["properties"]) == ["json", "model_config", "schema"]
    assert store.validate({"json": "x", "model_config": 1}) == {
        "json": "x",
        "model_config": 1,
        "schema": False,
    }


def _untyped(x):  # type: ignore[no-untyped-def]
    return x


def _var_args(*items: int) -> int:
    return len(items)


def _var_kwargs(**items: int) -> int:
    return len(items)


def _positional_only(x: int, /) -> int:
    return x


@pytest.mark.parametrize("fn", [_untyped, _var_args, _var_kwargs, _positional_only])
def test_functions_that_cannot_be_tools(fn: Any) -> None:
    with pytest.raises(InvalidInput):
        tool(fn)


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "dot.name"])
def test_bad_tool_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        tool(name=name)(book.fn)


def test_bad_timeout() -> None:
    with pytest.raises(InvalidInput):
        tool(timeout_s=0)(book.fn)


async def test_sync_tools_run_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    released = threading.Event()
    seen: dict[str, Any] = {}

    @tool
    def wait_for_the_loop() -> bool:
        """Only returns True if the event loop kept running meanwhile."""
        seen["thread"] = threading.get_ident()
        return released.wait(timeout=5)

    async def release() -> None:
        await asyncio.sleep(0.01)
        released.set()

    ok, _ = await asyncio.gather(wait_for_the_loop.call({}), release())
    assert ok is True
    assert seen["thread"] != loop_thread


async def test_a_sync_callable_that_returns_an_awaitable() -> None:
    async def later(n: int) -> int:
        return n * 2

    def make(n: int) -> Any:
        return later(n)

    assert await tool(make).call({"n": 4}) == 8


WEATHER_SCHEMA = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "default": 1},
                "unit": {"type": "string", "enum": ["C", "F"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "where": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                    "required": ["lat", "lon"],
                },
                "extra": {"type": "object"},
                "exact": {"type": ["boolean", "null"]},
                "shape": {"enum": [{"k": 1}, [2]]},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


async def test_openai_schema_tool() -> None:
    seen: list[dict[str, Any]] = []

    def impl(**kwargs: Any) -> str:
        seen.append(kwargs)
        return "ok"

    t = Tool.from_schema(WEATHER_SCHEMA, impl, timeout_s=3)
    assert t.name == "get_weather"
    assert t.timeout_s == 3
    assert t.schema() == WEATHER_SCHEMA
    assert await t.call({"city": "Oslo", "days": "2", "where": {"lat": 1, "lon": 2}}) == "ok"
    # Coerced to JSON values; arguments the model left out are not passed.
    assert seen == [{"city": "Oslo", "days": 2, "where": {"lat": 1.0, "lon": 2.0}}]
    # An enum of objects cannot be a Literal: it is accepted as declared (any JSON here).
    assert t.validate({"city": "Oslo", "shape": {"k": 1}, "exact": None}) == {
        "city": "Oslo",
        "shape": {"k": 1},
        "exact": None,
    }
    for bad in (
        {"days": 1},
        {"city": "Oslo", "unit": "K"},
        {"city": "Oslo", "tags": "x"},
        {"city": "Oslo", "where": {"lat": 1}},
        {"city": "Oslo", "nope": 1},
    ):
        with pytest.raises(InvalidInput):
            t.validate(bad)


async def test_inner_function_schema_and_open_objects() -> None:
    inner = {
        "name": "echo",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
    }
    t = Tool.from_schema(inner, lambda **kw: kw)
    assert t.description == ""
    # additionalProperties is not false: extra arguments pass through.
    assert await t.call({"a": 1, "b": 2}) == {"a": 1, "b": 2}


@pytest.mark.parametrize(
    "schema",
    [
        {"description": "no name"},
        {"name": "x", "parameters": {"type": "array"}},
        {"name": "x", "description": 3},
        {"name": "x", "parameters": {"type": "object", "properties": [], "required": []}},
        {"name": "x", "parameters": {"type": "object", "properties": {}, "required": ["y"]}},
        {"name": "x", "parameters": {"type": "object", "properties": {"y": 1}}},
    ],
)
def test_bad_schemas(schema: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        Tool.from_schema(schema, lambda **kw: kw)


def test_toolbox_from_a_mix_of_forms() -> None:
    def plain(x: int) -> int:
        """Plain function."""
        return x

    box = Toolbox([book, plain, (WEATHER_SCHEMA, lambda **kw: "ok")])
    assert box.names == ("book", "plain", "get_weather")
    assert len(box) == 3
    assert "plain" in box and "nope" not in box
    assert box["plain"].description == "Plain function."
    assert box.get("nope") is None
    assert [s["function"]["name"] for s in box.schemas()] == list(box.names)
    assert [t.name for t in box] == list(box.names)
    assert Toolbox.coerce(box) is box
    assert len(Toolbox.coerce(None)) == 0
    assert Toolbox.coerce([plain]).names == ("plain",)
    assert as_tool(book) is book


def test_duplicate_names_are_invalid() -> None:
    def get_weather(city: str) -> str:
        return city

    with pytest.raises(InvalidInput) as info:
        Toolbox([get_weather, (WEATHER_SCHEMA, get_weather)])
    assert info.value.context == {"name": "get_weather"}
    box = Toolbox([book])
    with pytest.raises(InvalidInput):
        box.add(book)


def test_a_single_tool_is_not_a_list_of_tools() -> None:
    with pytest.raises(InvalidInput):
        Toolbox.coerce(book)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [3, (WEATHER_SCHEMA,)])
def test_things_that_are_not_tools(bad: Any) -> None:
    with pytest.raises(InvalidInput):
        Toolbox([bad])
