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
    assert any(" ingest " in line and "4/10" in line and "rejected 1" in line for line in lines)


def test_eta_is_zero_when_done_and_unknown_before_any_work():
    progress = Progress(["ingest"], live=False, interval=1e9)
    progress.plan("ingest", 2)
    assert progress.eta("ingest") is None
    progress.finished_task("ingest", 2, rejected=0, seconds=0.1)
    assert progress.eta("ingest") == 0.0
