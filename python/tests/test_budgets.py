"""Per-IP budgets of the connection kit, through the Python host: the new
options reach the core (a connection storm is answered 429 with Retry-After)
and bad values are refused when the object is built."""

import pytest
import websockets

import switchboard


async def test_a_connection_storm_is_refused_with_429_and_retry_after() -> None:
    async with switchboard.Server(
        listen="127.0.0.1:0", rate_limit_rps=0, conn_rate_per_ip=1, conn_burst_per_ip=2, max_pending_per_ip=4
    ) as server:
        held = [await websockets.connect(server.url) for _ in range(2)]
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            await websockets.connect(server.url)
        assert refused.value.response.status_code == 429
        assert refused.value.response.headers["Retry-After"] == "1"
        for ws in held:
            await ws.close()


def test_budget_options_are_checked_when_built() -> None:
    with pytest.raises(switchboard.ConfigError):
        switchboard.Server(ipv6_prefix=0)
    with pytest.raises(ValueError):
        switchboard.Server(ipv6_prefix=300)
    with pytest.raises(switchboard.ConfigError):
        switchboard.Server(conn_rate_per_ip=5, conn_burst_per_ip=0)
    with pytest.raises(switchboard.ConfigError):
        switchboard.Server(http_write_timeout=0)
    # A route-only hub has no listener: pending sockets are its web server's.
    with pytest.raises(switchboard.ConfigError):
        switchboard.Hub(max_pending_per_ip=1)
    switchboard.Hub(conn_rate_per_ip=5, conn_burst_per_ip=10, ipv6_prefix=56)
    # The per-user away cap and the outbound budget reach the core (0 = unlimited).
    switchboard.Hub(max_away_per_user=2, outbound_budget_bytes=1 << 24)
    switchboard.Hub(max_away_per_user=0, outbound_budget_bytes=0)
    with pytest.raises(ValueError, match="max_away_per_user"):
        switchboard.Hub(max_away_per_user=-1)
    with pytest.raises(ValueError, match="outbound_budget_bytes"):
        switchboard.Hub(outbound_budget_bytes=-1)


async def test_member_metadata_is_capped() -> None:
    async with switchboard.Server(listen="127.0.0.1:0", rate_limit_rps=0, max_metadata_bytes=256) as server:
        client = await switchboard.Client.connect(server.url, user_id="big", metadata={"blob": "x" * 300})
        with pytest.raises(switchboard.SwitchboardError) as refused:
            await client.join("r")
        assert refused.value.code == "invalid-message"
        await client.close()
