"""The series bible: casting across episodes, export/import, bad input, concurrency."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from reelsmith.errors import InputError
from reelsmith.memory.archive import export_series, import_series
from reelsmith.memory.casting import cast
from reelsmith.memory.store import SeriesStore
from reelsmith.schema.screenplay import Screenplay
from reelsmith.world.references import ENCODER, storyworld_reference


def screenplay(*cast_names: str, title: str = "Pilot") -> Screenplay:
    characters = [{"id": n.lower().replace("ë", "e"), "name": n} for n in cast_names]
    return Screenplay.model_validate(
        {
            "title": title,
            "characters": characters,
            "scenes": [
                {
                    "id": "s1",
                    "location": "forest",
                    "shots": [{"id": "a", "characters": [c["id"] for c in characters]}],
                }
            ],
        }
    )


def test_second_episode_reuses_shared_characters(tmp_path):
    with SeriesStore.open(tmp_path / "show", "show") as store:
        first = cast(screenplay("Mira", "Bo", "Juno"), store, storyworld_reference)
        second = cast(
            screenplay("MIRA", "Bo", "Zed", title="Episode 2"), store, storyworld_reference
        )
        assert all(m.new for m in first.values())
        assert not second["mira"].new and not second["bo"].new and second["zed"].new
        for key in ("mira", "bo"):
            assert second[key].character_id == first[key].character_id
            assert second[key].embeddings == first[key].embeddings  # the same blobs
            assert second[key].portrait_blob == first[key].portrait_blob
        assert second["zed"].identity not in [m.identity for m in first.values()]
        assert len(store.episodes()) == 2 and len(store.characters()) == 4
        emb = store.get_tensor(second["mira"].embeddings[ENCODER])
        assert torch.equal(emb, store.get_tensor(first["mira"].embeddings[ENCODER]))


def test_names_match_case_and_accent_insensitively(tmp_path):
    with SeriesStore.open(tmp_path / "s", "s") as store:
        cast(screenplay("Zoë"), store, storyworld_reference)
        again = cast(screenplay("ZOE"), store, storyworld_reference)
        assert not again["zoe"].new


def test_pinned_reference_image(tmp_path):
    from PIL import Image

    picture = np.zeros((32, 32, 3), np.uint8)
    picture[8:24, 8:24] = (200, 30, 30)
    Image.fromarray(picture).save(tmp_path / "mira.png")
    with SeriesStore.open(tmp_path / "s", "s") as store:
        members = cast(
            screenplay("Mira"), store, storyworld_reference, pins={"mira": tmp_path / "mira.png"}
        )
        stored = store.character(members["mira"].character_id)
        assert stored["pinned"] and stored["images"][0]["kind"] == "user"
        assert np.array_equal(store.get_image(members["mira"].portrait_blob), picture)


def test_a_reference_that_is_not_an_image_changes_nothing(tmp_path):
    (tmp_path / "fake.png").write_text("not a picture")
    with SeriesStore.open(tmp_path / "s", "s") as store:
        with pytest.raises(InputError, match="fake.png: not an image"):
            cast(
                screenplay("Mira"),
                store,
                storyworld_reference,
                pins={"mira": tmp_path / "fake.png"},
            )
        assert store.characters() == [] and store.episodes() == []


def test_export_import_is_bit_identical(tmp_path):
    with SeriesStore.open(tmp_path / "a" / "show", "show") as store:
        members = cast(screenplay("Mira", "Bo"), store, storyworld_reference)
        export_series(store, tmp_path / "show.tar")
        original = {
            k: (store.get_blob(m.portrait_blob), store.get_blob(m.embeddings[ENCODER]))
            for k, m in members.items()
        }
    folder = import_series(tmp_path / "show.tar", tmp_path / "b")
    with SeriesStore.open(folder, "show") as imported:
        for c in imported.characters():
            portrait, embedding = original[c["key"]]
            assert imported.get_blob(c["images"][0]["blob"]) == portrait
            assert imported.get_blob(c["embeddings"][ENCODER]) == embedding
        assert imported.integrity() == []
    # importing the same archive again is a no-op
    assert import_series(tmp_path / "show.tar", tmp_path / "b") == folder


def test_import_refuses_a_different_series_of_the_same_name(tmp_path):
    with SeriesStore.open(tmp_path / "a" / "show", "show") as store:
        cast(screenplay("Mira"), store, storyworld_reference)
        export_series(store, tmp_path / "show.tar")
    with SeriesStore.open(tmp_path / "home" / "show", "show") as other:
        cast(screenplay("Otto"), other, storyworld_reference)
    with pytest.raises(InputError, match="already exists and holds something else"):
        import_series(tmp_path / "show.tar", tmp_path / "home")
    with SeriesStore.open(tmp_path / "home" / "show", "show") as other:
        assert [c["name"] for c in other.characters()] == ["Otto"]
    import_series(tmp_path / "show.tar", tmp_path / "home", overwrite=True)
    with SeriesStore.open(tmp_path / "home" / "show", "show") as replaced:
        assert [c["name"] for c in replaced.characters()] == ["Mira"]


def test_corrupted_archives(tmp_path):
    import json
    import tarfile

    with SeriesStore.open(tmp_path / "a" / "show", "show") as store:
        cast(screenplay("Mira"), store, storyworld_reference)
        export_series(store, tmp_path / "ok.tar")
    with tarfile.open(tmp_path / "ok.tar") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}

    def write(name, files):
        import io

        with tarfile.open(tmp_path / name, "w") as tar:
            for path, data in files.items():
                info = tarfile.TarInfo(path)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return tmp_path / name

    blob = next(k for k in files if k.startswith("blobs/"))
    bad_blob = write("bad.tar", {**files, blob: files[blob][:-3] + b"xyz"})
    with pytest.raises(InputError, match="fails its checksum"):
        import_series(bad_blob, tmp_path / "h1")
    manifest = json.loads(files["manifest.json"])
    manifest["schema_version"] = 99
    newer = write("newer.tar", {**files, "manifest.json": json.dumps(manifest).encode()})
    with pytest.raises(InputError, match="schema version 99"):
        import_series(newer, tmp_path / "h2")
    (tmp_path / "junk.tar").write_bytes(b"junk" * 100)
    with pytest.raises(InputError, match="not a series archive"):
        import_series(tmp_path / "junk.tar", tmp_path / "h3")
    assert not (tmp_path / "h1" / "show").exists() and not (tmp_path / "h2" / "show").exists()


def test_corrupted_database_and_blobs(tmp_path):
    folder = tmp_path / "show"
    with SeriesStore.open(folder, "show") as store:
        members = cast(screenplay("Mira"), store, storyworld_reference)
        blob = store.blob_path(members["mira"].portrait_blob)
    blob.write_bytes(blob.read_bytes()[:10])  # truncated
    with SeriesStore.open(folder, "show") as store:
        with pytest.raises(InputError, match="blob corrupted"):
            store.get_image(members["mira"].portrait_blob)
        assert any("blob corrupted" in p for p in store.integrity())
    blob.unlink()
    with SeriesStore.open(folder, "show") as store:
        assert any("blob missing" in p for p in store.integrity())
    db = folder / "bible.sqlite"
    for extra in folder.glob("bible.sqlite-*"):
        extra.unlink()
    db.write_bytes(b"garbage" * 1000)
    with pytest.raises(InputError, match="not a usable series bible"):
        SeriesStore.open(folder, "show")
    assert db.read_bytes() == b"garbage" * 1000  # nothing was modified


def test_newer_schema_version_is_refused(tmp_path):
    with SeriesStore.open(tmp_path / "s", "s"):
        pass
    with sqlite3.connect(tmp_path / "s" / "bible.sqlite") as db:
        db.execute("UPDATE schema_version SET version=7")
    with pytest.raises(InputError, match="schema version 7 is newer"):
        SeriesStore.open(tmp_path / "s", "s")


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "", "x" * 80, "a\\b"])
def test_bad_series_names(tmp_path, name):
    with pytest.raises(InputError, match="bad series name"):
        SeriesStore.open(tmp_path / "x", name)


def test_two_processes_writing_one_series(tmp_path):
    folder = tmp_path / "show"
    with SeriesStore.open(folder, "show"):
        pass
    script = textwrap.dedent(f"""
        import sys, torch
        from reelsmith.memory.store import SeriesStore
        worker = sys.argv[1]
        with SeriesStore.open({str(folder)!r}, "show") as store:
            for i in range(100):
                blob = store.put_tensor(torch.full((4,), float(i)) + len(worker))
                store.add_character(f"{{worker}}-{{i}}", f"{{worker}} {{i}}", "", [], None,
                                    None, {{"test": blob}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, f"w{k}"]) for k in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    with SeriesStore.open(folder, "show") as store:
        assert store.integrity() == []
        assert len(store.characters()) == 200


