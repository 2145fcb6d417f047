"""Smoke test of an installed `switchboard-signaling` (run by
scripts/test-packages.sh in a fresh venv that installed the sdist): the
extension imports from site-packages, a server starts, two clients join and
relay an offer with the sender stamped, everything stops, the process exits 0."""

import asyncio
import pathlib

import switchboard


async def main() -> None:
    here = pathlib.Path(switchboard.__file__).resolve()
    assert "site-packages" in here.parts, f"imported from {here}, not from the installed package"
    async with switchboard.Server(listen="127.0.0.1:0", path="/ws") as server:
        ann = await switchboard.Client.connect(server.url, user_id="ann")
        bob = await switchboard.Client.connect(server.url, user_id="bob")
        await ann.join("room-1")
        await bob.join("room-1")
        offers = bob.events()
        await ann.send_offer("bob", {"type": "offer", "sdp": "v=0"})
        async for event in offers:
            if event.type == "offer":
                assert event["from"] == "ann", event.data
                assert event.data["sdp"] == {"type": "offer", "sdp": "v=0"}, event.data
                break
        await ann.close()
        await bob.close()
    print("python package: ok")


asyncio.run(main())
