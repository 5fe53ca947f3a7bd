"""The demo's conversation and its questions, written by hand in natural English.

A week of a personal assistant's chat: the user tells a bike-lock combination in the
very first turn, the assistant confirms a dinner booking, a flight lookup comes back as a
tool's JSON, the apartment's welcome guide arrives as a document and its key-safe code is
changed later. Between them: small talk, coding help, weather and calendar lookups, and
long documents (an article, meeting notes, a manual, a guide, a newsletter, an insurance
summary). Everything after the first turns runs past 8,192 tokens of SmolLM2's tokenizer,
so a decoder fed the conversation as tokens would have dropped the first turns; the test
(``tests/test_demo.py``) checks it. The physio appointment asked about is never mentioned:
its expected answer is the phrase the model is trained to give (``tasks.NOT_MENTIONED``).
"""

from __future__ import annotations

from dataclasses import dataclass

from refrag_agent.timeline import SegmentKind
from refrag_agent.training.tasks import NOT_MENTIONED


@dataclass(frozen=True)
class Line:
    """One segment of the script; ``source`` names a tool or a document."""

    kind: SegmentKind
    text: str
    source: str | None = None


@dataclass(frozen=True)
class Question:
    """A question, its expected answer, and the value an update replaced (if any)."""

    text: str
    expected: str
    replaces: str | None = None


QUESTIONS = (
    Question("What's the combination for my bike lock?", "3917"),
    Question("What was the booking reference for Saturday's dinner?", "HX47QD"),
    Question("Which gate does my Lisbon flight leave from?", "D7"),
    Question("What's the code for the key safe at the Lisbon flat?", "6614", replaces="5082"),
    Question("What time is my physio appointment?", NOT_MENTIONED),
)

U, A = SegmentKind.USER, SegmentKind.ASSISTANT

_OPENING = (
    Line(
        U,
        "Morning! Before I forget: I finally bought a proper lock for my bike, and the "
        "combination is 3917. Can you keep that for me? I'm hopeless with these numbers.",
    ),
    Line(A, "Got it, your bike lock combination is 3917. I'll remember it for you."),
    Line(U, "Thanks. It's been ages since I cycled to work, I'm a bit nervous about the traffic."),
    Line(
        A,
        "That's normal after a break. The canal route is longer but much calmer, and it "
        "avoids the big roundabout by the station.",
    ),
)

_SOURDOUGH = (
    "Why sourdough needs time. Most bread made today rises in an hour or two, pushed along "
    "by a packet of commercial yeast. Sourdough works differently. Its starter is a living "
    "culture of wild yeasts and lactic acid bacteria, kept alive with regular feeds of flour "
    "and water, and it is slow on purpose. The yeasts produce the gas that lifts the dough, "
    "while the bacteria produce the acids that give the loaf its tang and help it keep for "
    "days without going stale. A young starter is unpredictable. For the first week it may "
    "bubble furiously and then go quiet, which worries many beginners, but the early burst "
    "usually comes from bacteria that die off as the culture turns more acidic. Patience is "
    "the only fix: keep feeding it at the same time each day, keep it somewhere warm, and "
    "after ten days or so it should double reliably within six hours of a feed. The dough "
    "itself asks for the same patience. After mixing, bakers let it rest so the flour can "
    "absorb the water fully, a step called the autolyse, before adding salt. Then comes the "
    "bulk fermentation, which can take anywhere from four to twelve hours depending on the "
    "temperature of the kitchen. During this time the dough is stretched and folded every "
    "half hour or so for the first two hours, which builds strength without the heavy "
    "kneading that yeasted breads need. A good sign that bulk fermentation is done is a "
    "dough that has grown by about half, feels airy and jiggles when the bowl is shaken. "
    "Shaping is where many home bakers struggle. The aim is to create surface tension, a "
    "tight skin that holds the gas in and lets the loaf rise upwards rather than spread "
    "sideways in the oven. After shaping, the dough goes into a floured basket and usually "
    "into the fridge overnight. The cold slows the yeast right down while the bacteria keep "
    "working, which deepens the flavour and makes the dough firmer and easier to score. "
    "Baking is the most dramatic part. A very hot oven, often with the loaf inside a heavy "
    "lidded pot, traps steam around the dough for the first twenty minutes, so the crust "
    "stays soft long enough for the loaf to expand fully. Then the lid comes off and the "
    "crust darkens and crackles. The hardest instruction in any sourdough recipe comes at "
    "the very end: wait at least an hour before cutting, because the crumb is still setting "
    "as it cools. None of this is difficult, but all of it takes time, and that is rather "
    "the point. Bakers who stick with it often say the schedule becomes a pleasant rhythm: "
    "a feed in the morning, a mix after lunch, a few folds in the afternoon, shaping before "
    "bed and a loaf to bake with the morning coffee."
)

_DINNER = (
    Line(
        U,
        "Could you book dinner for Saturday? Four of us, somewhere near the river, around "
        "half seven. Ana is vegetarian.",
    ),
    Line(
        A,
        "Done! I've booked a table for four at Casa Lupita on Saturday at 7:30 pm, and I "
        "mentioned the vegetarian guest. Your booking reference is HX47QD.",
    ),
    Line(U, "Perfect, thank you. They do the best grilled peppers in town."),
    Line(A, "Enjoy! Let me know if anyone else joins and I'll change the table size."),
)

