"""The keyframe benchmark's helpers: the sampler option, the pairs it scores, the best candidate."""

import pytest
from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

from reelsmith.tests.benchmark_modules import load_benchmark


@pytest.fixture(scope="module")
def shipped():
    return DPMSolverMultistepScheduler(prediction_type="v_prediction", solver_order=2)


def test_settings_change_only_what_they_name(shipped):
    scheduler_from = load_benchmark("keyframes_quality").scheduler_from
    changed = scheduler_from(shipped, "thresholding=true,timestep_spacing=trailing")
    assert type(changed) is DPMSolverMultistepScheduler
    assert changed.config.thresholding is True
    assert changed.config.timestep_spacing == "trailing"
    assert changed.config.prediction_type == "v_prediction"  # kept from the shipped one
    assert shipped.config.thresholding is False  # the shipped one is left alone


def test_another_class_keeps_the_shipped_config(shipped):
    scheduler_from = load_benchmark("keyframes_quality").scheduler_from
    unipc = scheduler_from(shipped, "UniPCMultistepScheduler:solver_order=3")
    assert type(unipc) is UniPCMultistepScheduler
    assert unipc.config.solver_order == 3
    assert unipc.config.prediction_type == "v_prediction"
    assert type(scheduler_from(shipped, "UniPCMultistepScheduler")) is UniPCMultistepScheduler


def test_a_setting_without_a_value_is_refused(shipped):
    with pytest.raises(ValueError, match="'thresholding'"):
        load_benchmark("keyframes_quality").scheduler_from(shipped, "thresholding")


def test_found_pairs_are_the_visible_characters_the_judge_finds():
    from reelsmith.evaluation.judges import Detection, FrameVerdict
    from reelsmith.schema.looks import Identity

    found_pairs = load_benchmark("keyframes_quality").found_pairs
    a, b, c = (Identity.from_index(i) for i in (0, 5, 9))
    items = [
        {"identities": {"mara": a, "ben": b}, "visible": {"mara", "ben"}},
        {"identities": {"mara": a, "cal": c}, "visible": {"cal"}},  # mara too small to count
    ]
    box = (0.0, 0.0, 1.0, 1.0)
    verdicts = [
        FrameVerdict([Detection(a, 0.9, box), Detection(c, 0.8, box)], "forest", "day", "wide"),
        FrameVerdict([Detection(a, 0.9, box), Detection(c, 0.7, box)], "forest", "day", "wide"),
    ]
    assert found_pairs(verdicts, items) == {(0, "mara"), (1, "cal")}


def test_the_judges_choice_is_the_candidate_with_most_characters_found_and_fewest_false():
    from reelsmith.evaluation.judges import Detection, FrameVerdict
    from reelsmith.schema.looks import Identity

    best_verdicts = load_benchmark("keyframes_quality").best_verdicts
    a, b, c = (Identity.from_index(i) for i in (0, 5, 9))
    items = [
        {"identities": {"mara": a, "ben": b}, "visible": {"mara", "ben"}},
        {"identities": {"mara": a}, "visible": {"mara"}},
        {"identities": {"mara": a}, "visible": {"mara"}},
    ]
    box = (0.0, 0.0, 1.0, 1.0)

    def verdict(*found):
        return FrameVerdict([Detection(i, 0.9, box) for i in found], "forest", "day", "wide")

    first = [verdict(a), verdict(a, c), verdict(a)]
    second = [verdict(a, b), verdict(a), verdict(a)]
    chosen = best_verdicts([first, second], items)
    # both found beat one; no false detection beats one; on a tie, the earlier candidate
    assert chosen[0] is second[0] and chosen[1] is second[1] and chosen[2] is first[2]
