"""Sizes (256k, 8M, 1G; k=1024) and durations (500ms, 30s, 2m) from every source, and where a bad value came from."""

from __future__ import annotations

import re

import pytest

from tests.daemon.test_settings import REPO, shown, write, wsdaemon
from wsdaemon.daemon.settings_loader import read_config_file
from wsdaemon.daemon.units import format_duration, format_size, parse_duration, parse_size
from wsdaemon.settings import setting_fields


@pytest.mark.parametrize(
    "text, value",
    [
        ("0", 0),
        ("1000", 1000),
        ("256k", 262144),
        ("256K", 262144),
        ("8M", 8 << 20),
        ("1G", 1 << 30),
        ("16kb", 16384),
    ],
)
def test_sizes_are_binary_multiples(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize(
    "text, value",
    [("0", 0), ("20", 20), ("2.5", 2.5), ("500ms", 0.5), ("30s", 30), ("2m", 120), ("1h", 3600)],
)
def test_durations_are_seconds(text, value):
    assert parse_duration(text) == value


@pytest.mark.parametrize("bad", ["lots", "1.5k", "8T", "k", ""])
def test_a_bad_size_is_refused(bad):
    with pytest.raises(ValueError, match="is not a valid size"):
        parse_size(bad)


@pytest.mark.parametrize("bad", ["soon", "5d", "ms", "1m30s"])
def test_a_bad_duration_is_refused(bad):
    with pytest.raises(ValueError, match="is not a valid duration"):
        parse_duration(bad)


@pytest.mark.parametrize("value", [0, 1, 1000, 1024, 16384, 262144, 8 << 20, 3 << 30, 1536])
def test_sizes_format_back_to_what_parses(value):
    assert parse_size(format_size(value)) == value


@pytest.mark.parametrize("value", [0.0, 0.5, 0.25, 1.0, 2.5, 20.0, 90.0, 120.0, 300.0, 3600.0])
def test_durations_format_back_to_what_parses(value):
    assert parse_duration(format_duration(value)) == value


SIZES = [f.name for f in setting_fields() if f.metadata.get("unit") == "bytes"]
DURATIONS = [f.name for f in setting_fields() if f.metadata.get("unit") == "seconds"]


def test_every_byte_size_and_duration_option_takes_units_from_every_source(tmp_path):
    assert "max_write_buffer" in SIZES and "ping_interval" in DURATIONS
    lines = "".join(f"{n} = 8M\n" for n in SIZES) + "".join(f"{n} = 2m\n" for n in DURATIONS)
    path = write(tmp_path, "[wsdaemon]\n" + lines)
    values = read_config_file(str(path))
    assert all(values[n] == 8 << 20 for n in SIZES) and all(values[n] == 120 for n in DURATIONS)

    args = [a for n in SIZES for a in (f"--{n.replace('_', '-')}", "256k")]
    env = {f"WSDAEMON_{n.upper()}": "500ms" for n in DURATIONS}
    result = wsdaemon("show-config", *args, env=env)
    assert result.returncode == 0, result.stderr
    rows = shown(result.stdout)
    assert all(rows[n] == ("256k", "command line") for n in SIZES)
    assert all(rows[n] == ("500ms", f"environment WSDAEMON_{n.upper()}") for n in DURATIONS)


def test_the_security_docs_example_is_accepted():
    text = (REPO / "docs" / "security.md").read_text()
    assert "--max-write-buffer 256k" in text
    result = wsdaemon("show-config", "--max-write-buffer", "256k")
    assert result.returncode == 0, result.stderr
    assert shown(result.stdout)["max_write_buffer"] == ("256k", "command line")


def test_the_sample_file_shows_sizes_and_durations_readably():
    text = (REPO / "etc" / "wsdaemon.conf").read_text()
    assert "\n#max_message_size = 16M\n" in text and "\n#idle_timeout = 5m\n" in text
    assert "k=1024" in text


def test_a_bad_value_is_attributed_to_where_it_came_from(tmp_path):
    result = wsdaemon("show-config", "--port", "abc", env={"WSDAEMON_PORT": "9000"})
    assert result.returncode == 2
    assert "Invalid value for '--port' on the command line: 'abc' is not a valid integer" in result.stderr
    assert "WSDAEMON_PORT" not in result.stderr

    result = wsdaemon("show-config", env={"WSDAEMON_PORT": "abc"})
    assert result.returncode == 2
    assert "Invalid value for environment variable WSDAEMON_PORT (for --port): 'abc'" in result.stderr

    path = write(tmp_path, "[wsdaemon]\nport = abc\n")
    result = wsdaemon("show-config", "--config", str(path))
    assert result.returncode == 1
    assert f"config file {path}: port = 'abc': 'abc' is not a valid integer" in result.stderr

    result = wsdaemon("show-config", "--max-write-buffer", "-1k")
    assert "'--max-write-buffer' on the command line: -1k is not in the range x>=0" in result.stderr


def test_the_error_messages_quoted_in_the_docs_are_the_real_ones(tmp_path):
    readme = " ".join((REPO / "README.md").read_text().split())
    quoted = re.search(r"bad values \(`(port = 'lots': [^`]*)`\)", readme)
    assert quoted, "README no longer quotes the bad-value message"
    path = write(tmp_path, "[wsdaemon]\nport = lots\n")
    result = wsdaemon("show-config", "--config", str(path))
    assert result.returncode == 1
    assert quoted.group(1) in result.stderr
    assert f"Error: config file {path}: {quoted.group(1)}\n" == result.stderr
