"""Tools from typed functions or OpenAI-style schemas, and the toolbox that holds them.

A typed function becomes a :class:`Tool` with :func:`tool`: its signature is turned into a
pydantic model (so the model's arguments are validated and coerced exactly as pydantic
would), that model's JSON schema becomes the tool's ``parameters``, and the docstring's
first paragraph its description (a Google-style ``Args:`` section describes each
parameter). A tool can also be given as an OpenAI function schema plus a callable
(:meth:`Tool.from_schema`); its arguments are then validated by a pydantic model built from
the schema's top-level properties.

Sync tools run in a worker thread, so a slow tool never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import (
    Any,
    Generic,
    Literal,
    ParamSpec,
    TypeAlias,
    TypeVar,
    get_type_hints,
    overload,
)

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from refrag_agent.errors import InvalidInput

P = ParamSpec("P")
R = TypeVar("R")

# OpenAI's rule for function names; the decoder's format needs nothing stricter.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DOC_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Returns|Return|Yields|Raises|Examples?|Notes?):\s*$"
)
_ARGS_SECTIONS = ("Args", "Arguments", "Parameters", "Params")
_DOC_PARAM = re.compile(r"^\s*(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            "a tool name must be 1-64 letters, digits, '_' or '-'",
            name=name,
        )
    return name


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description (text before the first section) and per-parameter descriptions."""
    if not doc:
        return "", {}
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    base_indent: int | None = None  # the indent of parameter lines in an Args section
    current: str | None = None
    for line in inspect.cleandoc(doc).splitlines():
        header = _DOC_SECTION.match(line)
        if header:
            section, base_indent, current = header.group(1), None, None
            continue
        if section is None:
            summary.append(line)
            continue
        if section not in _ARGS_SECTIONS or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if base_indent is None:
            base_indent = indent
        match = _DOC_PARAM.match(line)
        if match and indent == base_indent:
            current = match.group(1).lstrip("*")
            params[current] = match.group(3).strip()
        elif current is not None:
            # A deeper line continues the current parameter's description.
            params[current] = f"{params[current]} {line.strip()}".strip()
    return " ".join(" ".join(summary).split()), params


def _strip_titles(schema: Any) -> Any:
    """Drop pydantic's generated ``title`` keys; property names and ``$defs`` keys stay."""
    if isinstance(schema, list):
        return [_strip_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
        else:
            out[key] = _strip_titles(value)
    return out


def _model_from_signature(fn: Callable[..., Any], name: str) -> tuple[type[BaseModel], str]:
    """A pydantic model of ``fn``'s parameters, and the docstring's description."""
    description, param_docs = _parse_docstring(inspect.getdoc(fn))
    try:
        signature = inspect.signature(fn)
        hints = get_type_hints(fn, include_extras=True)
    except (TypeError, ValueError, NameError) as e:
        raise InvalidInput(
            "cannot read the tool's signature and type hints", tool=name, error=str(e)
        ) from e
    fields: dict[str, Any] = {}
    for i, param in enumerate(signature.parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise InvalidInput(
                "a tool cannot take *args or **kwargs: every argument needs a name and a type",
                tool=name,
                parameter=param.name,
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise InvalidInput(
                "a tool's parameters must be passable by keyword", tool=name, parameter=param.name
            )
        if param.name not in hints:
            raise InvalidInput(
                "every tool parameter needs a type annotation", tool=name, parameter=param.name
            )
        default = ... if param.default is param.empty else param.default
        # Internal field names are positional so a parameter called `json` or `model_x`
        # cannot collide with BaseModel's own attributes; the alias is the real name.
        extra: dict[str, Any] = {}
        if param.name in param_docs:
            # Only when documented: an Annotated[..., Field(description=...)] must survive.
            extra["description"] = param_docs[param.name]
        fields[f"p{i}"] = (hints[param.name], Field(default, alias=param.name, **extra))
    model = create_model(
        f"{name}_arguments",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )
    return model, description


_JSON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
}
# Enum values a Literal can hold; others (objects, lists) fall back to the declared type.
_LITERALS = (str, int, bool, type(None))


def _annotation_from_schema(schema: Mapping[str, Any], where: str) -> Any:
    """A Python type for one JSON-schema property (the common subset; the rest is Any)."""
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, _LITERALS) for v in enum):
        return Literal[tuple(enum)]
    kind = schema.get("type")
    if isinstance(kind, list):
        members = [_annotation_from_schema({**schema, "type": k}, where) for k in kind]
        annotation = members[0]
        for member in members[1:]:
            annotation = annotation | member
        return annotation
    if kind in _JSON_TYPES:
        return _JSON_TYPES[kind]
    if kind == "array":
        items = schema.get("items")
        inner = _annotation_from_schema(items, where) if isinstance(items, Mapping) else Any
        return list[inner]  # type: ignore[valid-type]
    if kind == "object":
        if isinstance(schema.get("properties"), Mapping):
            return _model_from_json_schema(schema, where)
        return dict[str, Any]
    return Any


