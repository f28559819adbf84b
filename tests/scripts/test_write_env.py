"""`make run`'s .env: fresh keys once, and a PUBLIC_BASE_URL that follows HOST."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def write_env(path, *host):
    result = subprocess.run(
        [sys.executable, "scripts/write_env.py", str(path), *host],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def setting(path, name):
    return next(line.split("=", 1)[1] for line in path.read_text().splitlines() if line.startswith(f"{name}="))


def test_a_new_env_points_the_redirect_at_host_and_is_private(tmp_path):
    env = tmp_path / ".env"
    assert "Wrote" in write_env(env, "127.0.0.1:8500")
    assert setting(env, "PUBLIC_BASE_URL") == "http://127.0.0.1:8500"
    assert setting(env, "DISCORD_EMULATOR") == "true"
    assert env.stat().st_mode & 0o777 == 0o600


def test_the_default_host_is_runservers(tmp_path):
    write_env(tmp_path / ".env")
    assert setting(tmp_path / ".env", "PUBLIC_BASE_URL") == "http://127.0.0.1:8000"


def test_a_wildcard_host_is_reached_on_loopback(tmp_path):
    write_env(tmp_path / ".env", "0.0.0.0:8500")
    assert setting(tmp_path / ".env", "PUBLIC_BASE_URL") == "http://127.0.0.1:8500"


def test_a_new_host_changes_only_public_base_url_and_keeps_the_secrets(tmp_path):
    env = tmp_path / ".env"
    write_env(env)
    env.write_text(env.read_text() + "LOG_LEVEL=DEBUG\n")
    before = env.read_text().splitlines()
    assert "PUBLIC_BASE_URL=http://127.0.0.1:8500" in write_env(env, "127.0.0.1:8500")
    after = env.read_text().splitlines()
    assert [i for i, (a, b) in enumerate(zip(before, after)) if a != b] == [
        before.index("PUBLIC_BASE_URL=http://127.0.0.1:8000")
    ]
    assert len(after) == len(before)
    assert env.stat().st_mode & 0o777 == 0o600
    assert write_env(env, "127.0.0.1:8500") == ""


def test_an_env_written_by_hand_is_left_alone(tmp_path):
    env = tmp_path / ".env"
    env.write_text("DEBUG=true\nPUBLIC_BASE_URL=https://tunnel.example.com\n")
    assert write_env(env, "127.0.0.1:8500") == ""
    assert env.read_text() == "DEBUG=true\nPUBLIC_BASE_URL=https://tunnel.example.com\n"
