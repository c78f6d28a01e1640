"""A stand-in for HAProxy's admin socket, for fast tests of what reads and changes the routing
(`traffic`, `watchdog`): it speaks the runtime API's lines our code sends (`show stat`, `set server
.../<slot> weight N`, `set server .../<slot>_standby state ready|maint`), answers `show stat` from
rows a test sets (status, weight, requests in flight, last check), and records every command.
A real HAProxy speaking the same lines is tested in `test_proxy` (slow)."""

from __future__ import annotations

import shutil
import socketserver
import threading
from pathlib import Path

from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.proxy import ProxyLayout

FIELDS = ["pxname", "svname", "status", "weight", "scur", "check_status", "check_desc"]


class AdminSocket:
    """Serves `layout.socket` until `close()`; `rows[server]` are the stat rows `show stat` lists."""

    def __init__(self, layout: ProxyLayout) -> None:
        self.layout = layout
        self.commands: list[str] = []
        self.lock = threading.Lock()
        self.rows: dict[str, dict[str, str]] = {}
        for slot in proxy.SLOTS:
            self.rows[slot] = self._row(slot, "UP", "0")
            self.rows[slot + proxy.STANDBY] = self._row(slot + proxy.STANDBY, "MAINT", "0")
        layout.folder.mkdir(parents=True, exist_ok=True)
        layout.make_sockets_folder()
        Path(layout.socket).unlink(missing_ok=True)
        stand_in = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode().strip()
                self.wfile.write(stand_in.answer(line).encode())

        self.server = socketserver.ThreadingUnixStreamServer(str(layout.socket), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @staticmethod
    def _row(server: str, status: str, weight: str) -> dict[str, str]:
        return {
            "pxname": proxy.BACKEND,
            "svname": server,
            "status": status,
            "weight": weight,
            "scur": "0",
            "check_status": "L7OK",
            "check_desc": "Layer7 check passed",
        }

    def set(self, server: str, **fields: str) -> None:
        with self.lock:
            self.rows[server].update(fields)

    def sent(self, prefix: str = "set ") -> list[str]:
        """The commands received that start with `prefix` (by default: the changes)."""
        with self.lock:
            return [c for c in self.commands if c.startswith(prefix)]

    def answer(self, line: str) -> str:
        with self.lock:
            self.commands.append(line)
            if line == "show stat":
                rows = [
                    {"pxname": "stable", "svname": "FRONTEND", "status": "OPEN"},
                    *self.rows.values(),
                    {"pxname": proxy.BACKEND, "svname": "BACKEND", "status": "UP"},
                ]
                lines = ["# " + ",".join(FIELDS)] + [",".join(r.get(f, "") for f in FIELDS) for r in rows]
                return "\n".join(lines) + "\n\n"
            words = line.split()
            if words[:2] == ["set", "server"] and len(words) == 5:
                backend, _, server = words[2].partition("/")
                if backend != proxy.BACKEND or server not in self.rows:
                    return "No such server.\n\n"
                if words[3] == "weight":
                    self.rows[server]["weight"] = words[4]
                    return "\n"
                if words[3] == "state" and words[4] in ("ready", "maint"):
                    self.rows[server]["status"] = "UP" if words[4] == "ready" else "MAINT"
                    return "\n"
            return "Unknown command.\n\n"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.layout.sockets, ignore_errors=True)
