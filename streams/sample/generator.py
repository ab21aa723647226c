"""Synthetic but realistic video-platform sample: a catalogue and a time-ordered user event log.

The generator plants the structure a streaming recommender must discover (sparse, drifting topic
tastes; binge sessions; heavy-tailed appeal and activity; freshness decay; trending; cold-start
first views) behind noisy, overlapping text and coarse platform categories, so that no single
signal is an oracle. ``vidrec sample`` writes it; ``default_sample_path()`` is the shipped one.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import os
import random
import string
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from schemas import EventType, UserEvent, VideoPublished
from schemas.messages import _Message
from streams.sample import default_sample_path
from streams.wire.eventlog import open_text

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_SEED = 42
DEFAULT_VIDEOS = 3000
DEFAULT_USERS = 800
DEFAULT_DAYS = 28

DAY = 86400.0
BACKFILL_SHARE = 0.35  # of the catalogue, published in the BACKFILL_DAYS before the stream
BACKFILL_DAYS = 60
FRESH_GAP_S = 600.0  # a video can be watched 10 minutes after publication (processing)
TREND_HALF_LIFE_S = DAY
DRIFT_PER_DAY = 0.025
SESSIONS_PER_DAY = 0.18  # mean over users; individual rates are lognormal
MAX_PICKS = 40
PROGRESS_MIN_USER_DAYS = 100_000  # runs at least this big report progress

# ---------------------------------------------------------------------------------------------
# Vocabulary. Each topic has subtopics with their own nouns ("things", "many"), how-to phrases,
# products and tags; cross-topic words (protein, GPU, street food, inflation, ...) are planted
# on purpose so that text is informative but not a perfect oracle of the topic.
# ---------------------------------------------------------------------------------------------

GENERIC_TEMPLATES = [
    "{n} {adj} {many} for Beginners",
    "The Ultimate {thing} Guide ({year})",
    "How to {howto} (Step by Step)",
    "How to {howto} - {n} Tips That Actually Work",
    "Honest Review: {product} After {months} Months",
    "{product} Review - Is It Worth It in {year}?",
    "{thing}: Everything You Need to Know",
    "Stop Making These {n} {thing} Mistakes",
    "Beginner's Guide to {thing}",
    "{n} {many} You Need to Try in {year}",
    "{thing} vs {thing2} — Which Is Better?",
    "Why Everyone Is Talking About {thing}",
    "{thing} Tips I Wish I Knew Sooner",
    "Best {many} of {year} (So Far)",
    "{thing} Explained in {minutes} Minutes",
    "The {adj} {thing} Challenge",
    "Watch This Before You Buy a {product}",
    "{adj} {thing} Tips for {year}",
    "I Tested {n} {many} So You Don't Have To",
]

SHORTS_TEMPLATES = [
    "{thing} in 60 seconds",
    "This {thing} trick is insane",
    "{adj} {thing} hack you need to know",
    "Wait for it... {thing}",
    "POV: you finally tried {thing}",
    "{thing} #shorts",
    "Day {n} of trying to {howto}",
    "Rating {many} (part {n})",
]

GENERIC_DESC = [
    "Let me know in the comments what you want to see next!",
    "Subscribe for a new video every week.",
    "Timestamps are in the chapters below.",
    "Thanks for watching, and see you in the next one.",
    "This one took way longer to film than I expected.",
    "Links to everything I used are in the description.",
    "If this helped, a like really helps the channel.",
]

GENERIC_TAGS = [
    "best",
    "guide",
    "beginner",
    "review",
    "2026",
    "tips",
    "challenge",
    "how to",
    "vlog",
]


def _s(**kw: str) -> dict[str, list[str]]:
    """A subtopic: every value is a '|'-separated list of phrases."""
    return {k: v.split("|") for k, v in kw.items()}


TOPICS: dict[str, dict[str, Any]] = {
    "cooking": dict(
        weight=1.3,
        cats={"Howto & Style": 0.7, "People & Blogs": 0.2, "Entertainment": 0.1},
        shorts=0.3,
        minutes=12,
        half_life=5.0,
        evergreen=0.35,
        words="recipe|cooking|kitchen|dinner",
        adjs="easy|quick|healthy|cozy|authentic|budget-friendly|crispy|creamy|best",
        tags="cooking|recipe|food|homemade|easy recipes|dinner ideas",
        templates=[
            "{n} Easy {many} You Can Make in {minutes} Minutes",
            "I Tried the Viral {thing} Hack — Here's What Happened",
            "The Best {thing} Recipe I've Ever Made",
            "{minutes}-Minute {thing} (No Fancy Equipment)",
            "Chef Reacts to {adj} {thing} Recipes",
            "What I Eat in a Week: {many} Edition",
            "Making {thing} From Scratch",
        ],
        desc=[
            "Today I'm making {thing}, and it's easier than you think.",
            "Full recipe and ingredient list below.",
            "These {many} are perfect for busy weeknights.",
            "I learned how to {howto} after a lot of failed attempts.",
            "We put the {product} to the test in a real home kitchen.",
        ],
        subs={
            "baking": _s(
                things="sourdough bread|chocolate chip cookies|croissants|banana bread"
                "|cinnamon rolls|focaccia|cheesecake|brioche",
                many="bread recipes|cookie recipes|no-knead breads|easy desserts|cake ideas",
                howto="bake sourdough at home|make flaky croissants|fix a dense loaf"
                "|frost a layer cake|feed a sourdough starter",
                products="stand mixer|Dutch oven|bread proofing box|bench scraper",
                tags="baking|sourdough|bread|dessert|cake|pastry",
            ),
            "italian": _s(
                things="carbonara|fresh pasta|lasagna|risotto|Neapolitan pizza|tiramisu"
                "|cacio e pepe|Roman street food",
                many="pasta recipes|Italian dinners|pizza doughs|one-pot pastas",
                howto="make fresh pasta by hand|stretch pizza dough|cook perfect risotto"
                "|make real carbonara",
                products="pasta machine|pizza oven|pizza steel|chef's knife",
                tags="pasta|italian food|pizza|italian recipes|street food",
            ),
            "vegan": _s(
                things="high protein vegan meal prep|tofu scramble|vegan curry|lentil soup"
                "|plant-based burger|chickpea salad|vegan mac and cheese",
                many="vegan dinners|plant-based meals|meal prep ideas|high protein vegan meals"
                "|tofu recipes",
                howto="press tofu properly|meal prep for the week"
                "|get enough protein on a vegan diet|make vegan cheese",
                products="tofu press|high-speed blender|meal prep containers|air fryer",
                tags="vegan|plant based|meal prep|protein|healthy recipes|tofu",
            ),
            "bbq": _s(
                things="brisket|smoked ribs|pulled pork|reverse sear steak|smash burgers"
                "|Texas BBQ|street food tacos",
                many="BBQ recipes|grilling ideas|steak cuts|burger recipes|high protein dinners",
                howto="smoke a brisket|grill the perfect steak|trim a brisket|make a dry rub",
                products="pellet grill|offset smoker|kamado grill|meat thermometer"
                "|cast iron skillet",
                tags="bbq|grilling|smoked meat|steak|brisket|street food",
            ),
        },
    ),
    "travel": dict(
        weight=1.0,
        cats={"Travel & Events": 0.6, "People & Blogs": 0.33, "Entertainment": 0.07},
        shorts=0.2,
        minutes=16,
        half_life=6.0,
        evergreen=0.3,
        words="travel|trip|journey|adventure",
        adjs="cheap|hidden|underrated|stunning|budget|solo|ultimate|best",
        tags="travel|travel vlog|things to do|trip|travel guide",
        templates=[
            "{n} Things to Do in {place} ({year} Travel Guide)",
            "I Spent ${n}0 a Day in {place} — Here's How",
            "{place} Is Not What I Expected",
            "First Time in {place}: {adj} Travel Vlog",
            "Don't Visit {place} Without Watching This",
            "{n} Days in {place} on a Budget",
        ],
        desc=[
            "We spent {n} days exploring {place}.",
            "Everything we packed and every place we stayed is linked below.",
            "This is the {adj} side of {place} most tourists never see.",
            "Filmed on location in {place}; prices are from this trip.",
        ],
        subs={
            "backpacking": _s(
                things="solo backpacking|hostel life|budget travel|night buses|travel insurance"
                "|packing light",
                many="budget travel tips|hostels|backpacking routes|packing hacks",
                howto="travel on a budget|pack a carry-on for a month|find cheap flights"
                "|travel solo safely",
                products="travel backpack|packing cubes|travel credit card|power bank",
                tags="backpacking|budget travel|solo travel|hostel|cheap flights",
                place="Vietnam|Thailand|Colombia|Morocco|Portugal|Mexico|Peru|Bali",
            ),
            "cities": _s(
                things="city break|weekend itinerary|Tokyo subway|rooftop bars|old town|metro pass",
                many="city guides|neighbourhoods|weekend itineraries|viewpoints",
                howto="plan a 3 day city trip|use the Tokyo metro|avoid tourist traps",
                products="city pass|travel camera|noise cancelling headphones|eSIM",
                tags="city guide|things to do|itinerary|weekend trip|sightseeing",
                place="Tokyo|Lisbon|New York|Paris|Seoul|Barcelona|Istanbul|Mexico City",
            ),
            "food_travel": _s(
                things="street food|night market|food tour|ramen|tapas|local breakfast",
                many="street food stalls|night markets|local dishes|food tours",
                howto="find the best street food|order like a local|eat cheap while travelling",
                products="travel food guide|street food tour|cooking class",
                tags="street food|food tour|food travel|night market|local food",
                place="Bangkok|Osaka|Mexico City|Taipei|Naples|Istanbul|Hanoi|Lima",
            ),
            "roadtrips": _s(
                things="van life|road trip|camper van build|national parks|wild camping",
                many="road trip stops|national parks|campsites|van builds",
                howto="plan a road trip|live in a van full time|find free campsites",
                products="camper van|rooftop tent|portable fridge|solar generator",
                tags="van life|road trip|camping|national parks|overlanding",
                place="Iceland|Utah|Scotland|New Zealand|Norway|Patagonia|California|Canada",
            ),
        },
    ),
    "gaming": dict(
        weight=1.5,
        cats={"Gaming": 0.85, "Entertainment": 0.15},
        shorts=0.25,
        minutes=22,
        half_life=3.0,
        evergreen=0.15,
        words="gaming|gameplay|game|playthrough",
        adjs="insane|hardest|best|broken|secret|cozy|ranked|funny",
        tags="gaming|gameplay|let's play|video games|gamer",
        templates=[
            "{game} Walkthrough Part {n}",
            "I Played {game} for {n}0 Hours — Here's My Verdict",
            "{n} {adj} Secrets in {game} You Missed",
            "{game} Funny Moments #{n}",
            "Is {game} Worth Playing in {year}?",
            "Ranking Every {thing} in {game}",
            "Hitting Top 500 in {game} ({adj} Ranked Grind)",
        ],
        desc=[
            "Back with more {game}!",
            "Today we're looking at {thing} in {game}.",
            "My full setup and GPU settings are listed below.",
            "Drop a like if you want part {n}.",
        ],
        subs={
            "fps": _s(
                things="aim training|ranked matches|sniper loadout|GPU settings|best loadout"
                "|sensitivity settings",
                many="loadouts|aim drills|ranked tips|clutch plays",
                howto="improve your aim|climb ranked fast|optimise GPU settings for FPS",
                products="gaming mouse|240Hz monitor|gaming headset|mechanical keyboard",
                tags="fps|ranked|aim|valorant|call of duty|gaming setup",
                game="Valorant|Call of Duty|Counter-Strike 2|Apex Legends|Overwatch 2",
            ),
            "rpg": _s(
                things="boss fight|build guide|open world|side quests|lore|hidden ending",
                many="builds|boss fights|side quests|hidden areas",
                howto="beat the final boss|make an overpowered build|find every secret",
                products="open world RPG|collector's edition|expansion pass",
                tags="rpg|open world|boss fight|lore|elden ring|walkthrough",
                game="Elden Ring|Baldur's Gate 3|Skyrim|The Witcher 3|Cyberpunk 2077",
            ),
            "retro": _s(
                things="retro console|speedrun|CRT setup|emulation|game collection|8-bit classic",
                many="retro games|hidden gems|speedruns|console collections",
                howto="set up emulation on a handheld|clean a cartridge|speedrun a classic",
                products="retro handheld|CRT TV|Analogue Pocket|flash cart",
                tags="retro gaming|speedrun|nintendo|emulation|classic games",
                game="Super Mario 64|Zelda: Ocarina of Time|Sonic 2|Metroid|Pokemon Red",
            ),
            "cozy": _s(
                things="cozy gaming setup|farm layout|indie game|relaxing gameplay|island design",
                many="cozy games|indie games|farm layouts|relaxing games",
                howto="design a cozy farm|build the perfect island|find hidden indie gems",
                products="Steam Deck|Nintendo Switch 2|cozy desk setup",
                tags="cozy games|indie games|stardew valley|relaxing|animal crossing",
                game="Stardew Valley|Animal Crossing|Hollow Knight|Minecraft|Terraria",
            ),
        },
    ),
    "fitness": dict(
        weight=1.1,
        cats={"Sports": 0.4, "Howto & Style": 0.35, "People & Blogs": 0.25},
        shorts=0.35,
        minutes=14,
        half_life=5.0,
        evergreen=0.4,
        words="workout|fitness|training|gym",
        adjs="full body|intense|beginner|quick|effective|no-equipment|best|brutal",
        tags="fitness|workout|exercise|health|training",
        templates=[
            "I Tried {thing} Every Day for {days} Days",
            "{minutes} Minute {adj} {thing} (Follow Along)",
            "The Only {thing} Program You Need",
            "What I Eat to Build Muscle: High Protein Meal Prep",
            "{n} {thing} Mistakes Killing Your Gains",
        ],
        desc=[
            "Follow along with this {minutes} minute session.",
            "Protein, meal prep and training split are all in the description.",
            "Whether you are a beginner or advanced, this {thing} plan scales.",
            "Always warm up first and listen to your body.",
        ],
        subs={
            "strength": _s(
                things="progressive overload|deadlift form|push pull legs|bench press|squat"
                "|muscle gain|protein intake|meal prep for muscle gain",
                many="strength programs|compound lifts|gym splits|high protein meals",
                howto="build muscle fast|fix your squat form|increase your bench press",
                products="adjustable dumbbells|lifting belt|whey protein|power rack",
                tags="strength training|gym|bodybuilding|muscle|protein|meal prep",
            ),
            "running": _s(
                things="marathon training|5K plan|zone 2 running|running form|half marathon",
                many="running drills|training plans|running shoes|race tips",
                howto="run your first 5K|train for a marathon|run faster without injury",
                products="carbon plated running shoes|GPS running watch|running vest",
                tags="running|marathon|cardio|5k|endurance|training",
            ),
            "yoga": _s(
                things="morning yoga|mobility routine|stretching|hip openers|pilates"
                "|self care routine",
                many="yoga flows|stretches|mobility drills|pilates workouts",
                howto="touch your toes|fix tight hips|start a morning routine",
                products="yoga mat|foam roller|resistance bands|massage gun",
                tags="yoga|stretching|mobility|pilates|self care|morning routine",
            ),
            "home": _s(
                things="home workout|HIIT|calisthenics|no equipment workout|fat loss|abs workout",
                many="home workouts|HIIT sessions|bodyweight exercises|ab routines",
                howto="work out at home with no equipment|do your first pull up|lose fat at home",
                products="pull up bar|kettlebell|smart rower|walking pad",
                tags="home workout|hiit|calisthenics|fat loss|abs|no equipment",
            ),
        },
    ),
    "music": dict(
        weight=1.2,
        cats={"Music": 0.85, "Entertainment": 0.1, "Education": 0.05},
        shorts=0.25,
        minutes=5,
        half_life=4.0,
        evergreen=0.35,
        words="music|cover|guitar|live music",
        adjs="beautiful|easy|epic|chill|emotional|live|acoustic|best",
        tags="music|musician|song|cover|live music",
        templates=[
            "{thing} (Live Session)",
            "Learn {thing} in {minutes} Minutes",
            "{adj} {thing} | Acoustic Cover",
            "How I Made This Beat From Scratch",
            "{n} {many} Every Musician Should Know",
            "Reacting to {adj} Film Soundtracks",
        ],
        desc=[
            "Recorded live in one take.",
            "Tabs, chords and sheet music are linked below.",
            "Stream the full track on all platforms.",
            "This {thing} has been stuck in my head for weeks.",
        ],
        subs={
            "guitar": _s(
                things="fingerstyle guitar|blues solo|barre chords|guitar riff|pentatonic scale"
                "|open tuning",
                many="guitar riffs|chord progressions|easy songs|guitar lessons",
                howto="play barre chords|learn fingerstyle guitar|improvise a blues solo",
                products="acoustic guitar|guitar amp|overdrive pedal|budget electric guitar",
                tags="guitar|guitar lesson|fingerstyle|chords|guitar cover",
            ),
            "production": _s(
                things="lo-fi beat|808 pattern|mixing vocals|synth patch|sample flip|film score",
                many="beats|mixing tricks|synth sounds|plugins",
                howto="make a lo-fi beat|mix vocals at home|write a film score",
                products="MIDI keyboard|studio monitors|audio interface|vocal mic",
                tags="music production|beat making|fl studio|mixing|producer|soundtrack",
            ),
            "covers": _s(
                things="acoustic cover|live session|a cappella|90s classic|pop ballad|duet",
                many="covers|live performances|mashups|love songs",
                howto="sing with more power|harmonise by ear|record a cover at home",
                products="loop pedal|condenser microphone|in-ear monitors",
                tags="cover|live session|singing|acoustic|vocals",
            ),
            "piano": _s(
                things="piano ballad|jazz piano|sight reading|movie soundtrack on piano"
                "|classical piece|chord voicings",
                many="piano pieces|jazz standards|soundtracks|exercises",
                howto="learn piano as an adult|read sheet music fast|play jazz chords",
                products="digital piano|weighted keyboard|piano app",
                tags="piano|piano cover|jazz|classical music|soundtrack|sheet music",
            ),
        },
    ),
    "science": dict(
        weight=0.9,
        cats={"Science & Technology": 0.55, "Education": 0.4, "Entertainment": 0.05},
        shorts=0.15,
        minutes=15,
        half_life=7.0,
        evergreen=0.55,
        words="science|universe|nature|research",
        adjs="mind-blowing|strange|surprising|weird|beautiful|terrifying|best",
        tags="science|explained|documentary|curiosity|experiment",
        templates=[
            "Why {thing} Is Weirder Than You Think",
            "{thing}, Explained",
            "The {adj} Truth About {thing}",
            "What Happens If {what}?",
            "We Recreated {thing} in the Lab",
        ],
        desc=[
            "Sources and further reading are linked below.",
            "Scientists still argue about {thing}; here is what we know.",
            "Filmed with the help of researchers who work on {thing}.",
            "A short experiment that explains {thing}.",
        ],
        subs={
            "space": _s(
                things="black holes|the James Webb telescope|Mars colonies|dark matter"
                "|neutron stars|exoplanets",
                many="space discoveries|planets|galaxies|telescope images",
                howto="see Saturn with a cheap telescope|photograph the Milky Way",
                products="beginner telescope|star tracker|astro camera",
                tags="space|astronomy|nasa|universe|black hole|physics",
                what="you fell into a black hole|the Sun disappeared|the Moon vanished",
            ),
            "physics": _s(
                things="quantum entanglement|relativity|entropy|superconductors|the speed of light"
                "|physics of time",
                many="physics paradoxes|thought experiments|quantum ideas",
                howto="understand relativity|think about entropy|build a cloud chamber",
                products="physics textbook|laser kit|cloud chamber kit",
                tags="physics|quantum|relativity|explained|education",
                what="light slowed down|gravity switched off|you travelled at light speed",
            ),
            "biology": _s(
                things="the human microbiome|CRISPR|evolution|sleep science|deep sea creatures"
                "|the immune system",
                many="strange animals|evolution mysteries|cells|body facts",
                howto="extract DNA at home|grow a microbe culture",
                products="home microscope|DNA kit|sleep tracker",
                tags="biology|evolution|nature|health science|animals",
                what="you stopped sleeping|bacteria disappeared|humans kept evolving",
            ),
            "chemistry": _s(
                things="chemical reactions|elephant toothpaste|crystal growing|batteries"
                "|liquid nitrogen|experiment",
                many="experiments|reactions|elements|lab tricks",
                howto="grow giant crystals|make a lemon battery|do a safe home experiment",
                products="chemistry set|lab goggles|crystal kit",
                tags="chemistry|experiment|reaction|lab|science experiment",
                what="you mixed these two chemicals|you froze a battery|water stopped boiling",
            ),
        },
    ),
    "tech": dict(
        weight=1.2,
        cats={
            "Science & Technology": 0.8,
            "People & Blogs": 0.1,
            "Gaming": 0.05,
            "Entertainment": 0.05,
        },
        shorts=0.2,
        minutes=13,
        half_life=3.5,
        evergreen=0.15,
        words="tech|gadget|device|review",
        adjs="best|cheap|premium|budget|flagship|honest|underrated|new",
        tags="tech|review|unboxing|gadgets|technology",
        templates=[
            "{product} Review: {months} Months Later",
            "Unboxing the {product}",
            "{product} vs {product2} — Don't Buy the Wrong One",
            "My {year} Desk Setup Tour",
            "The {adj} {product} You Can Buy Right Now",
            "Don't Buy a {product} Until You Watch This",
        ],
        desc=[
            "I've been using the {product} as my daily driver.",
            "Specs, prices and links are below; nothing here is sponsored.",
            "Benchmarks, battery life and the things reviews leave out.",
            "Is the {product} worth it in {year}? Let's find out.",
        ],
        subs={
            "phones": _s(
                things="camera test|battery life|phone camera|foldable phones|fast charging",
                many="flagship phones|budget phones|phone cases|camera tests",
                howto="take better photos with your phone|extend your battery life",
                products="iPhone 17 Pro|Galaxy S26 Ultra|Pixel 10|foldable phone|budget phone",
                tags="smartphone|iphone|android|camera test|phone review",
            ),
            "pcs": _s(
                things="PC build|GPU|gaming setup|desk setup|laptop battery|CPU benchmarks",
                many="PC builds|GPUs|laptops|desk setups|monitors",
                howto="build a gaming PC|undervolt your GPU|choose a laptop for coding",
                products="RTX 5080|MacBook Pro|gaming laptop|ultrawide monitor|mini PC",
                tags="pc build|gpu|laptop|setup|gaming pc|benchmark",
            ),
            "audio": _s(
                things="noise cancelling|spatial audio|hi-fi setup|earbuds|bluetooth codecs",
                many="headphones|earbuds|speakers|DACs",
                howto="pick the right headphones|set up a hi-fi system on a budget",
                products="AirPods Pro|Sony XM6|budget IEMs|bookshelf speakers",
                tags="headphones|audio|earbuds|hi-fi|speakers",
            ),
            "smarthome": _s(
                things="smart home|home automation|robot vacuum|smart lighting|home security"
                "|AI assistant",
                many="smart home gadgets|automations|security cameras|smart plugs",
                howto="automate your home|set up Home Assistant|secure your smart home",
                products="robot vacuum|video doorbell|smart thermostat|smart speaker",
                tags="smart home|home automation|ai|gadgets|home assistant",
            ),
        },
    ),
    "comedy": dict(
        weight=1.3,
        cats={"Entertainment": 0.6, "People & Blogs": 0.3, "Film & Animation": 0.1},
        shorts=0.45,
        minutes=8,
        half_life=2.5,
        evergreen=0.15,
        words="funny|comedy|sketch|hilarious",
        adjs="funny|awkward|chaotic|unhinged|relatable|hilarious|best|cursed",
        tags="comedy|funny|skit|humor|lol",
        templates=[
            "When {thing} Goes Wrong",
            "{adj} {many} Compilation #{n}",
            "If {thing} Was Honest",
            "POV: {thing}",
            "Try Not to Laugh: {adj} {many} Edition",
            "We Tried {thing} and Instantly Regretted It",
        ],
        desc=[
            "New sketch every Friday.",
            "Tag a friend who does this.",
            "Written and filmed in one weekend with zero budget.",
            "Based on a true story, unfortunately.",
        ],
        subs={
            "sketches": _s(
                things="office meetings|group chats|first dates|family dinners|job interviews"
                "|roommates",
                many="sketches|office skits|relatable moments|parody ads",
                howto="survive a group project|act normal at a family dinner",
                products="parody commercial|fake infomercial",
                tags="sketch comedy|skit|relatable|parody|office humor",
            ),
            "standup": _s(
                things="stand-up set|crowd work|open mic|comedy special|dating stories",
                many="crowd work moments|stand-up clips|hecklers|open mics",
                howto="write your first joke|handle a heckler",
                products="comedy special|comedy tour",
                tags="stand up|standup comedy|crowd work|comedian|jokes",
            ),
            "pranks": _s(
                things="prank on my roommate|hidden camera|fake delivery|funny cats|funny moments",
                many="pranks|fails|funny moments|funny cats videos",
                howto="pull the perfect prank|scare your friends",
                products="prank kit|whoopee cushion",
                tags="prank|fails|funny moments|funny cats|try not to laugh",
            ),
            "commentary": _s(
                things="internet drama|cringe TikToks|reality TV|bad movie trailers|parody"
                "|influencer apologies",
                many="reaction videos|cringe compilations|worst ads|internet trends",
                howto="review the worst reality show|rank internet trends",
                products="reality show|viral trend",
                tags="commentary|reaction|internet culture|cringe|parody",
            ),
        },
    ),
    "news": dict(
        weight=0.8,
        cats={"News & Politics": 0.85, "People & Blogs": 0.1, "Entertainment": 0.05},
        shorts=0.15,
        minutes=9,
        half_life=1.2,
        evergreen=0.03,
        words="news|update|report|analysis",
        adjs="latest|major|surprising|breaking|key|full|live|global",
        tags="news|breaking news|world news|analysis|today",
        templates=[
            "{thing}: What We Know So Far",
            "Breaking: {thing} Explained",
            "{thing} — {adj} Analysis",
            "Why {thing} Matters for You",
            "Live Updates: {thing}",
            "The Week in Review: {thing} and More",
        ],
        desc=[
            "Our reporters break down {thing}.",
            "This story is developing; we will update as we learn more.",
            "Correspondents and analysts explain what happens next.",
            "Watch our full coverage of {thing}.",
        ],
        subs={
            "world": _s(
                things="the peace summit|the border crisis|the earthquake response|the UN vote"
                "|the trade agreement",
                many="world headlines|global stories|diplomatic talks",
                howto="understand the conflict in five minutes",
                products="special report|documentary",
                tags="world news|international|diplomacy|global|breaking news",
            ),
            "politics": _s(
                things="the midterm elections|the budget vote|the Supreme Court ruling"
                "|the new tax bill|the presidential debate",
                many="election polls|policy fights|debate moments",
                howto="read election polls|follow the budget fight",
                products="debate analysis|election night special",
                tags="politics|election|congress|policy|debate",
            ),
            "economy": _s(
                things="inflation|interest rates|the stock market|the jobs report|a recession"
                "|housing prices",
                many="economic indicators|market moves|rate decisions",
                howto="understand inflation|read the jobs report",
                products="market outlook|earnings report",
                tags="economy|inflation|stock market|interest rates|business news",
            ),
            "climate": _s(
                things="climate change|the heatwave|wildfire season|the climate summit"
                "|record storms|renewable energy",
                many="climate stories|extreme weather events|energy policies",
                howto="prepare for a heatwave|understand climate targets",
                products="climate report|weather special",
                tags="climate|climate change|weather|environment|energy",
            ),
        },
    ),
    "diy": dict(
        weight=1.0,
        cats={
            "Howto & Style": 0.8,
            "People & Blogs": 0.1,
            "Entertainment": 0.05,
            "Education": 0.05,
        },
        shorts=0.3,
        minutes=15,
        half_life=6.0,
        evergreen=0.5,
        words="DIY|home|project|build",
        adjs="easy|cheap|budget|weekend|satisfying|beginner|best|clever",
        tags="diy|home improvement|how to|project|home",
        templates=[
            "{adj} {thing} for Under ${n}0",
            "I Built a {thing} in One Weekend",
            "{n} {many} That Changed My Home",
            "Before and After: {thing}",
            "{thing} — Mistakes to Avoid",
        ],
        desc=[
            "Tools and materials I used are listed below.",
            "This {thing} took a weekend and about ${n}0 in materials.",
            "Always wear eye protection when you {howto}.",
            "Here is how to {howto} without hiring a pro.",
        ],
        subs={
            "woodworking": _s(
                things="dining table|floating shelves|cutting board|workbench|DIY dog bed|cat tree",
                many="woodworking projects|joinery techniques|shop hacks|scrap wood projects",
                howto="build a workbench|cut perfect dovetails|finish hardwood",
                products="table saw|track saw|router|cordless drill",
                tags="woodworking|woodwork|furniture|joinery|maker",
            ),
            "renovation": _s(
                things="bathroom renovation|kitchen makeover|tile job|drywall repair|smart home"
                "|flooring",
                many="renovation tips|home upgrades|repairs|rental hacks",
                howto="tile a bathroom|patch drywall|install vinyl flooring",
                products="tile cutter|oscillating tool|smart thermostat|paint sprayer",
                tags="renovation|home improvement|makeover|tiling|smart home",
            ),
            "gardening": _s(
                things="raised garden beds|vegetable garden|composting|tomato plants|houseplants",
                many="garden ideas|vegetables to grow|houseplants|garden hacks",
                howto="start a vegetable garden|compost at home|propagate houseplants",
                products="raised bed kit|grow light|compost bin|garden hose reel",
                tags="gardening|garden|plants|vegetable garden|houseplants",
            ),
            "organizing": _s(
                things="deep cleaning|closet organization|decluttering|cleaning routine"
                "|small kitchen",
                many="cleaning hacks|organizing ideas|storage solutions|cleaning products",
                howto="declutter your home|organise a small kitchen|deep clean a bathroom",
                products="steam cleaner|cordless vacuum|label maker|storage bins",
                tags="cleaning|organization|declutter|cleaning motivation|home hacks",
            ),
        },
    ),
    "pets": dict(
        weight=1.0,
        cats={"Pets & Animals": 0.75, "People & Blogs": 0.15, "Entertainment": 0.1},
        shorts=0.5,
        minutes=8,
        half_life=3.5,
        evergreen=0.35,
        words="pets|animals|pet care|cute",
        adjs="cute|funny|smart|rescue|tiny|best|happy|clever",
        tags="pets|animals|cute|pet care|adorable",
        templates=[
            "{n} Things Every New {thing} Owner Should Know",
            "My {thing} Reacts to {what}",
            "A Day in the Life of a {thing}",
            "How to {howto} (Vet Approved)",
            "{adj} {many} Compilation",
        ],
        desc=[
            "Meet the newest member of our family.",
            "Ask your vet before changing your pet's diet.",
            "Our {thing} has been practising this for weeks.",
            "Adopt, don't shop. Rescue links below.",
        ],
        subs={
            "dogs": _s(
                things="golden retriever|puppy|rescue dog|dog training|husky|DIY dog bed",
                many="dog tricks|puppy tips|dog breeds|dog toys",
                howto="potty train a puppy|teach your dog to heel|stop leash pulling",
                products="dog harness|automatic ball launcher|dog camera|raw dog food",
                tags="dog|puppy|dog training|golden retriever|rescue dog",
                what="a new puppy|the vacuum|snow for the first time",
            ),
            "cats": _s(
                things="cat|kitten|cat tree|funny cats|indoor cat|cat behaviour",
                many="cat toys|cat behaviours|kitten tips|funny cats clips",
                howto="introduce two cats|stop a cat scratching furniture|trim cat nails",
                products="cat tree|automatic litter box|cat fountain|cat camera",
                tags="cat|cats|kitten|funny cats|cat care",
                what="a cucumber|a laser pointer|a new kitten",
            ),
            "aquarium": _s(
                things="planted aquarium|betta fish|aquascape|reef tank|shrimp tank",
                many="aquascapes|fish species|aquarium plants|tank setups",
                howto="cycle a fish tank|set up a planted tank|care for a betta",
                products="aquarium filter|CO2 kit|nano tank|aquarium light",
                tags="aquarium|fish tank|aquascape|betta|fishkeeping",
                what="feeding time|a new tank mate|a water change",
            ),
            "small_pets": _s(
                things="parrot|rabbit|hamster|guinea pig|bearded dragon|chickens",
                many="small pets|bird tricks|hamster cages|exotic pets",
                howto="bond with a rabbit|teach a parrot to talk|build a hamster cage",
                products="bird cage|rabbit hutch|hamster wheel|terrarium",
                tags="parrot|rabbit|hamster|exotic pets|small animals",
                what="a mirror|a new toy|a bath",
            ),
        },
    ),
    "finance": dict(
        weight=0.8,
        cats={"Education": 0.45, "People & Blogs": 0.3, "News & Politics": 0.25},
        shorts=0.25,
        minutes=14,
        half_life=4.0,
        evergreen=0.35,
        words="money|finance|wealth|investing",
        adjs="simple|smart|passive|realistic|best|honest|proven|beginner",
        tags="personal finance|money|investing|finance tips|wealth",
        templates=[
            "How I Saved ${n}0,000 in {months} Months",
            "{thing} for Beginners ({year})",
            "Why {thing} Is a Trap",
            "I Tried {thing} for {days} Days — Here's How Much I Made",
            "The {adj} Guide to {thing}",
        ],
        desc=[
            "This is not financial advice; do your own research.",
            "Here is exactly how I think about {thing}.",
            "The spreadsheet from this video is linked below.",
            "With inflation and interest rates where they are, {thing} matters more than ever.",
        ],
        subs={
            "investing": _s(
                things="index funds|the stock market|dividend investing|ETFs|compound interest"
                "|retirement accounts",
                many="index funds|dividend stocks|ETFs|investing mistakes",
                howto="start investing with $100|build a dividend portfolio|pick an index fund",
                products="brokerage app|robo-advisor|Roth IRA",
                tags="investing|stock market|index funds|etf|dividends",
            ),
            "budgeting": _s(
                things="budgeting|saving money|emergency fund|paying off debt|frugal living"
                "|budget travel",
                many="budgeting tips|money habits|frugal hacks|saving challenges",
                howto="make a budget that works|pay off debt fast|save money on groceries",
                products="budgeting app|high-yield savings account|cash envelope wallet",
                tags="budgeting|save money|debt free|frugal|money tips",
            ),
            "crypto": _s(
                things="bitcoin|crypto|ethereum|stablecoins|the crypto market|DeFi",
                many="altcoins|crypto wallets|crypto scams|crypto trends",
                howto="store crypto safely|spot a crypto scam|read a crypto chart",
                products="hardware wallet|crypto exchange|crypto card",
                tags="crypto|bitcoin|ethereum|blockchain|web3",
            ),
            "side_hustles": _s(
                things="side hustles|passive income|freelancing|dropshipping|selling on Etsy"
                "|AI side hustles",
                many="side hustles|passive income ideas|online businesses|freelance gigs",
                howto="start a side hustle|make money online|quit your 9 to 5",
                products="print on demand store|online course|freelance platform",
                tags="side hustle|passive income|make money online|entrepreneur|business",
            ),
        },
    ),
    "beauty": dict(
        weight=1.0,
        cats={"Howto & Style": 0.8, "People & Blogs": 0.2},
        shorts=0.45,
        minutes=12,
        half_life=4.0,
        evergreen=0.3,
        words="beauty|makeup|skincare|glow",
        adjs="glowy|natural|affordable|drugstore|everyday|flawless|best|viral",
        tags="beauty|makeup|skincare|grwm|beauty tips",
        templates=[
            "Get Ready With Me: {adj} {thing}",
            "I Tried {thing} for {days} Days",
            "{adj} {many} Under $20",
            "Testing Viral {many} — Worth the Hype?",
            "My {adj} Morning Routine ({year})",
        ],
        desc=[
            "Every product I used is listed below.",
            "Skin type: combination. Your results may vary.",
            "Some links are affiliate links; all opinions are my own.",
            "A {adj} look you can do in {minutes} minutes.",
        ],
        subs={
            "makeup": _s(
                things="everyday makeup|no-makeup makeup look|winged eyeliner|contour|foundation",
                many="makeup looks|drugstore dupes|foundations|eyeshadow palettes",
                howto="do winged eyeliner|contour for beginners|make makeup last all day",
                products="setting spray|concealer|eyeshadow palette|lip oil",
                tags="makeup|makeup tutorial|grwm|drugstore makeup|eyeliner",
            ),
            "skincare": _s(
                things="skincare routine|retinol|sunscreen|acne|glass skin|self care routine",
                many="skincare products|serums|sunscreens|skincare mistakes",
                howto="build a skincare routine|clear acne|use retinol safely",
                products="vitamin C serum|retinol cream|mineral sunscreen|LED face mask",
                tags="skincare|skin care routine|acne|self care|morning routine",
            ),
            "hair": _s(
                things="curly hair routine|heatless curls|hair growth|haircut|blowout",
                many="hairstyles|hair products|hair tools|braids",
                howto="get heatless curls|grow your hair faster|cut your own hair",
                products="hair dryer brush|curling iron|hair oil|silk pillowcase",
                tags="hair|hairstyle|curly hair|hair care|haircut",
            ),
            "nails": _s(
                things="gel nails|nail art|press-on nails|manicure|nail polish",
                many="nail designs|nail trends|press-ons|nail art ideas",
                howto="do gel nails at home|make nails last longer|paint nail art",
                products="UV nail lamp|gel polish kit|press-on nail set",
                tags="nails|nail art|manicure|gel nails|nail design",
            ),
        },
    ),
    "sports": dict(
        weight=1.1,
        cats={"Sports": 0.85, "Entertainment": 0.1, "News & Politics": 0.05},
        shorts=0.3,
        minutes=10,
        half_life=1.8,
        evergreen=0.1,
        words="sports|match|highlights|game",
        adjs="incredible|best|crazy|historic|clutch|wild|full|extended",
        tags="sports|highlights|match|fans",
        templates=[
            "{team} vs {team2} | Extended Highlights",
            "{n} Times {thing} Shocked the World",
            "{adj} Moments of the Season",
            "Breaking Down {thing}",
            "Why {team} Can Win It All This Year",
        ],
        desc=[
            "All the highlights from {team} vs {team2}.",
            "Our analysts break down {thing}.",
            "Training, tactics and everything in between.",
            "Subscribe for highlights after every match.",
        ],
        subs={
            "football": _s(
                things="the title race|a last minute winner|the transfer window|tactical analysis"
                "|Champions League night",
                many="goals of the season|transfer rumours|free kicks|tactics",
                howto="curl a free kick|read a formation|train like a pro footballer",
                products="football boots|match ball|training drills",
                tags="football|soccer|premier league|goals|champions league",
                team="Arsenal|Real Madrid|Liverpool|Barcelona|Bayern Munich|Man City|Inter Milan",
            ),
            "basketball": _s(
                things="a buzzer beater|the playoffs|the trade deadline|a triple double"
                "|the MVP race",
                many="dunks|crossovers|playoff moments|top plays",
                howto="improve your jump shot|handle the ball better",
                products="basketball shoes|shooting machine",
                tags="basketball|nba|dunk|playoffs|highlights",
                team="Lakers|Celtics|Warriors|Knicks|Nuggets|Bucks|Thunder",
            ),
            "motorsport": _s(
                things="the championship fight|a race strategy|pit stops|qualifying|a crash",
                many="overtakes|race moments|onboard laps|team radio clips",
                howto="understand F1 tyre strategy|read a race",
                products="sim racing wheel|F1 game",
                tags="f1|formula 1|motorsport|racing|grand prix",
                team="Ferrari|McLaren|Red Bull|Mercedes|Williams|Aston Martin",
            ),
            "combat": _s(
                things="the title fight|a knockout|fight week|the weigh-in|training camp",
                many="knockouts|submissions|fight moments|training sessions",
                howto="throw a proper jab|train like a fighter",
                products="boxing gloves|heavy bag",
                tags="ufc|boxing|mma|knockout|fight",
                team="the champion|the challenger|the undefeated prospect|the veteran",
            ),
        },
    ),
    "education": dict(
        weight=0.8,
        cats={"Education": 0.85, "Science & Technology": 0.1, "People & Blogs": 0.05},
        shorts=0.15,
        minutes=18,
        half_life=8.0,
        evergreen=0.65,
        words="learning|lesson|study|tutorial",
        adjs="complete|simple|visual|beginner|fast|clear|best|full",
        tags="education|learning|tutorial|study|explained",
        templates=[
            "{thing} in {minutes} Minutes",
            "Learn {thing} — Full Course for Beginners",
            "The {adj} Way to Learn {thing}",
            "{thing} Explained Simply",
            "How I Would Learn {thing} (If I Could Start Over)",
        ],
        desc=[
            "Practice problems and notes are linked below.",
            "This lesson covers {thing} from scratch.",
            "Pause the video and try it yourself first.",
            "Part {n} of our free course.",
        ],
        subs={
            "math": _s(
                things="calculus|linear algebra|statistics|probability|algebra|physics math",
                many="math tricks|proofs|exam problems|formulas",
                howto="understand derivatives|solve equations faster|learn statistics",
                products="graphing calculator|math course|study planner",
                tags="math|calculus|statistics|algebra|physics",
            ),
            "history": _s(
                things="the Roman Empire|World War II|ancient Egypt|the Cold War"
                "|the Industrial Revolution",
                many="historical events|empires|battles|history mysteries",
                howto="remember historical dates|study history effectively",
                products="history podcast|documentary series",
                tags="history|ancient history|documentary|world history|empire",
            ),
            "languages": _s(
                things="learning Spanish|Japanese grammar|English pronunciation|French verbs"
                "|language immersion",
                many="language tips|phrases|grammar rules|study methods",
                howto="learn a language fast|become fluent with immersion|memorise vocabulary",
                products="language app|flashcard app|online tutor",
                tags="language learning|spanish|japanese|english|polyglot",
            ),
            "coding": _s(
                things="Python|coding|machine learning|JavaScript|data structures|AI",
                many="coding projects|programming languages|algorithms|interview questions",
                howto="learn to code|build your first app|pass a coding interview",
                products="coding bootcamp|laptop for coding|online course",
                tags="coding|programming|python|ai|computer science",
            ),
        },
    ),
    "movies": dict(
        weight=1.0,
        cats={"Film & Animation": 0.6, "Entertainment": 0.4},
        shorts=0.25,
        minutes=16,
        half_life=3.0,
        evergreen=0.25,
        words="film|movie|cinema|film analysis",
        adjs="underrated|hidden|best|worst|terrifying|perfect|genius|strange",
        tags="movies|film|cinema|movie review",
        templates=[
            "{movie} — {adj} Movie Review",
            "{movie} Ending Explained",
            "{n} Details You Missed in {movie}",
            "Why {movie} Still Works Years Later",
            "{movie} Trailer Breakdown",
            "Ranking Every {thing}",
        ],
        desc=[
            "Spoilers ahead for {movie}.",
            "What did you think of the ending?",
            "Our full {thing} breakdown, with every easter egg we found.",
            "The soundtrack alone makes {movie} worth watching.",
        ],
        subs={
            "reviews": _s(
                things="movie review|box office flop|award season|hidden gem|blockbuster",
                many="movies of the year|hidden gems|sequels|horror movies",
                howto="pick a movie for tonight|spot a good script",
                products="streaming service|home theater projector|4K Blu-ray",
                tags="movie review|review|film review|cinema|box office",
                movie="Dune: Part Three|The Batman Part II|Oppenheimer|Inception|Alien"
                "|Spider-Verse",
            ),
            "trailers": _s(
                things="trailer|teaser|easter eggs|release date|the first footage",
                many="trailers|teasers|upcoming movies|easter eggs",
                howto="read a trailer for clues",
                products="IMAX ticket|trailer reaction",
                tags="trailer|trailer breakdown|easter eggs|upcoming movies|lore",
                movie="Avengers: Doomsday|Toy Story 5|The Mandalorian|Shrek 5|Superman",
            ),
            "filmmaking": _s(
                things="cinematography|practical effects|film score|editing|VFX|soundtrack",
                many="camera moves|editing tricks|film techniques|behind the scenes",
                howto="shoot cinematic video|edit like a pro|light a scene",
                products="cinema camera|gimbal|anamorphic lens|editing software",
                tags="filmmaking|cinematography|behind the scenes|vfx|film score",
                movie="Mad Max: Fury Road|Blade Runner 2049|Interstellar|Jurassic Park",
            ),
            "theories": _s(
                things="fan theories|lore|villain origins|the timeline|parody",
                many="fan theories|plot holes|villains|alternate endings",
                howto="connect every clue|rewatch with fresh eyes",
                products="director's cut|extended edition",
                tags="fan theory|lore|explained|movie theory|parody",
                movie="Star Wars|The Matrix|Harry Potter|Lord of the Rings|Interstellar",
            ),
        },
    ),
}

TOPIC_NAMES = list(TOPICS)

# Hour-of-day weights: user sessions in local time (evening peak) and publishing in UTC.
_SESSION_HOURS = [
    0.9, 0.5, 0.3, 0.2, 0.15, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.1,
    1.4, 1.3, 1.1, 1.1, 1.3, 1.6, 2.0, 2.5, 2.8, 2.8, 2.3, 1.5,
]  # fmt: skip
_PUBLISH_HOURS = [
    0.4, 0.3, 0.2, 0.2, 0.2, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.2,
    1.5, 1.8, 2.0, 2.0, 1.9, 1.7, 1.5, 1.2, 1.0, 0.8, 0.6, 0.5,
]  # fmt: skip
_TIMEZONES = [(-8, 0.15), (-6, 0.1), (-5, 0.25), (0, 0.15), (1, 0.15), (5.5, 0.1), (8, 0.05),
              (10, 0.05)]  # fmt: skip
_RESOLUTIONS = [((1920, 1080), 0.6), ((1280, 720), 0.2), ((3840, 2160), 0.12),
                ((2560, 1440), 0.05), ((854, 480), 0.03)]  # fmt: skip
_LANGUAGES = [("en", 0.88), ("en-US", 0.05), ("en-GB", 0.04), ("es", 0.01), ("de", 0.01),
              ("fr", 0.01)]  # fmt: skip
_CATEGORIES = sorted({c for t in TOPICS.values() for c in t["cats"]})
_ID_ALPHABET = string.ascii_letters + string.digits + "-_"
_SMALL_WORDS = {"a", "an", "and", "as", "at", "by", "for", "in", "of", "on", "or", "the", "to",
                "vs", "with", "from", "is", "it"}  # fmt: skip

_EV = [
    EventType.IMPRESSION,
    EventType.PLAY,
    EventType.WATCH,
    EventType.COMPLETE,
    EventType.LIKE,
    EventType.SHARE,
    EventType.SKIP,
    EventType.DISLIKE,
]
IMP, PLAY, WATCH, COMPLETE, LIKE, SHARE, SKIP, DISLIKE = range(8)
_GENERIC_SHARE = {"news": 0.1, "sports": 0.15, "comedy": 0.2, "movies": 0.2}
_EMOJI = ["🔥", "😱", "✨", "👀", "😂"]
_NUMBERS = [3, 5, 5, 7, 10, 10, 12, 15, 20, 25]


@dataclass
class SampleTruth:
    """What the generator planted; for tests and diagnostics only (none of it is in the log).

    Filled in by ``generate(..., truth=SampleTruth())`` before the first message is yielded.
    Tastes map topic name to weight (weights below 1% are left out).
    """

    topics: list[str] = field(default_factory=list)
    subtopics: dict[str, list[str]] = field(default_factory=dict)
    video_topic: dict[str, str] = field(default_factory=dict)
    video_subtopic: dict[str, str] = field(default_factory=dict)
    video_appeal: dict[str, float] = field(default_factory=dict)
    user_taste: dict[str, dict[str, float]] = field(default_factory=dict)
    user_final_taste: dict[str, dict[str, float]] = field(default_factory=dict)
    user_drifts: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)
    user_joined: dict[str, datetime] = field(default_factory=dict)

    def user_topics(self, user_id: str, min_weight: float = 0.1) -> set[str]:
        """Topics the user was planted to like at any time: initial main topics plus drifts."""
        main = {t for t, w in self.user_taste.get(user_id, {}).items() if w >= min_weight}
        return main | {t for _, t in self.user_drifts.get(user_id, [])}


def _map(f: Callable[[float], float], x: np.ndarray) -> np.ndarray:
    """``f`` (a ``math`` function) over an array, element by element.

    numpy's own exp, log, exp2 and power take SIMD paths chosen by the CPU (AVX-512 ones on
    some machines), which differ from the C library in the last bit; a sample seeded the same
    must come out the same on every machine, so the generator calls the C library instead.
    """
    return np.fromiter(map(f, np.asarray(x, dtype=float).ravel().tolist()), float).reshape(
        np.shape(x)
    )


def _pow07(x: float) -> float:
    return x**0.7


def _weighted(rnd: random.Random, pairs: list[tuple[Any, float]]) -> Any:
    return rnd.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def _token(rnd: random.Random, n: int) -> str:
    return "".join(rnd.choices(_ID_ALPHABET, k=n))


def _title_case(text: str) -> str:
    """Headline case that leaves acronyms, brands and numbers alone (GPU, iPhone, 5K)."""
    words = text.split(" ")
    out = []
    for i, w in enumerate(words):
        if not w or any(c.isupper() for c in w) or not w[0].isalpha():
            out.append(w)
        elif i > 0 and w in _SMALL_WORDS:
            out.append(w)
        else:
            out.append("-".join(p[:1].upper() + p[1:] for p in w.split("-")))
    return " ".join(out)


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


class _Writer:
    """Fills title, description and tag templates from a topic's and subtopic's vocabulary."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self._fields: dict[str, list[str]] = {}
        self._values: dict[str, Any] = {}

    def _names(self, template: str) -> list[str]:
        names = self._fields.get(template)
        if names is None:
            names = [f for _, f, _, _ in string.Formatter().parse(template) if f]
            self._fields[template] = names
        return names

    def begin(self) -> None:
        """Start a new video: slot values are shared by its title and description."""
        self._values: dict[str, Any] = {}

    def _pool(self, topic: str, sub: str, base: str) -> list[str]:
        subs = TOPICS[topic]["subs"]
        vocab = subs[sub]
        key = base + "s" if base + "s" in vocab else base
        if key not in vocab or self.rnd.random() < 0.1:
            # Sometimes a sibling subtopic's words: subtopics blur into each other.
            other = subs[self.rnd.choice(list(subs))]
            if key in other:
                vocab = other
        return vocab.get(key) or vocab["things"]

    def fill(self, template: str, topic: str, sub: str) -> str:
        rnd = self.rnd
        spec = TOPICS[topic]
        values = self._values
        for name in self._names(template):
            if name in values:
                continue
            base = name[:-1] if name[-1] == "2" else name
            if name == "n":
                values[name] = rnd.choice(_NUMBERS)
            elif name == "minutes":
                values[name] = rnd.choice([5, 10, 15, 20, 30])
            elif name == "months":
                values[name] = rnd.choice([3, 6, 6, 12])
            elif name == "days":
                values[name] = rnd.choice([7, 14, 30, 30])
            elif name == "year":
                values[name] = 2026 if rnd.random() < 0.9 else 2025
            elif name in ("adj", "word"):
                values[name] = rnd.choice(spec[name + "s"].split("|"))
            else:
                pool = self._pool(topic, sub, base)
                value = rnd.choice(pool)
                if name != base:
                    for _ in range(10):
                        if value != values.get(base):
                            break
                        value = rnd.choice(pool)
                values[name] = value
        return template.format_map(values)

    def title(self, topic: str, sub: str, short: bool) -> str:
        rnd = self.rnd
        self.begin()
        if short and rnd.random() < 0.6:
            text = self.fill(rnd.choice(SHORTS_TEMPLATES), topic, sub)
            text = _title_case(text) if rnd.random() < 0.3 else _sentence_case(text)
        else:
            generic = _GENERIC_SHARE.get(topic, 0.4)
            pool = GENERIC_TEMPLATES if rnd.random() < generic else TOPICS[topic]["templates"]
            text = _title_case(self.fill(rnd.choice(pool), topic, sub))
            if rnd.random() < 0.03:
                text = text.upper()
        if rnd.random() < 0.05:
            text += " " + rnd.choice(_EMOJI)
        return text

    def description(self, topic: str, sub: str) -> str:
        rnd = self.rnd
        own = TOPICS[topic]["desc"]
        picks = [rnd.choice(own)]
        if rnd.random() < 0.4:
            picks.append(rnd.choice(own))
        if rnd.random() < 0.5:
            picks.append(rnd.choice([*GENERIC_DESC, "Subscribe for more {word} videos."]))
        seen: list[str] = []
        for p in picks[:3]:
            s = _sentence_case(self.fill(p, topic, sub))
            if s not in seen:
                seen.append(s)
        return " ".join(seen)

    def tags(self, topic: str, sub: str, short: bool) -> list[str]:
        rnd = self.rnd
        pools = [
            (TOPICS[topic]["subs"][sub]["tags"], 0.5),
            (TOPICS[topic]["tags"].split("|"), 0.3),
            (GENERIC_TAGS, 0.2),
        ]
        k = rnd.randint(3, 8)
        tags: list[str] = ["shorts"] if short else []
        for _ in range(40):
            if len(tags) >= k:
                break
            tag = rnd.choice(_weighted(rnd, pools))
            if tag not in tags:
                tags.append(tag)
        return tags