_MEETING = (
    "Product team weekly sync, Tuesday. Attendees: Priya (chair), Tom, Kenji, Laura, Sam. "
    "Apologies: Olu, who is at the supplier visit. Item one, release status. Tom reported "
    "that the 4.2 release candidate passed the regression suite on Monday night, with two "
    "flaky tests in the export module that have since been quarantined. The release is "
    "still planned for Thursday at 10:00, with the usual freeze from Wednesday noon. Laura "
    "asked whether the new onboarding screens are in this release; they are not, they move "
    "to 4.3 because the copy is still with legal. Item two, customer feedback. Kenji "
    "summarised the last fortnight of support tickets. The largest group, about a third, is "
    "about the calendar sync dropping recurring events created on mobile. A fix is in "
    "review. The second group concerns slow search on very large workspaces; Sam thinks "
    "the index rebuild scheduled for next month will help, but wants numbers before "
    "promising anything to customers. Priya asked support to stop quoting dates for it. "
    "Item three, hiring. Two candidates for the backend role reached the final round. "
    "Interviews are on the 18th and the 19th; Tom and Kenji will run the system design "
    "session, Laura the product conversation. Sam raised that the take-home exercise is "
    "too long and candidates are dropping out; the team agreed to cut it to two hours and "
    "to pay for the time. Item four, the offsite. The venue in Sintra is confirmed for the "
    "last week of the month. Travel is booked individually and expensed; the budget is the "
    "same as last year. Priya will share an agenda draft by Friday and asked everyone to "
    "send one topic they want to discuss, ideally something that needs the whole team in "
    "the room rather than a status update. Item five, any other business. Laura reminded "
    "everyone that the quarterly access review is due, and that accounts of people who "
    "have left must be removed by the end of the week. Kenji will present the new "
    "dashboard at the all-hands on the 24th at 16:00. Actions: Tom to announce the release "
    "freeze; Kenji to share the ticket breakdown; Sam to collect search timings from the "
    "three largest customers; Laura to shorten the take-home; Priya to circulate the "
    "offsite agenda. Next sync: same time next week."
)

_CODING = (
    Line(
        U,
        "Different topic. I have a Python script that reads a CSV of expenses and sums them "
        "by category, but the totals come out wrong whenever an amount has a comma in it, "
        "like 1,250.00. Here's the bit that parses it:\n\n"
        "import csv\n\ndef totals(path):\n    out = {}\n    with open(path) as f:\n"
        "        for row in csv.DictReader(f):\n"
        "            amount = float(row['amount'].replace(',', '.'))\n"
        "            out[row['category']] = out.get(row['category'], 0) + amount\n"
        "    return out\n\nWhat am I doing wrong?",
    ),
    Line(
        A,
        "The replace call is the culprit. It turns the thousands separator into a decimal "
        "point, so 1,250.00 becomes 1.250.00, and that either fails or, for an amount like "
        "1,250, silently becomes 1.25. Since your file uses commas for thousands and a dot "
        "for decimals, remove the commas instead: float(row['amount'].replace(',', '')). "
        "If some files come from a European bank that writes 1.250,00, decide the format "
        "per file rather than per row, or use the locale module with the right locale set. "
        "Two smaller things: open the file with newline='' as the csv module recommends, "
        "and consider decimal.Decimal instead of float for money, so that the totals don't "
        "pick up rounding errors like 0.30000000000000004.",
    ),
    Line(U, "Oh, that makes sense. It worked, and the groceries total is finally right."),
    Line(A, "Great. If you want, I can help you add a monthly breakdown next."),
)

_FLIGHT = (
    Line(U, "Can you check my flight to Lisbon on Thursday?"),
    Line(
        SegmentKind.TOOL_OUTPUT,
        '{"booking": {"airline": "TAP Air Portugal", "flight": "TP1349", "from": "AMS", '
        '"to": "LIS", "date": "2025-06-12", "departs": "09:40", "arrives": "11:55", '
        '"gate": "D7", "seat": "14C", "status": "on time", "baggage": "1 x 23 kg"}}',
        source="flight_status",
    ),
    Line(
        A,
        "You're on TP1349 on Thursday, leaving Amsterdam at 9:40 and landing in Lisbon at "
        "11:55. It's on time, you have seat 14C and one checked bag.",
    ),
    Line(U, "Aisle seat, nice. I'll take the early train to the airport then."),
)

