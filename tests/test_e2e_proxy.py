"""End to end: sessions' proxies, from the API to a `gateway simulator` process.

The simulator's `sessions` control op shows the proxy each session said it connects through (the
sim transport sends the SessionSpec's in its Attach frame), with the password masked: what the
gateway puts in the spec is checked there, over the wire, not inside the gateway.
"""

from __future__ import annotations

import logging

import pytest
import trio

from bench.simulator import SimControl, open_sim_control

from ._sim_proc import simulator
from .conftest import make_account
from .test_api_sessions import BASE, bearer, create, error_of
from .test_e2e_sim import A_PHONE, B_PHONE, gateway_app, wait_status

pytestmark = pytest.mark.slow

OWN = "socks5://user:s3cret-pw@10.0.0.2:1080"
OWN_SHOWN = "socks5://user:***@10.0.0.2:1080"
DEFAULT = "http://gw:d3fault-pw@127.0.0.1:3128"
DEFAULT_SHOWN = "http://gw:***@127.0.0.1:3128"


async def proxies_seen(ctl: SimControl) -> dict[str, str | None]:
    """What the simulator saw each attached session connect through."""
    return {info.session_id: info.proxy for info in await ctl.sessions()}


async def wait_seen(ctl: SimControl, session_id: str, proxy: str | None) -> None:
    with trio.fail_after(10):
        while (await proxies_seen(ctl)).get(session_id, "absent") != proxy:
            await trio.sleep(0.02)


async def link(client, headers, ctl: SimControl, session: dict, phone: str) -> None:
    await client.post(f"{BASE}/{session['id']}/connect", headers=headers)
    with trio.fail_after(10):
        await ctl.wait_qr(session["id"])
    await ctl.scan(session["id"], phone)
    await wait_status(client, headers, session["id"], "CONNECTED")


async def test_a_session_connects_through_its_own_proxy_and_only_the_account_changes_it(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with simulator() as sim:
        async with gateway_app(tmp_path, sim.url) as (app, client, gw), open_sim_control(sim.url) as ctl:
            account = await make_account(gw)
            s = await create(client, account, name="proxied", proxyUrl=OWN)
            assert s["proxy"] == {"url": OWN_SHOWN, "source": "session"}
            await link(client, account.headers, ctl, s, A_PHONE)
            assert (await proxies_seen(ctl))[s["id"]] == OWN_SHOWN

            # a session key can read the proxy (masked) but neither change nor clear it
            key = bearer(s["apiKey"])
            got = await (await client.get(f"{BASE}/{s['id']}", headers=key)).get_json()
            assert got["proxyUrl"] == OWN_SHOWN
            for value in ("http://10.6.6.6:8080", None):
                r = await client.put(f"{BASE}/{s['id']}", headers=key, json={"proxyUrl": value})
                await error_of(r, 403, "FORBIDDEN")
            assert (await proxies_seen(ctl))[s["id"]] == OWN_SHOWN
            assert await ctl.qr(s["id"]) is None

            # the account changes it while connected: the session reconnects through the new one, no new scan
            r = await client.put(f"{BASE}/{s['id']}", headers=account.headers,
                                 json={"proxyUrl": "http://proxy:pw2@192.168.7.7:3128"})
            assert (await r.get_json())["proxyUrl"] == "http://proxy:***@192.168.7.7:3128"
            await wait_seen(ctl, s["id"], "http://proxy:***@192.168.7.7:3128")
            await wait_status(client, account.headers, s["id"], "CONNECTED")
            [info] = [i for i in await ctl.sessions() if i.session_id == s["id"]]
            assert info.connected and info.phone == A_PHONE and info.qr is None

            # null: straight to WhatsApp
            r = await client.put(f"{BASE}/{s['id']}", headers=account.headers, json={"proxyUrl": None})
            assert (await r.get_json())["proxy"] is None
            await wait_seen(ctl, s["id"], None)
            await wait_status(client, account.headers, s["id"], "CONNECTED")
    text = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "s3cret" not in text and "pw2" not in text


async def test_sessions_without_a_proxy_of_their_own_use_the_default(tmp_path):
    with simulator() as sim:
        async with gateway_app(tmp_path, sim.url, proxy_url=DEFAULT) as (app, client, gw), \
                open_sim_control(sim.url) as ctl:
            account = await make_account(gw)
            plain = await create(client, account, name="plain")
            own = await create(client, account, name="own", proxyUrl=OWN)
            assert (plain["proxyUrl"], plain["proxy"]) == (None, {"url": DEFAULT_SHOWN, "source": "default"})
            await link(client, account.headers, ctl, plain, A_PHONE)
            await link(client, account.headers, ctl, own, B_PHONE)
            assert await proxies_seen(ctl) == {plain["id"]: DEFAULT_SHOWN, own["id"]: OWN_SHOWN}

            # clearing its own proxy puts the session on the default, at once
            r = await client.put(f"{BASE}/{own['id']}", headers=account.headers, json={"proxyUrl": None})
            assert (await r.get_json())["proxy"] == {"url": DEFAULT_SHOWN, "source": "default"}
            await wait_seen(ctl, own["id"], DEFAULT_SHOWN)
            await wait_status(client, account.headers, own["id"], "CONNECTED")
            listed = await (await client.get(BASE, headers=account.headers)).get_data(as_text=True)
            assert "d3fault-pw" not in listed and "s3cret" not in listed
