"""A PostgreSQL cluster of the run's own, so a crash test can restart it without harming anyone.

The chaos run (docs/CHAOS.md) restarts PostgreSQL halfway. Restarting the machine's shared
server would break every other test run on it, so the run makes its own cluster with the
machine's PostgreSQL binaries (`/usr/lib/postgresql/<newest>/bin/initdb`, `pg_ctl`, or the
ones on PATH): a data directory in the run's folder, a free port on 127.0.0.1, trust
authentication for 127.0.0.1 only, the socket in the run's folder, every durability setting at
its default (fsync, full_page_writes and synchronous_commit on: a crash test must not turn them
off). initdb and the server refuse to run as root; as root they run as the `postgres` user
(`runuser -u postgres --`), which then owns the data directory.

`restart()` stops the server with `pg_ctl stop -m immediate` (every backend killed, no
checkpoint: recovery from the WAL on the next start, as after a power cut) and starts it again.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

RUN_AS = "postgres"  # the user initdb and the server run as when we are root


def pg_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl, else PATH's."""
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted(
            (p for p in root.iterdir() if p.name.split(".")[0].isdigit()),
            key=lambda p: [int(x) for x in p.name.split(".") if x.isdigit()],
        )
        for version in reversed(versions):
            bindir = version / "bin"
            if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
                return bindir
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).resolve().parent
    return None


def available() -> str | None:
    """None when a private cluster can be made here, else why not."""
    if pg_bindir() is None:
        return "no PostgreSQL binaries (initdb, pg_ctl) under /usr/lib/postgresql or on PATH"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            return f"running as root and there is no {RUN_AS!r} user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is not available"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrivatePostgres:
    """One cluster in `folder` (its data in `folder/data`, its server log `folder/server.log`)."""

    folder: Path
    port: int = 0
    restarts: int = 0
    running: bool = False

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError(available() or "no PostgreSQL binaries")
        cmd = [str(bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=self.folder, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-1500:]}"
            )
        return done

    def _options(self) -> str:
        return (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories='{self.folder}'"
        )

    def _start(self) -> None:
        """`pg_ctl start -w`; a port taken between choosing and binding gets a new one."""
        for attempt in range(5):
            try:
                self._run(
                    "pg_ctl", "start", "-w", "-t", "120", "-D", str(self.data),
                    "-l", str(self.log), "-o", self._options(),
                )  # fmt: skip
                self.running = True
                return
            except RuntimeError:
                if attempt == 4 or "could not bind" not in self.log.read_text(errors="replace"):
                    raise
                self.port = _free_port()

    def start(self) -> None:
        reason = available()
        if reason:
            raise RuntimeError(f"cannot make a private PostgreSQL cluster: {reason}")
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # The postgres user must reach the folder (and the run's folder above it).
            entry = pwd.getpwnam(RUN_AS)
            for parent in (self.folder.parent, self.folder):
                parent.chmod(parent.stat().st_mode | 0o711)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C",
        )  # fmt: skip
        # Trust only for the loopback address; nothing else may connect.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        )
        self.port = self.port or _free_port()
        self._start()

    def restart(self) -> float:
        """Crash-like restart (`pg_ctl stop -m immediate`, then start); seconds it took."""
        began = time.monotonic()
        self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))
        self.running = False
        self._start()
        self.restarts += 1
        return time.monotonic() - began

    def stop(self) -> None:
        if self.running:
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))
            self.running = False

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
