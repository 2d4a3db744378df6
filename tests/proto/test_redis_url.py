"""Broker URLs: redis://, rediss:// and unix://, with credentials, database and CA file."""

import pytest

from wsdaemon.proto.redis_url import RedisAddress, RedisUrlError, parse_redis_url


@pytest.mark.parametrize(
    "url, expected",
    [
        ("redis://localhost", RedisAddress(host="localhost")),
        ("redis://10.0.0.5:7000/3", RedisAddress(host="10.0.0.5", port=7000, db=3)),
        ("redis://:s3cret@h/1", RedisAddress(host="h", password="s3cret", db=1)),
        ("redis://game:p%40ss@h:6380", RedisAddress(host="h", port=6380, username="game", password="p@ss")),
        ("rediss://[::1]:6390/0", RedisAddress(host="::1", port=6390, tls=True)),
        ("rediss://h?ssl_ca_certs=/etc/ca.pem", RedisAddress(host="h", tls=True, ca_file="/etc/ca.pem")),
        ("redis://h?db=4", RedisAddress(host="h", db=4)),
        ("unix:///run/redis/redis.sock?db=2", RedisAddress(unix_path="/run/redis/redis.sock", db=2)),
        ("unix://:pw@/run/r.sock", RedisAddress(unix_path="/run/r.sock", password="pw")),
        ("/run/r.sock", RedisAddress(unix_path="/run/r.sock")),
    ],
)
def test_forms(url, expected):
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(
    "url, says",
    [
        ("http://h", "scheme"),
        ("redis://", "no host"),
        ("redis://h:99999", "port"),
        ("redis://h/x", "database must be a number"),
        ("redis://h/-1", "0 or more"),
        ("unix://", "no socket path"),
        ("redis://h?ssl_ca_certs=/ca.pem", "rediss"),
    ],
)
def test_bad_urls_say_what_is_wrong(url, says):
    with pytest.raises(RedisUrlError, match=says):
        parse_redis_url(url)


def test_str_hides_credentials():
    assert str(parse_redis_url("redis://u:pw@h:1/2")) == "redis://h:1/2"
    assert str(parse_redis_url("rediss://[::1]")) == "rediss://[::1]:6379/0"
    assert str(parse_redis_url("unix://:pw@/r.sock")) == "unix:///r.sock?db=0"
