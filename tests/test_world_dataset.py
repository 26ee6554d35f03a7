"""Storyworld datasets and the `reelsmith world` commands."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from reelsmith.errors import InputError
from reelsmith.renderer.assembly.video import read_mp4
from reelsmith.world.dataset import DatasetSpec, build, read


def shard_digests(manifest: dict) -> list[tuple[str, str]]:
    return [(s["arrays_sha256"], s["records_sha256"]) for s in manifest["shards"]]


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    spec = DatasetSpec("keyframes", 12, seed=5, shard_size=5)
    a = build(spec, tmp_path / "a")
    b = build(spec, tmp_path / "b", workers=2)
    c = build(DatasetSpec("keyframes", 12, seed=6, shard_size=5), tmp_path / "c")
    assert shard_digests(a) == shard_digests(b)
    assert shard_digests(a)[0] != shard_digests(c)[0]
    assert a["complete"] and a["items"] == 12 and len(a["shards"]) == 3


@pytest.mark.parametrize(("kind", "frames"), [("keyframes", 1), ("clips", 4)])
def test_items_carry_spec_identities_and_masks(tmp_path, kind, frames):
    build(DatasetSpec(kind, 6, clip_frames=4, shard_size=4), tmp_path)
    items = list(read(tmp_path))
    assert len(items) == 6
    for item in items:
        record = item["record"]
        expected = (frames, 64, 64, 3) if kind == "clips" else (64, 64, 3)
        assert item["images"].shape == expected and item["images"].dtype == np.uint8
        assert item["masks"].shape == expected[:-1]
        assert set(record["identities"]) == set(record["shot"]["characters"])
        assert record["scene"]["location"] and record["shot"]["size"]


def test_movies_hold_every_keyframe_in_order(tmp_path):
    build(DatasetSpec("movies", 2, shard_size=1, max_movie_shots=12), tmp_path)
    for item in read(tmp_path):
        shots = [s for scene in item["record"]["screenplay"]["scenes"] for s in scene["shots"]]
        assert 4 <= len(shots) <= 12
        assert item["images"].shape == (len(shots), 64, 64, 3)


def test_a_killed_build_resumes_and_keeps_finished_shards(tmp_path):
    spec = DatasetSpec("keyframes", 9, shard_size=3)
    full = build(spec, tmp_path / "full")
    partial = tmp_path / "partial"
    build(DatasetSpec("keyframes", 9, shard_size=3), partial)
    # simulate a build killed after the first shard: drop the others from the manifest
    manifest = json.loads((partial / "manifest.json").read_text())
    manifest["shards"] = manifest["shards"][:1]
    manifest["complete"] = False
    (partial / "manifest.json").write_text(json.dumps(manifest))
    (partial / "shard-00002.npz").write_bytes(b"half a shard")
    first_mtime = (partial / "shard-00000.npz").stat().st_mtime_ns
    calls = []
    resumed = build(spec, partial, on_shard=lambda done, total: calls.append(done))
    assert calls[0] == 1  # the finished shard was kept, not rebuilt
    assert (partial / "shard-00000.npz").stat().st_mtime_ns == first_mtime
    assert shard_digests(resumed) == shard_digests(full)


def test_a_folder_with_another_dataset_is_refused(tmp_path):
    build(DatasetSpec("keyframes", 2, shard_size=2), tmp_path)
    with pytest.raises(
        InputError, match=r"different keyframes dataset: kind keyframes \(asked: clips\)"
    ):
        build(DatasetSpec("clips", 2, shard_size=2), tmp_path)
    # only the shards differ: the message names that, not the fields that agree
    with pytest.raises(InputError, match=r"dataset: shard_size 2 \(asked: 1\); use another"):
        build(DatasetSpec("keyframes", 2, shard_size=1), tmp_path)


def test_corrupted_shard_is_named(tmp_path):
    build(DatasetSpec("keyframes", 4, shard_size=2), tmp_path)
    shard = tmp_path / "shard-00001.npz"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"shard-00001\.npz: checksum mismatch"):
        list(read(tmp_path))
    shard.unlink()
    with pytest.raises(InputError, match=r"shard-00001\.npz: shard file missing"):
        list(read(tmp_path))


@pytest.mark.parametrize("content", ["{not json", '{"format": 1}', "[]", ""])
def test_corrupted_manifest_is_named(tmp_path, content):
    build(DatasetSpec("keyframes", 2, shard_size=2), tmp_path)
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(InputError, match=r"manifest\.json: corrupted or unknown manifest"):
        list(read(tmp_path))


def test_bad_specs():
    with pytest.raises(InputError, match="unknown dataset kind 'frames'"):
        DatasetSpec("frames", 3)
    with pytest.raises(InputError, match="count must be at least 1"):
        DatasetSpec("clips", 0)


# -- the CLI, as a subprocess -----------------------------------------------------------


def reelsmith(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reelsmith", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_world_render_writes_frames_labels_and_video(tmp_path):
    script = tmp_path / "movie.json"
    assert (
        reelsmith(
            "script", "Mira and Bo in the forest", "--shots", "3", "-o", str(script)
        ).returncode
        == 0
    )
    result = reelsmith("world", "render", str(script), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    labels = json.loads((out / "truth" / "s01-01.json").read_text())
    with np.load(out / "truth" / "s01-01.npz") as truth:
        frames = truth["frames"]
        assert truth["masks"].shape == frames.shape[:3]
    assert len(labels["frames"]) == len(frames)
    video, fps = read_mp4(out / "shots" / "s01-01.mp4")
    assert fps == 8 and video.shape == frames.shape
    assert np.abs(video.astype(int) - frames.astype(int)).mean() < 6  # H.264, near lossless
    assert (out / "truth.mp4").stat().st_size > 0


def test_world_render_unknown_place_warns_but_renders(tmp_path):
    script = tmp_path / "odd.json"
    reelsmith("script", "Ada", "--shots", "2", "-o", str(script))
    data = json.loads(script.read_text())
    data["scenes"][0]["location"] = "the glass castle"
    script.write_text(json.dumps(data))
    result = reelsmith("world", "render", str(script), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "reelsmith: warning: storyworld has no place like 'the glass castle'" in result.stderr


def test_world_cast_and_dataset_commands(tmp_path):
    script = tmp_path / "movie.yaml"
    reelsmith("script", "a red fox and two robots", "-o", str(script))
    result = reelsmith("world", "cast", str(script), "-o", str(tmp_path / "cast.png"))
    assert result.returncode == 0, result.stderr
    from PIL import Image

    assert Image.open(tmp_path / "cast.png").size[0] == 3 * 128
    result = reelsmith(
        "world",
        "dataset",
        "clips",
        "-o",
        str(tmp_path / "ds"),
        "--count",
        "3",
        "--clip-frames",
        "2",
        "--workers",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert len(list(read(tmp_path / "ds"))) == 3
    bad = reelsmith("world", "dataset", "frames", "-o", str(tmp_path / "x"))
    assert bad.returncode == 2 and "unknown dataset kind" in bad.stderr
    huge = reelsmith(
        "world", "cast", str(script), "-o", str(tmp_path / "c.png"), "--resolution", "0"
    )
    assert huge.returncode == 2 and "resolution must be" in huge.stderr


@pytest.mark.parametrize("field", ["fps", "clip_frames", "shard_size", "max_movie_shots"])
def test_spec_counts_must_be_positive(field):
    with pytest.raises(InputError, match=f"{field} must be at least 1"):
        DatasetSpec("clips", 3, **{field: 0})


def test_clips_are_the_first_frames_of_a_shot():
    from reelsmith.planner.brief import Brief
    from reelsmith.planner.writers.offline import OfflineWriter
    from reelsmith.world.render import WorldConfig, WorldRenderer

    sp = OfflineWriter().write(Brief("Mira runs through the forest", shots=2, seed=1))
    whole = list(WorldRenderer(WorldConfig()).render(sp))
    first = list(WorldRenderer(WorldConfig(max_frames=5)).render(sp))
    for a, b in zip(whole, first, strict=True):
        assert np.array_equal(a.frames[:5], b.frames)
