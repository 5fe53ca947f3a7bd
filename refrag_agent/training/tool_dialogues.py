"""Tool-use dialogues: when to call a tool, how to answer from its output, when not to call.

Every example offers tools through the SDK's own tools preamble (``tools_prompt`` in the
model's template, laid out by :func:`~refrag_agent.training.stages.layout_task` as the
agent lays it out) over a natural conversation (:func:`natural_example`'s segments).
Three shapes, as the tool loop meets them:

- ``call``: the question needs a tool; the answer is the call's JSON after the template's
  call marker. A third of the time the argument was told earlier in the conversation
  ("my order is 7731" ... "where is my order?"), so memory supplies it.
- ``answer``: the call and its output follow the question (the example's ``exchange``),
  laid out as the loop's second step is (question, call, output, then the answer); the
  answer is the asked field's value, read from the output.
- ``memory``: the question is about a fact of the conversation; answered directly, no
  call, although tools are offered.

Two families as in :mod:`.dialogues`: ``train`` tools and phrasings, and ``heldout`` ones
(other tools, argument names, fields and questions) that no training example has. The
tools are real :func:`~refrag_agent.tools.tool` functions whose outputs are deterministic
in their arguments, so an example can be replayed through an agent.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from refrag_agent.errors import InvalidInput
from refrag_agent.tools import Tool, Toolbox, tool
from refrag_agent.tools.protocol import call_text, output_text
from refrag_agent.training.dialogues import Family, natural_example
from refrag_agent.training.tasks import Segment, TaskExample

ToolShape = Literal["call", "answer", "memory"]
TOOL_SHAPES: tuple[ToolShape, ...] = get_args(ToolShape)
_ACKS = ("Noted.", "Got it.", "Okay, I'll keep that in mind.", "Thanks, noted.")


def _pick(seed: str, options: tuple[str, ...]) -> str:
    return random.Random(seed).choice(options)


def _digits(seed: str, n: int) -> str:
    return "".join(random.Random(seed).choice("0123456789") for _ in range(n))


@tool
def get_weather(city: str) -> dict[str, str]:
    """The current weather in a city.

    Args:
        city: The city's name.
    """
    s = f"weather:{city}"
    return {
        "city": city,
        "temperature": f"{int(_digits(s, 2)) % 35}°C",
        "conditions": _pick(s + "c", ("sunny", "light rain", "overcast", "windy", "snow")),
        "wind": f"{int(_digits(s + 'w', 2)) % 40} km/h",
    }


@tool
def lookup_order(order_id: int) -> dict[str, str]:
    """Look an order up by its number.

    Args:
        order_id: The order number.
    """
    s = f"order:{order_id}"
    return {
        "order": str(order_id),
        "status": _pick(s, ("shipped", "packed", "out for delivery", "delayed")),
        "eta": _pick(s + "e", ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")),
        "carrier": _pick(s + "c", ("DHL", "UPS", "FedEx", "Royal Mail", "PostNL")),
    }


@tool
def check_flight(flight: str) -> dict[str, str]:
    """Status, gate and departure time of a flight.

    Args:
        flight: The flight number, e.g. BA117.
    """
    s = f"flight:{flight}"
    return {
        "flight": flight,
        "status": _pick(s, ("on time", "delayed", "boarding", "cancelled")),
        "gate": f"{_pick(s + 'g', ('A', 'B', 'C', 'D'))}{int(_digits(s + 'n', 2)) % 40 + 1}",
        "departure": f"{int(_digits(s + 'h', 2)) % 24:02d}:{int(_digits(s + 'm', 2)) % 60:02d}",
    }


@tool
def find_contact(name: str) -> dict[str, str]:
    """A person's phone number and email from the address book.

    Args:
        name: The person's name.
    """
    s = f"contact:{name}"
    handle = name.lower().replace(" ", ".")
    return {
        "name": name,
        "phone": f"+44 7{_digits(s, 3)} {_digits(s + 'p', 6)}",
        "email": f"{handle}@{_pick(s + 'd', ('example.com', 'mail.test', 'corp.test'))}",
    }


@tool
def get_account_balance(account: str) -> dict[str, str]:
    """The balance of a bank account.

    Args:
        account: The account's name, e.g. savings.
    """
    s = f"balance:{account}"
    return {
        "account": account,
        "balance": f"{int(_digits(s, 4)):,} EUR",
        "updated": f"{int(_digits(s + 'h', 2)) % 24:02d}:{int(_digits(s + 'm', 2)) % 60:02d}",
    }


@tool
def get_stock_price(ticker: str) -> dict[str, str]:
    """The latest price of a listed share.

    Args:
        ticker: The share's ticker symbol, e.g. ACME.
    """
    s = f"stock:{ticker}"
    sign = _pick(s + "s", ("+", "-"))
    return {
        "ticker": ticker,
        "price": f"{int(_digits(s, 3)) + 10}.{_digits(s + 'c', 2)} USD",
        "change": f"{sign}{int(_digits(s + 'p', 1)) % 5}.{_digits(s + 'q', 1)}%",
    }


@tool
def get_local_time(location: str) -> dict[str, str]:
    """The local time and UTC offset somewhere.

    Args:
        location: A city or region.
    """
    s = f"time:{location}"
    offset = int(_digits(s, 2)) % 25 - 12
    return {
        "location": location,
        "local_time": f"{int(_digits(s + 'h', 2)) % 24:02d}:{int(_digits(s + 'm', 2)) % 60:02d}",
        "utc_offset": f"UTC{offset:+d}",
    }


@tool
def get_bus_arrival(stop_id: int) -> dict[str, str]:
    """When the next bus reaches a stop.

    Args:
        stop_id: The number on the bus stop's sign.
    """
    s = f"bus:{stop_id}"
    return {
        "stop": str(stop_id),
        "route": str(int(_digits(s, 2)) % 90 + 1),
        "minutes": str(int(_digits(s + "m", 2)) % 20 + 1),
    }


@tool
def query_invoice(invoice_number: str) -> dict[str, str]:
    """The amount and due date of an invoice.

    Args:
        invoice_number: The number printed on the invoice.
    """
    s = f"invoice:{invoice_number}"
    return {
        "invoice_number": invoice_number,
        "amount": f"{int(_digits(s, 3)) + 20}.{_digits(s + 'c', 2)} GBP",
        "due": f"{int(_digits(s + 'd', 2)) % 28 + 1} {_pick(s + 'm', ('May', 'June', 'July'))}",
    }


@tool
def check_library_loan(isbn: str) -> dict[str, str]:
    """When a borrowed library book is due back.

    Args:
        isbn: The book's ISBN.
    """
    s = f"loan:{isbn}"
    return {
        "isbn": isbn,
        "due_back": f"{int(_digits(s, 2)) % 28 + 1} {_pick(s + 'm', ('March', 'April'))}",
        "renewals_left": str(int(_digits(s + "r", 1)) % 3),
    }


@tool
def track_parcel(tracking_number: str) -> dict[str, str]:
    """Where a parcel is and when it will be delivered.

    Args:
        tracking_number: The parcel's tracking number.
    """
    s = f"parcel:{tracking_number}"
    return {
        "tracking_number": tracking_number,
        "location": _pick(s, ("Leipzig hub", "Rotterdam depot", "local depot", "in the van")),
        "delivery": _pick(s + "d", ("today", "tomorrow", "Saturday", "next week")),
    }


@tool
def get_train_times(station: str) -> dict[str, str]:
    """The next departure from a railway station.

    Args:
        station: The station's name.
    """
    s = f"train:{station}"
    return {
        "station": station,
        "next_departure": f"{int(_digits(s, 2)) % 24:02d}:{int(_digits(s + 'm', 2)) % 60:02d}",
        "platform": str(int(_digits(s + "p", 2)) % 12 + 1),
    }


@tool
def lookup_reservation(booking_code: str) -> dict[str, str]:
    """A restaurant reservation by its booking code.

    Args:
        booking_code: The code on the confirmation.
    """
    s = f"table:{booking_code}"
    return {
        "booking_code": booking_code,
        "restaurant": _pick(s, ("Olive Tree", "Blue Door", "Casa Nova", "The Anchor")),
        "time": f"{int(_digits(s + 'h', 1)) % 4 + 18}:{_pick(s + 'm', ('00', '15', '30', '45'))}",
        "guests": str(int(_digits(s + "g", 1)) % 6 + 2),
    }


@dataclass(frozen=True)
class ToolUse:
    """How a dialogue uses one tool: its argument's values, how a user states the argument
    (``tells``), asks with it (``asks``: field -> phrasings with ``{v}``) and asks about
    it once told (``recalls``: field -> phrasings without the value)."""

    tool: Tool[..., Any]
    arg: str
    values: Callable[[random.Random], str | int]
    tells: tuple[str, ...]
    asks: dict[str, tuple[str, ...]]
    recalls: dict[str, tuple[str, ...]]


def _choice(*options: str) -> Callable[[random.Random], str]:
    return lambda rng: rng.choice(options)


TRAIN_TOOLS = (
    ToolUse(
        get_weather,
        "city",
        _choice("Lisbon", "Oslo", "Nairobi", "Lima", "Hanoi", "Porto", "Krakow", "Denver"),
        ("I'm flying to {v} next week.", "My sister lives in {v}."),
        {
            "temperature": ("How warm is it in {v} right now?", "What's the temperature in {v}?"),
            "conditions": ("What's the weather like in {v}?", "Is it raining in {v}?"),
        },
        {
            "temperature": ("How warm is it there right now?",),
            "conditions": ("What's the weather doing there today?",),
        },
    ),
    ToolUse(
        lookup_order,
        "order_id",
        lambda rng: rng.randint(1000, 99999),
        ("My order number is {v}.", "I placed order {v} on Monday."),
        {
            "status": ("What's the status of order {v}?", "Has order {v} shipped yet?"),
            "eta": ("When will order {v} arrive?", "What day is order {v} due?"),
        },
        {
            "status": ("Can you check the status of my order?",),
            "eta": ("When is my order going to arrive?",),
        },
    ),
    ToolUse(
        check_flight,
        "flight",
        lambda rng: f"{rng.choice(('BA', 'LH', 'KL', 'AF', 'IB'))}{rng.randint(100, 999)}",
        ("I'm booked on flight {v} tomorrow.", "My flight is {v}."),
        {
            "gate": ("Which gate does {v} leave from?", "What gate is flight {v}?"),
            "departure": ("What time does {v} depart?", "When does flight {v} leave?"),
        },
        {
            "gate": ("Which gate is my flight at?",),
            "departure": ("What time does my flight leave?",),
        },
    ),
    ToolUse(
        find_contact,
        "name",
        _choice("Priya Shah", "Tom Becker", "Lena Ortiz", "Sam Okafor", "Mia Novak"),
        ("I need to get in touch with {v} about the invoice.",),
        {
            "phone": ("What's {v}'s phone number?", "Can you find the number for {v}?"),
            "email": ("What's the email address of {v}?",),
        },
        {"phone": ("Can you look up their phone number?",)},
    ),
    ToolUse(
        get_account_balance,
        "account",
        _choice("savings", "current", "joint", "holiday fund"),
        ("Most of my money sits in the {v} account.",),
        {"balance": ("How much is in my {v} account?", "What's the balance of {v}?")},
        {"balance": ("How much is in that account now?",)},
    ),
    ToolUse(
        get_stock_price,
        "ticker",
        _choice("ACME", "GLOBX", "NRGY", "FRSH", "MEDI"),
        ("I bought a few shares of {v} last year.",),
        {
            "price": ("What's {v} trading at?", "How much is a share of {v} now?"),
            "change": ("How much has {v} moved today?",),
        },
        {"price": ("What are those shares worth now?",)},
    ),
    ToolUse(
        get_local_time,
        "location",
        _choice("Tokyo", "Auckland", "Chicago", "Cairo", "Reykjavik"),
        ("My client is based in {v}.",),
        {"local_time": ("What time is it in {v} right now?", "What's the time in {v}?")},
        {"local_time": ("What time is it where my client is?",)},
    ),
    ToolUse(
        get_bus_arrival,
        "stop_id",
        lambda rng: rng.randint(100, 9999),
        ("The bus stop outside my office is number {v}.",),
        {
            "minutes": ("How many minutes until a bus reaches stop {v}?",),
            "route": ("Which bus comes next at stop {v}?",),
        },
        {"minutes": ("How long until the next bus at my office stop?",)},
    ),
    ToolUse(
        query_invoice,
        "invoice_number",
        lambda rng: f"INV-{rng.randint(10000, 99999)}",
        ("The supplier sent invoice {v} this morning.",),
        {
            "amount": ("How much is invoice {v} for?",),
            "due": ("When is invoice {v} due?", "What's the due date on {v}?"),
        },
        {"due": ("When do we have to pay that invoice?",)},
    ),
    ToolUse(
        check_library_loan,
        "isbn",
        lambda rng: f"978{rng.randint(10**9, 10**10 - 1)}",
        ("I borrowed the book with ISBN {v} from the library.",),
        {"due_back": ("When is the book {v} due back?",)},
        {"due_back": ("When does that library book have to go back?",)},
    ),
)

HELDOUT_TOOLS = (
    ToolUse(
        track_parcel,
        "tracking_number",
        lambda rng: f"JD{rng.randint(10**9, 10**10 - 1)}",
        ("The courier gave me tracking number {v}.",),
        {
            "delivery": ("When will parcel {v} be delivered?",),
            "location": ("Where is my parcel {v} at the moment?",),
        },
        {"delivery": ("Any news on when that parcel turns up?",)},
    ),
    ToolUse(
        get_train_times,
        "station",
        _choice("Utrecht Centraal", "Gare de Lyon", "Zurich HB", "Leeds", "Bologna"),
        ("I'll be leaving from {v} in the morning.",),
        {
            "next_departure": ("When's the next train out of {v}?",),
            "platform": ("Which platform at {v} should I head to?",),
        },
        {"next_departure": ("When is the next train from there?",)},
    ),
    ToolUse(
        lookup_reservation,
        "booking_code",
        lambda rng: f"R-{rng.randint(1000, 9999)}",
        ("We have a table booked, the code is {v}.",),
        {
            "time": ("What time is reservation {v} for?",),
            "restaurant": ("Which restaurant is booking {v} at?",),
        },
        {"time": ("What time did we book the table for?",)},
    ),
)

TOOL_FAMILIES: dict[Family, tuple[ToolUse, ...]] = {
    "train": TRAIN_TOOLS,
    "heldout": HELDOUT_TOOLS,
}
_BY_NAME = {u.tool.name: u.tool for uses in TOOL_FAMILIES.values() for u in uses}


def offered_tools(names: tuple[str, ...]) -> Toolbox:
    """The toolbox of the tools a tool dialogue offers, by name."""
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise InvalidInput("unknown tool in a tool dialogue", names=unknown)
    return Toolbox(_BY_NAME[n] for n in names)


def tool_example(
    seed: int, *, size: int = 16, family: Family = "train", shape: ToolShape | None = None
) -> TaskExample:
    """One tool-use dialogue, a function of ``(seed, size, family, shape)``.

    ``size`` scales the conversation as :func:`natural_example`'s does; ``shape`` is drawn
    from the seed when not given (call 2 : answer 2 : memory 2).
    """
    if family not in TOOL_FAMILIES:
        raise InvalidInput("family must be 'train' or 'heldout'", family=family)
    rng = random.Random(f"tools:{family}:{seed}:{size}")
    if shape is None:
        shape = rng.choices(TOOL_SHAPES, weights=(2, 2, 2))[0]
    if shape not in TOOL_SHAPES:
        raise InvalidInput("unknown tool dialogue shape", shape=shape, known=list(TOOL_SHAPES))
    base = natural_example(seed, size=size, family=family)
    uses = TOOL_FAMILIES[family]
    use = rng.choice(uses)
    others = [u.tool.name for u in uses if u is not use]
    offered = (use.tool.name, *rng.sample(others, rng.randint(0, len(others))))
    offered = tuple(rng.sample(offered, len(offered)))
    if shape == "memory":
        return TaskExample(
            base.task,
            seed,
            base.segments,
            base.question,
            base.answer,
            base.references,
            tools=offered,
        )
    value = use.values(rng)
    field = rng.choice(sorted(use.asks))
    segments = list(base.segments)
    if field in use.recalls and rng.random() < 1 / 3:
        told = Segment("user", rng.choice(use.tells).format(v=value))
        at = rng.randint(0, len(segments))
        segments[at:at] = [told, Segment("assistant", rng.choice(_ACKS))]
        question = rng.choice(use.recalls[field])
    else:
        question = rng.choice(use.asks[field]).format(v=value)
    call = call_text(use.tool.name, {use.arg: value})
    if shape == "call":
        return TaskExample(
            "tool_call",
            seed,
            tuple(segments),
            question,
            call,
            (call,),
            calls_tool=True,
            tools=offered,
        )
    result = use.tool(**{use.arg: value})
    exchange = (Segment("tool_call", call), Segment("tool_output", output_text(result)))
    answer = str(result[field])
    return TaskExample(
        "tool_call",
        seed,
        tuple(segments),
        question,
        answer,
        (answer,),
        tools=offered,
        exchange=exchange,
    )
