import time

from engine.progress import Progress


def test_progress_counts_throughput_eta_and_counters(capsys):
    progress = Progress(["ingest", "annotator"], live=False, interval=0.0)
    progress.plan("ingest", 10)
    progress.plan("annotator", 10)
    progress.started_task("ingest", 4)
    time.sleep(0.05)
    progress.finished_task("ingest", 4, rejected=1, seconds=0.5, counters={"prompt_tokens": 7})
    progress.finished_task("annotator", 2, rejected=0, seconds=0.2, counters={"prompt_tokens": 3})
    progress.finished_task("annotator", 2, rejected=0, seconds=0.2, counters={"prompt_tokens": 5})
    summary = progress.summary()
    ingest, annotator = summary["stages"]["ingest"], summary["stages"]["annotator"]
    assert (ingest["done"], ingest["in_flight"], ingest["rejected"], ingest["planned"]) == (4, 0, 1, 10)
    assert annotator["counters"] == {"prompt_tokens": 8} and annotator["shards"] == 2
    assert ingest["clips_per_s"] > 0 and ingest["eta_s"] > 0
    lines = capsys.readouterr().err.splitlines()
    assert any("working: ingest 0/10 (4 in flight" in line for line in lines), lines
    assert any("ingest done: 4/10 clips, 1 rejected" in line for line in lines), lines


def test_eta_is_zero_when_done_and_unknown_before_any_work():
    progress = Progress(["ingest"], live=False, interval=1e9)
    progress.plan("ingest", 2)
    assert progress.eta("ingest") is None
    progress.finished_task("ingest", 2, rejected=0, seconds=0.1)
    assert progress.eta("ingest") == 0.0


def test_without_a_terminal_one_line_per_finished_stage_and_a_heartbeat(capsys):
    stages = ["ingest", "analyzer", "refiner"]
    progress = Progress(stages, live=False, interval=30.0)
    for stage in stages[:2]:
        for _ in range(3):  # three shards of two clips
            progress.plan(stage, 2)
    with progress:
        for stage in stages[:2]:
            for _ in range(3):
                progress.started_task(stage, 2)
                progress.finished_task(stage, 2, rejected=0, seconds=0.1)
                progress.refresh()  # the driver's idle polls print nothing new
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("] ", 1)[1].split(":")[0] for line in lines] == ["ingest done", "analyzer done", "nothing to run"]
    assert "ingest done: 6/6 clips, 0 rejected" in lines[0] and lines[2].endswith("nothing to run: refiner")

    progress = Progress(["segmentor"], live=False, interval=0.05)
    progress.plan("segmentor", 4)
    with progress:
        progress.started_task("segmentor", 4)
        time.sleep(0.06)
        progress.refresh()
        progress.refresh()  # within the interval: no second heartbeat
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert "working: segmentor 0/4 (4 in flight, eta ?); 0/1 stages done" in lines[0]
    assert lines[1].endswith("segmentor stopped at 0/4 clips, 0 rejected")