_MANUAL = (
    "Barista Duo espresso machine, quick guide. Before first use, rinse the water tank and "
    "fill it with fresh cold water up to the MAX line. Switch the machine on with the power "
    "button on the left side; the cup light blinks while the boiler heats and stays on "
    "when the machine is ready, after about forty seconds. Run one empty cycle without "
    "coffee to flush the system. Making an espresso: fill the single or double filter "
    "basket with finely ground coffee, about 9 grams for a single and 18 for a double, "
    "level it and press it firmly with the tamper. Lock the portafilter into the group "
    "head by turning it to the right until the handle points at the front. Place a warmed "
    "cup underneath and press the one-cup or two-cup button. A good shot takes 25 to 30 "
    "seconds and has a thick hazel-coloured crema. If it runs much faster, grind finer or "
    "tamp harder; if it drips slowly, grind coarser. Steaming milk: turn the selector to "
    "the steam symbol and wait for the steam light. Purge the wand for two seconds into the "
    "drip tray, then dip the tip just below the surface of cold milk in a metal jug. Keep "
    "the tip near the surface to draw in air until the milk has grown by about a third, "
    "then lower the jug slightly so the milk spins and becomes smooth. Stop when the jug is "
    "too hot to hold comfortably, around 60 degrees. Wipe the wand with a damp cloth and "
    "purge it again straight away, or milk will dry inside it. Cleaning: empty the drip "
    "tray and the grounds container every day. Once a week, remove the shower screen with "
    "a coin and soak it in warm water. Descale every two months, or monthly in hard-water "
    "areas, with the descaling solution diluted as shown on its label; run half the tank "
    "through the group head and half through the steam wand, then rinse with two full "
    "tanks of clean water. Troubleshooting: if no water comes out, check that the tank is "
    "seated properly and that the float is not stuck. If the machine switches itself off, "
    "the auto-off timer is active; it can be set to 30, 60 or 120 minutes by holding both "
    "cup buttons for five seconds. If the steam wand sputters, the boiler may need more "
    "time to reach steam temperature. Never immerse the machine in water, and unplug it "
    "before any cleaning other than wiping the outside."
)

_WEATHER = (
    Line(U, "What's the weather looking like in Lisbon this weekend?"),
    Line(
        SegmentKind.TOOL_OUTPUT,
        '{"city": "Lisbon", "forecast": [{"day": "Friday", "high_c": 27, "low_c": 18, '
        '"sky": "sunny"}, {"day": "Saturday", "high_c": 25, "low_c": 17, "sky": "light '
        'cloud", "wind_kmh": 20}, {"day": "Sunday", "high_c": 23, "low_c": 16, "sky": '
        '"showers in the afternoon"}]}',
        source="weather",
    ),
    Line(
        A,
        "Warm and mostly sunny: 27 degrees on Friday, a bit of cloud and wind on Saturday, "
        "and afternoon showers on Sunday, so pack a light jacket.",
    ),
)

_WELCOME = (
    "Welcome to Casa Azul, your home in Alfama! We are Marta and Rui, and we are happy to "
    "host you. Arriving: the building is at Rua dos Remédios 41, the blue door between the "
    "bakery and the tile shop. The key safe is on the wall to the right of the door, under "
    "the house number; its code is 5082. Take the key marked 3, then please close the safe "
    "and scramble the numbers. The flat is on the third floor and there is no lift, sorry! "
    "The stairs are steep but well lit. Inside: the light switches for the living room are "
    "behind the curtain by the entrance. The wifi network is CasaAzul and the password is "
    "on the fridge door. The air conditioning remote is in the drawer under the TV; please "
    "switch it off when you go out, the windows let in the breeze from the river in the "
    "evening anyway. The kitchen has everything you need for simple cooking: the hob is "
    "induction, so only the pans with the magnet sticker work on it. Coffee capsules, tea, "
    "olive oil, salt and sugar are yours to use. Rubbish: Lisbon collects recycling from "
    "the street bins; yellow is for plastic and metal, blue for paper, green for glass. "
    "General rubbish goes in the grey bin after 8 pm. Quiet hours: our neighbours are "
    "mostly families and older people, so please keep the noise down after 11 pm, "
    "especially on the balcony. Around the neighbourhood: the tram 28 stops two minutes "
    "away at Largo das Portas do Sol, a beautiful viewpoint. For breakfast, try the bakery "
    "next door; their custard tarts come out of the oven at 9 each morning. Our favourite "
    "dinner spot is a small tasca at the end of the street with no name on the door; ask "
    "for the grilled sardines in season. The nearest supermarket is on Rua da Regueira, "
    "open until 9 pm. For pharmacies, there is one on Largo do Chafariz de Dentro with a "
    "green cross that lights up when it is open at night. Leaving: check-out is by 11 am. "
    "Please leave the key in the safe, put the towels in the bathtub and take the rubbish "
    "down if you can. If anything breaks, do not worry, just tell us. We are always on the "
    "phone or on the messaging app, and Rui lives ten minutes away if you need help. We "
    "hope you love Lisbon as much as we do. Boa estadia!"
)

_CALENDAR = (
    Line(U, "What have I got on next week?"),
    Line(
        SegmentKind.TOOL_OUTPUT,
        '{"events": [{"title": "Haircut", "day": "Monday", "time": "17:30"}, {"title": '
        '"Dentist check-up", "day": "Tuesday", "time": "08:15"}, {"title": "Team offsite '
        'planning", "day": "Wednesday", "time": "14:00"}, {"title": "Flight to Lisbon", '
        '"day": "Thursday", "time": "09:40"}, {"title": "Dinner at Casa Lupita", "day": '
        '"Saturday", "time": "19:30"}]}',
        source="calendar",
    ),
    Line(
        A,
        "A busy week: a haircut on Monday evening, the dentist early on Tuesday, offsite "
        "planning on Wednesday afternoon, then your Lisbon flight on Thursday and dinner "
        "on Saturday.",
    ),
    Line(U, "Ugh, the dentist. At least it's early and over with."),
    Line(A, "Exactly, and you'll have the rest of the day free."),
)

