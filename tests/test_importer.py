"""`vidrec import` (MovieLens, generic CSV/Parquet, items files, bad rows); `vidrec data fetch`."""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import EventType, UserEvent, VideoPublished
from streams.cli import main
from streams.imports.importer import import_file, import_movielens
from streams.imports.rows import LogLayout, MetaColumns, parse_time
from streams.wire.eventlog import BadLine, read_log

T0 = 946_684_800  # 2000-01-01T00:00:00Z
Y2005 = 1_104_537_600  # 2005-01-01T00:00:00Z


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _log(path: Path) -> list[VideoPublished | UserEvent]:
    msgs = list(read_log(path))
    assert not [m for m in msgs if isinstance(m, BadLine)]
    return msgs


def _time(m: VideoPublished | UserEvent) -> datetime:
    return m.published_at if isinstance(m, VideoPublished) else m.ts


@pytest.fixture
def movielens_csv(tmp_path: Path) -> Path:
    path = tmp_path / "ml.csv"
    path.write_text(
        "movieId,title,year,genres,userId,rating,timestamp\n"
        f"1,Toy Story,1995,Adventure|Animation,1,5.0,{T0 + 10}\n"
        f"2,New Film,2005,Drama,1,3.5,{Y2005 + 50}\n"
        f"3,,NA,(no genres listed),2,2.0,{T0}\n"
        f'1,"Toy Story",1995,Adventure|Animation,2,4.0,{T0}\n'
        f"2,New Film,2005,Drama,3,4.5,{Y2005}\n"
    )
    return path


def test_movielens_layout_publishes_at_the_later_of_stream_start_and_release_year(
    movielens_csv, tmp_path
):
    out = tmp_path / "log.jsonl"
    report = import_movielens(movielens_csv, out)
    msgs = _log(out)
    assert (report.rows, report.events, report.videos, report.bad) == (5, 5, 3, [])
    videos = {m.video_id: m for m in msgs if isinstance(m, VideoPublished)}
    assert videos["m1"].published_at == _utc(T0)  # a 1995 film was on the shelf at the start
    assert videos["m2"].published_at == _utc(Y2005)  # a 2005 film appears on 1 January 2005
    assert videos["m3"].published_at == _utc(T0)  # no year: the stream's start
    assert videos["m3"].title == "Movie 3" and videos["m3"].tags == []
    assert videos["m1"].tags == ["Adventure", "Animation"] and videos["m1"].category == "Adventure"
    times = [_time(m) for m in msgs]
    assert times == sorted(times)
    # a video comes before the events at its own instant; events at one instant keep file
    # order, and videos published together come in the order the stream first names them
    kinds = [(m.kind, m.video_id, getattr(m, "user_id", "")) for m in msgs]
    assert kinds[:5] == [
        ("video", "m3", ""),
        ("video", "m1", ""),
        ("event", "m3", "u2"),
        ("event", "m1", "u2"),
        ("event", "m1", "u1"),
    ]
    assert kinds[5:] == [("video", "m2", ""), ("event", "m2", "u3"), ("event", "m2", "u1")]
    assert {m.type for m in msgs if isinstance(m, UserEvent)} == {EventType.WATCH}


def test_movielens_graded_maps_ratings_and_event_ids_are_stable_and_unique(movielens_csv, tmp_path):
    import_movielens(movielens_csv, tmp_path / "a.jsonl", graded=True)
    import_movielens(movielens_csv, tmp_path / "b.jsonl", graded=True)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    events = [m for m in _log(tmp_path / "a.jsonl") if isinstance(m, UserEvent)]
    types = {(e.user_id, e.video_id): e.type for e in events}
    assert types == {
        ("u1", "m1"): EventType.LIKE,  # 5
        ("u1", "m2"): EventType.WATCH,  # 3.5 rounds down to 3
        ("u2", "m3"): EventType.PLAY,  # below 3
        ("u2", "m1"): EventType.COMPLETE,  # 4
        ("u3", "m2"): EventType.COMPLETE,  # 4.5
    }
    ids = [e.event_id for e in events]
    assert len(set(ids)) == len(ids)
    assert f"u1-m1-{T0 + 10}" in ids


