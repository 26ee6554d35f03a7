"""The keyframe benchmark's sampler option: the shipped scheduler's config, changed as asked."""

import importlib.util
import sys
from pathlib import Path

import pytest
from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler


def load_benchmark():
    path = Path(__file__).parents[1] / "benchmarks" / "keyframes_quality.py"
    if str(path.parent) not in sys.path:  # it imports its sibling benchmarks, as when run
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("keyframes_quality", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shipped():
    return DPMSolverMultistepScheduler(prediction_type="v_prediction", solver_order=2)


def test_settings_change_only_what_they_name(shipped):
    scheduler_from = load_benchmark().scheduler_from
    changed = scheduler_from(shipped, "thresholding=true,timestep_spacing=trailing")
    assert type(changed) is DPMSolverMultistepScheduler
    assert changed.config.thresholding is True
    assert changed.config.timestep_spacing == "trailing"
    assert changed.config.prediction_type == "v_prediction"  # kept from the shipped one
    assert shipped.config.thresholding is False  # the shipped one is left alone


def test_another_class_keeps_the_shipped_config(shipped):
    scheduler_from = load_benchmark().scheduler_from
    unipc = scheduler_from(shipped, "UniPCMultistepScheduler:solver_order=3")
    assert type(unipc) is UniPCMultistepScheduler
    assert unipc.config.solver_order == 3
    assert unipc.config.prediction_type == "v_prediction"
    assert type(scheduler_from(shipped, "UniPCMultistepScheduler")) is UniPCMultistepScheduler


def test_a_setting_without_a_value_is_refused(shipped):
    with pytest.raises(ValueError, match="'thresholding'"):
        load_benchmark().scheduler_from(shipped, "thresholding")
