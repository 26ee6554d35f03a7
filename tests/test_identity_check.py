"""The identity check that keeps the best of several drawings of a keyframe, with the shipped
segmenter and identity encoder on storyworld keyframes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from reelsmith.renderer.identity.check import IdentityCheck, candidate_seed, draw_best, match
from reelsmith.schema.looks import Identity
from reelsmith.world.dataset import DatasetSpec, build, read
from reelsmith.world.render import portrait


@pytest.fixture(scope="module")
def check() -> IdentityCheck:
    return IdentityCheck.load()


@pytest.fixture(scope="module")
def looks_check(check) -> IdentityCheck:
    """The check with the shipped looks reader."""
    return IdentityCheck.load(encoder=check.encoder, looks=True)


@pytest.fixture(scope="module")
def keyframes(tmp_path_factory) -> list[dict]:
    """Storyworld keyframes whose characters are all big enough to see, with their identities."""
    folder = tmp_path_factory.mktemp("keyframes")
    build(DatasetSpec("keyframes", 48, seed=4242, shard_size=48), folder)
    out = []
    for item in read(folder):
        r = item["record"]
        sizes = {v["id"]: v["pixels"] for v in r["labels"]["frames"][0]}
        cast = r["shot"]["characters"]
        if cast and all(sizes.get(c, 0) >= 150 for c in cast):
            ids = [Identity.from_index(r["identities"][c]) for c in cast]
            out.append({"image": item["images"], "identities": ids})
    assert len(out) >= 6
    return out[:8]


def embed(check: IdentityCheck, identities: list[Identity]) -> list[torch.Tensor]:
    return list(check.encoder.embed([portrait(i) for i in identities]))


def other(identity: Identity) -> Identity:
    """An identity that differs in every look it can."""
    return Identity.from_index((identity.index + 541) % 1080)


def test_match_is_one_figure_per_character_and_leftover_figures_cost():
    sim = torch.tensor([[0.9, 0.8], [0.85, 0.1]])  # both characters like figure 0 best
    # greedy: (0, 0) = 0.9 first, then character 1 takes figure 1 (0.1)
    score, pairs = match(sim, extra=0.5)
    assert score == pytest.approx((0.9 + 0.1) / 2) and pairs == [(0, 0), (1, 1)]
    assert match(sim[:1], extra=0.5) == (pytest.approx(0.9 - 0.5), [(0, 0)])  # a figure left
    assert match(sim[:, :1], extra=0.5) == (pytest.approx(0.9 / 2), [(0, 0)])  # one unseen
    assert match(torch.zeros(0, 2), extra=0.5) == (pytest.approx(-1.0), [])  # nobody scripted
    assert match(torch.zeros(0, 0), extra=0.5) == (0.0, [])


def test_candidate_seeds_keep_the_first_and_differ_after():
    assert candidate_seed(7, 0) == 7
    seeds = [candidate_seed(7, k) for k in range(4)]
    assert len(set(seeds)) == 4 and seeds == [candidate_seed(7, k) for k in range(4)]
    assert candidate_seed(8, 1) != candidate_seed(7, 1)
    torch.Generator().manual_seed(max(seeds))  # a seed torch takes


def test_the_true_characters_score_above_other_ones(check, keyframes):
    frames = np.stack([k["image"] for k in keyframes])
    true = check.scores(frames, [embed(check, k["identities"]) for k in keyframes])
    wrong = check.scores(
        frames, [embed(check, [other(i) for i in k["identities"]]) for k in keyframes]
    )
    assert all(t > w + 0.1 for t, w in zip(true, wrong, strict=True)), (true, wrong)


def test_draw_best_keeps_the_drawing_with_the_right_character(check, keyframes):
    right, wrong = keyframes[0], keyframes[1]
    asked = []

    def draw(seeds):  # candidate 0 the wrong character, candidate 1 the right one
        asked.append(seeds)
        return np.stack([wrong["image"], right["image"]])

    kept, drawings = draw_best(check, draw, [7], [embed(check, right["identities"])], 2)
    assert asked == [[7, candidate_seed(7, 1)]]  # every candidate in one call, candidate-major
    assert drawings.shape[:2] == (2, 1) and np.array_equal(kept[0], right["image"])
    # a shot that scripts nobody: the drawing with no figure beats the one with some
    empty = np.full_like(right["image"], right["image"][0, 0])
    kept, _ = draw_best(check, lambda seeds: np.stack([right["image"], empty]), [7], [[]], 2)
    assert np.array_equal(kept[0], empty)
    # one candidate: drawn once, from the keyframe's own seed, nothing checked
    kept, _ = draw_best(None, lambda seeds: np.stack([wrong["image"]] * len(seeds)), [3], [[]], 1)
    assert np.array_equal(kept[0], wrong["image"])


def test_scores_want_a_reference_list_per_frame(check, looks_check, keyframes):
    with pytest.raises(ValueError, match="2 frames need as many reference lists, not 1"):
        check.scores(np.stack([keyframes[0]["image"]] * 2), [[]])
    frame = keyframes[0]
    refs = embed(check, frame["identities"])
    assert check.looks is None and looks_check.looks is not None  # looks only when asked
    with pytest.raises(ValueError, match="1 frames need as many reference lists and looks"):
        looks_check.scores(frame["image"][None], [refs], [[], []])
    with pytest.raises(ValueError, match="frame 0: .* reference embeddings but looks for 0"):
        looks_check.scores(frame["image"][None], [refs], [[]])


def one_trait_off(identity: Identity) -> Identity:
    """The same looks with another pattern: what a small figure's drawing most often gets wrong."""
    patterns = ["plain", "striped", "spotted"]
    return dataclasses.replace(
        identity, pattern=patterns[(patterns.index(identity.pattern) + 1) % 3]
    )