def test_generic_csv_with_iso_and_millisecond_times_and_a_type_column(tmp_path):
    src = tmp_path / "plays.csv"
    src.write_text(
        "who,video,when,action\n"
        "alice,v1,2024-03-01T10:00:00Z,view\n"
        "alice,v2,2024-03-01T12:00:00+02:00,LIKE\n"  # 10:00 UTC
        "bob,v1,2024-03-01 09:00:00,play\n"  # no offset: UTC
        "bob,v2,1709290800000,finished\n"  # ms: 2024-03-01T11:00Z
        "bob,v2,1709290800,like\n"  # seconds, same instant as the line before
    )
    out = tmp_path / "log.jsonl.gz"
    layout = LogLayout(user="who", item="video", time="when", type="action")
    report = import_file(src, out, layout)
    assert report.bad == [] and report.events == 5
    events = [m for m in _log(out) if isinstance(m, UserEvent)]
    got = [(e.user_id, e.video_id, e.type.value, e.ts.isoformat()) for e in events]
    assert got == [
        ("bob", "v1", "play", "2024-03-01T09:00:00+00:00"),
        ("alice", "v1", "watch", "2024-03-01T10:00:00+00:00"),
        ("alice", "v2", "like", "2024-03-01T10:00:00+00:00"),
        ("bob", "v2", "complete", "2024-03-01T11:00:00+00:00"),
        ("bob", "v2", "like", "2024-03-01T11:00:00+00:00"),
    ]
    # two events of one user on one video in one second still get distinct, stable ids
    assert [e.event_id for e in events[-2:]] == ["bob-v2-1709290800", "bob-v2-1709290800-2"]
    videos = [m for m in _log(out) if isinstance(m, VideoPublished)]
    assert [(v.video_id, v.title) for v in videos] == [("v1", "Item v1"), ("v2", "Item v2")]


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("1700000000", "auto", 1_700_000_000.0),
        ("1700000000123", "auto", 1_700_000_000.123),
        (1_700_000_000_123_456, "auto", 1_700_000_000.123456),
        ("1700000000", "ms", 1_700_000.0),
        ("2023-11-14T22:13:20.5Z", "auto", 1_700_000_000.5),
        (datetime(2023, 11, 14, 22, 13, 20), "auto", 1_700_000_000.0),
    ],
)
def test_time_units_and_iso(value, unit, expected):
    assert parse_time(value, unit) == pytest.approx(expected, abs=1e-6)


def test_parquet_with_a_rating_map_and_a_bad_row_numbered(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "user": pa.array([7, 7, None, 8], pa.int64()),
            "item": ["a", "b", "c", "a"],
            "t": pa.array([T0 * 1000, (T0 + 60) * 1000, T0 * 1000, T0 * 1000], pa.timestamp("ms")),
            "stars": [10.0, 2.0, 9.0, 6.0],
        }
    )
    src = tmp_path / "log.parquet"
    pq.write_table(table, src)
    out = tmp_path / "log.jsonl"
    code = main(
        [
            "import", str(src), "-o", str(out), "--quiet",
            "--user", "user", "--item", "item", "--time", "t", "--rating", "stars",
            "--rating-map", "9=like,5=watch,0=dislike", "--user-prefix", "u",
        ]
    )  # fmt: skip
    assert code == 0
    events = [m for m in _log(out) if isinstance(m, UserEvent)]
    assert [(e.user_id, e.video_id, e.type.value) for e in events] == [
        ("u7", "a", "like"),
        ("u8", "a", "watch"),
        ("u7", "b", "dislike"),
    ]
    assert events[0].ts == _utc(T0)
    bad = tmp_path / "bad.csv"
    main(
        [
            "import", str(src), "-o", str(out), "--quiet", "--bad-rows", str(bad),
            "--user", "user", "--item", "item", "--time", "t", "--rating", "stars",
        ]
    )  # fmt: skip
    rows = list(csv.DictReader(bad.open()))
    assert [(r["line"], r["reason"]) for r in rows] == [("3", "missing user id")]