_GUIDE = (
    "Three days in Lisbon. Lisbon rewards slow walking, so plan less than you think you "
    "can do. Day one: start in Baixa, the flat grid of streets rebuilt after the earthquake "
    "of 1755, and walk down Rua Augusta to the great riverside square, Praça do Comércio. "
    "From there, climb into Alfama, the oldest quarter, a maze of alleys, stairs and "
    "washing lines that survived the earthquake. Get lost on purpose. The cathedral is "
    "worth a short stop, and the viewpoints at Santa Luzia and Portas do Sol give the "
    "classic view of terracotta roofs tumbling down to the river. In the evening, many "
    "small restaurants in Alfama host fado, the city's melancholy song; the best places "
    "are small, ask for silence while the singers perform and serve simple food. Day two: "
    "take the tram or a train west to Belém. The monastery of Jerónimos is a masterpiece of "
    "the Manueline style, with stone carved into ropes, shells and sea creatures. Queue "
    "early or go late in the afternoon. Nearby, the famous pastry shop has sold custard "
    "tarts from the same secret recipe since 1837; the queue moves fast and there are "
    "tables inside. Walk along the river to the Tower of Belém and the monument to the "
    "discoveries, then return to the centre for an evening in Bairro Alto, where the bars "
    "are tiny and the crowd spills into the streets with drinks in plastic cups. Day three: "
    "choose between culture and the coast. The Gulbenkian museum holds a remarkable "
    "private collection in a quiet modernist building set in a garden, perfect for a hot "
    "afternoon. Alternatively, take the train from Cais do Sodré along the coast to "
    "Cascais, forty minutes away, for a swim and grilled fish by the harbour. Practical "
    "notes: the city is hilly and the pavements are made of polished limestone that gets "
    "slippery, so wear shoes with grip. A rechargeable transport card covers the metro, "
    "trams, buses and the ferries across the river. The old yellow trams are charming but "
    "crowded and a favourite of pickpockets; keep bags closed and in front of you. Dinner "
    "is eaten late, rarely before 8 pm, and bread, olives and cheese brought to the table "
    "before you order are not free, though you can send them back. Tipping is modest; "
    "rounding up or leaving five to ten percent in restaurants is plenty."
)

_CHAT_MIDDLE = (
    Line(U, "Did you know Lisbon is older than Rome? I read that somewhere today."),
    Line(
        A,
        "It's often said, yes: there was a settlement there long before Rome grew into a "
        "city, though dates that old are always a little uncertain.",
    ),
    Line(U, "I'll use that at dinner. Any tips for learning a few words of Portuguese?"),
    Line(
        A,
        "Start with obrigado, or obrigada if you're a woman, for thank you; bom dia for "
        "good morning; and uma bica, por favor, which gets you an espresso. People really "
        "appreciate the effort.",
    ),
)

_NEWSLETTER = (
    "Riverside Cycling Club, June newsletter. Hello everyone, and welcome to our fifteen "
    "new members who joined after the spring open day. This month's Sunday rides leave "
    "from the boathouse car park at 8:30 sharp. The short ride is 40 kilometres at an easy "
    "pace with a café stop in Wijk; the long ride is 90 kilometres with the climb up to the "
    "old water tower, and it does not wait for latecomers. Please bring two spare inner "
    "tubes, a pump and enough food, and check your tyres the evening before rather than in "
    "the car park. Safety first: last month two members had falls on the wet cobbles by "
    "the lock gates. Ride the cobbled section slowly and single file, and never brake hard "
    "on the painted lines. Lights are compulsory on every club ride, front and back, even "
    "in summer, because the tunnel under the motorway is dark. Maintenance evenings are "
    "back: every second Wednesday at the clubhouse, volunteers will help you adjust brakes "
    "and gears, and show you how to fix a puncture without tears. Bring your bike clean; "
    "our volunteers are generous but not saints. Club kit: the new jerseys have arrived "
    "and can be picked up at the bar on ride days. If you ordered a size that does not fit, "
    "swap it within two weeks. The summer tour is almost full. Twenty riders will spend "
    "five days crossing the Ardennes, with luggage carried by van and nights in small "
    "hotels. Three places are left; the deposit is due by the end of the month. Finally, a "
    "thank you to Henk, who has led the Sunday short ride for eleven years and is handing "
    "over to Femke. Henk promises he will still come along, at the back, telling the same "
    "jokes. See you on the road, and remember: the café stop is not a race, even when the "
    "apple cake is running out."
)

_INSURANCE = (
    "Travel insurance summary, policy holder: the traveller named on the booking. Cover "
    "period: from departure on the outbound journey until return home, for trips of up to "
    "31 days. Medical expenses abroad are covered up to 2,000,000 euros, including "
    "emergency treatment, hospital stays and repatriation when a doctor advises it. Dental "
    "treatment is covered only for sudden pain, up to 300 euros. Cancellation: costs you "
    "cannot recover are refunded up to 5,000 euros when you must cancel because of illness, "
    "injury or death of you or a close relative, jury service, or serious damage to your "
    "home shortly before departure. Changing your mind is not covered. Delay: if your "
    "outbound transport is delayed by more than 12 hours, you receive 50 euros for each "
    "full 12 hours, up to 300 euros, or you may cancel the trip and claim under "
    "cancellation. Baggage: up to 1,500 euros in total, with a limit of 300 euros for any "
    "single item and 500 euros for valuables such as cameras and phones. Keep receipts for "
    "anything expensive, and report theft to the local police within 24 hours, getting a "
    "written report. Delayed baggage: essential purchases are refunded up to 200 euros if "
    "your bags arrive more than 12 hours after you do. Personal liability: up to 1,000,000 "
    "euros if you accidentally injure someone or damage their property. Exclusions: "
    "pre-existing medical conditions that you did not declare, injuries from dangerous "
    "sports such as skydiving unless you bought the sports extension, travel to areas the "
    "government advises against, and claims arising from alcohol or drug use. Excess: the "
    "first 75 euros of each claim is your own. How to claim: call the assistance line "
    "before any major medical treatment, open day and night, and submit other claims "
    "online within 31 days of returning home, with receipts, reports and the booking "
    "confirmation. Please read the full policy wording for the complete terms; this "
    "summary does not replace it."
)

