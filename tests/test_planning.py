"""Keyframe planning on tiny models built in code: order, seeds, edits, the no-planner path,
the cache window and bad input; one smoke run with the shipped decoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reelsmith.errors import InputError
from reelsmith.planner.brief import Brief
from reelsmith.planner.keyframe_planner import KeyframePlanner, PlannerConfig, load_keyframe_planner
from reelsmith.planner.planning import planner_rows, prepare, shot_seed
from reelsmith.planner.writers.offline import OfflineWriter
from reelsmith.renderer.keyframes.builtin import BuiltinKeyframer
from reelsmith.renderer.keyframes.pipeline import make_pipeline
from reelsmith.renderer.keyframes.pretrained import PretrainedKeyframer
from reelsmith.schema.cast import CastEntry
from reelsmith.schema.looks import cast_identities
from reelsmith.schema.screenplay import Action, Screenplay
from reelsmith.stages.keyframes import make_keyframes, make_keyframes_many
from reelsmith.training.planner_data import movie_rows
from tests.test_pretrained_keyframer import sd_pipe

PIPE = {
    "resolution": 16,
    "token_count": 2,
    "token_dim": 4,
    "identity_dim": 8,
    "slots": 2,
    "layers": 1,
    "heads": 2,
    "head_dim": 8,
    "patch_size": 4,
    "encoder_width": 8,
    "condition_width": 16,
}
PLANNER = PlannerConfig(
    token_count=2,
    token_dim=4,
    identity_dim=8,
    slots=2,
    hidden=32,
    layers=2,
    heads=2,
    mixtures=2,
    window=3,
    max_cast=3,
    max_positions=64,
)
PLAIN = {"spec": 1.0, "identity": 1.0, "tokens": 1.0}  # one branch: cheap
PROMPT = "Mara, a red fox with a hat, and Ben, a blue striped robot, in the forest at night."


class Recording:
    """The built-in keyframer, remembering the tokens each `draw` call got."""

    def __init__(self, keyframer: BuiltinKeyframer) -> None:
        self.inner, self.name, self.tokenizer = keyframer, keyframer.name, keyframer.tokenizer
        self.calls: list[tuple[list[str], torch.Tensor | None]] = []

    @property
    def resolution(self) -> int:
        return self.inner.resolution

    def draw(self, specs, identities, seeds, tokens=None):
        self.calls.append(([s.prompt for s in specs], tokens))
        return self.inner.draw(specs, identities, seeds, tokens)


@pytest.fixture(scope="module")
def keyframer() -> BuiltinKeyframer:
    torch.manual_seed(0)
    return BuiltinKeyframer(make_pipeline(**PIPE), steps=2, guidance=PLAIN)


@pytest.fixture(scope="module")
def planner() -> KeyframePlanner:
    torch.manual_seed(0)
    return KeyframePlanner(PLANNER).eval()


def movie(shots: int = 7, seed: int = 1) -> Screenplay:
    return OfflineWriter().write(Brief(PROMPT, shots=shots, seed=seed))


def cast_of(screenplay: Screenplay, width: int = 8) -> dict:
    g = torch.Generator().manual_seed(0)
    looks = cast_identities(screenplay.characters)
    return {
        cid: (F.normalize(torch.randn(width, generator=g), dim=0), ident.to_dict())
        for cid, ident in looks.items()
    }


def test_one_keyframe_per_shot_in_story_order(keyframer, planner):
    screenplay = movie()
    seen = []
    cast = cast_of(screenplay)
    out = make_keyframes(
        screenplay, cast, keyframer, planner, batch=3, progress=lambda *a: seen.append(a)
    )
    assert [k.shot_id for k in out] == [shot.id for _, shot in screenplay.shots()]
    assert [k.scene_id for k in out] == [scene.id for scene, _ in screenplay.shots()]
    for k in out:
        assert k.image.shape == (16, 16, 3) and k.image.dtype == np.uint8
        assert k.tokens.shape == (2, 4) and k.previous is None
        assert k.seed == shot_seed(0, k.shot_id)
    assert seen[-1] == (len(out), len(out)) and [d for d, _ in seen] == [3, 6, 7]


def test_same_seed_same_keyframes_other_seed_other_ones(keyframer, planner):
    screenplay = movie()
    cast = cast_of(screenplay)
    a, b, c = (
        make_keyframes(screenplay, cast, keyframer, planner, seed=s, temperature=1.0)
        for s in (0, 0, 1)
    )
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.tokens, y.tokens) and np.array_equal(x.image, y.image)
    assert not torch.equal(torch.stack([k.tokens for k in a]), torch.stack([k.tokens for k in c]))
    assert not np.array_equal(np.stack([k.image for k in a]), np.stack([k.image for k in c]))


def test_at_the_default_temperature_a_seed_changes_the_drawings_not_the_plan(keyframer, planner):
    screenplay = movie()
    cast = cast_of(screenplay)
    a, c = (make_keyframes(screenplay, cast, keyframer, planner, seed=s) for s in (0, 1))
    assert all(torch.equal(x.tokens, y.tokens) for x, y in zip(a, c, strict=True))
    assert not np.array_equal(np.stack([k.image for k in a]), np.stack([k.image for k in c]))
    sampled = make_keyframes(screenplay, cast, keyframer, planner, seed=0, temperature=1.0)
    assert not torch.equal(
        torch.stack([k.tokens for k in a]), torch.stack([k.tokens for k in sampled])
    )


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_editing_a_shot_leaves_the_shots_before_it_alone(keyframer, planner, temperature):
    screenplay = movie()
    cast = cast_of(screenplay)
    before = make_keyframes(screenplay, cast, keyframer, planner, temperature=temperature)
    edited = screenplay.model_copy(deep=True)
    shots = [shot for _, shot in edited.shots()]
    j = next(i for i, s in enumerate(shots) if i >= 3 and s.blocking)
    old = shots[j].blocking[0].action
    shots[j].blocking[0].action = Action.jump if old != Action.jump else Action.sit
    after = make_keyframes(edited, cast, keyframer, planner, temperature=temperature)
    assert [k.seed for k in before] == [k.seed for k in after]  # seeds follow shot ids
    for i in range(j):
        assert torch.equal(before[i].tokens, after[i].tokens)
        assert np.array_equal(before[i].image, after[i].image)
    assert before[j].spec != after[j].spec
    assert not torch.equal(before[j].tokens, after[j].tokens)  # the edited shot reads its spec
    # free text alone is not in the spec: nothing changes
    texted = screenplay.model_copy(deep=True)
    [shot for _, shot in texted.shots()][j].action = "Something else entirely."
    again = make_keyframes(texted, cast, keyframer, planner, temperature=temperature)
    assert all(torch.equal(x.tokens, y.tokens) for x, y in zip(before, again, strict=True))


def test_many_movies_match_one_movie_at_a_time(keyframer, planner):
    movies = [movie(seed=1), movie(seed=2), movie(seed=3)]
    casts = [cast_of(m) for m in movies]
    together = make_keyframes_many(
        movies, casts, keyframer, planner, seeds=[5, 6, 7], temperature=1.0
    )
    for m, c, seed, out in zip(movies, casts, [5, 6, 7], together, strict=True):
        alone = make_keyframes(m, c, keyframer, planner, seed=seed, temperature=1.0)
        for x, y in zip(alone, out, strict=True):
            assert x.shot_id == y.shot_id
            torch.testing.assert_close(x.tokens, y.tokens, rtol=1e-4, atol=1e-4)


def test_without_a_planner_a_scene_follows_its_previous_keyframe(keyframer):
    screenplay = movie(shots=9)
    runs = {}
    for scene, shot in screenplay.shots():
        runs.setdefault(scene.id, []).append(shot.id)
    assert len(runs) > 1 and max(map(len, runs.values())) > 1
    recording = Recording(keyframer)
    out = make_keyframes(screenplay, cast_of(screenplay), recording, planner=None, batch=64)
    assert [k.shot_id for k in out] == [shot.id for _, shot in screenplay.shots()]
    # round 0 draws every scene's first shot with no tokens; later rounds with tokens
    assert recording.calls[0][1] is None
    assert len(recording.calls[0][0]) == len(runs)
    assert all(tokens is not None for _, tokens in recording.calls[1:])
    by_id = {k.shot_id: k for k in out}
    for ids in runs.values():
        assert by_id[ids[0]].previous is None and by_id[ids[0]].tokens is None
        for prev, cur in zip(ids, ids[1:], strict=False):
            k = by_id[cur]
            assert k.previous == prev
            want = keyframer.pipe.encode(by_id[prev].image[None])[0]
            torch.testing.assert_close(k.tokens, want)


def test_a_keyframer_without_tokens_draws_from_text_and_identities(tmp_path, planner):
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}  # the tiny CLIP tokenizer's files
    for c in "abcdefghijklmnopqrstuvwxyz,-":
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    pretrained = PretrainedKeyframer(sd_pipe(tmp_path), steps=1, guidance_scale=1.0)
    screenplay = movie(shots=4)
    cast = {
        cid: CastEntry(emb, looks, np.full((8, 8, 3), 99, np.uint8))
        for cid, (emb, looks) in cast_of(screenplay).items()
    }
    out = make_keyframes(screenplay, cast, pretrained)
    assert [k.image.shape for k in out] == [(pretrained.resolution,) * 2 + (3,)] * 4
    assert all(k.tokens is None for k in out)  # no tokenizer: text + identities only
    with pytest.raises(InputError, match="'pretrained' takes no keyframe tokens"):
        make_keyframes(screenplay, cast, pretrained, planner)


def test_the_cache_never_outgrows_the_window(planner):
    screenplay = movie(shots=40)
    inputs = prepare(screenplay, cast_of(screenplay), slots=2, max_cast=3, identity_dim=8)
    out = planner.generate(
        style=torch.zeros(1, dtype=torch.long),
        cast=inputs.cast[None],
        cast_mask=inputs.cast_mask[None],
        specs=inputs.spec_rows[None],
        slot_cast=inputs.slot_cast[None],
        generator=torch.Generator().manual_seed(0),
    )
    p, w, k = 1 + len(inputs.order), PLANNER.window, PLANNER.token_count
    assert out.tokens.shape == (1, 40, k, 4)
    assert max(out.cache_lengths) <= p + w * (1 + k)


def test_inputs_are_built_as_training_builds_them():
    screenplay = movie(shots=12)
    identities = cast_identities(screenplay.characters)
    record = {
        "screenplay": screenplay.model_dump(mode="json"),
        "identities": {cid: ident.index for cid, ident in identities.items()},
    }
    looks = {cid: ident.to_dict() for cid, ident in identities.items()}
    for slots, max_cast in ((4, 8), (1, 1)):
        specs, rows, slot_cast, order = planner_rows(screenplay, looks, slots, max_cast)
        want_rows, want_slot_cast, want_cast = movie_rows(record, slots, max_cast)
        assert torch.equal(torch.stack(rows), torch.stack(want_rows))
        assert slot_cast == want_slot_cast
        assert [identities[c].index for c in order] == want_cast


def test_memory_off_reads_the_null_identity(planner):
    screenplay = movie()
    cast = {cid: CastEntry(None, looks) for cid, (_, looks) in cast_of(screenplay).items()}
    inputs = prepare(screenplay, cast, slots=2, max_cast=3, identity_dim=8)
    assert not inputs.cast_mask.any() and inputs.entries["mara"].embedding is None
    on = prepare(screenplay, cast_of(screenplay), slots=2, max_cast=3, planner_identities=False)
    assert not on.cast_mask.any() and on.entries["mara"].embedding is not None


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_bad_input_is_one_line(keyframer, planner, tmp_path):
    screenplay = movie()
    cast = cast_of(screenplay)
    missing = {k: v for k, v in cast.items() if k != "ben"}
    with pytest.raises(InputError, match="character 'ben' .*is not in the cast") as exc:
        make_keyframes(screenplay, missing, keyframer, planner)
    one_line(exc)
    with pytest.raises(InputError, match=r"embedding of 'mara' has shape \(5,\), expected \(8,\)"):
        make_keyframes(screenplay, {**cast, "mara": (torch.ones(5), {})}, keyframer, planner)
    with pytest.raises(InputError, match="expected \\(8,\\)"):  # also without a planner
        make_keyframes(screenplay, {**cast, "mara": (torch.ones(5), {})}, keyframer)
    bad_looks = {**cast, "mara": (cast["mara"][0], {"colour": "mauve"})}
    with pytest.raises(InputError, match="unknown look colour='mauve'") as exc:
        make_keyframes(screenplay, bad_looks, keyframer, planner)
    one_line(exc)
    with pytest.raises(InputError, match="window of 30 shots .* needs 93 positions"):
        make_keyframes(screenplay, cast, keyframer, planner, window=30)
    with pytest.raises(InputError, match="temperature must be >= 0, got -1"):
        make_keyframes(screenplay, cast, keyframer, planner, temperature=-1)
    other = KeyframePlanner(PlannerConfig(**{**PLANNER.__dict__, "token_dim": 6}))
    with pytest.raises(InputError, match="plans 2 tokens of 6 but .* reads 2 of 4"):
        make_keyframes(screenplay, cast, keyframer, other)
    with pytest.raises(InputError, match="no keyframe planner there"):
        load_keyframe_planner(tmp_path)
    planner.save_pretrained(tmp_path)
    assert load_keyframe_planner(tmp_path).config == planner.config


def test_shipped_decoder_draws_a_short_movie():
    keyframer = BuiltinKeyframer(steps=2)
    screenplay = movie(shots=3)
    cast = cast_of(screenplay, width=keyframer.pipe.identity_dim)
    out = make_keyframes(screenplay, cast, keyframer)
    assert [k.image.shape for k in out] == [(64, 64, 3)] * 3
