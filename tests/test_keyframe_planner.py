"""KeyframePlanner on a tiny config built in code: loss, mixture head, generate, save/load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reelsmith.planner.keyframe_planner import KeyframePlanner, PlannerConfig
from reelsmith.schema.conditioning import CharacterSpec, KeyframeSpec
from reelsmith.schema.encoding import spec_indices

TINY = PlannerConfig(
    token_count=2,
    token_dim=4,
    identity_dim=8,
    slots=2,
    hidden=32,
    layers=2,
    heads=2,
    mixtures=2,
    window=4,
    max_cast=3,
    token_mask_prob=0.0,
    identity_drop_prob=0.0,
    max_positions=64,
)
MARA = CharacterSpec("mara", {"shape": "pointed", "colour": "red"}, "wave")
BEN = CharacterSpec("ben", {"accessory": "hat"})
SHOTS = [
    KeyframeSpec("forest", characters=(MARA,)),
    KeyframeSpec("beach", time="night", size="wide", characters=(MARA, BEN)),
    KeyframeSpec("forest", size="close-up", characters=(BEN,)),
]


CAST = ("mara", "ben")  # cast order: mara is cast member 0, ben 1


def batch(shots: int = 3, b: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A fixed synthetic batch: b movies of `shots` shots, a cast of 2 (the second movie: 1)."""
    g = torch.Generator().manual_seed(seed)
    specs = torch.stack([spec_indices(SHOTS[i % len(SHOTS)], TINY.slots) for i in range(shots)])
    return {
        "style": torch.zeros(b, dtype=torch.long),
        "cast": F.normalize(torch.randn(b, 2, TINY.identity_dim, generator=g), dim=-1),
        "cast_mask": torch.tensor([[True, True], [True, False]])[:b],
        "specs": specs[None].expand(b, -1, -1).clone(),
        "tokens": torch.randn(b, shots, TINY.token_count, TINY.token_dim, generator=g),
    }


def slot_cast(shots: int = 3, b: int = 2) -> torch.Tensor:
    """Each slot's cast index for `batch` (B, T, S): -1 past the shot's characters."""
    rows = []
    for i in range(shots):
        ids = [CAST.index(c.id) for c in SHOTS[i % len(SHOTS)].characters]
        rows.append((ids + [-1] * TINY.slots)[: TINY.slots])
    return torch.tensor(rows)[None].expand(b, -1, -1).clone()


def make(seed: int = 0, **overrides) -> KeyframePlanner:
    torch.manual_seed(seed)
    config = PlannerConfig(**{**TINY.__dict__, **overrides})
    return KeyframePlanner(config).eval()


INPUTS = ("style", "cast", "cast_mask", "specs", "slot_cast")


def plan(model, data, seed=0, **kwargs):
    gen = torch.Generator().manual_seed(seed)
    inputs = {k: data[k] for k in INPUTS if k in data}
    return model.generate(**inputs, generator=gen, **kwargs)


@pytest.fixture(scope="module")
def trained() -> tuple[KeyframePlanner, dict, list[float]]:
    """The tiny planner overfitted on one fixed batch (30 Adam steps)."""
    model, data = make(), batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(30):
        loss, _ = model(**data)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), data, losses


def test_loss_is_finite_and_decreases(trained):
    _, _, losses = trained
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.5, losses


def test_nll_of_true_data_below_shuffled(trained):
    model, data, _ = trained
    with torch.no_grad():
        true, nll = model(**data)
        perm = torch.randperm(data["tokens"].numel(), generator=torch.Generator().manual_seed(1))
        shuffled = data["tokens"].flatten()[perm].view_as(data["tokens"])
        other, _ = model(**{**data, "tokens": shuffled})
    assert nll.shape == (2, 3, TINY.token_count)
    assert true < other