@dataclass
class _Catalogue:
    ids: list[str]
    topic: np.ndarray  # topic index per video
    sub: np.ndarray  # global subtopic index per video
    creator: np.ndarray
    pub: np.ndarray  # epoch seconds (whole)
    appeal: np.ndarray
    half_life: np.ndarray  # seconds
    floor: np.ndarray
    duration: np.ndarray
    short: np.ndarray
    creator_ids: list[str]
    texts: list[tuple[str, str, list[str], str]]  # title, description, tags, category
    meta: list[tuple[int, int, str, str | None]]  # width, height, language, thumbnail


_SUBS: list[tuple[int, str]] = [
    (ti, s) for ti, t in enumerate(TOPIC_NAMES) for s in TOPICS[t]["subs"]
]
_TOPIC_SUBS: list[np.ndarray] = [
    np.array([i for i, (ti, _) in enumerate(_SUBS) if ti == k]) for k in range(len(TOPIC_NAMES))
]
_TOPIC_WEIGHT = np.array([TOPICS[t]["weight"] for t in TOPIC_NAMES], dtype=float)
_TOPIC_WEIGHT /= _TOPIC_WEIGHT.sum()


def _hour_time(rnd: random.Random, day_start: float, hours: list[float], tz_h: float) -> float:
    """A time on the (local) day starting at ``day_start`` with the given hour-of-day rhythm."""
    hour = rnd.choices(range(24), weights=hours)[0]
    return day_start + (hour + rnd.random()) * 3600.0 - tz_h * 3600.0


