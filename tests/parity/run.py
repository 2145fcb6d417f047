"""The parity runner: runs every case file of tests/parity/cases against one host
mode (a host command, see HOSTS.md) with real WebSocket clients and raw TCP, and
reports pass/fail/skip per case. Exit status 1 when any case fails.

  python tests/parity/run.py --name standalone --host "python tests/parity/hosts/standalone.py" \\
      [--skip CASE=REASON]... [--only CASE]... tests/parity/cases

Needs `websockets` (the Python test venv has it) and, for cluster cases,
`redis-server` on PATH."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

HERE = Path(__file__).resolve().parent
START_TIMEOUT = 60.0  # a Spring Boot host takes several seconds
STEP_TIMEOUT = 5.0
SUBPROTOCOL = "webrtc-signaling"
SUBPROTOCOL_MSGPACK = "webrtc-signaling.msgpack"


class CaseFailure(Exception):
    pass


class Host:
    """One running host process (the command of HOSTS.md)."""

    def __init__(self, command: str, config: Dict[str, Any], label: str) -> None:
        self.config = config
        fd, self.config_path = tempfile.mkstemp(prefix=f"parity-{label}-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(config, f)
        env = {**os.environ, "SWITCHBOARD_PARITY_CONFIG": self.config_path}
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            shlex.split(command), stdout=subprocess.PIPE, stderr=self.stderr, env=env, start_new_session=True
        )
        self.url = ""

    async def ready(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(loop.run_in_executor(None, self.proc.stdout.readline), START_TIMEOUT)
        m = re.match(r"listening on (wss?://\S+)", line.decode().strip())
        if not m:
            raise RuntimeError(f"host did not print its URL (got {line!r}); stderr:\n{self.log()}")
        self.url = m.group(1)

    @property
    def port(self) -> int:
        return int(self.url.split(":")[2].split("/")[0])

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    def stop(self) -> Optional[str]:
        """SIGTERM, then the host must exit 0 by itself within the drain timeout + 5 s."""
        if self.proc.poll() is not None:
            return f"host exited early with {self.proc.returncode}:\n{self.log()}"
        self.proc.send_signal(signal.SIGTERM)
        limit = self.config.get("drain_timeout_ms", 10000) / 1000 + 5
        try:
            code = self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return f"host did not exit within {limit:.0f} s of SIGTERM"
        finally:
            os.unlink(self.config_path)
        return None if code == 0 else f"host exited with {code} after SIGTERM:\n{self.log()}"


class Peer:
    """One client: a WebSocket whose messages are recorded as they arrive."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.msgpack = ws.subprotocol == SUBPROTOCOL_MSGPACK
        self.messages: List[Dict[str, Any]] = []
        self.close_code: Optional[int] = None
        self.first: Dict[str, Any] = {}
        self.last_seq = 0
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                if isinstance(raw, bytes) != self.msgpack:
                    kind = "binary" if isinstance(raw, bytes) else "text"
                    msg = {"type": f"!{kind} frame on the {self.ws.subprotocol} subprotocol"}
                else:
                    msg = msgpack.unpackb(raw) if self.msgpack else json.loads(raw)
                if isinstance(msg.get("seq"), int):
                    self.last_seq = max(self.last_seq, msg["seq"])
                if not self.first:
                    self.first = msg
                self.messages.append(msg)
        except ConnectionClosed:
            pass
        finally:
            code = self.ws.close_code
            self.close_code = code if code is not None else 1006


def matches(expected: Any, actual: Any, captures: Dict[str, Any]) -> bool:
    if isinstance(expected, str) and expected == "*":
        return actual is not None
    if isinstance(expected, str) and expected.startswith("$"):
        return actual == resolve(expected, captures)
    if isinstance(expected, str) and expected.startswith("re:"):
        return actual is not None and re.fullmatch(expected[3:], str(actual)) is not None
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(matches(v, actual.get(k), captures) for k, v in expected.items())
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a, captures) for e, a in zip(expected, actual))
        )
    return bool(expected == actual)


def resolve(ref: str, captures: Dict[str, Any]) -> Any:
    """`$a.sessionId`: a field of client a's `connected` message; `$a.lastSeq`."""
    name, _, field = ref[1:].partition(".")
    return captures[name][field]