def test_shot_mask_ignores_padded_shots():
    model, data = make(), batch()
    mask = torch.tensor([[True, True, True], [True, False, False]])
    with torch.no_grad():
        loss, nll = model(**data, shot_mask=mask)
        padded = {**data, "tokens": data["tokens"].clone()}
        padded["tokens"][1, 1:] = 100.0  # what stands in padded shots does not matter
        loss2, _ = model(**padded, shot_mask=mask)
    assert torch.allclose(loss, nll[mask].mean())
    assert torch.equal(loss, loss2)


def test_save_load_round_trip(tmp_path, trained):
    model, data, _ = trained
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors"}
    loaded = KeyframePlanner.from_pretrained(tmp_path)
    assert loaded.config == model.config
    for (name, a), (_, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert torch.equal(plan(model, data, 3).tokens, plan(loaded, data, 3).tokens)


def test_generate_shape_and_determinism():
    model, data = make(), batch()
    a, b, c = plan(model, data, 0), plan(model, data, 0), plan(model, data, 1)
    assert a.tokens.shape == (2, 3, TINY.token_count, TINY.token_dim)
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, c.tokens)
    cold = [plan(model, data, s, temperature=0.0).tokens for s in (0, 1)]
    assert torch.equal(*cold)


def greedy(model, data, tokens) -> torch.Tensor:
    """What temperature 0 picks for each token, teacher-forced on `tokens` -> (B, T, K, d)."""
    inputs = {k: data[k] for k in INPUTS if k in data}
    with torch.no_grad():
        logits, means, _ = model.head(model.hidden_states(**inputs, tokens=tokens))
    pick = logits.argmax(-1)[..., None, None].expand(*means.shape[:-2], 1, means.shape[-1])
    return means.gather(-2, pick)[..., 0, :]  # (B, T, K, d)


@pytest.mark.parametrize("with_slot_cast", [False, True])
def test_cached_decoding_matches_teacher_forcing(with_slot_cast):
    """With the whole movie inside the window, the KV-cached plan is the full-sequence one."""
    model, data = make(), batch()
    if with_slot_cast:
        data["slot_cast"] = slot_cast()
    out = plan(model, data, 0, temperature=0.0)
    assert torch.allclose(out.tokens, greedy(model, data, out.tokens), atol=1e-5)
    assert out.cache_lengths[-1] == 3 + 3 * (1 + TINY.token_count) - 1


def test_windowed_decoding_sees_only_the_window():
    """With W = 2, shot t is planned from the prefix + shot t-1 only, positions from 0."""
    model, data = make(window=2), {**batch(shots=4), "slot_cast": slot_cast(shots=4)}
    out = plan(model, data, 0, temperature=0.0)
    for t in range(1, 4):
        window = slice(t - 1, t + 1)
        clip = {
            **data,
            "specs": data["specs"][:, window],
            "slot_cast": data["slot_cast"][:, window],
        }
        expected = greedy(model, clip, out.tokens[:, t - 1 : t + 1])[:, 1]
        assert torch.allclose(out.tokens[:, t], expected, atol=1e-5), t


def test_a_full_window_slides_by_its_stride():
    """W = 4, stride 2: shots 0-3 grow the cache, then every 2 shots it keeps the last 2."""
    model, data = make(window=4), {**batch(shots=8), "slot_cast": slot_cast(shots=8)}
    out = plan(model, data, 0, temperature=0.0)
    for t, start in enumerate([0, 0, 0, 0, 2, 2, 4, 4]):
        clip = {
            **data,
            "specs": data["specs"][:, start : t + 1],
            "slot_cast": data["slot_cast"][:, start : t + 1],
        }
        expected = greedy(model, clip, out.tokens[:, start : t + 1])[:, -1]
        assert torch.allclose(out.tokens[:, t], expected, atol=1e-5), t
    prefix, k = 1 + data["cast"].shape[1], TINY.token_count
    assert max(out.cache_lengths) == prefix + 4 * (1 + k) - 1
    assert out.cache_lengths[4 * k] == prefix + 2 * (1 + k) + 1  # rebuilt: 2 shots + the spec
    with pytest.raises(ValueError, match="stride must be in"):
        plan(model, data, 0, stride=5)