_EARTHQUAKE = (
    "The morning the ground moved. On the first of November 1755, All Saints' Day, the "
    "churches of Lisbon were full when, at about twenty to ten, the first shock arrived. "
    "Witnesses described a low rumble like heavy carts on cobbles, then a violent shaking "
    "that lasted several minutes, long enough for walls to crack, sway and fall. Modern "
    "estimates put the magnitude between 8.5 and 9, with the epicentre in the Atlantic "
    "some two hundred kilometres south-west of the city. The candles lit for the holy day "
    "fell among hangings and wooden altars, and fires broke out across the lower town. "
    "Many survivors fled to the open ground by the river, believing it safer than the "
    "narrow streets. There, about forty minutes after the shaking, they watched the water "
    "draw back, exposing the riverbed, lost cargo and old wrecks, before a wall of sea "
    "returned and swept over the quays. Two more waves followed. The fires burned for five "
    "days. The royal palace by the river was destroyed, and with it the royal library of "
    "some seventy thousand volumes, paintings by Titian and Rubens, and the archives of "
    "Portugal's voyages. The king and his family survived only because they had gone to "
    "Belém after morning mass. Estimates of the dead in Lisbon range from thirty thousand "
    "to fifty thousand, in a city of perhaps two hundred thousand people. What followed is "
    "remembered almost as much as the disaster itself. The king's chief minister, later "
    "known as the Marquis of Pombal, is said to have answered the question of what to do "
    "with the words: bury the dead and feed the living. Troops were posted to stop "
    "looting, food was brought in from the provinces, and prices were fixed. Architects "
    "and engineers drew up plans for a new lower town on a strict grid, with wide streets, "
    "uniform façades and buildings designed to survive the next earthquake. Their wooden "
    "frame, the gaiola or cage, was a flexible lattice built inside the masonry walls, and "
    "it is believed that soldiers marched around models of it to test how it behaved "
    "under shaking. Pombal also sent a questionnaire to every parish, asking when the "
    "shaking began, how long it lasted, whether wells rose or fell and how many people had "
    "died. The answers, still kept in the national archive, make it one of the first "
    "earthquakes studied with something like scientific method. The disaster also shook "
    "European thought. Voltaire wrote a poem and later Candide, mocking the optimism that "
    "held this to be the best of all possible worlds, and Rousseau replied that the harm "
    "came less from nature than from people crowding into tall houses. Kant wrote three "
    "essays on the causes of earthquakes. Walking through the Baixa today, with its calm "
    "arcades and orderly streets, it is easy to forget that the whole district is a "
    "monument to that morning."
)

_INBOX = (
    Line(U, "Anything important in my inbox?"),
    Line(
        SegmentKind.TOOL_OUTPUT,
        '{"unread": 4, "messages": [{"from": "Priya Natarajan", "subject": "Offsite agenda '
        'draft", "received": "Mon 08:02", "preview": "Attached the first draft. Please add '
        'your topic by Thursday, one line is enough."}, {"from": "City Library", "subject": '
        '"Your loan is due", "received": "Mon 09:15", "preview": "The Ferrante novel is due '
        'back on Friday. You can renew it online twice."}, {"from": "Greenleaf Energy", '
        '"subject": "Your June bill", "received": "Mon 11:47", "preview": "Your bill of '
        '64.20 euros will be collected on the 28th."}, {"from": "Jonas", "subject": "Squash '
        'on Wednesday?", "received": "Mon 12:30", "preview": "Court 2 is free at 19:00 if '
        'you fancy a game before your trip."}]}',
        source="email",
    ),
    Line(
        A,
        "Four unread: Priya's offsite agenda, wanting your topic by Thursday; a library "
        "reminder that the Ferrante novel is due on Friday; your energy bill; and Jonas "
        "asking about squash on Wednesday evening.",
    ),
    Line(U, "Tell Jonas yes. And remind me to renew the book, I'm only halfway through."),
    Line(A, "Will do. I've replied to Jonas that you're in for Wednesday."),
)

