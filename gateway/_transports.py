"""Choosing and opening the WhatsApp transport the config names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from actors import TransportFactory

from ._config import Config


@asynccontextmanager
async def open_transport_factory(config: Config) -> AsyncIterator[TransportFactory]:
    if config.transport == "sim":
        from actors.sim import open_sim_transport_factory

        async with open_sim_transport_factory(config.sim_url, data_dir=config.data_dir,
                                              pairing_deadline=config.pairing_timeout) as factory:
            yield factory
        return
    from actors.neonize import NeonizeTransportFactory

    factory = NeonizeTransportFactory(data_dir=config.data_dir, pairing_deadline=config.pairing_timeout)
    try:
        yield factory
    finally:
        await factory.aclose()