def test_window_bounds_the_cache():
    model, data = make(window=2), batch(shots=6)
    out = plan(model, data, 0)
    prefix, k = 1 + data["cast"].shape[1], TINY.token_count
    assert out.tokens.shape == (2, 6, k, TINY.token_dim)
    assert len(out.cache_lengths) == 6 * k
    assert max(out.cache_lengths) <= prefix + 2 * (1 + k) + 1
    assert max(out.cache_lengths) == prefix + 2 * (1 + k) - 1  # the window is used in full
    # a rebuild restarts the cache: it shrinks back to the prefix + (W - 1) shots + the spec
    assert out.cache_lengths[2 * k] == prefix + (1 + k) + 1


def test_decoding_step_computes_what_the_backbone_does():
    """`decode` runs the Llama layers on fused weights: in pieces, through its cache, it gives
    the backbone's own forward over the whole sequence; past its capacity it refuses."""
    torch.manual_seed(3)
    model = KeyframePlanner(TINY).eval()
    for p in model.backbone.parameters():  # away from the init's ones and zeros
        p.data.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(2, 9, TINY.hidden)
    with torch.no_grad():
        whole = model.backbone(inputs_embeds=x, use_cache=False).last_hidden_state
        cache = model.new_cache(2, 10, x)
        first = model.decode(x[:, :6], cache)  # several positions at once (a rebuild)
        steps = [model.decode(x[:, i : i + 1], cache) for i in range(6, 9)]  # then one by one
    assert cache.length == 9
    assert torch.allclose(first, whole[:, 5], atol=1e-5)
    for i, h in zip(range(6, 9), steps, strict=True):
        assert torch.allclose(h, whole[:, i], atol=1e-5), i
    with pytest.raises(ValueError, match="do not fit"):
        model.decode(x[:, :2], cache)


def test_regularisers_act_in_train_mode_only():
    model, data = make(token_mask_prob=0.5, identity_drop_prob=0.5), batch()
    with torch.no_grad():
        eval_losses = [model(**data)[0] for _ in range(2)]
        plain, _ = model(**data, token_mask_prob=0.0, identity_drop_prob=0.0)
        model.train()
        torch.manual_seed(0)
        train_a, _ = model(**data)
        torch.manual_seed(1)
        train_b, _ = model(**data)
        torch.manual_seed(2)
        only_ident, _ = model(**data, token_mask_prob=0.0)
        train_plain, _ = model(**data, token_mask_prob=0.0, identity_drop_prob=0.0)
    assert torch.equal(eval_losses[0], eval_losses[1])
    assert torch.equal(eval_losses[0], plain)
    assert not torch.equal(train_a, train_b)
    assert not torch.equal(only_ident, plain)
    assert torch.equal(train_plain, plain)


def test_slot_cast_ties_a_slot_to_its_cast_member():
    """Only the cast pointer differs: the prediction follows whose identity the slot holds."""
    model, data = make(), batch()
    pointers = slot_cast()
    swapped = pointers.clone()
    swapped[0, 0, 0] = 1  # shot 0's only character (mara's looks) now points at ben
    with torch.no_grad():
        plain, plain_nll = model(**data)
        unknown, _ = model(**data, slot_cast=torch.full_like(pointers, -1))
        right, right_nll = model(**data, slot_cast=pointers)
        wrong, wrong_nll = model(**data, slot_cast=swapped)
    assert torch.equal(plain, unknown)  # -1 everywhere is no pointer at all
    assert not torch.allclose(plain_nll[0, 0], right_nll[0, 0])
    assert not torch.allclose(right_nll[0, 0], wrong_nll[0, 0])
    assert torch.equal(right_nll[1], wrong_nll[1])  # the other movie is untouched
    # the pointer reaches the plan too
    a = plan(model, {**data, "slot_cast": pointers}, 0, temperature=0.0).tokens
    b = plan(model, {**data, "slot_cast": swapped}, 0, temperature=0.0).tokens
    assert not torch.equal(a[0, 0], b[0, 0]) and torch.equal(a[1], b[1])


