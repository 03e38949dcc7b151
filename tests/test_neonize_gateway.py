"""The real neonize transport inside the gateway, offline: a connect fails into FAILED with Go's reason."""

from __future__ import annotations

import trio

from gateway import Config, create_app
from gateway.app import running_gateway

from .conftest import make_account
from .test_api_sessions import BASE, create


async def test_offline_connect_fails_with_the_go_error_as_reason(tmp_path):
    config = Config(database_url=f"sqlite:///{tmp_path}/g.db", data_dir=str(tmp_path / "data"),
                    transport="whatsapp", connect_attempts=1, qr_wait=0.2)
    app = create_app(config)  # the production transport: NeonizeTransportFactory
    async with app.test_app():
        gw = running_gateway(app)
        account = await make_account(gw)
        client = app.test_client()
        s = await create(client, account)
        with gw.bus.subscribe(s["id"]) as sub:
            r = await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
            # failed within GATEWAY_QR_WAIT: an error answer with the Go text in full; later: CONNECTING, then FAILED
            if r.status_code == 502:
                err = (await r.get_json())["error"]
                assert err["code"] == "CONNECT_FAILED"
                assert "websocket" in err["details"][0]["message"] or "dial" in err["details"][0]["message"]
            else:
                assert r.status_code == 200
            with trio.fail_after(60):
                while True:
                    got = await (await client.get(f"{BASE}/{s['id']}", headers=account.headers)).get_json()
                    if got["status"] == "FAILED":
                        break
                    await trio.sleep(0.05)
            assert "websocket" in got["statusReason"] or "dial" in got["statusReason"], got["statusReason"]
            events = []
            while True:
                try:
                    events.append(sub.receive.receive_nowait())
                except trio.WouldBlock:
                    break
            assert ("session.disconnected", "FAILED") in [(e.event, e.data["status"]) for e in events]
        # the gateway stays healthy and the session can be asked again
        assert (await client.get("/readyz")).status_code == 200
