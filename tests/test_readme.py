"""The README's commands, run as written: every ```bash block is extracted and each command is run,
with small sizes and temporary paths in place of long runs and the user's files, so the README
cannot drift from the tool. The `ray job submit` block runs against a real head started exactly as
the README says (with private ports, temp dir and HOME, so it shares nothing with other clusters).

A new ```bash block needs nothing here unless it calls a program not in PROGRAMS; a command that
must exit non-zero says so in its comment (`# exits 1 ...`)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers_ray import stop_processes_under

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
README = REPO / "README.md"
# What the README's commands may start with; anything else needs a rule below first.
PROGRAMS = ("make", ".venv/bin/python", ".venv/bin/ray", "export", "test -f ")


@dataclass
class Command:
    block: int
    text: str  # the command, continuation lines joined, without its comment
    comment: str

    @property
    def expected_code(self) -> int:
        found = re.search(r"\bexits (\d+)", self.comment)
        return int(found[1]) if found else 0


def readme_commands(text: str | None = None) -> list[Command]:
    text = README.read_text() if text is None else text
    commands = []
    for block, body in enumerate(re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)):
        for line in body.replace("\\\n", " ").splitlines():
            command, comment = _split_comment(line)
            if command:
                commands.append(Command(block, " ".join(command.split()), comment))
    return commands


def _split_comment(line: str) -> tuple[str, str]:
    """A shell comment starts at a `#` outside quotes that begins a word."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip(), line[i + 1:].strip()
    return line.strip(), ""


def test_readme_keeps_its_first_screen():
    first = [c.text for c in readme_commands() if c.block == 0]
    assert first == ["make demo", "make test"]
    assert README.read_text().index("make demo") < 1000


def test_every_readme_command_is_one_this_test_knows_how_to_run():
    commands = readme_commands()
    assert len(commands) >= 12
    unknown = [c.text for c in commands if not c.text.startswith(PROGRAMS)]
    assert unknown == [], "teach tests/test_readme.py these programs (or use a ```text block)"
    assert not any(c.text.startswith("duckdb ") for c in commands)  # no duckdb CLI is installed


def test_comment_and_continuation_parsing():
    text = "```bash\nmake demo   # a # comment\n.venv/bin/python -m x \\\n    --sql \"SELECT '#1'\"  # exits 1\n```\n"
    assert [(c.text, c.comment, c.expected_code) for c in readme_commands(text)] == [
        ("make demo", "a # comment", 0), (".venv/bin/python -m x --sql \"SELECT '#1'\"", "exits 1", 1)]


# ----- running them -----
@pytest.fixture()
def s3_env():
    """The README's `s3://my-bucket/...` root: moto's S3 server on loopback, with that bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket="my-bucket")
    yield env
    server.stop()


@pytest.fixture()
def user_files(tmp_path) -> dict[str, str]:
    """The files a user would have: a folder of videos and a manifest with captions."""
    from agents.video import write_video
    from tests.helpers_footage import FPS, object_segment

    videos = tmp_path / "videos"
    videos.mkdir()
    for n in range(2):
        write_video(videos / f"v{n}.mp4", object_segment(n, 48, (200, 100, 50)), FPS)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(
        f'{{"video_path": "videos/v{n}.mp4", "caption": "A white square slides from left to right."}}\n'
        for n in range(2)))
    return {"videos": str(videos), "manifest": str(manifest), "out": str(tmp_path / "out")}


def substitute(command: str, files: dict[str, str], stamp: Path) -> str:
    """Small sizes and temporary paths for the README's command; its words otherwise unchanged."""
    text = command
    if text == "make demo":
        return f"make demo PY={BIN}/python STAMP={stamp} DATASET={files['out']}/demo SOURCE=virtual:2"
    if text == "make test":  # the suite itself: only check that the target exists and what it runs
        return f"make -n test PY={BIN}/python STAMP={stamp}"
    text = re.sub(r"(?<![\w/.])(\$PWD/)?\.venv/bin/", f"{BIN}/", text)
    text = re.sub(r"(?<![\w/.])(\$PWD/)?out/", files["out"] + "/", text)
    text = text.replace("virtual:50", "virtual:2").replace("virtual:6", "virtual:2")
    text = re.sub(r"(?<=\s)/data/[\w.-]+", files["videos"], text)  # the user's folder of videos
    text = text.replace(" manifest.jsonl", " " + files["manifest"])
    if "build-motionvid-qa" in text and "ray job submit" not in text and "--check" not in text:
        text += " --executor local"  # Ray runs in `make demo` and in the job test
    return text