_SLEEP = (
    "Podcast notes: The Science of Sleep, episode 12. Our guest, a sleep researcher who "
    "has run a hospital sleep clinic for twenty years, began by separating two things that "
    "people often confuse: how long we sleep and when we sleep. Duration matters, and most "
    "adults need between seven and nine hours, but timing matters too. Each of us has a "
    "body clock, a circadian rhythm of roughly twenty-four hours, set mainly by light. "
    "Morning light moves it earlier; light late in the evening, including the light from "
    "screens, pushes it later. This is why a lie-in at the weekend followed by an early "
    "alarm on Monday feels like jet lag: in effect, it is. She called it social jet lag "
    "and said that keeping wake-up times within an hour of each other every day is the "
    "single most useful habit for people who sleep badly. The conversation then turned to "
    "caffeine. Its half-life is around five to six hours in most adults, so a coffee at "
    "four in the afternoon still leaves half its caffeine in the blood at ten at night. "
    "Some people metabolise it much faster or slower, which explains why a friend can drink "
    "espresso after dinner and sleep soundly while another lies awake. Alcohol, she added, "
    "makes people fall asleep faster but fragments the second half of the night and "
    "suppresses dream sleep, so it is a poor sleeping aid. On naps, her advice was "
    "practical: keep them under thirty minutes and before mid-afternoon, or they eat into "
    "the pressure to sleep that builds up during the day. For people lying awake at night, "
    "she recommended getting up after about twenty minutes, doing something calm in dim "
    "light, and going back to bed only when sleepy, so the bed stays associated with "
    "sleep rather than with worry. Listeners asked about sleep trackers. She finds them "
    "useful for spotting patterns, such as late meals or evening workouts, but warned that "
    "their estimates of sleep stages are rough, and that some people sleep worse when they "
    "start chasing a perfect score. The episode closed on travel. Crossing time zones "
    "eastward is harder than westward, because it is easier to stay up late than to fall "
    "asleep early. Her tips: shift bedtime by an hour a day before the trip if you can, "
    "seek morning light at the destination, avoid long naps on the first day and eat meals "
    "at local times. For short trips of two or three days, it may be better not to adjust "
    "at all and to schedule important meetings at times that suit your home clock."
)

_RECIPE = (
    Line(
        U,
        "I want to try making custard tarts when I'm back. Can you give me a simple recipe?",
    ),
    Line(
        A,
        "Here's a home version of pastéis de nata, for twelve tarts. You need one sheet of "
        "ready-made puff pastry, 250 ml of whole milk, 150 g of sugar, 80 ml of water, 2 "
        "tablespoons of flour, 4 egg yolks, a strip of lemon peel and a cinnamon stick. "
        "First, heat the oven as hot as it goes, ideally 280 degrees, with the tray inside. "
        "Roll the pastry into a tight log, cut it into twelve discs and press each one into "
        "a muffin tin with wet thumbs, thin at the bottom and thicker at the rim. Boil the "
        "sugar and water with the lemon and cinnamon for three minutes to make a syrup. "
        "Whisk the flour with a little of the milk, heat the rest of the milk, whisk them "
        "together and cook until it thickens slightly. Pour in the syrup, taking out the "
        "peel and the cinnamon, let it cool for ten minutes, then whisk in the yolks. Fill "
        "the cases three quarters full and bake for 10 to 12 minutes, until the tops have "
        "dark blistered spots. Let them cool a little and dust with cinnamon and icing "
        "sugar. The secret is the very hot oven: a home oven can't quite match a bakery's, "
        "so put the tin on the highest shelf.",
    ),
    Line(U, "That sounds doable. Brilliant."),
)

_LEASE = (
    "Extract from the storage rental terms. One: the unit may be used only to store goods "
    "belonging to the renter; it may not be used as a workshop, office or living space, "
    "and nothing may be stored that is flammable, perishable, illegal or alive. Two: "
    "access is available every day between 6:00 and 22:00 using the renter's personal "
    "entry code at the gate; codes must not be shared, and every entry is logged. Three: "
    "rent is payable monthly in advance by direct debit. If a payment fails, the renter "
    "will be told by email and has fourteen days to pay before a late fee of 15 euros is "
    "added and access is suspended. Four: the renter provides their own padlock and is "
    "responsible for the security of the unit. The company does not hold a key and will "
    "only cut a lock after a written request from the renter or when the law requires it. "
    "Five: goods are not insured by the company. Renters must either insure them under "
    "their own home insurance or buy the company's cover, priced by declared value. Six: "
    "the company may move the renter's goods to another unit of equal size with seven "
    "days' notice, for maintenance or safety, at its own cost. Seven: either party may end "
    "the agreement with fourteen days' written notice. The unit must be left empty, clean "
    "and unlocked, and any rubbish left behind will be cleared at the renter's cost. "
    "Eight: the renter must keep their contact details up to date, because notices are "
    "sent to the last email address given. Nine: the company may enter the unit in an "
    "emergency, such as a fire, a flood or a suspected leak, and will tell the renter as "
    "soon as possible afterwards. Ten: these terms are governed by the law of the country "
    "where the facility is located, and any dispute that cannot be settled by talking will "
    "go to its courts. The full terms, including the price list and the rules for "
    "vehicles in the loading bay, are available at reception and on the website."
)