def substitute(value: Any, captures: Dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return resolve(value, captures)
    if isinstance(value, dict):
        return {k: substitute(v, captures) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, captures) for v in value]
    return value


class Run:
    """One case against running hosts."""

    def __init__(self, hosts: List[Host]) -> None:
        self.hosts = hosts
        self.peers: Dict[str, Peer] = {}

    def captures(self) -> Dict[str, Any]:
        return {n: {**p.first, "lastSeq": p.last_seq} for n, p in self.peers.items()}

    async def connect(self, step: Dict[str, Any]) -> None:
        host = self.hosts[step.get("node", 0)]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((step.get("source", "127.0.0.1"), 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", host.port))
        url = host.url
        if "path" in step:
            url = url[: url.index("/", len("ws://"))] + step["path"]
        url += ("?" + step["query"]) if "query" in step else ""
        # `msgpack`: the MessagePack subprotocol; `protocols`: exactly these offers.
        offered = step.get("protocols", [SUBPROTOCOL_MSGPACK if step.get("msgpack") else SUBPROTOCOL])
        selects = step.get("selects", SUBPROTOCOL_MSGPACK if step.get("msgpack") else SUBPROTOCOL)
        want = step.get("status", 101)
        try:
            ws = await asyncio.wait_for(
                connect(
                    url,
                    sock=sock,
                    subprotocols=offered,
                    additional_headers=step.get("headers", {}),
                    max_size=None,
                    ping_interval=None,
                    open_timeout=STEP_TIMEOUT,
                ),
                STEP_TIMEOUT,
            )
        except InvalidStatus as e:
            got = e.response.status_code
            if got != want:
                raise CaseFailure(f"connect {step['connect']}: HTTP {got}, expected {want}")
            return
        if want != 101:
            await ws.close()
            raise CaseFailure(f"connect {step['connect']}: upgraded, expected HTTP {want}")
        if ws.subprotocol != selects:
            raise CaseFailure(f"connect {step['connect']}: subprotocol {ws.subprotocol!r}, expected {selects!r}")
        peer = Peer(ws)
        self.peers[step["connect"]] = peer
        # Every connection starts with `connected` in the protocol's shape.
        connected = {"type": "connected", "clientId": "*", "sessionId": "*", "resumeToken": "*", "heartbeatMs": "*"}
        await self.expect({"expect": step["connect"], "message": connected})

    async def expect(self, step: Dict[str, Any]) -> None:
        peer = self.peers[step["expect"]]
        want = step["message"]
        deadline = time.monotonic() + step.get("timeout_ms", STEP_TIMEOUT * 1000) / 1000
        while True:
            caps = self.captures()
            for i, m in enumerate(peer.messages):
                if matches(want, m, caps):
                    del peer.messages[i]
                    return
            if time.monotonic() > deadline or (peer.reader.done() and not peer.messages):
                raise CaseFailure(f"{step['expect']}: no message matching {json.dumps(want)}; got {peer.messages[-5:]}")
            await asyncio.sleep(0.01)

    async def step(self, step: Dict[str, Any]) -> None:
        caps = self.captures()
        if "connect" in step:
            await self.connect(step)
        elif "send" in step:
            ws = self.peers[step["send"]].ws
            if "json" in step and "pad_to" in step:
                # `data` grows until the frame is exactly `pad_to` bytes.
                msg = substitute(step["json"], caps)
                base = len(json.dumps(msg, separators=(",", ":")))
                msg["data"] = "x" * (step["pad_to"] - base)
                await ws.send(json.dumps(msg, separators=(",", ":")))
            elif "json" in step and self.peers[step["send"]].msgpack:
                await ws.send(msgpack.packb(substitute(step["json"], caps)))
            elif "json" in step:
                await ws.send(json.dumps(substitute(step["json"], caps)))
            elif "text" in step:
                await ws.send(step["text"])
            elif "binary" in step:
                await ws.send(bytes.fromhex(step["binary"]))
            elif "repeat" in step:
                await ws.send(step["repeat"][0] * step["repeat"][1])
        elif "expect" in step:
            await self.expect(step)
        elif "expect_close" in step:
            peer = self.peers[step["expect_close"]]
            try:
                await asyncio.wait_for(asyncio.shield(peer.reader), STEP_TIMEOUT)
            except asyncio.TimeoutError:
                raise CaseFailure(f"{step['expect_close']}: still open, expected close {step['code']}")
            if peer.close_code != step["code"]:
                raise CaseFailure(f"{step['expect_close']}: closed with {peer.close_code}, expected {step['code']}")
        elif "expect_none" in step:
            peer = self.peers[step["expect_none"]]
            await asyncio.sleep(step.get("ms", 300) / 1000)
            bad = [m for m in peer.messages if matches(step.get("message", {"type": "*"}), m, caps)]
            if bad:
                raise CaseFailure(f"{step['expect_none']}: unexpected {bad}")
        elif "close" in step:
            await self.peers[step["close"]].ws.close(step.get("code", 1000))
        elif "cut" in step:
            self.peers[step["cut"]].ws.transport.abort()
            await asyncio.sleep(0.05)
        elif "metrics" in step:
            body = await http_get(self.hosts[step.get("node", 0)].port, "/metrics")
            for pattern in step["metrics"]:
                if not re.search(pattern, body):
                    raise CaseFailure(f"/metrics has no line matching {pattern!r}")
        elif "sleep_ms" in step:
            await asyncio.sleep(step["sleep_ms"] / 1000)
        else:
            raise CaseFailure(f"unknown step {step}")

    async def close(self) -> None:
        for p in self.peers.values():
            try:
                p.ws.transport.abort()
            except Exception:
                pass
            p.reader.cancel()


async def http_get(port: int, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), STEP_TIMEOUT)
    writer.close()
    return data.decode(errors="replace")


class Redis:
    def __init__(self) -> None:
        exe = shutil.which(os.environ.get("REDIS_SERVER", "redis-server"))
        if exe is None:
            raise RuntimeError("redis-server is not on PATH")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.dir = tempfile.mkdtemp(prefix="parity-redis-")
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(args + ["--dir", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


async def run_group(command: str, config_name: str, cases: List[Dict[str, Any]]) -> List[Tuple[str, Optional[str]]]:
    config = json.loads((HERE / "configs" / f"{config_name}.json").read_text())
    nodes = max(max((s.get("node", 0) for s in c["steps"]), default=0) for c in cases) + 1
    redis = Redis() if "redis_url" in config else None
    if redis is not None:
        config["redis_url"] = f"redis://127.0.0.1:{redis.port}"
    hosts = [Host(command, config, f"{config_name}{i}") for i in range(nodes)]
    results: List[Tuple[str, Optional[str]]] = []
    try:
        for h in hosts:
            await h.ready()
        for case in cases:
            run = Run(hosts)
            try:
                for step in case["steps"]:
                    await run.step(step)
                results.append((case["name"], None))
            except (CaseFailure, AssertionError, OSError, asyncio.TimeoutError, KeyError) as e:
                results.append((case["name"], f"{type(e).__name__}: {e}"))
            finally:
                await run.close()
    except Exception as e:  # the host did not start
        results += [(c["name"], f"host: {e}") for c in cases if c["name"] not in dict(results)]
    finally:
        for h in hosts:
            problem = h.stop()
            if problem:
                results.append((f"{config_name}: clean exit", problem))
        if redis is not None:
            redis.stop()
    return results


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", required=True, help="the host command (HOSTS.md)")
    ap.add_argument("--name", required=True, help="the host mode's name, for the report")
    ap.add_argument("--skip", action="append", default=[], help="CASE=REASON: a case this host can not run")
    ap.add_argument("--only", action="append", default=[], help="run only these cases")
    ap.add_argument("cases", type=Path)
    args = ap.parse_args()
    skips = dict(s.split("=", 1) for s in args.skip)
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for path in sorted(args.cases.glob("*.json")):
        for case in json.loads(path.read_text()):
            case["name"] = f"{path.stem}/{case['name']}"
            if args.only and case["name"] not in args.only:
                continue
            if case["name"] in skips:
                print(f"SKIP  [{args.name}] {case['name']}: {skips[case['name']]}")
                continue
            groups.setdefault(case["config"], []).append(case)
    failed = passed = 0
    for config_name, cases in groups.items():
        for name, problem in await run_group(args.host, config_name, cases):
            if problem is None:
                passed += 1
                print(f"pass  [{args.name}] {name}")
            else:
                failed += 1
                print(f"FAIL  [{args.name}] {name}: {problem}")
    print(f"parity [{args.name}]: {passed} passed, {failed} failed, {len(skips)} skipped")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