def test_the_looks_decide_where_the_spec_names_them(check, looks_check, keyframes):
    """With looks, a figure fits a character by the looks reader; the same references score the
    true looks above looks one pattern away, and looks that name nothing leave the identity
    embeddings to decide."""
    frames = np.stack([k["image"] for k in keyframes])
    refs = [embed(check, k["identities"]) for k in keyframes]
    true = looks_check.scores(
        frames, refs, [[i.to_dict() for i in k["identities"]] for k in keyframes]
    )
    off = looks_check.scores(
        frames, refs, [[one_trait_off(i).to_dict() for i in k["identities"]] for k in keyframes]
    )
    assert all(t > o + 0.3 for t, o in zip(true, off, strict=True)), (true, off)
    unnamed = looks_check.scores(frames, refs, [[{} for _ in k["identities"]] for k in keyframes])
    assert unnamed == check.scores(frames, refs)  # nothing named: the embeddings decide
    # without a looks reader (the default check) the looks are not read
    looks = [[one_trait_off(i).to_dict() for i in k["identities"]] for k in keyframes]
    assert check.scores(frames, refs, looks) == check.scores(frames, refs)


def test_draw_best_keeps_the_drawing_that_shows_the_looks(looks_check, keyframes):
    frame = keyframes[0]
    first = frame["identities"][0]
    others = [k for k in keyframes if k["identities"][0].shape != first.shape]
    wrong = others[0]["image"]
    looks = [[i.to_dict() for i in frame["identities"]]]
    # the references say nothing (zero vectors): the looks alone tell the drawings apart
    refs = [[torch.zeros(looks_check.encoder.config.dim) for _ in frame["identities"]]]
    for order in ([wrong, frame["image"]], [frame["image"], wrong]):
        kept, _ = draw_best(looks_check, lambda seeds, o=order: np.stack(o), [1], refs, 2, looks)
        assert np.array_equal(kept[0], frame["image"])


def test_the_keyframer_keeps_the_candidate_the_check_prefers(check):
    from reelsmith.renderer.keyframes.builtin import BuiltinKeyframer
    from reelsmith.renderer.keyframes.keyframer import IdentityReference
    from reelsmith.renderer.keyframes.pipeline import make_pipeline
    from reelsmith.schema.conditioning import CharacterSpec, KeyframeSpec

    torch.manual_seed(0)
    pipe = make_pipeline(
        resolution=32, layers=1, heads=2, head_dim=8, encoder_width=8, condition_width=16
    )
    plain = {"spec": 1.0, "identity": 1.0, "tokens": 1.0}
    one = BuiltinKeyframer(pipe, steps=2, guidance=plain)
    two = BuiltinKeyframer(pipe, steps=2, guidance=plain, candidates=2, check=check)
    mara = CharacterSpec("mara", {"colour": "red"})
    specs = [KeyframeSpec("forest", "day", "wide", "static", (mara,))] * 3
    ref = IdentityReference(
        embeddings={one.encoder: check.encoder.embed(portrait(Identity.from_index(17)))[0]}
    )
    refs, seeds = [{"mara": ref}] * 3, [5, 6, 7]
    kept = two.draw(specs, refs, seeds)
    assert np.array_equal(kept, two.draw(specs, refs, seeds))  # deterministic
    firsts = one.draw(specs, refs, seeds)
    seconds = one.draw(specs, refs, [candidate_seed(s, 1) for s in seeds])
    scores = np.array(
        check.scores(np.concatenate([firsts, seconds]), [[ref.embeddings[one.encoder]]] * 6)
    )
    expected = np.where((scores[3:] > scores[:3])[:, None, None, None], seconds, firsts)
    assert np.array_equal(kept, expected)
    with pytest.raises(ValueError, match="candidates must be at least 1, got 0"):
        BuiltinKeyframer(pipe, candidates=0)