def test_items_file_titles_tags_years_and_explicit_publication(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(f"u,i,t\nann,x1,{T0}\nann,x2,{T0 + 5}\nbea,x3,{T0 + 9}\nbea,x4,{Y2005 + 1}\n")
    items = tmp_path / "items.csv"
    items.write_text(
        "id,name,keywords,year,released,about\n"
        'x1,First,"cooking, pasta",1990,,A pasta video\n'
        "x2,Second,sports|football,2005,,\n"  # a year after the stream's start: its 1 January
        f"x3,Third,,1999,{T0 + 7},\n"  # an explicit time wins over the year
        f"x9,Unwatched,news,,{T0 + 3},\n"  # in the catalogue only: still published
        "x4,Fourth,,next year,,\n"  # a bad row: x4 keeps a video, with the fallback title
        f"x5,{'long ' * 250},,,,\n"  # a title the schema refuses: the video keeps the fallback
    )
    out = tmp_path / "log.jsonl"
    code = main(
        [
            "import", str(log), "-o", str(out), "--quiet", "--user", "u", "--item", "i",
            "--time", "t", "--items", str(items), "--item-id", "id", "--title", "name",
            "--tags", "keywords", "--published", "released", "--description", "about",
            "--bad-rows", str(tmp_path / "bad.csv"),
        ]
    )  # fmt: skip
    assert code == 0
    videos = {m.video_id: m for m in _log(out) if isinstance(m, VideoPublished)}
    assert set(videos) == {"x1", "x2", "x3", "x4", "x5", "x9"}
    assert videos["x5"].title == "Item x5"
    assert (videos["x1"].title, videos["x1"].tags) == ("First", ["cooking", "pasta"])
    assert videos["x1"].description == "A pasta video"
    assert videos["x1"].published_at == _utc(T0)
    assert videos["x2"].tags == ["sports", "football"]
    assert videos["x2"].published_at == _utc(Y2005)
    assert videos["x3"].published_at == _utc(T0 + 7)
    assert videos["x9"].published_at == _utc(T0 + 3)
    assert (videos["x4"].title, videos["x4"].published_at) == ("Item x4", _utc(T0))
    bad = list(csv.DictReader((tmp_path / "bad.csv").open()))
    assert [(b["file"], b["line"], b["reason"]) for b in bad] == [
        (str(items), "6", "year 'next year' is not a number"),
        (
            str(items),
            "7",
            "item x5: title: String should have at most 1000 characters "
            "(kept with title 'Item x5')",
        ),
    ]


def test_bad_rows_are_reported_with_their_line_and_skipped(tmp_path, capsys):
    src = tmp_path / "log.csv"
    src.write_text(
        "user,item,time,kind,note\n"  # line 1
        "u1,v1,1700000000,play,ok\n"  # 2
        ',v1,1700000001,play,"a note\nover two lines"\n'  # 3-4: missing user
        "u2,v1,yesterday,play,ok\n"  # 5
        "u3,v1,1700000002,teleport,ok\n"  # 6
        f"u4,{'v' * 300},1700000003,play,ok\n"  # 7
        "u5,v\x01,1700000004,play,ok\n"  # 8
        "u6,v1,1700000005,play\n"  # 9: a field short
        "u7,v2,1700000006,watch,ok\n"  # 10
    )
    out = tmp_path / "log.jsonl"
    bad = tmp_path / "bad.csv"
    args = ["import", str(src), "-o", str(out), "--bad-rows", str(bad), "--quiet"]
    code = main(args + ["--user", "user", "--item", "item", "--time", "time", "--type", "kind"])
    assert code == 0
    err = capsys.readouterr().err
    rows = list(csv.DictReader(bad.open()))
    assert [int(r["line"]) for r in rows] == [3, 5, 6, 7, 8, 9]
    reasons = [r["reason"] for r in rows]
    assert reasons[0] == "missing user id"
    assert "neither unix time nor ISO-8601" in reasons[1]
    assert "unknown event type 'teleport'" in reasons[2]
    assert "longer than 256" in reasons[3] and "control character" in reasons[4]
    assert reasons[5] == "4 fields where the header has 5"
    assert rows[2]["raw"] == "u3,v1,1700000002,teleport,ok"
    assert f"{src}:6: skipped: unknown event type 'teleport'" in err
    assert "imported 2 events on 2 videos from 8 rows (6 bad rows skipped)" in err
    events = [m for m in _log(out) if isinstance(m, UserEvent)]
    assert [(e.user_id, e.video_id) for e in events] == [("u1", "v1"), ("u7", "v2")]


def test_vidrec_import_detects_movielens_and_explains_a_layout_it_does_not_know(
    movielens_csv, tmp_path, capsys
):
    out = tmp_path / "log.jsonl.gz"
    assert main(["import", str(movielens_csv), "-o", str(out), "--graded", "--quiet"]) == 0
    import_movielens(movielens_csv, tmp_path / "direct.jsonl", graded=True)
    assert gzip.decompress(out.read_bytes()) == (tmp_path / "direct.jsonl").read_bytes()
    assert "imported 5 events on 3 videos from 5 rows (0 bad rows skipped)" in (
        capsys.readouterr().err
    )
    other = tmp_path / "other.csv"
    other.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(SystemExit, match="not the MovieLens layout.*columns: a, b, c"):
        main(["import", str(other), "-o", str(out)])
    with pytest.raises(SystemExit, match="no column 'when'"):
        main(["import", str(other), "-o", str(out), "--user", "a", "--item", "b", "--time", "when"])
    with pytest.raises(SystemExit, match="no such file"):
        main(["import", str(tmp_path / "missing.csv"), "-o", str(out)])
    with pytest.raises(SystemExit, match="not a vidrec event type"):
        main(["import", str(movielens_csv), "-o", str(out), "--rating-map", "5=adore"])


# -- metadata columns ----------------------------------------------------------------------------
def _meta(v: VideoPublished) -> tuple:
    return (v.creator_id, v.language, v.duration_s, v.width, v.height, v.thumbnail_url)


def test_items_file_metadata_by_flag_and_by_vidrec_field_name(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text(f"u,i,t\nann,a,{T0}\nann,b,{T0 + 1}\nbea,c,{T0 + 2}\nbea,d,{T0 + 3}\n")
    items = tmp_path / "items.csv"
    items.write_text(
        "id,channel,lang,length,width,height,thumbnail_url\n"
        "a,UC1,pt_BR,4:13,1920,1080,https://img.example/a.jpg\n"  # mm:ss, pt_BR read as pt-BR
        "b,UC1,en,01:02:03,1080.0,1920,/srv/thumbs/b.png\n"  # hh:mm:ss; a whole float is fine
        "c,,,PT1M30S,,,\n"  # ISO-8601; empty values are unknown
        "d,UC2,English,soon,-1,wide,x\n"  # a bad row: the video keeps only its fallback title
    )
    out = tmp_path / "log.jsonl"
    bad = tmp_path / "bad.csv"
    code = main(
        [
            "import", str(log), "-o", str(out), "--quiet", "--user", "u", "--item", "i",
            "--time", "t", "--items", str(items), "--item-id", "id", "--creator", "channel",
            "--language", "lang", "--duration", "length", "--bad-rows", str(bad),
        ]
    )  # fmt: skip
    assert code == 0
    videos = {m.video_id: m for m in _log(out) if isinstance(m, VideoPublished)}
    assert _meta(videos["a"]) == ("UC1", "pt-BR", 253.0, 1920, 1080, "https://img.example/a.jpg")
    assert _meta(videos["b"]) == ("UC1", "en", 3723.0, 1080, 1920, "/srv/thumbs/b.png")
    assert _meta(videos["c"]) == (None, "", 90.0, 0, 0, None)
    assert _meta(videos["d"]) == (None, "", 0.0, 0, 0, None)
    rows = list(csv.DictReader(bad.open()))
    assert [(r["line"], r["reason"]) for r in rows] == [
        ("5", "language 'English' is not a language tag (en, pt-BR, ...)")
    ]
    assert "1 bad rows skipped" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("duration", "soon", "duration 'soon' is neither seconds, mm:ss, hh:mm:ss nor ISO-8601"),
        ("duration", "1:75", "duration '1:75' is neither seconds, mm:ss, hh:mm:ss nor ISO-8601"),
        ("duration", "-3", "duration -3 s is out of range (0 to 30 days)"),
        ("duration", "3000000", "duration 3e+06 s is out of range (0 to 30 days)"),
        ("width", "wide", "width 'wide' is not a number"),
        ("height", "720.5", "height 720.5 is not a whole number of pixels from 0 to 100000"),
        ("width", "-1", "width -1 is not a whole number of pixels from 0 to 100000"),
        ("language", "en-", "language 'en-' is not a language tag (en, pt-BR, ...)"),
        ("creator", "UC" + "x" * 300, "creator id is longer than 256 characters"),
        ("thumbnail", "a\x01b", "thumbnail contains a control character"),
    ],
)
def test_a_bad_metadata_value_in_the_log_is_a_bad_row(tmp_path, column, value, reason):
    src = tmp_path / "log.csv"
    with src.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "time", column])
        w.writerow(["u1", "v1", T0, ""])  # unknown: fine
        w.writerow(["u2", "v2", T0 + 1, value])
    out = tmp_path / "log.jsonl"
    layout = LogLayout(user="user", item="item", time="time", meta=MetaColumns(**{column: column}))
    report = import_file(src, out, layout)
    assert [(b.line, b.reason) for b in report.bad] == [(3, reason)]
    assert report.events == 1 and [v.video_id for v in _log(out) if v.kind == "video"] == ["v1"]