def run_shell(command: str, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _stamp(tmp_path: Path) -> Path:
    """`make setup`'s stamp, newer than pyproject.toml: the venv this test runs in is the installed one."""
    stamp = tmp_path / "installed"
    stamp.touch()
    return stamp


@pytest.mark.slow
def test_every_readme_command_runs(user_files, s3_env, tmp_path):
    env = {**os.environ, **s3_env, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    stamp = _stamp(tmp_path)
    ran = []
    for command in readme_commands():
        if command.block == _job_block()[0].block:
            continue  # the job block: test_ray_job_submit_as_the_readme_says
        shell = substitute(command.text, user_files, stamp)
        began = time.monotonic()
        result = run_shell(shell, env)
        print(f"{time.monotonic() - began:6.1f}s  {command.text}")
        output = result.stdout + result.stderr
        assert result.returncode == command.expected_code, f"{command.text}\n-> {shell}\n{output[-3000:]}"
        assert "Traceback" not in output, f"{command.text}\n{output[-3000:]}"
        ran.append((command.text, output))
    assert len(ran) >= 10
    out = Path(user_files["out"])
    assert (out / "demo-report" / "index.html").is_file() and (out / "export" / "motionbench.jsonl").is_file()
    for name in ("rendered", "footage", "manifest", "mine", "demo"):
        assert (out / name / "run.json").is_file(), name
    make_test = next(output for text, output in ran if text == "make test")
    assert "-m pytest" in make_test
    strict = next(output for text, output in ran if "--strict" in text)
    assert "expected with random-weight models" in strict


# ----- `ray job submit`, word for word -----
def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _job_block() -> list[Command]:
    commands = readme_commands()
    submit = next(c for c in commands if "ray job submit" in c.text)
    return [c for c in commands if c.block == submit.block]


def test_the_job_block_starts_a_loopback_head_from_the_venv_and_submits_with_its_python():
    texts = [c.text for c in _job_block()]
    assert texts[0] == "export RAY_AUTH_MODE=token"
    assert texts[1] == "test -f ~/.ray/auth_token || .venv/bin/ray get-auth-token --generate > /dev/null"
    assert texts[2].startswith(".venv/bin/ray start --head --node-ip-address=127.0.0.1 ")
    assert texts[3].startswith(".venv/bin/ray job submit --address http://127.0.0.1:8265 --working-dir . -- "
                               "$PWD/.venv/bin/python -m engine.run build-motionvid-qa --dataset $PWD/out/")


@pytest.mark.ray
@pytest.mark.slow
def test_ray_job_submit_as_the_readme_says(user_files, tmp_path):
    """A fresh machine: an empty HOME (no ~/.ray/auth_token), PATH without the venv, no RAY_ADDRESS."""
    home = tmp_path / "home"
    home.mkdir()
    temp_dir = tempfile.mkdtemp(prefix="vrm", dir="/tmp")  # short: Ray puts unix sockets in it
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
           "VDE_CACHE": os.environ["VDE_CACHE"], "HF_HUB_OFFLINE": "1"}
    port, dash, *others = _free_ports(9)
    # Only for sharing the machine with other clusters: every port explicit, a private temp dir.
    private = (f" --port={port} --dashboard-port={dash} --dashboard-agent-listen-port={others[0]}"
               f" --dashboard-agent-grpc-port={others[1]} --ray-client-server-port={others[2]}"
               f" --runtime-env-agent-port={others[3]} --metrics-export-port={others[4]}"
               f" --node-manager-port={others[5]} --object-manager-port={others[6]}"
               f" --temp-dir={temp_dir} --disable-usage-stats")
    stamp = _stamp(tmp_path)
    exports, token, start, submit = _job_block()
    log = tmp_path / "job.log"
    job = substitute(submit.text, user_files, stamp).replace(":8265", f":{dash}")
    script = "\n".join([
        f"cd {shlex.quote(str(REPO))}",
        exports.text,
        substitute(token.text, user_files, stamp),
        substitute(start.text, user_files, stamp) + private,
        # `ray start` returns before the job agent takes jobs: retried only while it says so
        f"for try in $(seq 20); do {job} > {log} 2>&1; code=$?; grep -q 'No available agent' {log} || break; "
        f"sleep 3; done; cat {log}; exit $code",
    ])
    started = time.monotonic()
    try:
        result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=540)
    finally:
        stop_processes_under(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert (home / ".ray" / "auth_token").is_file()  # the README made the token that the head and CLI share
    dataset = Path(user_files["out"]) / "job"
    assert f"dataset: {dataset}" in output, output[-3000:]
    assert (dataset / "run.json").is_file()
    assert "succeeded" in output
    assert "Loading weights" not in output and "it/s]" not in output  # no model-loading bars in the job log
    print(f"ray job as the README says: {time.monotonic() - started:.0f}s")
