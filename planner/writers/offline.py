"""The offline writer: a deterministic screenplay from any prompt, with no model.

It reads the cast, places and time of day from the prompt (`prompt_reading`), invents what
the prompt leaves open, and lays the story out in scenes (setup, journey, turn, resolution)
of shots with varied sizes, camera moves, per-character actions and dialogue. Everything it
emits is storyworld vocabulary (`reelsmith.schema.vocabulary`), so the built-in models can
render every screenplay it writes. The same prompt and seed always give the same screenplay.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from reelsmith.errors import InputError
from reelsmith.planner.brief import Brief
from reelsmith.planner.writers.prompt_reading import CastMember, read_prompt
from reelsmith.schema import vocabulary
from reelsmith.schema.screenplay import (
    MAX_SHOT_SECONDS,
    MIN_SHOT_SECONDS,
    Action,
    Blocking,
    CameraMove,
    Character,
    DialogueLine,
    Scene,
    Screenplay,
    Shot,
    ShotSize,
    TimeOfDay,
    Transition,
    unique_slug,
)

NAMES = ["Mira", "Bo", "Juno", "Pip", "Ada", "Kit", "Nova", "Remy", "Tess", "Otto", "Lumi", "Zed"]
STYLES = ["storybook", "bold flat colours", "soft pastel", "warm picture book"]
ARC = [
    "The story opens in the {place} with {cast}. {premise}",
    "A journey across the {place} for {cast}.",
    "Things get harder for {cast} in the {place}.",
    "The story ends in the {place} with {cast}.",
]
LINES = [
    "Did you hear that?",
    "The {place} feels different at {time}.",
    "{other}, wait for me!",
    "I think we are close.",
    "Stay close to me, {other}.",
    "Look! Over there!",
    "We did it!",
    "Let's go home, {other}.",
    "I have never seen the {place} like this.",
    "Are you sure about this, {other}?",
]
# action -> (sentence, shot size, camera moves that suit it)
BEATS: dict[Action, tuple[str, ShotSize, tuple[CameraMove, ...]]] = {
    Action.walk_left: (
        "{a} walks left through the {place}.",
        ShotSize.wide,
        (CameraMove.pan_left,),
    ),
    Action.walk_right: (
        "{a} walks right through the {place}.",
        ShotSize.wide,
        (CameraMove.pan_right,),
    ),
    Action.run: (
        "{a} runs across the {place}.",
        ShotSize.wide,
        (CameraMove.follow, CameraMove.static),
    ),
    Action.jump: ("{a} jumps for joy.", ShotSize.medium, (CameraMove.static, CameraMove.zoom_out)),
    Action.wave: ("{a} waves at {b}.", ShotSize.medium, (CameraMove.static,)),
    Action.sit: (
        "{a} sits down to rest.",
        ShotSize.medium,
        (CameraMove.static, CameraMove.zoom_in),
    ),
    Action.approach: (
        "{a} approaches {b}.",
        ShotSize.medium,
        (CameraMove.static, CameraMove.zoom_in),
    ),
    Action.leave: (
        "{a} leaves the {place}.",
        ShotSize.wide,
        (CameraMove.static, CameraMove.zoom_out),
    ),
    Action.turn: ("{a} turns around.", ShotSize.close_up, (CameraMove.static, CameraMove.zoom_in)),
    Action.talk: (
        "{a} talks with {b}.",
        ShotSize.close_up,
        (CameraMove.static, CameraMove.zoom_in),
    ),
    Action.follow: ("{a} follows {b}.", ShotSize.wide, (CameraMove.follow, CameraMove.pan_right)),
    Action.idle: (
        "{a} stands and looks around the {place}.",
        ShotSize.medium,
        (CameraMove.static,),
    ),
}
SOLO = [a for a in BEATS if "{b}" not in BEATS[a][0]]
PAIRED = [a for a in BEATS if "{b}" in BEATS[a][0]]


@dataclass
class OfflineWriter:
    """Writes a screenplay from the prompt alone; the default writer.

    Attributes:
        shots_per_scene: Shots per scene when the brief sets neither shots nor duration.
        seconds_per_shot: Typical shot length when the brief sets a duration but no shots.
    """

    shots_per_scene: int = 4
    seconds_per_shot: float = 4.0
    name: str = "offline"

    def write(self, brief: Brief) -> Screenplay:
        rng = random.Random(_stable_seed(brief.prompt, brief.seed))
        reading = read_prompt(brief.prompt)
        characters = self._cast(reading.cast, rng)
        num_shots, num_scenes = self._counts(brief, rng)
        durations = self._durations(brief, num_shots, rng)
        per_scene = _split(num_shots, num_scenes, rng)
        places = self._places(reading.locations, num_scenes, rng)
        times = self._times(reading.time, num_scenes, rng)
        premise = " ".join(brief.prompt.split())[:300]

        scenes, k = [], 0
        for i in range(num_scenes):
            is_last_scene = i == num_scenes - 1
            on_stage = _scene_cast(characters, i, rng)
            scene_shots = []
            for j in range(per_scene[i]):
                shot = self._shot(
                    f"s{i + 1:02d}-{j + 1:02d}",
                    on_stage,
                    places[i],
                    times[i],
                    durations[k],
                    establishing=j == 0,
                    rng=rng,
                )
                if j == per_scene[i] - 1:
                    transition = (
                        Transition.fade
                        if is_last_scene
                        else rng.choice([Transition.cut, Transition.crossfade, Transition.fade])
                    )
                    shot = shot.model_copy(update={"transition": transition})
                scene_shots.append(shot)
                k += 1
            arc = ARC[0] if i == 0 else ARC[-1] if is_last_scene else ARC[1 + (i % 2)]
            summary = arc.format(cast=_names(on_stage), place=places[i], premise=premise)
            scenes.append(
                Scene(
                    id=f"scene-{i + 1:02d}",
                    location=places[i],
                    time=times[i],
                    summary=summary.strip(),
                    shots=scene_shots,
                )
            )
        return Screenplay(
            title=_title(brief.prompt, characters, places[0]),
            logline=premise,
            style=brief.style or rng.choice(STYLES),
            characters=characters,
            scenes=scenes,
        )

    # -- planning --------------------------------------------------------------------

    def _cast(self, members: list[CastMember], rng: random.Random) -> list[Character]:
        if not members:  # the prompt names nobody: invent two characters
            names = rng.sample(NAMES, 2)
            members = [CastMember(name, "") for name in names]
        taken: set[str] = set()
        cast = []
        for member in members:
            description = member.description or _invent_look(rng)
            cast.append(
                Character(
                    id=unique_slug(member.name, taken, "character"),
                    name=member.name,
                    description=description,
                )
            )
        return cast

    def _counts(self, brief: Brief, rng: random.Random) -> tuple[int, int]:
        if brief.shots is not None:
            num_shots = brief.shots
        elif brief.duration is not None:
            num_shots = max(1, round(brief.duration / self.seconds_per_shot))
        elif brief.scenes is not None:
            num_shots = brief.scenes * self.shots_per_scene
        else:
            num_shots = rng.randint(2, 3) * self.shots_per_scene
        num_shots = min(num_shots, 2000)
        if brief.scenes is not None:
            num_scenes = brief.scenes
        else:
            num_scenes = min(num_shots, max(2, round(num_shots / self.shots_per_scene)))
        if num_shots < num_scenes:
            raise InputError(f"{num_shots} shots cannot fill {num_scenes} scenes")
        return num_shots, num_scenes

    def _durations(self, brief: Brief, num_shots: int, rng: random.Random) -> list[float]:
        if brief.duration is None:
            return [rng.choice([2.0, 2.5, 3.0, 3.5, 4.0, 5.0]) for _ in range(num_shots)]
        mean = brief.duration / num_shots
        if not MIN_SHOT_SECONDS <= mean <= MAX_SHOT_SECONDS:
            raise InputError(
                f"a {brief.duration:g} s movie in {num_shots} shots needs {mean:.2f} s shots; "
                f"shots last {MIN_SHOT_SECONDS:g} to {MAX_SHOT_SECONDS:g} s"
            )
        weights = [rng.uniform(0.75, 1.25) for _ in range(num_shots)]
        scale = brief.duration / sum(weights)
        return [min(MAX_SHOT_SECONDS, max(MIN_SHOT_SECONDS, round(w * scale, 2))) for w in weights]

    def _places(self, named: list[str], num_scenes: int, rng: random.Random) -> list[str]:
        others = [p for p in vocabulary.LOCATIONS if p not in named]
        rng.shuffle(others)
        pool = named + others
        places = []
        for i in range(num_scenes):
            if i >= len(pool) or (i > 1 and rng.random() < 0.25):
                places.append(rng.choice(places))  # the story returns somewhere
            else:
                places.append(pool[i])
        return places

    def _times(self, named: TimeOfDay | None, num_scenes: int, rng: random.Random) -> list:
        if named is not None:
            return [named] * num_scenes
        order = list(TimeOfDay)
        start = rng.randrange(len(order))
        # time moves forward through the movie: day, dusk, night
        return [
            order[min(len(order) - 1, start + (i * 3) // max(num_scenes, 3))]
            for i in range(num_scenes)
        ]

    def _shot(self, shot_id, on_stage, place, time, duration, establishing, rng) -> Shot:
        pair = len(on_stage) >= 2 and not establishing and rng.random() < 0.55
        action = rng.choice(PAIRED if pair else SOLO)
        actor = rng.choice(on_stage)
        other = rng.choice([c for c in on_stage if c is not actor]) if pair else None
        sentence, size, cameras = BEATS[action]
        if establishing:
            size = ShotSize.wide
        camera = rng.choice(cameras)
        text = sentence.format(a=actor.name, b=other.name if other else "", place=place)
        in_shot = [actor] + ([other] if other else [])
        blocking = [
            Blocking(
                character=actor.id,
                action=action,
                target=other.id if action in (Action.approach, Action.follow) else None,
            )
        ]
        if other is not None:
            reaction = (
                Action.talk
                if action is Action.talk
                else rng.choice([Action.idle, Action.wave, Action.turn])
            )
            blocking.append(Blocking(character=other.id, action=reaction))
            text += " " + BEATS[reaction][0].format(a=other.name, b=actor.name, place=place)
        dialogue = []
        if action in (Action.talk, Action.wave) or rng.random() < 0.2:
            speakers = [actor, other] if other is not None and action is Action.talk else [actor]
            for speaker in speakers:
                listener = other if speaker is actor else actor
                line = rng.choice(LINES).format(
                    place=place, time=time.value, other=(listener or speaker).name
                )
                dialogue.append(DialogueLine(speaker=speaker.id, line=line))
        looks = " and ".join(c.description for c in in_shot)
        return Shot(
            id=shot_id,
            duration=duration,
            size=size,
            camera=camera,
            characters=[c.id for c in in_shot],
            action=text,
            blocking=blocking,
            dialogue=dialogue,
            keyframe_prompt=f"{size.value} shot, {looks}, in the {place} at {time.value}",
            motion_prompt=f"{text} Camera: {camera.value}.",
        )


def _stable_seed(prompt: str, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """`total` shots over `parts` scenes, each at least one, roughly even."""
    base = [total // parts] * parts
    for i in rng.sample(range(parts), total % parts):
        base[i] += 1
    return base


def _scene_cast(cast: list[Character], index: int, rng: random.Random) -> list[Character]:
    """Up to three characters per scene; the lead is always there, the others rotate."""
    lead, rest = cast[0], cast[1:]
    if not rest:
        return [lead]
    size = min(len(rest), rng.choice([1, 1, 2]))
    start = (index * size) % len(rest)
    return [lead] + [rest[(start + k) % len(rest)] for k in range(size)]


def _invent_look(rng: random.Random) -> str:
    shape = rng.choice(list(vocabulary.SHAPES))
    colour = rng.choice(list(vocabulary.COLOURS))
    accessory = rng.choice(list(vocabulary.ACCESSORIES))
    pattern = rng.choice(list(vocabulary.PATTERNS))
    look = (
        f"a {shape} {colour} figure"
        if pattern == "plain"
        else (f"a {shape} {colour} {pattern} figure")
    )
    return look if accessory == "none" else f"{look} with a {accessory}"


def _names(characters: list[Character]) -> str:
    names = [c.name for c in characters]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _title(prompt: str, cast: list[Character], place: str) -> str:
    """A short prompt is its own title; a long one becomes 'Mira and Bo in the Desert'."""
    words = prompt.split()
    short = " ".join(words).strip(" .,;:!?-\"'").strip()
    if len(words) <= 6 and any(ch.isalnum() for ch in short) and len(short) <= 80:
        return short[:1].upper() + short[1:]
    names = " and ".join(c.name for c in cast[:2])
    return f"{names} in the {place.title()}"
