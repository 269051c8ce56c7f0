"""Dense captions on the client without a server: parsing padded outputs, results.json 1.2, options, CLI, drawing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import clients.cli as cli
from clients.outputs.annotators import annotate, draw_dense_captions
from clients.outputs.text import dense_caption_text
from clients.pipeline import filter_detections
from clients.results import (
    SCHEMA_VERSION,
    TEMPLATE_NOTE,
    DenseCaption,
    Detection,
    FrameResult,
    ImageEntry,
    ImageResult,
    ImageSetResults,
    SceneLabel,
    VideoResults,
    caption_summary,
)
from clients.transport import CaptionOptions, SceneClient
from clients.transport.decoding import parse_outputs
from mmw.errors import ConfigError, InferenceError, InputError

BLIP = "Salesforce/blip-image-captioning-base"


def _outputs(counts: list[int], dense: list[list[tuple[int, str, list[int]]]] | None,
             caption_tokens: list[list[int]] | None = None, errors: list[str] | None = None,
             k_pad: int = 0, l_pad: int = 0) -> dict[str, np.ndarray]:
    """Ensemble outputs for len(counts) images; ``dense[i]`` = [(box index, caption, tokens)] padded like the server.

    ``dense`` None: the template outputs (one empty slot each); ``k_pad``/``l_pad`` add spare padding slots.
    """
    n, m = len(counts), max(counts) + 1
    boxes = np.full((n, m, 4), -1.0, np.float32)
    scores = np.full((n, m), -1.0, np.float32)
    ids = np.full((n, m), -1, np.int32)
    names = np.full((n, m), b"", dtype=object)
    for i, c in enumerate(counts):
        for j in range(c):
            boxes[i, j] = (10 * j, 20, 10 * j + 30, 60)
            scores[i, j] = 0.9 - 0.1 * j
            ids[i, j] = 17 + j
            names[i, j] = f"thing{j}".encode()
    out = {
        "BOXES": boxes, "SCORES": scores, "CLASS_IDS": ids, "CLASS_NAMES": names,
        "NUM_DETECTIONS": np.array(counts, np.int32).reshape(n, 1),
        "LABELS": np.array([[b"tabby"]] * n, dtype=object),
        "LABEL_SCORES": np.full((n, 1), 0.5, np.float32),
        "CAPTION": np.array([[f"caption {i}".encode()] for i in range(n)], dtype=object),
        "CAPTION_SOURCE": np.array([[(b"template" if dense is None else BLIP.encode())]] * n, dtype=object),
    }
    if dense is None:
        out |= {"CAPTION_TOKENS": np.full((n, 1), -1, np.int32), "DENSE_CAPTIONS": np.full((n, 1), b"", dtype=object),
                "DENSE_BOX_INDEX": np.full((n, 1), -1, np.int32), "DENSE_TOKENS": np.full((n, 1, 1), -1, np.int32)}
    else:
        k = max([len(d) for d in dense] + [1]) + k_pad
        length = max([len(t) for d in dense for _, _, t in d] + [1]) + l_pad
        texts = np.full((n, k), b"", dtype=object)
        index = np.full((n, k), -1, np.int32)
        tokens = np.full((n, k, length), -1, np.int32)
        for i, items in enumerate(dense):
            for slot, (j, text, toks) in enumerate(items):
                texts[i, slot], index[i, slot] = text.encode(), j
                tokens[i, slot, :len(toks)] = toks
        caption_tokens = caption_tokens or [[101, 7, 102]] * n
        width = max(len(t) for t in caption_tokens) + l_pad
        frame = np.full((n, width), -1, np.int32)
        for i, t in enumerate(caption_tokens):
            frame[i, :len(t)] = t
        out |= {"CAPTION_TOKENS": frame, "DENSE_CAPTIONS": texts, "DENSE_BOX_INDEX": index, "DENSE_TOKENS": tokens}
    if errors is not None:
        out["ERROR"] = np.array([[e.encode()] for e in errors], dtype=object)
    return out


# --- parsing padded arrays -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "dense", "errors", "want"),
    [
        pytest.param([2, 0], None, None, [[], []], id="template: one empty slot each"),
        pytest.param([2, 1], [[], []], None, [[], []], id="neural: no dense caption"),
        pytest.param([3], [[(1, "a dog on grass", [5, 6, 7])]], None, [[(1, "a dog on grass", (5, 6, 7))]],
                     id="one dense caption"),
        pytest.param([3, 1, 0], [[(0, "a man", [1, 2]), (2, "a red hat", [3, 4, 5, 6])], [(0, "a cat", [8])], []],
                     None, [[(0, "a man", (1, 2)), (2, "a red hat", (3, 4, 5, 6))], [(0, "a cat", (8,))], []],
                     id="several, ragged, some images without"),
        pytest.param([2, 2], [[(0, "a café", [9])], [(1, "broken", [1])]], ["", "IMAGE[1]: not an image"],
                     [[(0, "a café", (9,))], None], id="bad image: no dense captions"),
    ],
)
@pytest.mark.parametrize("pads", [(0, 0), (2, 3)], ids=["tight", "spare padding"])
def test_parse_dense_captions(counts: list[int], dense: Any, errors: list[str] | None,
                              want: list[list[tuple[int, str, tuple[int, ...]]] | None], pads: tuple[int, int]) -> None:
    results = parse_outputs(_outputs(counts, dense, errors=errors, k_pad=pads[0], l_pad=pads[1]))
    assert len(results) == len(counts)
    for r, expected in zip(results, want, strict=True):
        if expected is None:
            assert r.error and r.dense_captions == () and r.caption_tokens == ()
            continue
        assert [(c.box_index, c.caption, c.tokens) for c in r.dense_captions] == expected
        for c in r.dense_captions:  # the caption carries its detection
            det = r.detections[c.box_index]
            assert (c.class_name, c.score, c.box) == (det.class_name, det.score, det.box)
        assert r.caption_tokens == (() if dense is None else (101, 7, 102))
        assert r.neural == (dense is not None)


def test_parse_without_dense_outputs_is_an_older_server() -> None:
    outputs = _outputs([1], None)
    for name in ("CAPTION_TOKENS", "DENSE_CAPTIONS", "DENSE_BOX_INDEX", "DENSE_TOKENS"):
        del outputs[name]
    (result,) = parse_outputs(outputs)
    assert result.dense_captions == () and result.caption_tokens == () and len(result.detections) == 1


def test_parse_caption_tokens_strips_padding() -> None:
    results = parse_outputs(_outputs([1, 1], [[], []], caption_tokens=[[1, 2, 3, 4], [5]], l_pad=2))
    assert [r.caption_tokens for r in results] == [(1, 2, 3, 4), (5,)]


def _drop(*names: str) -> Callable[[dict[str, np.ndarray]], None]:
    def change(o: dict[str, np.ndarray]) -> None:
        for name in names:
            del o[name]
    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: o["DENSE_BOX_INDEX"].__setitem__((0, 0), 2), r"DENSE_BOX_INDEX\[0, 0\] = 2 is not a detection "
                                                                r"of that image \(expected 0\.\.1"),
        (lambda o: o["DENSE_BOX_INDEX"].__setitem__((1, 0), 0), r"DENSE_BOX_INDEX\[1, 0\] = 0 .*expected 0\.\.-1"),
        (lambda o: o.__setitem__("DENSE_CAPTIONS", o["DENSE_CAPTIONS"][:, :1]),
         r"DENSE_CAPTIONS expected shape \[2, 2\]"),
        (lambda o: o.__setitem__("DENSE_TOKENS", o["DENSE_TOKENS"][:, :1]), r"DENSE_TOKENS expected shape \[2, 2, L\]"),
        (lambda o: o.__setitem__("CAPTION_TOKENS", o["CAPTION_TOKENS"][:1]), r"CAPTION_TOKENS expected shape \[2, L\]"),
        (_drop("DENSE_BOX_INDEX"), r"expected DENSE_CAPTIONS and DENSE_BOX_INDEX together, DENSE_BOX_INDEX is missing"),
        (lambda o: o.__setitem__("DENSE_BOX_INDEX", o["DENSE_BOX_INDEX"].astype(np.float32)),
         r"DENSE_BOX_INDEX expected integers"),
    ],
)
def test_parse_rejects_malformed_dense_outputs(change: Callable[[dict[str, np.ndarray]], None], message: str) -> None:
    outputs = _outputs([2, 0], [[(0, "a", [1]), (1, "b", [2])], []])
    change(outputs)
    with pytest.raises(InferenceError, match=message):
        parse_outputs(outputs)


# --- results.json 1.2 ------------------------------------------------------------------------------------


def _dense_result(source: str = BLIP) -> ImageResult:
    dets = (Detection((1, 2, 30, 40), 0.9, 1, "person", track_id=4), Detection((5, 5, 9, 9), 0.4, 17, "cat"),
            Detection((50, 50, 90, 99), 0.7, 18, "dog"))
    return ImageResult(dets, (SceneLabel("park", 0.5),), "a man and his dog", source,
                       dense_captions=(DenseCaption(0, "a man in a coat", "person", 0.9, dets[0].box, (1, 2, 3)),
                                       DenseCaption(2, "a brown dog", "dog", 0.7, dets[2].box)),
                       caption_tokens=(101, 5, 102))


def _video(*images: ImageResult) -> VideoResults:
    frames = [FrameResult(i * 5, i * 0.5, image) for i, image in enumerate(images)]
    return VideoResults(source="v.mp4", fps_sampled=2.0, width=100, height=100, duration_s=3.0, frames=frames)


def test_video_results_1_2_round_trip(tmp_path: Path) -> None:
    results = _video(_dense_result(), ImageResult(caption="empty", caption_source=BLIP))
    path = results.write(tmp_path / "results.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema_version"] == SCHEMA_VERSION == "1.2"
    frame = data["frames"][0]
    assert frame["dense_captions"] == [
        {"box_index": 0, "caption": "a man in a coat", "class_name": "person", "score": 0.9,
         "box": [1.0, 2.0, 30.0, 40.0], "tokens": [1, 2, 3]},
        {"box_index": 2, "caption": "a brown dog", "class_name": "dog", "score": 0.7, "box": [50.0, 50.0, 90.0, 99.0]},
    ]
    assert frame["caption_tokens"] == [101, 5, 102] and frame["caption_source"] == BLIP
    assert data["frames"][1]["dense_captions"] == [] and "caption_tokens" not in data["frames"][1]
    assert data["captions"]["source"] == BLIP and BLIP in data["captions"]["note"]
    assert data["captions"]["dense_captions"] == 2
    assert VideoResults.read(path) == results


def test_image_results_1_2_round_trip_and_template_note(tmp_path: Path) -> None:
    template = ImageResult((Detection((1, 2, 3, 4), 0.8, 17, "cat"),), (), "a cat", "template")
    results = ImageSetResults(images=[ImageEntry("cat.jpg", 10, 10, template, None),
                                      ImageEntry("bad.jpg", 0, 0, ImageResult(error="not an image"), None)])
    path = results.write(tmp_path / "results.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["captions"] == {"source": "template", "note": TEMPLATE_NOTE, "sources": ["template"],
                                "dense_captions": 0}
    assert "models.caption.model" in TEMPLATE_NOTE and "docs/captions.md" in TEMPLATE_NOTE
    assert data["images"][0]["dense_captions"] == []
    assert ImageSetResults.read(path) == results


def test_a_1_1_file_reads_with_no_dense_captions() -> None:
    data = json.loads(_video(_dense_result()).to_json())
    data["schema_version"] = "1.1"
    del data["captions"]
    for frame in data["frames"]:
        del frame["dense_captions"], frame["caption_tokens"]
    old = VideoResults.from_dict(data)
    assert old.frames[0].image.dense_captions == () and old.frames[0].image.caption_tokens == ()
    assert old.frames[0].image.detections == _dense_result().detections


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f["dense_captions"][0].__setitem__("box_index", 3),
         r"frames\[0\]\.dense_captions\[0\]\.box_index: expected 0\.\.2 \(an index into detections\), got 3"),
        (lambda f: f["dense_captions"][0].__setitem__("caption", None), r"dense_captions\[0\]\.caption: expected str"),
        (lambda f: f["dense_captions"][1].__setitem__("box", [1, 2]), r"dense_captions\[1\]\.box: expected 4 numbers"),
        (lambda f: f["dense_captions"][0].__setitem__("tokens", [1, -1]), r"dense_captions\[0\]\.tokens: expected"),
        (lambda f: f.__setitem__("caption_tokens", "1 2"), r"caption_tokens: expected list"),
        (lambda f: f.__setitem__("dense_captions", {}), r"dense_captions: expected list"),
    ],
)
def test_invalid_dense_captions_name_the_field(change: Callable[[dict[str, Any]], None], message: str) -> None:
    data = json.loads(_video(_dense_result()).to_json())
    change(data["frames"][0])
    with pytest.raises(InputError, match=message):
        VideoResults.from_dict(data)


@pytest.mark.parametrize(
    ("sources", "dense", "source", "note"),
    [
        (["template", "template", ""], 0, "template", TEMPLATE_NOTE),
        ([BLIP, BLIP], 3, BLIP, f"neural captions by {BLIP} (3 dense captions of detected objects)"),
        (["tiny-blip"], 1, "tiny-blip", "neural captions by tiny-blip (1 dense caption of detected objects)"),
        (["template", "tiny-blip"], 0, "mixed", "captions from several sources: template, tiny-blip"),
        (["", ""], 0, "", "no captions: no image was analysed"),
    ],
)
def test_caption_summary(sources: list[str], dense: int, source: str, note: str) -> None:
    box = (0.0, 0.0, 1.0, 1.0)
    det = (Detection(box, 0.9, 1, "person"),)
    results = [ImageResult(det, caption_source=s) for s in sources]
    results[0] = ImageResult(det, caption_source=sources[0],
                             dense_captions=[DenseCaption(0, "x", "person", 0.9, box)] * dense)
    summary = caption_summary(results)
    assert (summary.source, summary.dense_captions) == (source, dense)
    assert summary.note.startswith(note)


def test_filtering_detections_keeps_dense_captions_on_their_boxes() -> None:
    result = _dense_result()
    kept = filter_detections(result, 0.5)  # drops the cat (index 1): the dog moves to index 1
    assert [d.class_name for d in kept.detections] == ["person", "dog"]
    assert [(c.box_index, c.class_name) for c in kept.dense_captions] == [(0, "person"), (1, "dog")]
    strict = filter_detections(result, 0.8)
    assert [(c.box_index, c.caption) for c in strict.dense_captions] == [(0, "a man in a coat")]
    assert kept.dense_caption_of(1) == "a brown dog" and kept.dense_caption_of(5) == ""


# --- caption options -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_beams": 0}, r"num_beams: expected an integer in 1\.\.16, got 0"),
        ({"num_beams": 17}, r"num_beams: expected an integer in 1\.\.16, got 17"),
        ({"max_new_tokens": 0}, r"max_new_tokens: expected an integer in 1\.\.512, got 0"),
        ({"dense_top_k": -1}, r"dense_top_k: expected an integer in 0\.\.32, got -1"),
        ({"dense_top_k": 33}, r"dense_top_k: expected an integer in 0\.\.32, got 33"),
        ({"num_beams": 2.5}, r"num_beams: expected an integer in 1\.\.16, got 2\.5"),
        ({"max_new_tokens": True}, r"max_new_tokens: expected an integer"),
    ],
)
def test_caption_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CaptionOptions(**options)


def test_caption_options_parameters_and_merge() -> None:
    assert CaptionOptions().parameters() == {}
    base = CaptionOptions(num_beams=3, dense_top_k=0)
    assert base.parameters() == {"num_beams": 3, "dense_top_k": 0}
    assert base.merged(CaptionOptions(num_beams=1, max_new_tokens=5)).parameters() == {
        "num_beams": 1, "max_new_tokens": 5, "dense_top_k": 0}
    assert base.merged(None) is base


class _Recorder:
    """A fake tritonclient: records the parameters of each request, answers template outputs."""

    def __init__(self) -> None:
        self.parameters: list[Any] = []

    def infer(self, model_name: str, inputs: list[Any], **kwargs: Any) -> Any:
        self.parameters.append(kwargs.get("parameters"))
        n = int(inputs[0].shape()[0])
        out = _outputs([0] * n, None)

        class Result:
            def as_numpy(self, name: str) -> np.ndarray | None:
                return out.get(name)
        return Result()

    def async_infer(self, model_name: str, inputs: list[Any], callback: Any, **kwargs: Any) -> None:
        try:
            callback(result=self.infer(model_name, inputs, **kwargs), error=None)
        except Exception as exc:  # pragma: no cover - handed to the caller
            callback(result=None, error=exc)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_scene_client_sends_caption_parameters(monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    recorders: list[_Recorder] = []

    def make(*args: Any, **kwargs: Any) -> _Recorder:
        recorders.append(_Recorder())
        return recorders[-1]

    monkeypatch.setattr(grpcclient, "InferenceServerClient", make)
    monkeypatch.setattr(httpclient, "InferenceServerClient", make)
    with SceneClient("127.0.0.1:1", protocol, caption=CaptionOptions(num_beams=2)) as client:  # type: ignore[arg-type]
        client.infer([b"x"])
        client.infer([b"x"], caption=CaptionOptions(max_new_tokens=3))
        list(client.infer_many([[b"x"], [b"y", b"z"]], caption=CaptionOptions(num_beams=1, dense_top_k=0)))
    with SceneClient("127.0.0.1:1", protocol) as client:  # type: ignore[arg-type]
        client.infer([b"x"])
    sent = [p for r in recorders for p in r.parameters]
    assert sent == [{"num_beams": 2}, {"num_beams": 2, "max_new_tokens": 3},
                    {"num_beams": 1, "dense_top_k": 0}, {"num_beams": 1, "dense_top_k": 0}, None]
    with pytest.raises(ConfigError, match="caption: expected CaptionOptions, got dict"):
        SceneClient("127.0.0.1:1", protocol, caption={"num_beams": 2})  # type: ignore[arg-type]


# --- command line ----------------------------------------------------------------------------------------


class _CliClient:
    """Stands in for SceneClient in ``clients.cli``: keeps its caption options, answers one dense caption."""

    made: ClassVar[list[_CliClient]] = []

    def __init__(self, url: str, caption: CaptionOptions | None = None, **kwargs: Any) -> None:
        self.caption = caption
        _CliClient.made.append(self)

    def __enter__(self) -> _CliClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def check_ready(self) -> None:
        pass

    def max_batch_size(self) -> int:
        return 8

    def describe(self) -> dict[str, Any]:
        return {"ensemble": "scene_understanding"}

    transport_notes: ClassVar[list[str]] = []

    def frame_transport(self) -> str:
        return "jpeg"

    def frame_payload(self, rgb: np.ndarray, encoded: bytes | None = None) -> bytes:
        return encoded or b"jpeg"

    def infer_frames_many(self, batches: Iterable[list[bytes]]) -> Iterator[list[ImageResult]]:
        for batch in batches:
            yield [_dense_result("tiny-blip") for _ in batch]


@pytest.fixture
def cli_client(monkeypatch: pytest.MonkeyPatch) -> type[_CliClient]:
    monkeypatch.setattr(_CliClient, "made", [])
    monkeypatch.setattr(cli, "SceneClient", _CliClient)
    return _CliClient


@pytest.fixture
def photo_file(tmp_path: Path) -> Path:
    from tests.conftest import jpeg, photo

    path = tmp_path / "chelsea.jpg"
    path.write_bytes(jpeg(photo("chelsea")))
    return path


@pytest.mark.parametrize(
    ("flags", "want"),
    [
        ([], CaptionOptions()),
        (["--num-beams", "2"], CaptionOptions(num_beams=2)),
        (["--max-new-tokens", "3", "--dense-top-k", "0"], CaptionOptions(max_new_tokens=3, dense_top_k=0)),
        (["--num-beams", "4", "--max-new-tokens", "12", "--dense-top-k", "5"], CaptionOptions(4, 12, 5)),
    ],
)
def test_cli_caption_flags_reach_the_client(cli_client: type[_CliClient], photo_file: Path, tmp_path: Path,
                                            flags: list[str], want: CaptionOptions,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert cli.main(["image", str(photo_file), "--out", str(out), *flags]) == 0
    assert cli_client.made[0].caption == want
    lines = capsys.readouterr().out.splitlines()
    notes = [line for line in lines if line.startswith("captions: ")]
    assert notes == ["captions: neural captions by tiny-blip (2 dense captions of detected objects)"]
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert data["captions"]["source"] == "tiny-blip" and len(data["images"][0]["dense_captions"]) == 2


def test_cli_video_takes_the_caption_flags(cli_client: type[_CliClient], tmp_path: Path) -> None:
    from clients.media.sample_video import make_pattern_video

    video = make_pattern_video(tmp_path / "clip.mp4", [i / 10 for i in range(10)])
    assert cli.main(["video", str(video), "--out", str(tmp_path / "out"), "--fps", "2", "--num-beams", "3",
                     "--max-new-tokens", "7"]) == 0
    assert cli_client.made[0].caption == CaptionOptions(num_beams=3, max_new_tokens=7)
    frames = VideoResults.read(tmp_path / "out" / "results.json").frames
    assert frames and all(len(f.image.dense_captions) == 2 for f in frames)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num-beams", "0"], r"clients: error: --num-beams: expected an integer in 1\.\.16, got 0"),
        (["--max-new-tokens", "600"], r"clients: error: --max-new-tokens: expected an integer in 1\.\.512, got 600"),
        (["--dense-top-k", "-2"], r"clients: error: --dense-top-k: expected an integer in 0\.\.32, got -2"),
    ],
)
def test_cli_bad_caption_flag_is_one_line(cli_client: type[_CliClient], photo_file: Path, tmp_path: Path,
                                          flags: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["image", str(photo_file), "--out", str(tmp_path / "out"), *flags]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.fullmatch(message, err[0]), err
    assert cli_client.made == []  # refused before any request


def test_cli_non_integer_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["image", "x.jpg", "--num-beams", "two"])
    assert exc.value.code == 2 and "--num-beams: invalid int value: 'two'" in capsys.readouterr().err


# --- drawing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caption", "drawn"),
    [
        ("a dog", "a dog"),
        ("  a  café \n on a table ", "a cafe on a table"),
        ("x" * 60, "x" * 45 + "..."),
    ],
)
def test_dense_caption_text(caption: str, drawn: str) -> None:
    assert dense_caption_text(caption) == drawn


def test_dense_captions_are_drawn_under_their_boxes() -> None:
    rgb = np.full((240, 320, 3), 200, np.uint8)
    result = _dense_result()
    plain = annotate(rgb, ImageResult(result.detections, result.labels, result.caption, result.caption_source))
    dense = annotate(rgb, result)
    changed = np.any(plain != dense, axis=2)
    ys, _ = np.nonzero(changed)
    assert changed.sum() > 200  # the tags are there
    assert ys.min() >= 40  # under the person's box (bottom at y = 40), not over the image's top
    only = draw_dense_captions(rgb, [DenseCaption(0, "a long caption " * 10, "person", 0.9, (300, 230, 319, 239))])
    assert only.shape == rgb.shape and np.any(only != rgb)  # at the frame's corner it still fits inside
    assert np.array_equal(draw_dense_captions(rgb, []), rgb)