_STORY = (
    "The last ferry. Inês had missed the last ferry home three times that winter, and each "
    "time she had told herself it would be the last. Tonight she ran the length of the "
    "quay with her bag banging against her hip, and the ferry was still there, its engine "
    "grumbling, a sailor in an orange jacket holding the rope. He looked at his watch and "
    "then at her, and let her through with a tilt of his head that meant: again? The cabin "
    "was almost empty. An old man slept against the window with a newspaper folded on his "
    "chest; two students shared headphones and a bag of chips; a woman in a nurse's "
    "uniform sat very straight with her eyes closed, as if she were still on duty and only "
    "resting her eyes. Inês took her usual seat at the back, where the windows were less "
    "scratched, and watched the city slide away. From the river, Lisbon looked like a "
    "stage set: the hills stacked with lit windows, the castle floodlit, the bridge a "
    "string of red lights in the distance. She thought about the day. The client had "
    "changed his mind about the colours again, the printer had jammed twice, and her "
    "manager had said, with great kindness, that perhaps she should think about whether "
    "this job was right for her. She had been thinking about it ever since. Halfway "
    "across, the ferry slowed, as it sometimes did when a container ship was passing. The "
    "engine dropped to a murmur and the cabin went quiet enough to hear the water slapping "
    "against the hull. The nurse opened her eyes and looked straight at Inês. You take "
    "this boat every night, she said. Not every night, Inês said, only when I'm late. "
    "Which is every night, said the nurse, and smiled, and Inês laughed for the first time "
    "that day. They talked until the far bank came into view: about night shifts and "
    "deadlines, about the bakery near the terminal that sold yesterday's bread at half "
    "price, about a village in the north where the nurse's mother still kept goats and "
    "refused to own a telephone. When the ferry bumped against the pier, the old man woke "
    "with a start and carefully refolded his newspaper. The students ran for the bus. The "
    "nurse wished her good night and walked off towards the hospital on the hill, where, "
    "it turned out, her shift was only beginning. Inês stood on the pier for a while. The "
    "ferry was already turning back, its lights shrinking on the black water. She did not "
    "know yet whether she would stay in the job, but she knew she would look for the nurse "
    "on the boat tomorrow, and that she would, almost certainly, be late."
)

_BEES = (
    "City bees. Walk past the roof of the opera house in Paris, a London office tower or a "
    "Berlin parking garage and you may be standing below a beehive. Urban beekeeping has "
    "boomed over the past two decades, driven by worry about declining pollinators and by "
    "the simple pleasure of local honey. Cities turn out to be surprisingly good for honey "
    "bees. Parks, gardens, street trees and balcony pots flower in sequence from early "
    "spring to late autumn, often with fewer pesticides than farmland, and the warmth of "
    "buildings gives colonies a head start. Some city hives produce more honey than rural "
    "ones. But ecologists have started to raise a concern. Honey bees are managed animals, "
    "closer to livestock than to wildlife, and in large numbers they compete with the "
    "hundreds of species of wild bees that also live in cities: bumblebees, mining bees, "
    "mason bees and many more, most of them solitary and far less visible. Where the "
    "density of hives gets too high, studies in several cities have found fewer wild bees "
    "visiting flowers and more pathogens passing between species. The advice from "
    "researchers is therefore not to stop keeping bees, but to think about flowers first. "
    "A city can support more pollinators only if it grows more food for them. Planting "
    "native flowering plants, letting lawns grow longer with clover and dandelions, "
    "leaving patches of bare soil for ground-nesting bees, and keeping dead stems over "
    "winter, where many insects shelter, all help wild bees and honey bees alike. Bee "
    "hotels, bundles of hollow stems or drilled blocks of wood, are popular, but they need "
    "care: tubes should be cleaned or replaced every year or two to avoid parasites, and "
    "they should face the morning sun. For anyone tempted to start a hive, beekeeping "
    "associations recommend a year of learning first, ideally with a mentor, and checking "
    "local rules, since some cities require hives to be registered and set back from "
    "neighbours' windows. Bees are generally calm when handled well, but a hive is a "
    "commitment: it needs inspecting every week or so in the season, treating for mites, "
    "and feeding when the weather is bad. The reward, apart from the honey, is a new way "
    "of seeing the city, as a landscape of flowering seasons, where a single lime tree in "
    "full bloom can feed thousands of foragers for a week."
)

_RELEASE = (
    "Release notes, version 4.2. Highlights: calendar sync is faster and more reliable. "
    "Recurring events created on mobile no longer disappear after the first occurrence, a "
    "problem that affected a small number of workspaces since 4.0. Sync now runs "
    "incrementally, sending only the events that changed, which cuts the time of a full "
    "sync on large calendars from minutes to seconds. Search: results now show which "
    "field matched, and quoted phrases are matched exactly. Workspaces with more than a "
    "million items will see the biggest gains after the background re-index, which starts "
    "automatically after the upgrade and may take up to a day; search keeps working while "
    "it runs. Export: exports to spreadsheet now keep the time zone of each event and "
    "write dates in the ISO format, so they sort correctly. The export of attachments has "
    "moved into a separate archive to keep the main file small. Accessibility: every "
    "dialog can be closed with the Escape key, focus returns to the element that opened "
    "it, and the colour contrast of secondary buttons meets the recommended ratio. Screen "
    "readers now announce the number of unread notifications. Administration: admins can "
    "set a retention period for deleted items, from seven days to a year, after which "
    "they are removed for good. Audit logs can be streamed to an external system, and the "
    "access review report lists accounts that have not signed in for ninety days. "
    "Deprecations: the old reporting API will stop working in version 5.0. Its endpoints "
    "now return a warning header that names the replacement. The desktop app for 32-bit "
    "systems will receive security fixes only. Fixed issues: the week view no longer "
    "shows events twice when two calendars share them; notifications for edited comments "
    "are sent once, not for every keystroke saved; the date picker respects the first day "
    "of the week set in preferences; uploading a file with a very long name no longer "
    "fails silently; and the app no longer logs people out when the device clock is a few "
    "minutes wrong. Known issues: on some older tablets, dragging an event across days can "
    "be slow; a fix is planned for 4.2.1. Thank you to everyone who sent feedback and "
    "crash reports during the beta; many of these changes started as your messages."
)

