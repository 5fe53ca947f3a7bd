"""Phrase pools of the training family of natural dialogues (see ``dialogues``).

A :class:`Pools` holds everything one generator family may say: the attributes a user
keeps in memory, the sentences that state, update and ask them, the assistant's
acknowledgements and confirmations, the frames of documents and tool outputs, and the
filler (small talk, task chatter, short prose, tool chatter). Templates take these fields:

- ``{a}`` / ``{A}``: the attribute as the user says it ("my locker code", "the door code");
- ``{y}`` / ``{Y}``: as the assistant says it ("your locker code");
- ``{n}`` / ``{N}``: the bare noun ("locker code");
- ``{v}``: the value, ``{old}`` the value a correction replaces, and ``{b}``/``{w}`` the
  second attribute and value of a two-fact turn.

``code_shape`` writes codes, references and rooms: "dashed" as ``QX-7731``, ``K7P2QD`` and
``12B``; "run_on" as ``KDV392018``, ``R4821339`` and ``704`` (gates ``C14``).
``tool_chatter`` holds a user request, the fields of a tool output that has nothing to
remember and the assistant's reply; ``$place``, ``$person``, ``$time``, ``$date`` and
``$number`` in them are drawn from the family's pools, so values of every kind also appear
where nobody asks.

The held-out family lives in ``dialogue_heldout_pools`` with disjoint text throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ValueKind = Literal["pin", "number", "code", "ref", "person", "date", "time", "place", "room"]


@dataclass(frozen=True)
class Attribute:
    """One thing a user may want remembered, and the phrasings that belong to it alone.

    ``prefix`` goes before a ``room`` value ("room" 12B, "gate" C14); ``digits`` bounds the
    length of a ``number`` value; ``confirms`` pairs a user request with the assistant's
    confirmation that tells the value.
    """

    noun: str
    kind: ValueKind
    owned: bool
    key: str
    says: tuple[str, ...] = ()
    asks: tuple[str, ...] = ()
    confirms: tuple[tuple[str, str], ...] = ()
    prefix: str = ""
    digits: tuple[int, int] = (3, 6)


@dataclass(frozen=True)
class Pools:
    """Every text a generator family draws from (see the module docstring for fields)."""

    attributes: tuple[Attribute, ...]
    statements: tuple[str, ...]
    pair_statements: tuple[str, ...]
    updates: tuple[str, ...]
    corrections: tuple[str, ...]
    assistant_updates: tuple[str, ...]
    acks: tuple[str, ...]
    questions: tuple[str, ...]
    doc_facts: tuple[str, ...]
    doc_titles: tuple[str, ...]
    tool_requests: tuple[str, ...]
    tool_summaries: tuple[str, ...]
    small_talk: tuple[tuple[str, str], ...]
    chatter: tuple[tuple[str, str], ...]
    tool_chatter: tuple[tuple[str, dict[str, str], str], ...]
    prose: tuple[tuple[str, ...], ...]
    first_names: tuple[str, ...]
    surnames: tuple[str, ...]
    titles: tuple[str, ...]
    places: tuple[str, ...]
    months: tuple[str, ...]
    code_letters: str
    date_style: Literal["month_day", "day_month"]
    time_style: Literal["12h", "24h"]
    code_shape: Literal["dashed", "run_on"]
    json_style: Literal["nested", "fields"]


TRAIN_ATTRIBUTES = (
    Attribute("locker code", "pin", True, "locker_code",
              says=("The combination on my gym locker is {v}.",
                    "I keep forgetting it, so: locker code {v}."),
              asks=("What's the combination for my gym locker?",
                    "I'm standing at my locker, what's the code?")),
    Attribute("front door code", "pin", False, "door_code",
              says=("To get into the building you punch in {v} at the front door.",),
              asks=("How do I get in the front door again?",)),
    Attribute("booking reference", "ref", True, "booking_ref",
              confirms=(("Can you book the Harbor View hotel for the conference?",
                         "All set, the hotel is booked. Your booking reference is {v}."),
                        ("Please reserve the rental car for next week.",
                         "Done. The car is reserved under booking reference {v}.")),
              asks=("What was the reference for that booking?",)),
    Attribute("order number", "number", True, "order_number", digits=(5, 7),
              says=("I ordered the standing desk yesterday, order number {v}.",),
              asks=("Which order number did the desk have?",)),
    Attribute("support ticket", "code", True, "ticket_id",
              says=("Support opened a ticket for my broken router: {v}.",),
              confirms=(("My laptop won't charge. Can you open a ticket?",
                         "I've opened a support ticket for you: {v}."),),
              asks=("What's the ticket number for my router problem?",)),
    Attribute("dentist appointment", "date", True, "dentist_date",
              says=("The dentist can fit me in on {v}.",),
              confirms=(("Could you get me in with the dentist sometime soon?",
                         "You're booked with the dentist on {v}."),),
              asks=("When am I seeing the dentist?", "What day is the dentist?")),
    Attribute("dinner reservation", "time", True, "reservation_time",
              confirms=(("Book us a table at Nonna's for Saturday, please.",
                         "Your table at Nonna's is booked for {v} on Saturday."),),
              says=("We're having dinner at Nonna's at {v}.",),
              asks=("What time is dinner at Nonna's?",)),
    Attribute("family doctor", "person", True, "doctor",
              says=("My GP is {v}, at the clinic on Elm Street.",),
              asks=("Who's my GP again?", "What's the name of my doctor?")),
    Attribute("landlord", "person", True, "landlord",
              says=("The flat belongs to {v}, so rent questions go to them.",),
              asks=("Who do I ask about the rent?",)),
    Attribute("manager", "person", True, "manager",
              says=("I report to {v} now since the reorg.",),
              asks=("Who am I reporting to these days?",)),
    Attribute("meeting room", "room", False, "meeting_room", prefix="room",
              says=("Tomorrow's planning meeting is in {v}.",),
              confirms=(("Can you find a room for the planning meeting?",
                         "I've reserved {v} for the planning meeting."),),
              asks=("Where is the planning meeting?", "Which room did we get?")),
    Attribute("parking spot", "number", True, "parking_spot", digits=(2, 3),
              says=("I left the car in spot {v} on the third level.",),
              asks=("Where did I leave the car?",)),
    Attribute("sister's city", "place", True, "sister_city",
              says=("My sister moved to {v} last spring.",),
              asks=("Where does my sister live now?",)),
    Attribute("conference city", "place", False, "conference_city",
              says=("This year the conference is being held in {v}.",),
              asks=("Where's the conference this year?",)),
    Attribute("partner's birthday", "date", True, "partner_birthday",
              says=("Don't let me forget, Sam's birthday is {v}.",),
              asks=("When is Sam's birthday?",)),
    Attribute("flight", "code", True, "flight",
              confirms=(("Find me a morning flight to the conference.",
                         "I booked you on flight {v}, leaving in the morning."),),
              asks=("Which flight am I on?",)),
    Attribute("pharmacy pickup time", "time", True, "pickup_time",
              says=("The pharmacy said my prescription is ready after {v}.",),
              asks=("From when can I pick up my prescription?",)),
)  # fmt: skip

TRAIN = Pools(
    attributes=TRAIN_ATTRIBUTES,
    statements=(
        "{A} is {v}.",
        "Just so you know, {a} is {v}.",
        "Can you remember something for me? {A} is {v}.",
        "Please note {a}: {v}.",
        "Quick thing to save: {a} is {v}.",
        "For the record, {a} is {v}, in case I ask later.",
        "Heads up, {a} is {v}.",
        "FYI {a} = {v}",
    ),
    pair_statements=(
        "{A} is {v}, and {b} is {w}.",
        "Two things to remember: {a} is {v} and {b} is {w}.",
        "Noting these down: {a} {v}; {b} {w}.",
    ),
    updates=(
        "Actually, {a} changed. It's {v} now.",
        "Update: {a} is now {v}.",
        "Scratch what I said before, {a} is {v}.",
        "They changed {a} to {v}.",
    ),
    corrections=(
        "{A} is {old}. Wait, no, sorry, it's {v}.",
        "{A} is {old}... actually I misread it, it's {v}.",
    ),
    assistant_updates=(
        "I've updated {y} to {v}.",
        "Done, {y} is now {v}.",
    ),
    acks=(
        "Got it, I'll remember that.",
        "Noted.",
        "Thanks, saved.",
        "Okay, I've made a note of it.",
        "Sure thing.",
    ),
    questions=(
        "What's {a}?",
        "What is {a} again?",
        "Remind me, what was {a}?",
        "Do you remember {a}?",
        "I forgot {a}. What was it?",
        "Can you tell me {a}?",
        "Quick question: what was {a}?",
    ),
    doc_facts=(
        "{Y} is {v}.",
        "Please note that {y} is {v}.",
        "{N}: {v}.",
    ),
    doc_titles=("Welcome pack", "Trip itinerary", "Meeting notes", "Account summary"),
    tool_requests=(
        "Can you pull up my account details?",
        "Check my saved info, please.",
        "Look up what's on file for me.",
        "Can you fetch my latest records?",
    ),
    tool_summaries=(
        "Here's what I found on file.",
        "That's everything in your records.",
        "The lookup came back fine.",
    ),
    small_talk=(
        ("How's your day going?", "Pretty good, thanks. What can I help with?"),
        ("I barely slept last night.", "Sorry to hear that. Maybe an early night today?"),
        ("The weather has been strange this week.",
         "It really has, sunny one hour, rain the next."),
        ("I started running again.", "Nice! How far are you going?"),
        ("Do you like jazz?", "I don't listen to music, but plenty of people swear by it."),
        ("My cat knocked a glass off the table again.", "Cats do love gravity experiments."),
        ("I'm thinking of learning Spanish.", "Good plan. Fifteen minutes a day adds up fast."),
        ("It's finally Friday.", "Any plans for the weekend?"),
        ("The coffee machine at work broke.", "That sounds like an emergency."),
        ("I watched a documentary about octopuses.",
         "They're remarkable, each arm can act on its own."),
    ),
    chatter=(
        ("Can you draft a quick note to the team about moving standup?",
         "Sure: 'Hi all, standup moves to 10 tomorrow. Same link. Thanks!'"),
        ("What's a good way to reverse a list in Python?",
         "Use my_list[::-1] for a copy, or my_list.reverse() to do it in place."),
        ("Summarise the pros of a standing desk in one line.",
         "Less sitting, a bit more energy, and easier posture changes during the day."),
        ("Give me three dinner ideas with chickpeas.",
         "Chickpea curry, a warm salad with feta, or crispy roasted chickpeas on rice."),
        ("How do I undo my last git commit but keep the changes?",
         "Run git reset --soft HEAD~1; the changes stay staged."),
        ("Remind me what a haiku is.",
         "A three-line poem with five, seven and five syllables."),
        ("Help me word a polite follow-up email.",
         "Try: 'Just checking in on my note from last week, happy to talk whenever suits.'"),
        ("What should I pack for a two-day work trip?",
         "Two shirts, one jacket, chargers, toiletries and your badge."),
        ("Convert 5 miles to kilometres.", "That's about 8 kilometres."),
        ("Is it okay to water succulents every day?",
         "No, every week or two is plenty; they rot if the soil stays wet."),
    ),
    tool_chatter=(
        ("What's the weather like in $place today?",
         {"tool": "weather", "city": "$place", "temp_c": "$number", "sky": "light rain"},
         "Light rain in $place, so take a jacket."),
        ("What's on my calendar this afternoon?",
         {"tool": "calendar", "event": "Design review", "start": "$time", "with": "$person"},
         "Just the design review with $person."),
        ("Search the wiki for the expense policy.",
         {"tool": "wiki_search", "top_hit": "Expenses: receipts within 30 days",
          "updated": "$date"},
         "Receipts have to go in within 30 days."),
        ("Any new messages?",
         {"tool": "inbox", "unread": "$number", "latest_from": "$person"},
         "A few; the newest is from $person."),
        ("How long is the drive to the office right now?",
         {"tool": "traffic", "minutes": "$number", "route": "ring road"},
         "About $number minutes via the ring road."),
    ),
    prose=(
        ("Bread rises because yeast eats sugar and gives off carbon dioxide.",
         "The gas is trapped by gluten, a stretchy network of proteins.",
         "A longer, cooler rise gives the loaf more flavour.",
         "Salt slows the yeast down, so bakers add it with care."),
        ("Lighthouses once relied on oil lamps and polished mirrors.",
         "Later, Fresnel lenses bent the light into a narrow, bright beam.",
         "Each lighthouse flashes in its own pattern so sailors can tell them apart.",
         "Most are automated today and keepers are rare."),
        ("Honeybees share the location of flowers through a waggle dance.",
         "The angle of the dance points towards the food relative to the sun.",
         "Its length tells the others roughly how far to fly.",
         "A strong colony can hold tens of thousands of workers."),
        ("Good passwords are long rather than clever.",
         "A phrase of four random words beats a short string of symbols.",
         "A password manager removes the need to remember them at all.",
         "Two-factor login adds a second lock on the door."),
        ("The first public railways carried coal before they carried people.",
         "Passenger trains changed how far people could live from work.",
         "Standard time zones were adopted partly so timetables made sense.",
         "High-speed lines now link many major cities."),
        ("Composting turns kitchen scraps into soil.",
         "It needs a mix of green waste, like peelings, and brown waste, like dry leaves.",
         "Turning the pile lets air in and speeds things up.",
         "A finished heap smells earthy, not sour."),
        ("Sleep comes in cycles of roughly ninety minutes.",
         "Deep sleep dominates the early part of the night.",
         "Dreaming sleep grows longer towards the morning.",
         "A regular wake-up time helps more than a regular bedtime."),
        ("Version control records every change to a project.",
         "Branches let people work on features without stepping on each other.",
         "A merge brings the work back together.",
         "Small, frequent commits make mistakes easier to find."),
    ),
    first_names=("Maria", "James", "Aisha", "Tomasz", "Wei", "Lucia", "Daniel", "Priya", "Omar",
                 "Hannah", "Kenji", "Sofia", "Mateo", "Grace", "Ivan", "Leila"),
    surnames=("Okafor", "Lindqvist", "Chen", "Moreau", "Patel", "Novak", "Haddad", "Brennan",
              "Silva", "Kowalski", "Tanaka", "Fischer", "Adeyemi", "Rossi", "Larsen", "Quinn"),
    titles=("Dr.", "Ms.", "Mr."),
    places=("Lisbon", "Toronto", "Kraków", "Nairobi", "Melbourne", "Glasgow", "Osaka", "Denver",
            "Seville", "Porto", "Wellington", "Montreal", "Bologna", "Edinburgh"),
    months=("January", "February", "March", "April", "May", "June", "July", "August",
            "September", "October", "November", "December"),
    code_letters="ABCDEFGHJKLMNPQRSTUVWXYZ",
    date_style="month_day",
    time_style="12h",
    code_shape="dashed",
    json_style="nested",
)  # fmt: skip
