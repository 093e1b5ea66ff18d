import pytest

from engine.config import (
    JobConfig,
    build_stages,
    colocated_groups,
    load_job_config,
    parse_set_flags,
    stage_configs,
)
from engine.errors import UserError


def test_local_placement_colocates_light_stages():
    cfg = JobConfig()
    groups = colocated_groups(cfg)
    names = [[cfg.stages[i] for i in g] for g in groups]
    assert ["ground_truth", "template_writer"] in names
    assert ["analyzer", "reviewer", "refiner", "question_writer", "mcq_filters"] in names
    assert sorted(i for g in groups for i in g) == list(range(len(cfg.stages)))  # every stage placed once


def test_colocation_keeps_only_the_run_stages(tmp_path):
    cfg = JobConfig(stages=["ingest", "ground_truth", "analyzer"])
    assert colocated_groups(cfg) == [[0], [1], [2]]


@pytest.mark.parametrize("body, message", [
    ("colocate: [[ingest, nonsense]]\n", "unknown stage 'nonsense'"),
    ("colocate: [[ingest, analyzer], [analyzer]]\n", "colocates stage 'analyzer' twice"),
])
def test_bad_colocation_is_a_user_error(tmp_path, body, message):
    placement = tmp_path / "p.yaml"
    placement.write_text(body)
    with pytest.raises(UserError, match=message):
        colocated_groups(JobConfig(placement=str(placement)))


def test_profile_placement_and_overrides_layer_in_order(tmp_path):
    placement = tmp_path / "p.yaml"
    placement.write_text("segmentor: {num_gpus: 0.5, actors: 3}\n")
    cfg = JobConfig(placement=str(placement), stage_config=parse_set_flags(["segmentor.box_threshold=0.3"]))
    conf = stage_configs(cfg)["segmentor"]
    assert conf["detector"] == "tiny:grounding-dino"  # from the tiny profile
    assert conf["resources"]["num_gpus"] == 0.5 and conf["resources"]["actors"] == 3
    assert conf["box_threshold"] == 0.3


def test_every_builtin_profile_builds_every_stage():
    for profile in ("tiny", "videorefer", "current"):
        stages = build_stages(JobConfig(profile=profile))
        assert [s.name for s in stages] == JobConfig().stages


def test_unknown_profile_and_bad_set_flag():
    with pytest.raises(UserError, match="no profile named 'nope'"):
        build_stages(JobConfig(profile="nope"))
    with pytest.raises(UserError, match="STAGE.FIELD=VALUE"):
        parse_set_flags(["segmentor=1"])
    with pytest.raises(UserError, match="config of stage segmentor"):
        build_stages(JobConfig(stage_config={"segmentor": {"no_such_field": 1}}))


def test_unknown_config_fields_list_the_valid_ones_with_a_suggestion(capsys):
    from engine.run import main

    with pytest.raises(UserError) as err:
        build_stages(JobConfig(stage_config={"reviewer": {"min_scor": 0.3}}))
    assert str(err.value).startswith("config of stage reviewer: min_scor is not a field (did you mean min_score?); "
                                     "valid fields: accept_rule, cache, chat, ")
    with pytest.raises(UserError, match=r"chat.temprature is not a field \(did you mean chat.temperature\?\)|"
                                        r"chat.temprature is not a field; valid fields of chat: api_key_env, "):
        build_stages(JobConfig(stage_config={"reviewer": {"chat": {"temprature": 0.3}}}))
    assert main(["build-motionvid-qa", "--dataset", "unused", "--set", "reviewer.temperature=0.3"]) != 0
    message = capsys.readouterr().err
    assert "reviewer: temperature is not a field; valid fields: " in message and "min_score" in message
    with pytest.raises(UserError, match=r"shard_sise is not a field \(did you mean shard_size\?\)"):
        load_job_config(None, {"shard_sise": 2})