def test_slot_cast_of_a_dropped_or_absent_member_is_the_null():
    """A slot pointing at a dropped (or absent) identity sees the null, as the prefix does."""
    model, data = make(identity_drop_prob=1.0), batch()
    pointers, swapped = slot_cast(), slot_cast()
    swapped[:, 0, 0] = 1  # movie 1 has no cast member 1: its mask is False
    model.train()
    with torch.no_grad():
        dropped_a, _ = model(**data, slot_cast=pointers, token_mask_prob=0.0)
        dropped_b, _ = model(**data, slot_cast=swapped, token_mask_prob=0.0)
    model.eval()
    with torch.no_grad():
        _, kept_a = model(**data, slot_cast=pointers)
        _, kept_b = model(**data, slot_cast=swapped)
    assert torch.equal(dropped_a, dropped_b)
    assert not torch.allclose(kept_a[0], kept_b[0])  # movie 0: mara vs ben
    # movie 1: mara vs the absent member, which is the null, not "no pointer"
    assert not torch.allclose(kept_a[1], kept_b[1])
    null = {**data, "cast_mask": torch.zeros(2, 2, dtype=torch.bool)}
    with torch.no_grad():
        _, no_pointer = model(**data)
        _, null_a = model(**null, slot_cast=pointers)
        _, null_b = model(**null, slot_cast=swapped)
    assert torch.equal(null_a, null_b) and not torch.allclose(null_a, no_pointer)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tokens": torch.zeros(2, 3, 2, 5)}, r"tokens must be \(2, 3, 2, 4\), got \(2, 3, 2, 5\)"),
        (
            {"cast": torch.zeros(2, 4, 8), "cast_mask": torch.ones(2, 4, dtype=torch.bool)},
            "cast of 4 is bigger than max_cast 3",
        ),
        ({"style": torch.tensor([0, 5])}, r"style ids must be in \[0, 1\), got \[0, 5\]"),
        ({"specs": torch.zeros(2, 3, 7, dtype=torch.long)}, r"specs must be \(2, T, 16\)"),
        (
            {"slot_cast": torch.zeros(2, 3, 3, dtype=torch.long)},
            r"slot_cast must be long \(2, 3, 2\), got \(2, 3, 3\) torch.int64",
        ),
        (
            {"slot_cast": torch.full((2, 3, 2), 2)},
            r"slot_cast must point into the cast of 2 \(or be -1\), got values from 2 to 2",
        ),
    ],
)
def test_bad_inputs_raise(change, message):
    model, data = make(), batch()
    with pytest.raises(ValueError, match=message):
        model(**{**data, **change})


def test_bad_generate_arguments_raise():
    model, data = make(), batch()
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        plan(model, data, window=0)
    with pytest.raises(ValueError, match="temperature must be >= 0, got -1"):
        plan(model, data, temperature=-1.0)


def test_default_config_builds():
    """The built-in sizes: K=2 tokens of d=32 (the keyframe tokenizer's), 64-d identities."""
    config = PlannerConfig()
    assert (config.token_count, config.token_dim, config.identity_dim) == (2, 32, 64)
    assert (config.hidden, config.layers, config.heads, config.mixtures) == (192, 4, 4, 8)
    assert (config.window, config.max_cast, config.slots) == (16, 8, 4)
    assert config.spec_width == spec_indices(SHOTS[0], config.slots).numel()
    weights = sum(p.numel() for p in KeyframePlanner(config).parameters())
    assert weights * 2 <= 6_000_000, weights  # the shipped float16 file stays within 6 MB