def test_series_cli(tmp_path):
    env = {**os.environ, "REELSMITH_HOME": str(tmp_path / "home")}

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "reelsmith", "series", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    with SeriesStore.open(tmp_path / "home" / "series" / "show", "show") as store:
        cast(screenplay("Mira", "Bo"), store, storyworld_reference)
    listed = run("list")
    assert listed.returncode == 0 and "show\t2 characters\t1 episodes" in listed.stdout
    shown = run("show", "show")
    assert "mira: Mira" in shown.stdout and ENCODER in shown.stdout
    assert run("export", "show", "-o", str(tmp_path / "s.tar")).returncode == 0
    assert run("forget", "show", "bo").returncode == 0
    assert "bo: Bo" not in run("show", "show").stdout
    refused = run("import", str(tmp_path / "s.tar"))
    assert refused.returncode == 2 and "already exists" in refused.stderr
    assert run("import", str(tmp_path / "s.tar"), "--overwrite").returncode == 0
    assert "bo: Bo" in run("show", "show").stdout
    bad = run("show", "../etc")
    assert bad.returncode == 2 and "bad series name" in bad.stderr
    missing = run("show", "nothing")
    assert missing.returncode == 2 and "no series bible here" in missing.stderr


def test_locations_keep_their_reference_keyframe(tmp_path):
    calls = []

    def make_location(scene):
        calls.append(scene.location)
        return np.full((16, 16, 3), len(calls) * 40, np.uint8)

    with SeriesStore.open(tmp_path / "s", "s") as store:
        cast(screenplay("Mira"), store, storyworld_reference, make_location=make_location)
        cast(
            screenplay("Mira", title="Two"),
            store,
            storyworld_reference,
            make_location=make_location,
        )
        assert calls == ["forest"]  # the second episode reuses the forest's keyframe
        forest = store.location("forest")
        assert store.get_image(forest["blob"])[0, 0, 0] == 40