def _make_catalogue(
    n: int, t0: float, days: float, rng: np.random.Generator, rnd: random.Random
) -> _Catalogue:
    n_topics = len(TOPIC_NAMES)
    n_cr = max(4, round(n / 9))
    primary = rng.choice(n_topics, size=n_cr, p=_TOPIC_WEIGHT)
    if n_cr >= n_topics:  # every topic has at least one channel
        primary[:n_topics] = rng.permutation(n_topics)
    secondary = np.where(
        rng.random(n_cr) < 0.3, rng.choice(n_topics, size=n_cr, p=_TOPIC_WEIGHT), -1
    )
    secondary[secondary == primary] = -1
    fav_sub = np.array([rng.choice(_TOPIC_SUBS[k]) for k in primary])
    output = 1.0 + rng.pareto(1.2, size=n_cr)  # power-law channel output
    output = np.minimum(output, np.quantile(output, 0.99) if n_cr > 20 else output.max())
    quality = rng.lognormal(0.0, 0.5, size=n_cr)
    shorts_share = np.array([TOPICS[TOPIC_NAMES[k]]["shorts"] for k in primary])
    shorts_channel = rng.random(n_cr) < shorts_share * 0.8
    creator_ids = ["UC" + _token(rnd, 22) for _ in range(n_cr)]

    # Topic supply follows topic popularity; within a topic, channels' output is power-law.
    member_w = np.zeros((n_topics, n_cr))
    member_w[primary, np.arange(n_cr)] = output
    has2 = secondary >= 0
    member_w[secondary[has2], np.flatnonzero(has2)] += 0.2 * output[has2]
    supply = _TOPIC_WEIGHT * (member_w.sum(axis=1) > 0)
    topic = rng.choice(n_topics, size=n, p=supply / supply.sum())
    creator = np.empty(n, dtype=int)
    for k in range(n_topics):
        at = np.flatnonzero(topic == k)
        if len(at):
            creator[at] = rng.choice(n_cr, size=len(at), p=member_w[k] / member_w[k].sum())
    sub = np.empty(n, dtype=int)
    fav = (topic == primary[creator]) & (rng.random(n) < 0.6)
    for i in range(n):
        sub[i] = fav_sub[creator[i]] if fav[i] else rng.choice(_TOPIC_SUBS[topic[i]])

    n_back = round(BACKFILL_SHARE * n)
    backfill = np.zeros(n, dtype=bool)
    backfill[rng.permutation(n)[:n_back]] = True
    pub = np.empty(n)
    for i in range(n):
        for _ in range(10):
            if backfill[i]:
                day_start = t0 - (1 + int(rnd.random() * BACKFILL_DAYS)) * DAY
            else:
                day_start = t0 + int(rnd.random() * days) * DAY
            t = _hour_time(rnd, day_start, _PUBLISH_HOURS, 0.0)
            if (t < t0) == bool(backfill[i]) and t < t0 + days * DAY:
                break
        else:  # a very short stream: clamp into the right window
            t = t0 - 60.0 if backfill[i] else min(max(t, t0 + 1.0), t0 + days * DAY - 1.0)
        pub[i] = float(math.floor(t))

    is_short = np.where(shorts_channel[creator], rng.random(n) < 0.8, rng.random(n) < 0.08)
    appeal = rng.lognormal(0.0, 1.3, size=n) * quality[creator]
    base_hl = np.array([TOPICS[TOPIC_NAMES[k]]["half_life"] for k in topic]) * DAY
    half_life = base_hl * rng.lognormal(0.0, 0.35, size=n)
    evergreen_p = np.array([TOPICS[TOPIC_NAMES[k]]["evergreen"] for k in topic])
    evergreen = rng.random(n) < evergreen_p
    floor = np.where(evergreen, rng.uniform(0.2, 0.4, n), rng.uniform(0.02, 0.08, n))
    minutes = np.array([TOPICS[TOPIC_NAMES[k]]["minutes"] for k in topic], dtype=float)
    long_form = rng.random(n) < 0.06
    dur = _map(math.exp, rng.normal(_map(math.log, minutes * 60.0), 0.55))
    dur *= np.where(long_form, 3.5, 1.0)
    dur = np.clip(np.round(dur), 60, 4 * 3600)
    dur = np.where(is_short, rng.integers(12, 61, size=n), dur).astype(float)

    writer = _Writer(rnd)
    ids: set[str] = set()
    id_list: list[str] = []
    texts = []
    meta = []
    for i in range(n):
        vid = _token(rnd, 11)
        while vid in ids:
            vid = _token(rnd, 11)
        ids.add(vid)
        id_list.append(vid)
        tname = TOPIC_NAMES[topic[i]]
        sname = _SUBS[sub[i]][1]
        cats = list(TOPICS[tname]["cats"].items())
        category = (
            rnd.choice(_CATEGORIES) if rnd.random() < 0.05 else _weighted(rnd, cats)
        )  # fmt: skip
        short = bool(is_short[i])
        texts.append(
            (
                writer.title(tname, sname, short),
                writer.description(tname, sname),
                writer.tags(tname, sname, short),
                category,
            )
        )
        w, h = (1080, 1920) if short else _weighted(rnd, _RESOLUTIONS)
        thumb = (
            f"https://img.vidrec.example/vi/{vid}/hqdefault.jpg" if rnd.random() < 0.85 else None
        )
        meta.append((w, h, _weighted(rnd, _LANGUAGES), thumb))
    return _Catalogue(
        ids=id_list,
        topic=topic,
        sub=sub,
        creator=creator,
        pub=pub,
        appeal=appeal,
        half_life=half_life,
        floor=floor,
        duration=dur,
        short=is_short,
        creator_ids=creator_ids,
        texts=texts,
        meta=meta,
    )


