from __future__ import annotations

import pytest

from gateway._netguard import UnsafeURL, address_is_public, check_url_on_save, parse_http_url, resolve_checked


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "::1", "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "224.0.0.1", "::",
])
def test_non_public_addresses(address):
    assert not address_is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address):
    assert address_is_public(address)


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "gopher://x", "http://",
                                 "http://user:pw@example.com/", "http://example.com:0/", "javascript:alert(1)",
                                 "http://" + "a" * 3000 + ".com/"])
def test_bad_shapes(url):
    with pytest.raises(UnsafeURL):
        parse_http_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://localhost:8080/x", "http://2130706433/",
                                 "http://[::1]/", "http://0x7f.1/", "https://169.254.169.254/latest"])
async def test_private_targets_refused(url):
    with pytest.raises(UnsafeURL, match="non-public"):
        await resolve_checked(url, allow_private=False)
    with pytest.raises(UnsafeURL):
        await check_url_on_save(url, allow_private=False)


async def test_private_allowed_when_configured():
    assert await resolve_checked("http://127.0.0.1:9/", allow_private=True) == ["127.0.0.1"]
    await check_url_on_save("http://localhost/", allow_private=True)


async def test_unresolvable_host_accepted_on_save_but_not_on_use():
    url = "https://no-such-host.invalid/hook"
    await check_url_on_save(url, allow_private=False)
    with pytest.raises(UnsafeURL, match="does not resolve"):
        await resolve_checked(url, allow_private=False)


@pytest.mark.parametrize("url", ["hTtP://É\"ø", "http://a..b/x.png", "http://.example.com/x",
                                 "http://" + "a" * 64 + ".example.com/x", "http://exa mple.com/", "http://a_b\x00/"])
async def test_hosts_that_cannot_be_encoded_are_unsafe_not_a_crash(url):
    with pytest.raises(UnsafeURL, match="not a valid host name"):
        parse_http_url(url)
    with pytest.raises(UnsafeURL):
        await check_url_on_save(url, allow_private=False)
    with pytest.raises(UnsafeURL):
        await resolve_checked(url, allow_private=True)


def test_ipv6_and_idna_hosts_still_parse():
    assert parse_http_url("http://[2606:4700:4700::1111]:8080/x").hostname == "2606:4700:4700::1111"
    assert parse_http_url("https://bücher.example/x").hostname == "bücher.example"