def test_series_cli_rejects_a_corrupted_archive(tmp_path):
    (tmp_path / "bad.tar").write_bytes(b"\x00" * 2048)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reelsmith",
            "series",
            "import",
            str(tmp_path / "bad.tar"),
            "--home",
            str(tmp_path / "home"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not a series archive" in result.stderr


def test_storyworld_casting_never_repeats_an_identity_in_a_series(tmp_path):
    from reelsmith.world.references import StoryworldReferences

    foxes = Screenplay.model_validate(
        {
            "title": "Foxes",
            "characters": [
                {"id": f"f{k}", "name": f"Fox {k}", "description": "a red fox"} for k in range(4)
            ],
            "scenes": [{"id": "s", "location": "forest", "shots": [{"id": "a"}]}],
        }
    )
    with SeriesStore.open(tmp_path / "s", "s") as store:
        first = cast(foxes, store, StoryworldReferences.for_store(store))
        more = foxes.model_copy(
            update={
                "characters": [
                    c.model_copy(update={"id": f"g{k}", "name": f"Vixen {k}"})
                    for k, c in enumerate(foxes.characters)
                ]
            }
        )
        second = cast(more, store, StoryworldReferences.for_store(store))
        identities = [
            json.dumps(m.identity, sort_keys=True) for m in [*first.values(), *second.values()]
        ]
        assert len(set(identities)) == 8
        assert all(m.identity["colour"] == "red" for m in first.values())


def test_import_never_replaces_a_foreign_folder(tmp_path):
    with SeriesStore.open(tmp_path / "a" / "show", "show") as store:
        cast(screenplay("Mira"), store, storyworld_reference)
        export_series(store, tmp_path / "show.tar")
    (tmp_path / "home" / "show").mkdir(parents=True)
    (tmp_path / "home" / "show" / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="already exists"):
        import_series(tmp_path / "show.tar", tmp_path / "home")
    assert (tmp_path / "home" / "show" / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["records"].update(characters=[["not", "a", "row"]]), "malformed row"),
        (
            lambda m: m["records"]["characters"][0].update({"id) VALUES (1); --": 1}),
            "malformed row",
        ),
        (lambda m: m.update(blobs={}), "points at a blob not in it"),
        (lambda m: m.update(series=["show"]), "no series name"),
        (lambda m: m.update(series="../evil"), "bad series name"),
    ],
)
def test_malformed_archive_records(tmp_path, change, message):
    import io
    import tarfile

    with SeriesStore.open(tmp_path / "a" / "show", "show") as store:
        cast(screenplay("Mira"), store, storyworld_reference)
        export_series(store, tmp_path / "ok.tar")
    with tarfile.open(tmp_path / "ok.tar") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    manifest = json.loads(files["manifest.json"])
    change(manifest)
    files["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(tmp_path / "bad.tar", "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(InputError, match=message):
        import_series(tmp_path / "bad.tar", tmp_path / "home")
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())