@dataclass
class _User:
    uid: str
    join: float
    leave: float
    tz: float
    rate: float  # sessions per day
    cont: float  # probability that a session goes on after each video
    binge: float  # probability that the next video stays in the same topic
    trend: float  # probability of a pick from global trending
    taste: np.ndarray  # over topics
    subpref: np.ndarray  # over global subtopics, mean 1 within each topic
    watched_list: list[int] = field(default_factory=list)
    affinity: dict[int, float] = field(default_factory=dict)  # creator -> boost
    last_end: float = 0.0
    last_day: int = 0
    drifts: list[tuple[float, int]] = field(default_factory=list)


def _make_users(
    m: int, t0: float, days: float, rng: np.random.Generator, rnd: random.Random
) -> list[_User]:
    n_topics = len(TOPIC_NAMES)
    t_end = t0 + days * DAY
    users = []
    ids: set[str] = set()
    sigma = 1.0
    rates = SESSIONS_PER_DAY * rng.lognormal(-(sigma**2) / 2, sigma, size=m)
    for i in range(m):
        uid = "u-" + _token(rnd, 10)
        while uid in ids:
            uid = "u-" + _token(rnd, 10)
        ids.add(uid)
        join = t0 if rnd.random() < 0.75 else t0 + rnd.random() * 0.9 * days * DAY
        leave = t_end if rnd.random() < 0.88 else join + rnd.random() * (t_end - join)
        k = _weighted(rnd, [(1, 0.35), (2, 0.45), (3, 0.2)])
        main = rng.choice(n_topics, size=k, replace=False, p=_TOPIC_WEIGHT)
        taste = np.zeros(n_topics)
        taste[main] = rng.dirichlet(np.full(k, 1.5))
        eps = rnd.uniform(0.04, 0.15)
        taste = (1 - eps) * taste + eps * rng.dirichlet(np.full(n_topics, 0.3))
        subpref = np.empty(len(_SUBS))
        for subs in _TOPIC_SUBS:
            subpref[subs] = rng.dirichlet(np.full(len(subs), 0.6)) * len(subs)
        users.append(
            _User(
                uid=uid,
                join=join,
                leave=max(leave, join + 3600.0),
                tz=_weighted(rnd, _TIMEZONES),
                rate=float(rates[i]),
                cont=0.93 * rng.beta(7, 2),
                binge=rng.beta(7, 3),
                trend=rng.beta(1.5, 10),
                taste=taste,
                subpref=subpref,
                last_day=int(join // DAY),
            )
        )
    return users


_LN2 = math.log(2.0)


def _group(items: np.ndarray, keys: np.ndarray, n: int) -> list[np.ndarray]:
    """``items`` split by key ``0..n-1``, each group keeping the items' order."""
    by_key = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[by_key], np.arange(n + 1))
    return [items[by_key[bounds[k] : bounds[k + 1]]] for k in range(n)]