def test_log_columns_carry_metadata_and_an_items_file_wins_field_by_field(tmp_path, capsys):
    log = tmp_path / "log.tsv"
    log.write_text(
        "user\tvideo\tts\tchannel\tlen\tlang\n"
        f"ann\tv1\t{T0 + 5}\tUCa\t10:00\tes\n"
        f"bob\tv1\t{T0}\tUCa\t9:59\tes-MX\n"  # the earliest row of v1 says what v1 is
        f"bob\tv2\t{T0 + 9}\tUCb\t45\tde\n"
    )
    items = tmp_path / "items.csv"
    items.write_text("video,title,lang\nv2,Second,fr\n")  # v2's language from here, not the log
    out = tmp_path / "log.jsonl"
    args = ["import", str(log), "-o", str(out), "--quiet", "--user", "user", "--item", "video"]
    args += ["--time", "ts", "--creator", "channel", "--duration", "len", "--language", "lang"]
    assert main([*args, "--items", str(items)]) == 0
    videos = {m.video_id: m for m in _log(out) if isinstance(m, VideoPublished)}
    assert _meta(videos["v1"]) == ("UCa", "es-MX", 599.0, 0, 0, None)
    assert (videos["v2"].title, *_meta(videos["v2"])) == ("Second", "UCb", "fr", 45.0, 0, 0, None)
    with pytest.raises(SystemExit, match=r"--width: no column 'w' in .*log.tsv \(columns: user,"):
        main([*args, "--width", "w"])