def _model_from_json_schema(parameters: Mapping[str, Any], name: str) -> type[BaseModel]:
    properties = parameters.get("properties", {})
    if not isinstance(properties, Mapping):
        raise InvalidInput("'parameters.properties' must be an object", tool=name)
    required = parameters.get("required", [])
    if not isinstance(required, list):
        raise InvalidInput("'parameters.required' must be a list of names", tool=name)
    unknown = [r for r in required if r not in properties]
    if unknown:
        raise InvalidInput(
            "'required' names a property that is not defined", tool=name, missing=unknown
        )
    fields: dict[str, Any] = {}
    for i, (prop, sub) in enumerate(properties.items()):
        if not isinstance(sub, Mapping):
            raise InvalidInput("each property schema must be an object", tool=name, property=prop)
        annotation = _annotation_from_schema(sub, f"{name}_{i}")
        if prop in required:
            default: Any = ...
        else:
            default = sub.get("default")
            annotation = annotation | None
        fields[f"p{i}"] = (annotation, Field(default, alias=str(prop)))
    forbid = parameters.get("additionalProperties") is False
    config = ConfigDict(extra="forbid" if forbid else "allow")
    return create_model(f"{name}_arguments", __config__=config, **fields)


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class Tool(Generic[P, R]):
    """A callable the model may call: a name, a description, a JSON schema and a validator.

    A ``Tool`` made by :func:`tool` still calls like the function it wraps. The loop goes
    through :meth:`validate` and :meth:`run` (or :meth:`call`, both at once).
    """

    __name__: str  # copied from the wrapped callable, with its docstring and module

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str,
        description: str,
        parameters: dict[str, Any],
        arguments_model: type[BaseModel],
        timeout_s: float | None = None,
        from_signature: bool = True,
    ) -> None:
        if timeout_s is not None and not timeout_s > 0:
            raise InvalidInput(
                "a tool's timeout_s must be positive", tool=name, timeout_s=timeout_s
            )
        self.fn = fn
        self.name = _check_name(name)
        self.description = description
        self.parameters = parameters
        self.arguments_model = arguments_model
        self.timeout_s = timeout_s
        self.is_async = _is_async(fn)
        self._from_signature = from_signature
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        kind = "async" if self.is_async else "sync"
        return f"Tool(name={self.name!r}, {kind})"

    @classmethod
    def from_function(
        cls,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
    ) -> Tool[P, R]:
        """A tool from a typed function; see :func:`tool`."""
        if not callable(fn):
            raise InvalidInput("a tool must be callable", value=fn)
        tool_name = _check_name(name if name is not None else getattr(fn, "__name__", ""))
        model, doc = _model_from_signature(fn, tool_name)
        schema = _strip_titles(model.model_json_schema(by_alias=True))
        parameters = {
            "type": "object",
            "properties": schema.get("properties", {}),
            **{key: value for key, value in schema.items() if key not in ("type", "properties")},
        }
        parameters.setdefault("required", [])
        return cls(
            fn,
            name=tool_name,
            description=description if description is not None else doc,
            parameters=parameters,
            arguments_model=model,
            timeout_s=timeout_s,
        )

    @classmethod
    def from_schema(
        cls,
        schema: Mapping[str, Any],
        fn: Callable[..., Any],
        *,
        timeout_s: float | None = None,
    ) -> Tool[..., Any]:
        """A tool from an OpenAI-style function schema and the callable that implements it.

        ``schema`` is either ``{"type": "function", "function": {...}}`` or the inner
        ``{"name", "description", "parameters"}`` object. ``fn`` is called with the
        validated arguments as keyword arguments (JSON values: dicts, lists, strings ...).
        """
        if not isinstance(schema, Mapping):
            raise InvalidInput("a tool schema must be a mapping", value=type(schema).__name__)
        if schema.get("type") == "function" and isinstance(schema.get("function"), Mapping):
            schema = schema["function"]
        if not callable(fn):
            raise InvalidInput("a tool schema needs a callable", tool=schema.get("name"))
        name = _check_name(schema.get("name"))
        description = schema.get("description", "")
        if not isinstance(description, str):
            raise InvalidInput("a tool's description must be a string", tool=name)
        parameters = schema.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, Mapping) or parameters.get("type", "object") != "object":
            raise InvalidInput("a tool's 'parameters' must be an object schema", tool=name)
        model = _model_from_json_schema(parameters, name)
        return cls(
            fn,
            name=name,
            description=description,
            parameters=json.loads(json.dumps(parameters)),
            arguments_model=model,
            timeout_s=timeout_s,
            from_signature=False,
        )

    def schema(self) -> dict[str, Any]:
        """The OpenAI function schema: ``{"type": "function", "function": {...}}``."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments to call the tool with, validated and coerced.

        Raises :class:`InvalidInput` whose ``errors`` context lists pydantic's findings.
        """
        if not isinstance(arguments, Mapping):
            raise InvalidInput(
                "tool arguments must be a JSON object",
                tool=self.name,
                errors=[{"loc": [], "msg": "arguments must be an object"}],
            )
        try:
            parsed = self.arguments_model.model_validate(dict(arguments))
        except ValidationError as e:
            errors = [
                {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
                for err in e.errors(include_url=False, include_context=False, include_input=False)
            ]
            raise InvalidInput("invalid tool arguments", tool=self.name, errors=errors) from e
        if self._from_signature:
            # Keep nested models as model instances: the function was typed with them.
            return {
                info.alias or field: getattr(parsed, field)
                for field, info in type(parsed).model_fields.items()
            }
        # Arguments the model left out are left out of the call: the callable's own
        # defaults apply.
        return parsed.model_dump(by_alias=True, mode="json", exclude_unset=True)

    async def run(self, kwargs: Mapping[str, Any]) -> Any:
        """Run the tool on validated arguments; a sync tool runs in a worker thread."""
        fn: Callable[..., Any] = self.fn
        if self.is_async:
            value = await fn(**kwargs)
        else:
            value = await asyncio.to_thread(functools.partial(fn, **kwargs))
        # A sync callable may hand back an awaitable (a partial of an async function).
        if inspect.isawaitable(value):
            value = await value
        return value

    async def call(self, arguments: Mapping[str, Any]) -> Any:
        """Validate ``arguments`` and run the tool (no timeout; the loop adds one)."""
        return await self.run(self.validate(arguments))


@overload
def tool(fn: Callable[P, R], /) -> Tool[P, R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
) -> Callable[[Callable[P, R]], Tool[P, R]]: ...


def tool(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
) -> Tool[P, R] | Callable[[Callable[P, R]], Tool[P, R]]:
    """Make a typed function (sync or async) a tool the model can call.

    ::

        @tool
        async def lookup_order(order_id: int, include_items: bool = False) -> dict:
            '''Find an order by its number.

            Args:
                order_id: the order number printed on the receipt.
            '''

        @tool(name="weather", timeout_s=5)
        def get_weather(city: str, unit: Literal["C", "F"] = "C") -> str: ...

    ``name`` defaults to the function's name, ``description`` to its docstring's first
    paragraph; ``timeout_s`` overrides the loop's timeout for this tool.
    """

    def wrap(f: Callable[P, R]) -> Tool[P, R]:
        return Tool.from_function(f, name=name, description=description, timeout_s=timeout_s)

    return wrap if fn is None else wrap(fn)


ToolLike: TypeAlias = (
    Tool[..., Any] | Callable[..., Any] | tuple[Mapping[str, Any], Callable[..., Any]]
)
"""What a toolbox accepts: a :class:`Tool`, a typed function, or ``(schema, callable)``."""


def as_tool(item: ToolLike) -> Tool[..., Any]:
    """A :class:`Tool` from any accepted form."""
    if isinstance(item, Tool):
        return item
    if isinstance(item, tuple):
        if len(item) != 2:
            raise InvalidInput("a schema tool is a (schema, callable) pair", length=len(item))
        schema, fn = item
        return Tool.from_schema(schema, fn)
    if callable(item):
        return Tool.from_function(item)
    raise InvalidInput(
        "not a tool: expected a Tool, a typed function or (schema, callable)",
        value=type(item).__name__,
    )


class Toolbox:
    """The tools offered to the model for one call, by unique name."""

    def __init__(self, tools: Iterable[ToolLike] = ()) -> None:
        self._tools: dict[str, Tool[..., Any]] = {}
        for item in tools:
            self.add(item)

    @classmethod
    def coerce(cls, tools: Toolbox | Iterable[ToolLike] | None) -> Toolbox:
        """``tools`` as a toolbox: a toolbox as is, ``None`` as an empty one."""
        if isinstance(tools, Toolbox):
            return tools
        if tools is None:
            return cls()
        if isinstance(tools, (Tool, tuple)) or (callable(tools) and not isinstance(tools, type)):
            raise InvalidInput(
                "tools must be a list of tools, not a single tool", value=repr(tools)
            )
        return cls(tools)

    def add(self, item: ToolLike) -> Tool[..., Any]:
        """Add a tool; a second tool with the same name is :class:`InvalidInput`."""
        new = as_tool(item)
        if new.name in self._tools:
            raise InvalidInput("two tools have the same name", name=new.name)
        self._tools[new.name] = new
        return new

    def get(self, name: str) -> Tool[..., Any] | None:
        return self._tools.get(name)

    def __getitem__(self, name: str) -> Tool[..., Any]:
        return self._tools[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool[..., Any]]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"Toolbox({list(self._tools)!r})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        """Every tool's OpenAI function schema, in the order the tools were added."""
        return [t.schema() for t in self._tools.values()]