class _Simulator:
    """Plays every user session in global time order, so trending reflects what others did."""

    def __init__(
        self,
        cat: _Catalogue,
        t0: float,
        t_end: float,
        rng: np.random.Generator,
        rnd: random.Random,
    ) -> None:
        self.cat = cat
        self.t_end = t_end
        self.rng = rng
        self.rnd = rnd
        n_topics = len(TOPIC_NAMES)
        order = np.lexsort((np.arange(len(cat.pub)), cat.pub))
        self.topic_vids = _group(order, cat.topic[order], n_topics)
        self.topic_pub = [cat.pub[v] for v in self.topic_vids]
        self.creator_vids = _group(order, cat.creator[order], len(cat.creator_ids))
        self.creator_pub = [cat.pub[v] for v in self.creator_vids]
        # Trending = exponentially decayed play counts, stored in units of exp(lam * (t - t_ref)).
        self.lam = _LN2 / TREND_HALF_LIFE_S
        self.t_ref = t0
        back = cat.pub < t0
        self.trend = np.where(back, cat.appeal * self._decay(np.arange(len(cat.pub)), t0), 0.0)
        self._top_key = -1
        self._top = np.zeros(0, dtype=int)
        self.events: list[tuple[float, int, int, int, int, float]] = []
        self.seq = 0
        # mark[v] == stamp <=> the user of the session being played has watched v.
        self.mark = np.zeros(len(cat.pub), dtype=np.int64)
        self.stamp = 0

    # -- building blocks ------------------------------------------------------------------
    def _decay(self, idx: np.ndarray, t: float) -> np.ndarray:
        cat = self.cat
        age = np.maximum(t - cat.pub[idx], 0.0)
        return cat.floor[idx] + (1.0 - cat.floor[idx]) * _map(math.exp2, -age / cat.half_life[idx])

    def _trend_now(self, idx: np.ndarray, t: float) -> np.ndarray:
        return self.trend[idx] * math.exp(-self.lam * (t - self.t_ref))

    def _bump(self, v: int, t: float) -> None:
        f = math.exp(self.lam * (t - self.t_ref))
        if f > 1e150:
            self.trend *= 1.0 / f
            self.t_ref = t
            f = 1.0
        self.trend[v] += f

    def _emit(self, ts: float, u: int, v: int, code: int, watch_s: float = 0.0) -> None:
        self.events.append((ts, self.seq, u, v, code, watch_s))
        self.seq += 1

    def _draw(self, w: np.ndarray) -> int:
        c = np.cumsum(w)
        if len(c) == 0 or c[-1] <= 0:
            return -1
        return min(int(np.searchsorted(c, self.rnd.random() * c[-1], side="right")), len(c) - 1)

    def _available(self, vids: np.ndarray, pubs: np.ndarray, t: float) -> np.ndarray:
        return vids[: int(np.searchsorted(pubs, t - FRESH_GAP_S, side="right"))]

    def _weights(self, u: _User, idx: np.ndarray, t: float, same_sub: int = -1) -> np.ndarray:
        """Choice weights within a pool: appeal x freshness x subtopic taste x social proof."""
        cat = self.cat
        w = cat.appeal[idx] * self._decay(idx, t) * u.subpref[cat.sub[idx]]
        trend = self._trend_now(idx, t)
        hot = np.flatnonzero(trend)
        w[hot] *= _map(_pow07, 1.0 + trend[hot] / 3.0)
        if same_sub >= 0:
            w *= np.where(cat.sub[idx] == same_sub, 4.0, 1.0)
        if u.affinity:
            keys = np.fromiter(u.affinity.keys(), dtype=int, count=len(u.affinity))
            vals = np.fromiter(u.affinity.values(), dtype=float, count=len(u.affinity))
            order = np.argsort(keys)
            keys, vals = keys[order], vals[order]
            cr = cat.creator[idx]
            pos = np.minimum(np.searchsorted(keys, cr), len(keys) - 1)
            w *= np.where(keys[pos] == cr, 1.0 + vals[pos], 1.0)
        w[self.mark[idx] == self.stamp] = 0.0  # never a video this user has watched
        return w

    def _trending(self, u: _User, t: float) -> tuple[np.ndarray, np.ndarray]:
        key = int(t // 3600)
        if key != self._top_key:
            k = min(60, len(self.trend))
            self._top = np.argsort(-self.trend, kind="stable")[:k]
            self._top_key = key
        idx = self._top[self.cat.pub[self._top] <= t - FRESH_GAP_S]
        taste = u.taste / u.taste.max()
        w = self._trend_now(idx, t) * (0.3 + taste[self.cat.topic[idx]])
        w[self.mark[idx] == self.stamp] = 0.0
        return idx, w

    # -- one session ----------------------------------------------------------------------
    def _drift(self, u: _User, t: float) -> None:
        day = int(t // DAY)
        n = day - u.last_day
        if n <= 0:
            return
        u.last_day = day
        if self.rnd.random() < 1.0 - (1.0 - DRIFT_PER_DAY) ** n:
            cand = np.flatnonzero(u.taste < 0.1)
            if len(cand) == 0:
                return
            p = _TOPIC_WEIGHT[cand] / _TOPIC_WEIGHT[cand].sum()
            k = int(self.rng.choice(cand, p=p))
            s = self.rnd.uniform(0.3, 0.6)
            u.taste = (1.0 - s) * u.taste
            u.taste[k] += s
            u.drifts.append((t, k))

    def _pick(self, u: _User, t: float, prev: int, i: int) -> tuple[int, np.ndarray, np.ndarray]:
        rnd = self.rnd
        cat = self.cat
        empty = np.zeros(0, dtype=int)
        k, same_sub = -1, -1
        if rnd.random() < u.trend:
            idx, w = self._trending(u, t)
            j = self._draw(w)
            if j >= 0:
                return int(idx[j]), idx, w
        elif i > 0 and rnd.random() < u.binge:
            if rnd.random() < 0.2:  # same creator, e.g. the next episode
                c = int(cat.creator[prev])
                idx = self._available(self.creator_vids[c], self.creator_pub[c], t)
                w = self._weights(u, idx, t)
                j = self._draw(w)
                if j >= 0:
                    return int(idx[j]), idx, w
            k = int(cat.topic[prev])
            if rnd.random() < 0.55:
                same_sub = int(cat.sub[prev])
        for _ in range(4):
            if k < 0:
                k = self._draw(u.taste)
            idx = self._available(self.topic_vids[k], self.topic_pub[k], t)
            w = self._weights(u, idx, t, same_sub)
            j = self._draw(w)
            if j >= 0:
                return int(idx[j]), idx, w
            k, same_sub = -1, -1
        return -1, empty, np.zeros(0)

    def _slate(
        self, u: _User, v: int, t: float, pool: np.ndarray, w: np.ndarray, size: int
    ) -> list[int]:
        """The videos shown beside the chosen one: plausible alternatives, sometimes trending."""
        rnd = self.rnd
        ok = (w > 0) & (pool != v)
        cand, wc = pool[ok], w[ok]
        m = min(size - 1, len(cand))
        others: list[int] = []
        if m > 0:  # weighted sampling without replacement (Efraimidis-Spirakis keys)
            keys = _map(math.log, self.rng.random(len(cand))) / wc
            top = np.argpartition(-keys, m - 1)[:m] if m < len(cand) else np.arange(len(cand))
            others = [int(x) for x in cand[top[np.argsort(-keys[top])]]]
        if size >= 4 and rnd.random() < 0.5:
            tidx, tw = self._trending(u, t)
            j = self._draw(tw)
            if j >= 0 and int(tidx[j]) != v and int(tidx[j]) not in others:
                if len(others) >= size - 1 and others:
                    others[-1] = int(tidx[j])
                else:
                    others.append(int(tidx[j]))
        others.insert(rnd.randint(0, len(others)), v)
        return others

    def _watch(
        self, ui: int, u: _User, v: int, t: float, pool: np.ndarray, w: np.ndarray, browse: bool
    ) -> float:
        """Impressions, then the play and its outcome; returns when the user is done with it."""
        rnd = self.rnd
        cat = self.cat
        if rnd.random() < 0.15:  # seen earlier in a feed or an up-next rail, not clicked then
            self._emit(t - rnd.uniform(30.0, 400.0), ui, v, IMP)
        size = rnd.randint(4, 6) if browse else 1 + (rnd.random() < 0.25)
        for x in self._slate(u, v, t, pool, w, size) if size > 1 else [v]:
            self._emit(t, ui, x, IMP)
        tp = t + rnd.uniform(1.5, 12.0)
        self._emit(tp, ui, v, PLAY)
        self._bump(v, tp)
        u.watched_list.append(v)
        self.mark[v] = self.stamp

        k, s, c = int(cat.topic[v]), int(cat.sub[v]), int(cat.creator[v])
        dur = float(cat.duration[v])
        match = math.sqrt(u.taste[k] / u.taste.max()) * min(1.0, float(u.subpref[s])) ** 0.3
        aff = u.affinity.get(c, 0.0)
        p_skip = 0.08 + 0.32 * (1.0 - match) ** 1.2 + (0.06 if cat.appeal[v] < 0.5 else 0.0)
        p_skip += 0.2 if aff < -0.3 else 0.0
        if rnd.random() < p_skip:
            ws = round(rnd.uniform(1.5, max(2.0, min(20.0, 0.3 * dur))), 1)
            end = tp + ws
            self._emit(end, ui, v, SKIP, ws)
            if rnd.random() < 0.05:
                end += rnd.uniform(0.5, 3.0)
                self._emit(end, ui, v, DISLIKE, ws)
                aff -= 0.6
            aff -= 0.15
        else:
            base = 0.85 if cat.short[v] else 0.1 + 0.75 * math.exp(-dur / 2400.0)
            quality = 1.0 + 0.1 * min(float(cat.appeal[v]), 3.0)
            p_complete = min(0.97, base * (0.55 + 0.45 * match) * quality)
            if rnd.random() < p_complete:
                half = round(dur * rnd.uniform(0.35, 0.65), 1)
                self._emit(tp + half, ui, v, WATCH, half)
                end = tp + dur
                self._emit(end, ui, v, COMPLETE, dur)
                p_like, p_share, p_dislike = 0.04 + 0.07 * match, 0.025, 0.002
                aff += 0.25
                watched = dur
            else:
                watched = round(dur * (0.03 + 0.95 * self.rng.beta(1.3, 2.5)), 1)
                end = tp + watched
                self._emit(end, ui, v, WATCH, watched)
                p_like, p_share, p_dislike = 0.015, 0.005, 0.012 + 0.03 * (1.0 - match)
            if rnd.random() < p_like:
                end += rnd.uniform(0.5, 4.0)
                self._emit(end, ui, v, LIKE, watched)
                aff += 1.0
            if rnd.random() < p_share:
                end += rnd.uniform(1.0, 8.0)
                self._emit(end, ui, v, SHARE, watched)
                aff += 0.5
            if rnd.random() < p_dislike:
                end += rnd.uniform(0.5, 3.0)
                self._emit(end, ui, v, DISLIKE, watched)
                aff -= 0.6
        u.affinity[c] = min(4.0, max(-0.8, aff))
        return end

    def session(self, ui: int, u: _User, t: float) -> None:
        rnd = self.rnd
        if t < u.last_end + 300.0:
            t = u.last_end + 300.0 + rnd.random() * 1800.0
        stop = min(u.leave, self.t_end)
        if t >= stop:
            return
        self._drift(u, t)
        self.stamp += 1
        self.mark[u.watched_list] = self.stamp
        prev = -1
        for i in range(MAX_PICKS):
            if i > 0 and rnd.random() > u.cont:
                break
            v, pool, w = self._pick(u, t, prev, i)
            if v < 0:
                break
            t = self._watch(ui, u, v, t, pool, w, browse=i == 0 or rnd.random() < 0.15)
            prev = v
            u.last_end = t
            t += rnd.uniform(2.0, 25.0)
            if t >= stop:
                break


def _session_starts(
    users: list[_User], rnd: random.Random, rng: np.random.Generator
) -> list[tuple[float, int]]:
    """Session start times per user: Poisson count over the active span, evening-heavy hours."""
    starts = []
    for ui, u in enumerate(users):
        span = u.leave - u.join
        n = max(1, int(rng.poisson(u.rate * span / DAY)))
        for _ in range(n):
            t = u.join + rnd.random() * span
            for _ in range(5):
                local_day = math.floor((t + u.tz * 3600.0) / DAY) * DAY
                cand = _hour_time(rnd, local_day, _SESSION_HOURS, u.tz)
                if u.join <= cand < u.leave:
                    t = cand
                    break
            starts.append((t, ui))
    starts.sort()
    return starts


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(round(ts, 3), UTC)


def generate(
    seed: int,
    videos: int,
    users: int,
    days: float,
    start: datetime = DEFAULT_START,
    *,
    truth: SampleTruth | None = None,
    progress: Callable[[str], None] | None = None,
) -> Iterator[VideoPublished | UserEvent]:
    """Generate a catalogue and the users' events as one stream-time-ordered message sequence.

    Parameters
    ----------
    seed
        Everything is a function of the seed (and the sizes): same arguments, same lines.
    videos, users, days
        Catalogue size (35% published in the 60 days before ``start``), user count, and the
        length of the stream in days.
    start
        Stream start (timezone-aware).
    truth
        When given, filled with the planted structure before the first message is yielded.
    progress
        Called with a short line now and then on large runs (the CLI prints it to stderr).

    Yields
    ------
    VideoPublished at its ``published_at`` (before any event on it), and ``UserEvent``\\ s, in
    non-decreasing time order; event ids are ``ev-<seed>-<n>`` in output order.
    """
    if seed < 0:
        raise ValueError("seed must be >= 0")
    if videos < 1 or users < 0 or days <= 0:
        raise ValueError("need videos >= 1, users >= 0 and days > 0")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    return _generate(seed, videos, users, days, start, truth, progress)


def _generate(
    seed: int,
    videos: int,
    users: int,
    days: float,
    start: datetime,
    truth: SampleTruth | None,
    progress: Callable[[str], None] | None,
) -> Iterator[VideoPublished | UserEvent]:
    t0 = start.timestamp()
    t_end = t0 + days * DAY
    # Independent streams per stage (catalogue, users, sessions, simulation): numpy for arrays,
    # Python's random for the many scalar draws, where it is much faster.
    seeds = np.random.SeedSequence(seed).spawn(8)
    rngs = [np.random.default_rng(s) for s in seeds[:4]]
    rnds = [random.Random(int(s.generate_state(1)[0])) for s in seeds[4:]]
    say = progress if progress is not None and users * days >= PROGRESS_MIN_USER_DAYS else None

    if say:
        say(f"catalogue: {videos} videos")
    cat = _make_catalogue(videos, t0, days, rngs[0], rnds[0])
    people = _make_users(users, t0, days, rngs[1], rnds[1])
    starts = _session_starts(people, rnds[2], rngs[2])
    if say:
        say(f"users: {users}, sessions: {len(starts)}")
    initial_taste = [u.taste.copy() for u in people]
    sim = _Simulator(cat, t0, t_end, rngs[3], rnds[3])
    step = max(1, len(starts) // 10)
    for n, (t, ui) in enumerate(starts, start=1):
        sim.session(ui, people[ui], t)
        if say and n % step == 0:
            say(f"simulated {n}/{len(starts)} sessions, {len(sim.events)} events")
    sim.events.sort()

    if truth is not None:
        _fill_truth(truth, cat, people, initial_taste)

    yield from _messages(seed, cat, people, sim.events, say)


def _taste_dict(taste: np.ndarray) -> dict[str, float]:
    return {TOPIC_NAMES[k]: round(float(w), 4) for k, w in enumerate(taste) if w >= 0.01}


def _fill_truth(
    truth: SampleTruth, cat: _Catalogue, people: list[_User], initial: list[np.ndarray]
) -> None:
    truth.topics = list(TOPIC_NAMES)
    truth.subtopics = {t: list(TOPICS[t]["subs"]) for t in TOPIC_NAMES}
    for i, vid in enumerate(cat.ids):
        truth.video_topic[vid] = TOPIC_NAMES[cat.topic[i]]
        truth.video_subtopic[vid] = _SUBS[cat.sub[i]][1]
        truth.video_appeal[vid] = float(cat.appeal[i])
    for u, taste in zip(people, initial, strict=True):
        truth.user_taste[u.uid] = _taste_dict(taste)
        truth.user_final_taste[u.uid] = _taste_dict(u.taste)
        truth.user_drifts[u.uid] = [(_dt(t), TOPIC_NAMES[k]) for t, k in u.drifts]
        truth.user_joined[u.uid] = _dt(u.join)


def _messages(
    seed: int,
    cat: _Catalogue,
    people: list[_User],
    events: list[tuple[float, int, int, int, int, float]],
    say: Callable[[str], None] | None,
) -> Iterator[VideoPublished | UserEvent]:
    order = np.lexsort((np.arange(len(cat.pub)), cat.pub))
    pubs = cat.pub[order]
    vi = 0

    def video(i: int) -> VideoPublished:
        title, desc, tags, category = cat.texts[i]
        width, height, lang, thumb = cat.meta[i]
        return VideoPublished(
            video_id=cat.ids[i],
            title=title,
            description=desc,
            tags=tags,
            category=category,
            duration_s=float(cat.duration[i]),
            width=width,
            height=height,
            language=lang,
            published_at=_dt(float(cat.pub[i])),
            thumbnail_url=thumb,
            creator_id=cat.creator_ids[cat.creator[i]],
        )

    step = max(1, len(events) // 10)
    for n, (ts, _, ui, v, code, watch_s) in enumerate(events):
        while vi < len(order) and pubs[vi] <= ts:
            yield video(int(order[vi]))
            vi += 1
        yield UserEvent(
            event_id=f"ev-{seed}-{n:08d}",
            user_id=people[ui].uid,
            video_id=cat.ids[v],
            type=_EV[code],
            watch_s=watch_s,
            ts=_dt(ts),
        )
        if say and (n + 1) % step == 0:
            say(f"wrote {n + 1}/{len(events)} events")
    while vi < len(order):
        yield video(int(order[vi]))
        vi += 1


def summarize(messages: Iterable[Any], fresh_days: float = 7.0) -> dict[str, Any]:
    """Statistics of a log, as reported for the shipped sample (what a replay will meet).

    Videos published before the first user event count as backfill; "fresh" plays are on videos
    younger than ``fresh_days``; a first play is the first ever play of its video.
    """
    pub: dict[str, datetime] = {}
    first_event: datetime | None = None
    backfill = 0
    by_type: Counter[str] = Counter()
    plays_per_video: Counter[str] = Counter()
    plays_per_user: Counter[str] = Counter()
    users: set[str] = set()
    fresh = first = 0
    fresh_s = fresh_days * DAY
    for m in messages:
        if isinstance(m, VideoPublished):
            pub[m.video_id] = m.published_at
            if first_event is None:
                backfill += 1
        elif isinstance(m, UserEvent):
            first_event = first_event or m.ts
            users.add(m.user_id)
            by_type[m.type.value] += 1
            if m.type is EventType.PLAY:
                if plays_per_video[m.video_id] == 0:
                    first += 1
                plays_per_video[m.video_id] += 1
                plays_per_user[m.user_id] += 1
                if (m.ts - pub[m.video_id]).total_seconds() < fresh_s:
                    fresh += 1
    plays = by_type["play"]
    counts = sorted(plays_per_video.values(), reverse=True) + [0] * (
        len(pub) - len(plays_per_video)
    )

    def top_share(frac: float) -> float:
        k = max(1, round(frac * len(counts)))
        return round(sum(counts[:k]) / plays, 4) if plays else 0.0

    return {
        "videos": len(pub),
        "videos_backfill": backfill,
        "videos_arriving": len(pub) - backfill,
        "users": len(users),
        "events": sum(by_type.values()),
        "events_by_type": dict(sorted(by_type.items())),
        "plays": plays,
        "videos_played": len(plays_per_video),
        "share_plays_fresh": round(fresh / plays, 4) if plays else 0.0,
        "share_plays_first_ever": round(first / plays, 4) if plays else 0.0,
        "mean_plays_per_user": round(plays / len(plays_per_user), 2) if plays_per_user else 0.0,
        "max_plays_per_user": max(plays_per_user.values(), default=0),
        "top1pct_video_share": top_share(0.01),
        "top10pct_video_share": top_share(0.10),
        "likes_per_complete": round(by_type["like"] / by_type["complete"], 4)
        if by_type["complete"]
        else 0.0,
        "skips_per_play": round(by_type["skip"] / plays, 4) if plays else 0.0,
    }


def write_sample(path: str | Path, messages: Iterable[_Message]) -> int:
    """Write messages as JSON lines (``-`` is stdout); returns the line count.

    A ``.gz`` file is written with a zero gzip timestamp and no file name in its header, so the
    same seed gives the same bytes; files are written beside the target and renamed into place,
    so a reader never sees half a sample.
    """
    if str(path) == "-":
        f = open_text("-", "w")
        n = 0
        for msg in messages:
            f.write(msg.to_json().decode() + "\n")
            n += 1
        f.flush()
        return n
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    n = 0
    try:
        with open(tmp, "wb") as raw:
            if path.suffix == ".gz":
                gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9)
                out: io.TextIOBase = io.TextIOWrapper(gz, encoding="utf-8")
            else:
                out = io.TextIOWrapper(raw, encoding="utf-8")
            with out:
                for msg in messages:
                    out.write(msg.to_json().decode() + "\n")
                    n += 1
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _utc_datetime(text: str) -> datetime:
    """ISO date or date-time; without an offset it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date-time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _cmd_sample(args: argparse.Namespace) -> int:
    began = time.monotonic()

    def say(line: str) -> None:
        print(f"vidrec sample: {line}", file=sys.stderr, flush=True)

    messages: Iterable[_Message] = generate(
        args.seed,
        args.videos,
        args.users,
        args.days,
        args.start,
        progress=None if args.quiet else say,
    )
    if args.stats:
        messages = list(messages)
    n = write_sample(args.out, messages)
    if not args.quiet:
        where = "stdout" if args.out == "-" else args.out
        say(f"wrote {n} lines to {where} in {time.monotonic() - began:.1f}s")
    if args.stats:
        print(json.dumps(summarize(messages), indent=2), file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    """Add ``vidrec sample``."""
    p = subparsers.add_parser(
        "sample",
        help="generate a synthetic catalogue and user event log (JSON lines)",
        description="Generate a realistic synthetic video catalogue and user event log as one "
        "time-ordered JSON-lines log (videos at their publication time, then events). The "
        f"defaults reproduce the shipped sample ({default_sample_path().name}).",
    )
    p.add_argument("--seed", type=_non_negative_int, default=DEFAULT_SEED)
    p.add_argument("--videos", type=_positive_int, default=DEFAULT_VIDEOS, help="catalogue size")
    p.add_argument("--users", type=_non_negative_int, default=DEFAULT_USERS)
    p.add_argument("--days", type=_positive_float, default=DEFAULT_DAYS, help="stream length")
    p.add_argument(
        "--start",
        type=_utc_datetime,
        default=DEFAULT_START,
        help="stream start, ISO 8601 (UTC unless an offset is given); default %(default)s",
    )
    p.add_argument(
        "--out", default="-", help="output file ('-' = stdout; a .gz suffix writes gzip)"
    )
    p.add_argument("--stats", action="store_true", help="print the log's statistics to stderr")
    p.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    p.set_defaults(func=_cmd_sample)
