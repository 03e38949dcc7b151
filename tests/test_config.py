from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway import Config, ConfigError
from gateway._config import MIB, SETTINGS, settings_markdown
from gateway._requests import MAX_PROXY_URL

ROOT = Path(__file__).resolve().parent.parent


def test_defaults():
    c = Config.from_env({})
    assert c.database_url == "sqlite:///./data/gateway.db"
    assert c.bind == "127.0.0.1:8080"
    assert c.transport == "whatsapp"
    assert c.allow_private_urls is False
    assert c.max_body == 1 * MIB and c.max_media_body > c.max_body
    assert c.log_level == "INFO"


def test_env_and_flags():
    env = {"GATEWAY_TRANSPORT": "sim", "GATEWAY_ALLOW_PRIVATE_URLS": "yes", "GATEWAY_MAX_BODY": "2048",
           "GATEWAY_LOG_LEVEL": "debug", "GATEWAY_BIND": "0.0.0.0:9000"}
    c = Config.from_env(env, bind="127.0.0.1:7000", transport=None)
    assert (c.transport, c.allow_private_urls, c.max_body, c.log_level, c.bind) == \
        ("sim", True, 2048, "DEBUG", "127.0.0.1:7000")


def test_sqlite_synchronous_is_normal_unless_full_is_asked_for():
    assert Config.from_env({}).sqlite_synchronous == "normal"
    assert Config.from_env({"GATEWAY_SQLITE_SYNCHRONOUS": "FULL"}).sqlite_synchronous == "full"
    assert Config.from_env({"GATEWAY_SQLITE_SYNCHRONOUS": " Normal "}).sqlite_synchronous == "normal"
    assert Config.from_mapping({"sqlite_synchronous": "Full"}).sqlite_synchronous == "full"


def test_port_is_honoured_when_bind_unset():
    assert Config.from_env({"PORT": "5123"}).bind == "0.0.0.0:5123"
    assert Config.from_env({"PORT": "5123", "GATEWAY_BIND": "127.0.0.1:1"}).bind == "127.0.0.1:1"
    assert Config.from_env({"PORT": "5123"}).host_port == ("0.0.0.0", 5123)


@pytest.mark.parametrize("env,needle", [
    ({"GATEWAY_TRANSPORT": "carrier-pigeon"}, "GATEWAY_TRANSPORT"),
    ({"GATEWAY_MAX_BODY": "lots"}, "GATEWAY_MAX_BODY"),
    ({"GATEWAY_ALLOW_PRIVATE_URLS": "maybe"}, "GATEWAY_ALLOW_PRIVATE_URLS"),
    ({"GATEWAY_BIND": "nowhere"}, "bind"),
    ({"GATEWAY_DATABASE_URL": "mysql://x"}, "GATEWAY_DATABASE_URL"),
    ({"GATEWAY_MAX_BODY": "100", "GATEWAY_MAX_MEDIA_BODY": "10"}, "GATEWAY_MAX_BODY"),
    ({"GATEWAY_LOG_LEVEL": "chatty"}, "GATEWAY_LOG_LEVEL"),
    ({"GATEWAY_SQLITE_SYNCHRONOUS": "off"}, "GATEWAY_SQLITE_SYNCHRONOUS must be normal or full"),
    ({"GATEWAY_SQLITE_SYNCHRONOUS": "2"}, "GATEWAY_SQLITE_SYNCHRONOUS must be normal or full"),
])
def test_bad_values_are_clear_errors(env, needle):
    with pytest.raises(ConfigError, match=needle):
        Config.from_env(env)


def test_every_setting_is_a_field_and_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    fields = set(Config.__struct_fields__)
    for s in SETTINGS:
        assert s.field in fields
        assert f"| `{s.env}` | `{s.default}` |" in readme, s.env
        assert getattr(Config(), s.field) == Config.from_env({s.env: s.default}).__getattribute__(s.field)
    assert {s.field for s in SETTINGS} == fields
    assert settings_markdown() in readme  # the table is exactly what the code describes


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start\n", 1)[1].split("\n## ", 1)[0]
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"```sh\n# \d\. .*\n(.+)\n```", quick_start)
    assert len(commands) == 2, commands
    assert commands[1] in ci.splitlines()


def test_the_default_proxy_is_checked_and_normalized():
    assert Config.from_env({}).default_proxy_url() is None
    assert Config.from_env({"GATEWAY_PROXY_URL": " "}).default_proxy_url() is None
    c = Config.from_env({"GATEWAY_PROXY_URL": " SOCKS5://u:p%40ss@Proxy.LAN:1080/ "})
    assert c.default_proxy_url() == "socks5://u:p%40ss@proxy.lan:1080"
    # private addresses are where proxies often are
    assert Config.from_env({"GATEWAY_PROXY_URL": "http://10.0.0.2:3128"}).default_proxy_url() == "http://10.0.0.2:3128"


@pytest.mark.parametrize("value,needle", [
    ("socks4://u:hunter2@proxy:1080", "scheme http, https or socks5"),
    ("proxy.lan:3128", "scheme http, https or socks5"),
    ("http://u:hunter2@proxy", "needs a port"),
    ("http://u:hunter2@proxy:3128/x", "must not have a path"),
    ("http://u:hunter2@169.254.169.254:80", "link-local"),
    ("http://u:hunter2@proxy:3128/" + "x" * MAX_PROXY_URL, f"longer than {MAX_PROXY_URL}"),
])
def test_a_bad_default_proxy_stops_start_up_without_showing_its_password(value, needle):
    with pytest.raises(ConfigError) as raised:
        Config.from_env({"GATEWAY_PROXY_URL": value})
    message = str(raised.value)
    assert message.startswith("GATEWAY_PROXY_URL: ") and needle in message and "hunter2" not in message
