"""One writer per run directory: the `<run>/.lock` rule of ddpm-ts (src/io/run-lock.ts; read its header), in Python.

- `<run>/.lock` is created with O_CREAT | O_EXCL: one creator wins. It holds one JSON object and a newline:
  pid, hostname, startedAt (ISO 8601) required; command, argv, token (random), procStart (Linux: field 22 of
  /proc/self/stat) optional. Its owner removes it when it stops; a SIGKILL leaves it.
- It is stale when its owner is gone: same hostname and kill(pid, 0) fails with ESRCH, or /proc/<pid>/stat gives
  another start time than procStart, or the pid is ours and we do not hold it. A lock from another host is refused.
  A file that is not such JSON is stale once CORRUPT_GRACE_S old (or unchanged that long).
- A stale lock is removed under a claim: create `<lock>.takeover-<id>` (O_EXCL; id hashes the file's inode, mtime,
  size and bytes exactly as ddpm-ts does, so a Node and a Python process racing on one stale lock use one claim),
  re-read the lock, remove it only if it is still the same generation, drop the claim, create again.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from .jsonjs import js_number, stringify

__all__ = ['RunLock', 'RunLockedError', 'acquire_run_lock']

RUN_LOCK_FILE = '.lock'
CORRUPT_GRACE_S = 3.0
MAX_DEPTH = 3
WAIT_S = CORRUPT_GRACE_S + 5
POLL_S = 0.05
MAX_LOCK_BYTES = 64 * 1024

_held_tokens: set[str] = set()


@dataclass
class _Ctx:
    me: dict
    deadline: float
    first_seen: dict[str, float]  # when this process first read a corrupt lock, by generation
    notes: list[str]
    dir: str


class RunLockedError(RuntimeError):
    """The run directory is being trained by a live process (or one on another host)."""


def _proc_start(pid: str) -> str | None:
    try:
        with open(f'/proc/{pid}/stat', encoding='latin-1') as f:
            stat = f.read()
    except OSError:
        return None
    v = stat[stat.rfind(')') + 2:].split(' ')
    return v[22 - 3] if len(v) > 19 and v[22 - 3].isdigit() else None


def _now_iso() -> str:
    d = datetime.now(timezone.utc)
    return d.strftime('%Y-%m-%dT%H:%M:%S.') + f'{d.microsecond // 1000:03d}Z'


def _parse_owner(b: bytes) -> dict | None:
    try:
        o = json.loads(b.decode('utf-8'))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(o, dict) or not isinstance(o.get('pid'), int) or isinstance(o.get('pid'), bool) or o['pid'] < 1:
        return None
    if not isinstance(o.get('hostname'), str) or not isinstance(o.get('startedAt'), str):
        return None
    try:
        datetime.fromisoformat(o['startedAt'].replace('Z', '+00:00'))
    except ValueError:
        return None
    return o


def _read(file: str) -> tuple[str, dict | None, float] | None:
    """(generation id, owner or None when corrupt, mtime in s), or None when there is no file."""
    try:
        fd = os.open(file, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        b = os.read(fd, min(st.st_size, MAX_LOCK_BYTES))
    finally:
        os.close(fd)
    # Node's `${st.ino}:${st.mtimeMs}:${st.size}\n`: mtimeMs = sec·1e3 + nsec/1e6 in float64
    mtime_ms = (st.st_mtime_ns // 10 ** 9) * 1e3 + (st.st_mtime_ns % 10 ** 9) / 1e6
    h = hashlib.sha256(f'{st.st_ino}:{js_number(mtime_ms)}:{st.st_size}\n'.encode() + b).hexdigest()[:16]
    return h, (None if st.st_size > MAX_LOCK_BYTES else _parse_owner(b)), st.st_mtime


def _create(file: str, owner: dict) -> None:
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, (stringify(owner) + '\n').encode('utf-8'))
    except BaseException:
        os.close(fd)
        os.unlink(file)
        raise
    os.close(fd)


def _remove_own(file: str, token: str) -> None:
    try:
        seen = _read(file)
        if seen is not None and seen[1] is not None and seen[1].get('token') == token:
            os.unlink(file)
    except OSError:
        pass
    finally:
        _held_tokens.discard(token)


class RunLock:
    def __init__(self, directory: str, file: str, token: str, notes: list[str]) -> None:
        self.dir, self.file, self.token, self.notes = directory, file, token, notes
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            _remove_own(self.file, self.token)


def acquire_run_lock(directory: str, command: str = 'ddpm_torch train') -> RunLock:
    """Lock the existing directory for one writer; RunLockedError when a live process holds it. Released by
    release() and at interpreter exit."""
    file = os.path.join(directory, RUN_LOCK_FILE)
    me = {'pid': os.getpid(), 'hostname': socket.gethostname(), 'startedAt': _now_iso(), 'command': command, 'argv': sys.argv[1:]}
    ps = _proc_start('self')
    if ps is not None:
        me['procStart'] = ps
    ctx = _Ctx(me, time.monotonic() + WAIT_S, {}, [], directory)
    won, token_or_owner, elsewhere = _take(file, 0, ctx)
    if not won:
        o = token_or_owner if isinstance(token_or_owner, dict) else None
        who = 'another process' if o is None else f"PID {o['pid']} {'on host ' + o['hostname'] if elsewhere else 'on this host'} since {o['startedAt']} ({o.get('command', 'unknown command')})"
        hint = f' (this host cannot tell whether it still runs; if it has stopped: rm {file})' if elsewhere else ''
        raise RunLockedError(f'{directory} is being trained by {who}; wait for it or stop it{hint}')
    for name in os.listdir(directory):  # claims of generations that are gone are inert: sweep them
        if name.startswith(RUN_LOCK_FILE + '.takeover-'):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass
    assert isinstance(token_or_owner, str)
    lock = RunLock(directory, file, token_or_owner, ctx.notes)
    atexit.register(lock.release)
    return lock


def _take(file: str, depth: int, ctx: _Ctx) -> tuple[bool, str | dict | None, bool]:
    """(True, token, False) when this process created `file`, else (False, its owner or None, on another host?)."""
    token = secrets.token_hex(8)
    while True:
        _held_tokens.add(token)  # 1. the O_EXCL create
        try:
            _create(file, {**ctx.me, 'token': token})
            return True, token, False
        except FileExistsError:
            _held_tokens.discard(token)
        seen = _read(file)  # 2. who holds it
        if seen is None:
            continue
        verdict, note = _judge(file, seen, ctx)
        if verdict in ('alive', 'elsewhere'):
            return False, seen[1], verdict == 'elsewhere'
        if verdict == 'wait':
            _wait(ctx, file)
            continue
        if depth >= MAX_DEPTH:  # 3. stale: remove exactly this generation, under the claim on its id
            raise RunLockedError(f'{file} is stale, but {MAX_DEPTH} processes that took it over died in turn; remove {file}* by hand')
        claim = f'{file}.takeover-{seen[0]}'
        c = _take(claim, depth + 1, ctx)
        if not c[0]:
            _wait(ctx, claim)
            continue
        try:
            again = _read(file)
            if again is not None and again[0] == seen[0]:
                os.unlink(file)
                ctx.notes.append(note if depth == 0 else f'removed {file}, the claim of a take-over that did not finish')
        finally:
            _remove_own(claim, str(c[1]))


def _wait(ctx: _Ctx, file: str) -> None:
    if time.monotonic() > ctx.deadline:
        raise RunLockedError(f"{ctx.dir}: another process kept {file} for {round(WAIT_S)} s while taking over a lock; try again (if no process is starting there, rm {file})")
    time.sleep(POLL_S)


def _judge(file: str, seen: tuple[str, dict | None, float], ctx: _Ctx) -> tuple[str, str]:
    gen, o, mtime = seen
    if o is None:
        now = time.monotonic()
        first = ctx.first_seen.setdefault(gen, now)
        age = time.time() - mtime
        if age < CORRUPT_GRACE_S and now - first < CORRUPT_GRACE_S:
            return 'wait', ''
        return 'stale', f'taking over {file}, which holds no readable lock (its writer died while creating it, {max(0, round(age))} s ago)'
    if o['hostname'] != ctx.me['hostname']:
        return 'elsewhere', ''
    taking = f"taking over the lock of PID {o['pid']} (started {o['startedAt']}), which is no longer running"
    if o['pid'] == os.getpid():
        return ('alive', '') if o.get('token') in _held_tokens else ('stale', f'{taking} (this process has its PID now)')
    try:
        os.kill(o['pid'], 0)
    except ProcessLookupError:
        return 'stale', taking
    except PermissionError:
        pass  # alive, another user's process
    if isinstance(o.get('procStart'), str):
        now_start = _proc_start(str(o['pid']))
        if now_start is not None and now_start != o['procStart']:
            return 'stale', f"{taking} (PID {o['pid']} now belongs to a process started later)"
    return 'alive', ''
