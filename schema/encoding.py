"""A keyframe spec as integers: the one encoding the keyframe decoder's condition encoder, the
motion model and the keyframe planner all read."""

from __future__ import annotations

import torch

from reelsmith.schema.conditioning import ACTIONS, SCENE_FIELDS, TRAITS, KeyframeSpec


def spec_indices(spec: KeyframeSpec, slots: int) -> torch.Tensor:
    """The spec as integers: 4 scene fields, then per slot (present, 4 looks, action).

    Each categorical index is 1 + its position in the vocabulary; 0 means unknown/absent.
    Characters past `slots` are left out (the decoder sees at most `slots` per keyframe).
    """
    row = [values.index(getattr(spec, name)) + 1 for name, values in SCENE_FIELDS.items()]
    for k in range(slots):
        if k < len(spec.characters):
            c = spec.characters[k]
            row.append(1)
            row += [TRAITS[t].index(c.looks[t]) + 1 if t in c.looks else 0 for t in TRAITS]
            row.append(ACTIONS.index(c.action) + 1 if c.action else 0)
        else:
            row += [0] * (2 + len(TRAITS))
    return torch.tensor(row, dtype=torch.long)
