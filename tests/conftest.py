from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from quart_trio import QuartTrio

from gateway import Config, create_app
from gateway._gateway import Gateway
from gateway.app import running_gateway

from ._fake_transport import FakeFactory


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(database_url=f"sqlite:///{tmp_path}/gateway.db", data_dir=str(tmp_path / "data"),
                  transport="sim")


@pytest.fixture
def transports() -> FakeFactory:
    """The scriptable transport behind the `app` fixture (end-to-end tests use the simulator)."""
    return FakeFactory(["qr"])


@pytest.fixture
async def app(config: Config, transports: FakeFactory) -> AsyncIterator[QuartTrio]:
    app = create_app(config, transport_factory=transports)
    async with app.test_app():
        yield app


@pytest.fixture
def client(app: QuartTrio):
    return app.test_client()


@pytest.fixture
def gateway(app: QuartTrio) -> Gateway:
    return running_gateway(app)


@dataclass
class Account:
    user_id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Token": self.token}


async def make_account(gateway: Gateway, email: str = "owner@example.com") -> Account:
    user = await gateway.accounts.create_user(email, "correct horse battery")
    _, token = await gateway.accounts.create_token(email, "tests")
    return Account(user.id, email, token)


@pytest.fixture
async def account(gateway: Gateway) -> Account:
    return await make_account(gateway)
