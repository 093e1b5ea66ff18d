"""Clips reach a Qwen-VL model as video: through the real `build-motionvid-qa` (tiny profile, the
reviewer in `vlm` mode on tiny Qwen2.5-VL), the motion captioner, the annotator and the reviewer
send one video part per frame sequence with the frames' time stamps from the frame reader (packet
times of a variable-frame-rate file), and the backend builds the model input on the video path
(`pixel_values_videos`, no `pixel_values`). Spies stand at the model boundary only."""

from __future__ import annotations

from collections import defaultdict

import pytest

from agents.backends.local_chat import LocalChatBackend
from agents.backends.qwen_vision import QwenVisionInputs
from agents.motion_captioner import pick
from engine.run import main
from engine.store import DatasetStore
from tests.helpers_footage import FOOTAGE_FPS, FOOTAGE_FRAMES, shapes_segment, write_video

VLM_STAGES = ("motion_captioner", "annotator", "reviewer")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("video-input")
    videos = root / "videos"
    videos.mkdir()
    gaps = [0.04 if (i // 4) % 2 else 0.14 for i in range(FOOTAGE_FRAMES)]
    times = [round(sum(gaps[:i]), 3) for i in range(FOOTAGE_FRAMES)]
    write_video(videos / "vfr.mp4", shapes_segment(14, FOOTAGE_FRAMES, 128, 96), FOOTAGE_FPS, times=times)
    requests, encoded = defaultdict(list), []
    original_chat, original_video = LocalChatBackend.chat_batch, QwenVisionInputs.video
    original_prompt = QwenVisionInputs.prompt

    def chat_batch(self, batch):
        requests[self.cfg.model].extend(batch)
        return original_chat(self, batch)

    def video(self, frames, timestamps):
        encoded.append({"frames": len(frames), "timestamps": list(timestamps)})
        return original_video(self, frames, timestamps)

    def prompt(self, messages):
        ids, extra, positions = original_prompt(self, messages)
        encoded.append({"inputs": sorted(extra)})
        return ids, extra, positions

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LocalChatBackend, "chat_batch", chat_batch)
        mp.setattr(QwenVisionInputs, "video", video)
        mp.setattr(QwenVisionInputs, "prompt", prompt)
        code = main(["build-motionvid-qa", "--dataset", str(root / "ds"), "--source", str(videos), "--profile", "tiny",
                     "--executor", "local", "--stages", "ingest,motion_captioner,analyzer,segmentor,annotator,reviewer",
                     "--set", "reviewer.mode=vlm", "--set", "reviewer.chat.model=tiny:qwen2.5-vl"])
    assert code == 0
    store = DatasetStore(root / "ds", create=False)
    tables = {t: store.read_table(t).to_pylist() for t in ("clips", "captions", "reviews")}
    return times, requests["tiny:qwen2.5-vl"], encoded, tables


def _visual_parts(request):
    return [p for m in request.messages if isinstance(m["content"], list) for p in m["content"] if p["type"] != "text"]


@pytest.mark.slow
def test_every_vlm_request_sends_videos_with_frame_times(built):
    times, requests, _, tables = built
    assert requests, "no request reached the Qwen-VL backend"
    for request in requests:
        parts = _visual_parts(request)
        assert parts and all(p["type"] == "video" for p in parts)  # no separate images
        for part in parts:
            assert len(part["timestamps"]) == len(part["video"]) >= 2
            assert part["timestamps"] == sorted(part["timestamps"])
            assert set(part["timestamps"]) <= {round(t, 6) for t in times}  # the file's own frame times
    prompts = {r.cache_key.split("@")[0] for r in requests}
    assert prompts == {"motion_captioner.v1", "annotator.v1", "reviewer.v1"}
    clip = tables["clips"][0]
    captioner = [r for r in requests if r.cache_key.startswith("motion_captioner")]
    expected = [round(times[f], 6) for f in pick(clip["frame_indices"], 2)]  # the tiny profile's num_frames
    assert [p["timestamps"] for p in _visual_parts(captioner[0])] == [expected]
    assert expected != [f / clip["fps"] for f in pick(clip["frame_indices"], 2)]  # variable rate: not index / fps


@pytest.mark.slow
def test_the_backend_builds_the_video_input_and_rows_say_so(built):
    _, requests, encoded, tables = built
    sent = [p["timestamps"] for r in requests for p in _visual_parts(r)]
    assert [e["timestamps"] for e in encoded if "timestamps" in e] == sent  # each video went through the video path
    inputs = [e["inputs"] for e in encoded if "inputs" in e]
    assert len(inputs) == len(requests)
    assert all("pixel_values_videos" in i and "video_grid_thw" in i and "pixel_values" not in i for i in inputs)
    vlm_rows = [c for c in tables["captions"] if c["source"] in VLM_STAGES] + tables["reviews"]
    assert vlm_rows and all(row["prompt_version"].endswith("+video") for row in vlm_rows)


def test_openai_protocol_gets_the_video_frames_as_images_and_the_cache_key_sees_frames_and_times():
    from PIL import Image

    from agents.backends.chat import ChatRequest
    from agents.backends.openai_batch import to_openai_messages
    from agents.backends.openai_chat import OpenAIChatBackend, _wire_message

    frames = [Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(3)]
    message = {"role": "user", "content": [{"type": "video", "video": frames, "timestamps": [0.0, 0.14, 0.18]},
                                           {"type": "text", "text": "what moves?"}]}
    assert not OpenAIChatBackend.takes_video
    for wire in (_wire_message(message), to_openai_messages([message])[0]):
        assert [p["type"] for p in wire["content"]] == ["image_url"] * 3 + ["text"]
    digest = ChatRequest([message]).digest("m")
    same = {**message, "content": [{**message["content"][0], "video": [f.copy() for f in frames]}, message["content"][1]]}
    later = {**message, "content": [{**message["content"][0], "timestamps": [0.0, 0.5, 1.0]}, message["content"][1]]}
    assert ChatRequest([same]).digest("m") == digest != ChatRequest([later]).digest("m")


def test_frame_times_of_a_variable_rate_span_count_from_the_span(tmp_path):
    from agents.video import clip_frame_times

    gaps = [0.04 if (i // 4) % 2 else 0.14 for i in range(FOOTAGE_FRAMES)]
    times = [round(sum(gaps[:i]), 3) for i in range(FOOTAGE_FRAMES)]
    path = tmp_path / "vfr.mp4"
    write_video(path, shapes_segment(14, FOOTAGE_FRAMES, 128, 96), FOOTAGE_FPS, times=times)
    got = clip_frame_times(path, FOOTAGE_FPS, 12, [0, 3, 11], start=times[8])
    assert got == pytest.approx([0.0, times[11] - times[8], times[19] - times[8]], abs=1e-3)
    constant = tmp_path / "cfr.mp4"
    write_video(constant, shapes_segment(14, 12, 128, 96), FOOTAGE_FPS)
    assert clip_frame_times(constant, FOOTAGE_FPS, 12, [0, 6]) == [0.0, 0.5]
