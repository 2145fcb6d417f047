"""Parity host: the standalone `switchboard` binary, its flags built from the
config JSON (HOSTS.md). `SWITCHBOARD_BIN` names the binary (default
target/debug/switchboard). Execs it: SIGTERM reaches the server itself."""

import json
import os
import sys

FLAGS = {
    "path": "--path",
    "max_message_bytes": "--max-message-bytes",
    "max_conns": "--max-conns",
    "max_conns_per_ip": "--max-conns-per-ip",
    "max_room_size": "--max-room-size",
    "max_rooms_per_session": "--max-rooms-per-session",
    "rate_limit_burst": "--rate-limit-burst",
    "rate_limit_rps": "--rate-limit-rps",
    "heartbeat_interval_ms": "--heartbeat-ms",
    "heartbeat_timeout_ms": "--heartbeat-timeout-ms",
    "resume_window_ms": "--resume-window-ms",
    "drain_timeout_ms": "--drain-timeout-ms",
    "allowed_origins": "--allowed-origins",
    "trusted_proxies": "--trusted-proxies",
    "auth_tokens": "--auth-tokens",
    "redis_url": "--redis-url",
    "app_types": "--app-types",
}

config = json.load(open(os.environ["SWITCHBOARD_PARITY_CONFIG"]))
args = [os.environ.get("SWITCHBOARD_BIN", "target/debug/switchboard"), "--listen", "127.0.0.1:0"]
for key, value in config.items():
    if key not in FLAGS:
        sys.exit(f"standalone host: unknown config key {key!r}")
    if isinstance(value, dict):  # auth_tokens: token -> userId
        value = ",".join(f"{t}:{u}" for t, u in value.items())
    elif isinstance(value, list):
        value = ",".join(value)
    args += [FLAGS[key], str(value)]
os.execv(args[0], args)