_GIT = (
    Line(
        U,
        "Quick git question: I committed to main by mistake instead of my feature branch, "
        "and I haven't pushed yet. How do I move the commit?",
    ),
    Line(
        A,
        "Easy to fix since nothing is pushed. Create the branch where you are with git "
        "branch feature-x, which keeps your commit on it. Then move main back one commit "
        "with git reset --hard HEAD~1, and switch over with git switch feature-x. Before "
        "the reset, make sure you have no uncommitted changes you want to keep, because "
        "--hard discards them; git stash will park them if you do.",
    ),
    Line(U, "Worked perfectly. I owe you a coffee."),
    Line(A, "I'll take it as a custard tart in Lisbon."),
    Line(U, "Deal. By the way, my sister wants to visit in August. Is that a good month?"),
    Line(
        A,
        "It's hot and busy, with most locals away on holiday, but the evenings are lovely "
        "and the beaches are at their best. September is a little calmer if she can move it.",
    ),
    Line(U, "I'll pass that on. She hates crowds, so September it probably is."),
    Line(A, "Good call. Late September often still feels like summer there."),
)

_GIFT = (
    Line(
        U,
        "My dad turns seventy next month and I have no idea what to get him. He likes "
        "gardening, old films and long walks, and he says he doesn't need anything.",
    ),
    Line(
        A,
        "People who say they need nothing often love an experience or something they would "
        "never buy themselves. A few ideas: a day at a famous garden with lunch included; "
        "a restored box set of the films he grew up with, with an evening to watch one "
        "together; a good pair of walking boots, fitted in a shop rather than bought online; "
        "or a book of photographs of the places he used to walk, with your own notes in the "
        "margins. If the family chips in, a weekend away on a walking route he has always "
        "talked about could be the present he remembers.",
    ),
    Line(U, "The garden day is a great idea. He's been talking about the rose garden for years."),
    Line(
        A,
        "Then that's the one. June is the best month for roses, so if his birthday is in "
        "late spring, the timing works perfectly. You could add a small rose for his own "
        "garden as a souvenir of the day.",
    ),
    Line(U, "Love it. Also, I've started running again, twice a week. Any advice?"),
    Line(
        A,
        "Build up slowly: keep most runs at a pace where you could chat, add no more than "
        "about ten percent to your weekly distance, and take a rest day after each run at "
        "first. Sore knees or shins are a sign to ease off, not to push through.",
    ),
)

_CHAT_LATE = (
    Line(U, "I'm trying to pack light. Is a carry-on enough for four days?"),
    Line(
        A,
        "Usually, yes. Lay out everything, then put back a third of it. Roll your clothes, "
        "wear the bulkiest shoes on the plane, and remember you checked a bag on the flight "
        "anyway if souvenirs get out of hand.",
    ),
    Line(U, "Ha, fair. I always bring back too many tins of sardines."),
    Line(A, "They make excellent presents, and they travel well."),
    Line(
        U,
        "Should I change money before I go, or just use my card there? Last time the "
        "airport exchange rate was terrible.",
    ),
    Line(
        A,
        "Use your card for most things; cards are accepted almost everywhere in Lisbon, "
        "and contactless works on the metro gates too. Take out a little cash from a bank "
        "machine in town for small cafés and markets, and always choose to be charged in "
        "euros when the machine asks, because the conversion it offers is usually worse.",
    ),
)

_UPDATE = (
    Line(
        U,
        "Marta from the flat just texted. They reset the key safe after the last guests, "
        "the new code is 6614.",
    ),
    Line(A, "Thanks, noted: the key safe at the Lisbon flat now opens with 6614."),
)

_CLOSING = (
    Line(U, "Right, I think I'm ready for the trip."),
    Line(A, "Sounds like it. Have a wonderful time in Lisbon!"),
)


def script() -> tuple[Line, ...]:
    """The whole conversation, in order."""
    doc = SegmentKind.DOCUMENT
    return (
        *_OPENING,
        Line(doc, _SOURDOUGH, source="article"),
        *_DINNER,
        Line(doc, _MEETING, source="meeting-notes"),
        Line(doc, _RELEASE, source="release-notes"),
        *_CODING,
        Line(doc, _STORY, source="short-story"),
        *_FLIGHT,
        Line(doc, _MANUAL, source="manual"),
        *_WEATHER,
        Line(
            U,
            "The hosts sent their welcome guide for the flat, can you keep it handy?",
        ),
        Line(doc, _WELCOME, source="welcome-guide"),
        Line(A, "Saved. It has the address, the key safe and tips for the neighbourhood."),
        *_CALENDAR,
        Line(doc, _GUIDE, source="travel-guide"),
        Line(doc, _EARTHQUAKE, source="history"),
        *_CHAT_MIDDLE,
        *_INBOX,
        Line(doc, _NEWSLETTER, source="newsletter"),
        Line(doc, _SLEEP, source="podcast-notes"),
        *_GIFT,
        *_RECIPE,
        Line(doc, _INSURANCE, source="insurance"),
        Line(doc, _LEASE, source="storage-terms"),
        Line(doc, _BEES, source="article"),
        *_GIT,
        *_CHAT_LATE,
        *_UPDATE,
        *_CLOSING,
    )
