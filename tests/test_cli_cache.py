"""The cache of `trajlab list` / `trajlab config` output (issue 15, goal 3)."""

from __future__ import annotations

import os


from trajlab import cli_cache
from helpers import invoke


def test_cached_output_equals_the_fresh_output_and_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("TRAJLAB_CLI_CACHE", "0")
    fresh_list = invoke("list").output
    fresh_config = invoke("config", "dmf-completion", "--quick", "--set", "seed=3").output
    assert "dmf-completion" in fresh_list and "seed: 3" in fresh_config
    assert not (tmp_path / "trajlab").exists()
    monkeypatch.setenv("TRAJLAB_CLI_CACHE", "1")
    assert invoke("list").output == fresh_list
    assert invoke("config", "dmf-completion", "--quick", "--set", "seed=3").output == fresh_config
    entries = list((tmp_path / "trajlab" / "cli").glob("*.txt"))
    assert len(entries) == 2
    # the second call prints the stored text: change it and see it printed
    for entry in entries:
        entry.write_text(entry.read_text().replace("dmf-completion", "CACHED"))
    assert "CACHED" in invoke("list").output
    # other arguments are another key
    assert "seed: 4" in invoke("config", "dmf-completion", "--quick", "--set", "seed=4").output


def test_errors_and_user_files_are_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    result = invoke("config", "no-such-preset")
    assert result.exit_code == 2
    plugin = tmp_path / "mine.py"
    plugin.write_text("import trajlab\n")
    assert invoke("list", plugin).exit_code == 0
    assert not list((tmp_path / "trajlab" / "cli").glob("*.txt")) if (tmp_path / "trajlab" / "cli").exists() else True


def test_the_key_follows_every_source_file(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    monkeypatch.setattr(cli_cache, "_PACKAGE", package)
    first = cli_cache.key("list", [], 80)
    assert cli_cache.key("list", [], 80) == first
    assert cli_cache.key("list", [], 120) != first
    (package / "sub" / "b.py").write_text("y = 3\n")  # same size, new content and mtime
    os.utime(package / "sub" / "b.py", ns=(1, 10**18))
    second = cli_cache.key("list", [], 80)
    assert second != first
    (package / "sub" / "c.py").write_text("")
    assert cli_cache.key("list", [], 80) != second