def test_parquet_metadata_columns_with_nulls(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "user": ["a", "b", "c"],
            "item": ["x", "y", "z"],
            "t": [T0, T0 + 1, T0 + 2],
            "secs": pa.array([61.5, None, float("nan")], pa.float64()),
            "w": pa.array([3840, None, 1280], pa.int64()),
            "span": pa.array([61_500, None, 86_400_000 * 2], pa.duration("ms")),
        }
    )
    src = tmp_path / "log.parquet"
    pq.write_table(table, src)
    out = tmp_path / "log.jsonl"
    layout = LogLayout("user", "item", "t", meta=MetaColumns(duration="secs", width="w"))
    report = import_file(src, out, layout)
    assert report.bad == []
    videos = {m.video_id: m for m in _log(out) if isinstance(m, VideoPublished)}
    assert [(videos[i].duration_s, videos[i].width) for i in "xyz"] == [
        (61.5, 3840),
        (0.0, 0),
        (0.0, 1280),
    ]
    layout.meta.duration = "span"  # a Parquet duration column
    import_file(src, out, layout)
    videos = {m.video_id: m for m in _log(out) if isinstance(m, VideoPublished)}
    assert [videos[i].duration_s for i in "xyz"] == [61.5, 0.0, 172_800.0]


# -- vidrec data fetch ---------------------------------------------------------------------------
def _tiny_frame():
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    with pd.option_context("future.infer_string", False):  # rdata writes object strings only
        return pd.DataFrame(
            {
                "movieId": pd.array([1263, 5], dtype="Int32"),
                "title": np.array(["Deer Hunter, The", None], dtype=object),
                "year": pd.array([1978, pd.NA], dtype="Int32"),
                "genres": pd.Categorical(["Drama|War", "Comedy"]),
                "userId": pd.array([1, 2], dtype="Int32"),
                "rating": [2.0, 4.5],
                "timestamp": pd.array([1260759151, 1260759152], dtype="Int32"),
            }
        )


TINY_CSV = (
    "movieId,title,year,genres,userId,rating,timestamp\n"
    '1263,"Deer Hunter, The",1978,Drama|War,1,2.0,1260759151\n'
    "5,,,Comedy,2,4.5,1260759152\n"
)


def _lazyload_db(folder: Path, frame) -> Path:
    """An R lazy-load database as R writes one: gzipped index, 4-byte length + zlib blocks."""
    rdata = pytest.importorskip("rdata")
    np = pytest.importorskip("numpy")
    import zlib

    folder.mkdir(parents=True)
    rdata.write_rds(folder / "obj.rds", frame, compression="gzip")
    raw = gzip.decompress((folder / "obj.rds").read_bytes())
    block = len(raw).to_bytes(4, "big") + zlib.compress(raw)
    pad = b"\0" * 17  # the object need not be the first block
    (folder / "Rdata.rdb").write_bytes(pad + block)
    index = {
        "variables": {"movielens": np.array([len(pad), len(block)], dtype=np.int32)},
        "references": {},
        "compressed": True,
    }
    rdata.write_rds(folder / "Rdata.rdx", index, compression="gzip")
    (folder / "obj.rds").unlink()
    return folder / "Rdata"


