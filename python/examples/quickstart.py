"""The API at a glance (docs/PYTHON.md shows main() as written): a server that
greets every newcomer, a client that joins a room, offers to a peer that is not
there (the error says so) and reads its events. Prints what happens; run by
python/tests/test_examples.py.

    pip install ./python
    python python/examples/quickstart.py
"""

import asyncio, switchboard


async def main():
    async with switchboard.Server(listen="127.0.0.1:0", path="/ws") as server:
        print(server.url)                                   # ws://127.0.0.1:PORT/ws

        @server.on("user-joined")                           # sync or async handler
        async def joined(event):                            # event.type, .room_id, .user_id, .data (dict)
            await server.send(event.room_id, event.user_id, {"type": "message", "data": {"hi": 1}})

        client = await switchboard.Client.connect(server.url, user_id="alice")
        info = await client.join("room-1")                  # the room-info message (dict)
        try:
            await client.send_offer("bob", {"type": "offer", "sdp": "v=0..."})
        except switchboard.PeerNotFoundError as e:          # every protocol error is a class
            print("no offer:", e.code)                      # peer-not-found: bob is not in room-1
        async for event in client.events():                 # or @client.on("message")
            print(event.type, event.data)
            if event.type == "message":                     # the greeting sent by joined()
                break
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