def test_a_failure_while_casting_leaves_the_series_as_it_was(tmp_path):
    def flaky(character, image):
        if character.id == "bo":
            raise RuntimeError("the renderer ran out of memory")
        return storyworld_reference(character, image)

    with SeriesStore.open(tmp_path / "s", "s") as store:
        with pytest.raises(RuntimeError):
            cast(screenplay("Mira", "Bo"), store, flaky)
        assert store.characters() == [] and store.episodes() == []


def test_pins_must_name_a_new_cast_member(tmp_path):
    with SeriesStore.open(tmp_path / "s", "s") as store:
        with pytest.raises(InputError, match="'typo', who is not in the screenplay's cast"):
            cast(screenplay("Mira"), store, storyworld_reference, pins={"typo": "x.png"})
        cast(screenplay("Mira"), store, storyworld_reference)
        from PIL import Image

        Image.new("RGB", (8, 8)).save(tmp_path / "m.png")
        with pytest.raises(InputError, match="already cast in series"):
            cast(screenplay("Mira"), store, storyworld_reference, pins={"mira": tmp_path / "m.png"})


def test_two_characters_of_one_screenplay_never_merge(tmp_path):
    sp = Screenplay.model_validate(
        {
            "title": "t",
            "characters": [{"id": "zoe", "name": "Zoë"}, {"id": "zoe-2", "name": "Zoe"}],
            "scenes": [{"id": "s", "location": "forest", "shots": [{"id": "a"}]}],
        }
    )
    with SeriesStore.open(tmp_path / "s", "s") as store:
        members = cast(sp, store, storyworld_reference)
        assert members["zoe"].character_id != members["zoe-2"].character_id
        again = cast(sp, store, storyworld_reference)
        assert {m.character_id for m in again.values()} == {
            m.character_id for m in members.values()
        }


def test_two_processes_casting_the_same_new_character(tmp_path):
    folder = tmp_path / "show"
    with SeriesStore.open(folder, "show"):
        pass
    script = textwrap.dedent(f"""
        from reelsmith.memory.casting import cast
        from reelsmith.memory.store import SeriesStore
        from reelsmith.schema.screenplay import Screenplay
        from reelsmith.world.references import storyworld_reference
        sp = Screenplay.model_validate({{"title": "t", "characters": [{{"id": "mira",
              "name": "Mira"}}], "scenes": [{{"id": "s", "location": "forest",
              "shots": [{{"id": "a"}}]}}]}})
        with SeriesStore.open({str(folder)!r}, "show") as store:
            for _ in range(20):
                cast(sp, store, storyworld_reference)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    with SeriesStore.open(folder, "show") as store:
        assert len(store.characters()) == 1 and len(store.episodes()) == 40
        assert store.integrity() == []