def test_lazyload_database_reads_back_as_the_projects_csv(tmp_path):
    from streams.imports.datasets import frame_to_csv, read_lazyload

    db = _lazyload_db(tmp_path / "db", _tiny_frame())
    assert frame_to_csv(read_lazyload(db, "movielens")).decode() == TINY_CSV


def test_fetch_offline_with_stand_in_apt_get_and_dpkg_deb(tmp_path, monkeypatch):
    """The whole fetch against stand-ins: the checksum decides whether anything is written."""
    from streams.imports import datasets

    pkg = tmp_path / "pkgroot"
    _lazyload_db(pkg / "usr/lib/R/data", _tiny_frame())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {
        "apt-get": 'touch "r-fake_1.0_all.deb"',
        "dpkg-deb": f'mkdir -p "$3" && cp -r "{pkg}/." "$3"',
    }.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    good = datasets.RDataset(
        package="r-fake",
        version="1.0",
        database="usr/lib/R/data/Rdata",
        variable="movielens",
        filename="tiny.csv.gz",
        sha256=hashlib.sha256(TINY_CSV.encode()).hexdigest(),
    )
    dst = datasets.fetch(good, tmp_path / "out", log=lambda m: None)
    assert gzip.decompress(dst.read_bytes()).decode() == TINY_CSV
    wrong = datasets.RDataset(**{**good.__dict__, "filename": "other.csv.gz", "sha256": "0" * 64})
    with pytest.raises(datasets.FetchError, match="not the expected"):
        datasets.fetch(wrong, tmp_path / "out", log=lambda m: None)
    assert not (tmp_path / "out" / "other.csv.gz").exists()


def test_fetch_says_what_is_missing(tmp_path, monkeypatch, capsys):
    from streams.imports import datasets

    monkeypatch.setattr(datasets.shutil, "which", lambda tool: None)
    assert main(["data", "fetch", "movielens", "--out", str(tmp_path)]) == 1
    assert "apt-get not found" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "rdata", None)  # as if not installed
    assert main(["data", "fetch", "movielens", "--out", str(tmp_path)]) == 1
    assert "pip install 'vidrec[data]'" in capsys.readouterr().err


@pytest.mark.skipif(
    os.environ.get("VIDREC_TEST_FETCH") != "1",
    reason="needs the Debian archive; run with VIDREC_TEST_FETCH=1",
)
def test_fetch_movielens_from_debian_and_import_it(tmp_path):
    from streams.imports.datasets import MOVIELENS

    assert main(["data", "fetch", "movielens", "--out", str(tmp_path)]) == 0
    csv_gz = tmp_path / MOVIELENS.filename
    assert hashlib.sha256(gzip.decompress(csv_gz.read_bytes())).hexdigest() == MOVIELENS.sha256
    report = import_movielens(csv_gz, tmp_path / "log.jsonl.gz")
    assert (report.rows, report.events, report.videos, len(report.bad)) == (
        100_004,
        100_004,
        9_066,
        0,
    )


def test_grouplens_ratings_and_movies_files_and_a_file_that_is_not_gzip(tmp_path):
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("\ufeffuserId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,3,1.0,5\n")
    movies = tmp_path / "movies.csv"
    movies.write_text(
        'movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n3,"Heat, The (2001)",Crime\n'
    )
    out = tmp_path / "log.jsonl"
    args = ["import", str(ratings), "--items", str(movies), "-o", str(out), "--quiet"]
    assert main(args) == 0
    videos = {m.video_id: m for m in _log(out) if isinstance(m, VideoPublished)}
    assert (videos["m1"].title, videos["m1"].tags) == ("Toy Story", ["Animation", "Comedy"])
    assert (videos["m3"].title, videos["m3"].published_at) == ("Heat, The", _utc(978_307_200))
    broken = tmp_path / "log.csv.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(SystemExit, match=r"log\.csv\.gz: Not a gzipped file"):
        main(["import", str(broken), "-o", str(out)])
