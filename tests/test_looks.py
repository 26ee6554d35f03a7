"""The looks reader: the shipped weights on storyworld keyframes, and the model's contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reelsmith.errors import InputError
from reelsmith.renderer.identity.encoder import crop_boxes
from reelsmith.renderer.identity.looks import TRAITS, LooksReader, load_looks_reader
from reelsmith.schema.looks import Identity
from reelsmith.world.dataset import DatasetSpec, build, read


@pytest.fixture(scope="module")
def reader() -> LooksReader:
    return load_looks_reader()


@pytest.fixture(scope="module")
def figures(tmp_path_factory) -> tuple[torch.Tensor, list[Identity]]:
    """Crops of the characters of held-out storyworld keyframes (exact boxes, 150 px or more)."""
    folder = tmp_path_factory.mktemp("keyframes")
    build(DatasetSpec("keyframes", 64, seed=4343, shard_size=64), folder)
    frames, boxes, identities = [], [], []
    for item in read(folder):
        for v in item["record"]["labels"]["frames"][0]:
            if v["pixels"] >= 150:
                frames.append(item["images"])
                boxes.append(v["box"])
                identities.append(Identity(**v["identity"]))
    assert len(identities) >= 40
    crops = crop_boxes(torch.from_numpy(np.stack(frames)), torch.tensor(boxes), 32)
    return crops, identities


def test_the_shipped_reader_names_every_trait_of_a_figure(reader, figures):
    crops, identities = figures
    log_probs = reader.log_probs(crops)
    for name, values in TRAITS.items():
        read_as = [values[i] for i in log_probs[name].argmax(-1).tolist()]
        right = np.mean([r == getattr(x, name) for r, x in zip(read_as, identities, strict=True)])
        assert right >= 0.95, (name, right)


def test_the_likelihood_prefers_the_true_looks_to_looks_one_trait_away(reader, figures):
    crops, identities = figures
    log_probs = reader.log_probs(crops)
    true = reader.likelihood(log_probs, [x.to_dict() for x in identities])  # (C, F)
    assert true.shape == (len(identities), len(identities))
    mine = true.diagonal()
    assert (mine > 0.5).float().mean() >= 0.9
    for name, values in TRAITS.items():  # each trait changed alone
        off = [
            {**x.to_dict(), name: values[(values.index(getattr(x, name)) + 1) % len(values)]}
            for x in identities
        ]
        wrong = reader.likelihood(log_probs, off).diagonal()
        assert (mine > wrong).float().mean() >= 0.95, name
    # traits not named, or not in the vocabulary, count for nothing
    assert torch.equal(reader.likelihood(log_probs, [{}]), torch.ones(1, len(identities)))
    only_colour = [{"colour": x.colour} for x in identities]
    assert torch.allclose(
        reader.likelihood(log_probs, [{**c, "pattern": "tartan"} for c in only_colour]),
        reader.likelihood(log_probs, only_colour),
    )
    assert reader.knows({"colour": "red"}) and not reader.knows({"colour": "mauve", "mood": "x"})
    empty = reader.log_probs(torch.zeros(0, 3, 32, 32))
    assert reader.likelihood(empty, only_colour[:2]).shape == (2, 0)


def test_save_and_load_keep_the_vocabulary_and_the_outputs(tmp_path):
    torch.manual_seed(0)
    # not in sorted order, as a saved config's keys are: the head's logits follow this order
    traits = {"pattern": ["plain", "striped", "spotted"], "colour": ["red", "blue"]}
    model = LooksReader(resolution=16, width=8, traits=traits).eval()
    model.save_pretrained(tmp_path)
    again = load_looks_reader(tmp_path)
    assert list(again.traits.items()) == list(traits.items()) and again.config.resolution == 16
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    for name, logits in model(x).items():
        assert torch.equal(logits, again(x)[name])
    labels = again.labels([{"colour": "blue", "shape": "round"}])  # shape: not its trait
    assert [(name, x.tolist()) for name, x in labels.items()] == [
        ("pattern", [-1]),
        ("colour", [1]),
    ]
    with pytest.raises(InputError, match="no looks reader there"):
        load_looks_reader(tmp_path / "missing")
