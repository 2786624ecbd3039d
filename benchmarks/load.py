"""Classroom load test: N students on one Streamlit server of this app, driven at the protocol level.

Each simulated student is what a browser tab is to the server, without the browser: a websocket to
``/_stcore/stream`` that sends the ``BackMsg`` protobufs Streamlit's frontend sends and reads the
``ForwardMsg`` stream it gets back. A student

1. opens the page: connects and sends ``rerun_script`` with the page's url path as ``page_name`` (the
   frontend does the same before it knows the app's pages), then reads until ``script_finished``:
   that is the **page load** time;
2. waits until every student has loaded the page, then presses the button within a random jitter of
   ``--spread`` seconds of the others (a class pressing "Run detectors" together): a ``rerun_script``
   whose ``widget_states`` set ``trigger_value=True`` on the button's widget id (found in the first
   run's ``button`` element, whose id ends with the widget key) and whose ``page_script_hash`` is the
   one the server's ``navigation`` message named;
3. reads until the triggered run has shown the ``--until`` text (a heading, text, alert, label ...)
   and finished: that is **run → finished**.

Only the pressed button is sent in ``widget_states``: Streamlit keeps every widget that a rerun does
not mention at its value from the previous run (``SessionState._getitem`` falls back to the old
state), which is what the frontend's full set of unchanged values amounts to here. Big messages are
never asked for by hash (no ``cached_message_hashes``), so each student receives every figure in full,
as a browser does on its first visit.

Errors: an ``exception`` element (not a warning), an ``st.error`` alert, a compile error, a page
that is not found, a disconnect or a timeout. Server cost: CPU time (user + sys, reaped children
included, from /proc/<pid>/stat) over the sessions, and peak RSS (VmRSS of the server and its
descendants sampled every 100 ms; VmHWM too). The server is started here on a free port
(``python -m streamlit run app.py --server.headless true``) unless ``--url`` names a running one.

    python benchmarks/load.py --n 30 --baseline                 # the classroom: 30 at once, and one alone
    python benchmarks/load.py --n 3                             # a smoke run
    python benchmarks/load.py --n 30 --baseline --warmup open   # the same on a warm server (a teacher opened it first)
    python benchmarks/load.py --n 30 --warmup run               # 30 students on results already cached
    python benchmarks/load.py --url http://127.0.0.1:8501 --n 5 # attach to a running server (--pid or found by port)
    python benchmarks/load.py --page "" --button "" --until ""  # just open the home page

The client runs on the same machine as the server when it starts it: its own CPU time is printed so
the reader can tell. The targets of issue 13 are printed next to the numbers; the exit status is 0
whether or not they are met (1 only when the server could not be started or reached).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]

# issue 13, section 1: the goals for a class of 30 on one 2-core server
TARGETS = {"n": 30, "page_load_s": 5.0, "run_p95_s": 15.0, "rss_gb": 8.0, "errors": 0}
MAIN_PAGE_NAMES = {"", "/", "home", "app", "app.py"}
# top-level string fields of an element (or block) that hold what the user reads; data-bearing
# fields (a figure's JSON spec, a table's bytes) are left out so a figure title cannot match --until
TEXT_FIELDS = ("body", "label", "message", "title")


# ---------------------------------------------------------------- one student
@dataclass
class SessionResult:
    index: int
    page_load_s: float | None = None      # connect -> first run finished
    run_s: float | None = None            # button pressed -> triggered run finished
    results_s: float | None = None        # button pressed -> the --until text arrived
    press_delay_s: float | None = None    # when the button was pressed, after the common start line
    saw_script_finished: bool = False
    reruns_after_press: int = 0           # runs the triggered run ended early for (st.rerun in the page)
    button_id: str | None = None
    page_script_hash: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    messages: int = 0
    bytes_received: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


class StartLine:
    """Every student waits here until all have loaded the page (or given up), then the presses start."""

    def __init__(self, parties: int):
        self._left = parties
        self._event = asyncio.Event()
        self.t0: float | None = None

    def arrive(self) -> None:
        self._left -= 1
        if self._left <= 0 and not self._event.is_set():
            self.t0 = time.perf_counter()
            self._event.set()

    async def wait(self) -> float:
        await self._event.wait()
        return self.t0


class _Run:
    """What one script run (or a run and the reruns it asked for) showed, as read from its ForwardMsgs."""

    def __init__(self, until: str | None, button_key: str | None, t_start: float):
        self.until = until
        self.button_key = button_key
        self.t_start = t_start
        self.until_at: float | None = None
        self.buttons: dict[str, bool] = {}   # widget id -> disabled
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.nav_hash: str | None = None
        self.nav_pages: dict[str, str] = {}  # page_script_hash -> url path
        self.reruns = 0                      # runs that finished early because the script asked for a rerun

    def take(self, msg, now: float) -> str | None:
        """Record one ForwardMsg; returns "finished", "rerun" (finished early, another run follows) or None."""
        kind = msg.WhichOneof("type")
        if kind == "delta":
            self._delta(msg.delta, now)
        elif kind == "navigation":
            self.nav_hash = msg.navigation.page_script_hash
            self.nav_pages = {p.page_script_hash: p.url_pathname for p in msg.navigation.app_pages}
        elif kind == "page_not_found":
            self.errors.append(f"page not found: {msg.page_not_found.page_name!r}")
        elif kind == "session_event" and msg.session_event.WhichOneof("type") == "script_compilation_exception":
            self.errors.append("script compilation error: " + msg.session_event.script_compilation_exception.message)
        elif kind == "script_finished":
            status = msg.script_finished
            if status == msg.FINISHED_EARLY_FOR_RERUN:
                self.reruns += 1
                return "rerun"
            if status == msg.FINISHED_WITH_COMPILE_ERROR:
                self.errors.append("the script finished with a compile error")
            return "finished"
        return None

    def _delta(self, delta, now: float) -> None:
        which = delta.WhichOneof("type")
        if which == "new_element":
            el = delta.new_element
            etype = el.WhichOneof("type")
            if etype is None:
                return
            sub = getattr(el, etype)
            if etype == "exception":
                line = f"exception {sub.type}: {sub.message}".strip()
                (self.warnings if sub.is_warning else self.errors).append(line[:500])
            elif etype == "alert":
                if sub.format == sub.ERROR:
                    self.errors.append(("st.error: " + sub.body)[:500])
                elif sub.format == sub.WARNING:
                    self.warnings.append(("st.warning: " + sub.body)[:500])
            elif etype == "button" and self.button_key is not None:
                if sub.id.endswith("-" + self.button_key) or self.button_key in sub.id:
                    self.buttons[sub.id] = sub.disabled
            self._look_for_until(sub, now)
        elif which == "add_block":
            block = delta.add_block
            btype = block.WhichOneof("type")
            if btype is not None:
                self._look_for_until(getattr(block, btype), now)

    def _look_for_until(self, sub, now: float) -> None:
        if not self.until or self.until_at is not None:
            return
        for name in TEXT_FIELDS:
            if name in sub.DESCRIPTOR.fields_by_name:
                value = getattr(sub, name)
                if isinstance(value, str) and self.until in value:
                    self.until_at = now
                    return


def _rerun_msg(page_name: str = "", page_script_hash: str = "", trigger_id: str | None = None,
               url: str = "") -> bytes:
    """The BackMsg the frontend sends to run the script (opening a page, or a widget interaction)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg

    msg = BackMsg()
    cs = msg.rerun_script
    cs.query_string = ""
    cs.page_name = page_name
    cs.page_script_hash = page_script_hash
    cs.context_info.timezone = "UTC"
    cs.context_info.timezone_offset = 0
    cs.context_info.locale = "en-US"
    cs.context_info.url = url
    if trigger_id is not None:
        w = cs.widget_states.widgets.add()
        w.id = trigger_id
        w.trigger_value = True
    return msg.SerializeToString()


def page_name_of(page: str) -> str:
    """The url path the frontend would send for ``page`` ("" for the main page, app.py)."""
    return "" if page.strip() in MAIN_PAGE_NAMES else page.strip().strip("/")


class _Socket:
    """A websocket to /_stcore/stream whose ForwardMsgs are parsed as they arrive, into a queue."""

    def __init__(self, conn, result: SessionResult):
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self.conn = conn
        self.queue: asyncio.Queue = asyncio.Queue()
        self.result = result
        self._ForwardMsg = ForwardMsg
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                raw = await self.conn.read_message()
                now = time.perf_counter()
                if raw is None:
                    break
                if isinstance(raw, str):
                    raw = raw.encode()
                msg = self._ForwardMsg()
                msg.ParseFromString(raw)
                self.result.messages += 1
                self.result.bytes_received += len(raw)
                await self.queue.put((now, msg))
        except Exception as e:  # noqa: BLE001  (an unreadable message ends this student, not the others)
            self.result.errors.append(f"unreadable message from the server: {type(e).__name__}: {e}")
        await self.queue.put((time.perf_counter(), None))

    def send(self, payload: bytes) -> None:
        self.conn.write_message(payload, binary=True)

    async def run_until_finished(self, run: _Run, deadline: float, what: str) -> float | None:
        """Feed ForwardMsgs to ``run`` until its script run (and any st.rerun it asked for) finished.

        Returns the time it finished, or None after recording why it did not (disconnect, timeout)."""
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                run.errors.append(f"timeout waiting for {what}")
                return None
            try:
                now, msg = await asyncio.wait_for(self.queue.get(), left)
            except TimeoutError:
                run.errors.append(f"timeout waiting for {what}")
                return None
            if msg is None:
                code = getattr(self.conn, "close_code", None)
                run.errors.append(f"disconnected (close code {code}) while waiting for {what}")
                return None
            if run.take(msg, now) == "finished":
                self.result.saw_script_finished = True
                return now

    async def close(self) -> None:
        self.conn.close()
        self.reader.cancel()
        try:
            await self.reader
        except (asyncio.CancelledError, Exception):  # noqa: BLE001  (the socket is going away either way)
            pass


async def run_session(url: str, index: int = 0, *, page: str = "OOD_detection", button: str | None = "ood_run",
                      until: str | None = "Score distributions", timeout: float = 900.0,
                      start_line: StartLine | None = None, press_delay: float = 0.0,
                      open_delay: float = 0.0, log=None) -> SessionResult:
    """One student: open ``page``, wait at ``start_line``, press ``button`` ``press_delay`` s after it,
    and wait for the results. With ``button`` empty or None the student only opens the page.

    ``url`` is the server's http(s) base URL. Every phase waits at most ``timeout`` seconds. Never
    raises for what the server does: every failure is recorded in the result's ``errors``."""
    from tornado.websocket import websocket_connect

    result = SessionResult(index)
    button = button or None
    arrived = False
    sock = None

    def arrive():
        nonlocal arrived
        if start_line is not None and not arrived:
            arrived = True
            start_line.arrive()

    try:
        if open_delay > 0:
            await asyncio.sleep(open_delay)
        base = url.rstrip("/")
        ws_url = ("wss" if base.startswith("https") else "ws") + base[base.index(":"):] + "/_stcore/stream"
        page_name = page_name_of(page)
        t_open = time.perf_counter()
        try:
            conn = await asyncio.wait_for(
                websocket_connect(ws_url, subprotocols=["streamlit"], max_message_size=1 << 30), timeout)
        except Exception as e:  # noqa: BLE001  (tornado raises several kinds)
            result.errors.append(f"could not connect: {type(e).__name__}: {e}")
            return result
        sock = _Socket(conn, result)
        sock.send(_rerun_msg(page_name=page_name, url=f"{base}/{page_name}"))
        load = _Run(until=None, button_key=button, t_start=t_open)
        finished = await sock.run_until_finished(load, t_open + timeout, "the page to load")
        result.errors += load.errors
        result.warnings += load.warnings
        if finished is None:
            return result
        result.page_load_s = finished - t_open
        result.page_script_hash = load.nav_hash
        landed = load.nav_pages.get(load.nav_hash) if load.nav_hash else None
        if landed is not None and landed != page_name:
            result.errors.append(f"opened page {landed!r} instead of {page_name!r}")
        if log:
            log(f"student {index}: page loaded in {result.page_load_s:.1f} s")
        if button is None:
            return result
        if not load.buttons:
            result.errors.append(f"no button with key {button!r} on page {page_name or 'app.py'!r}")
            return result
        result.button_id = sorted(load.buttons, key=lambda i: (not i.endswith("-" + button), i))[0]
        if load.buttons[result.button_id]:
            result.errors.append(f"the button {button!r} is disabled")
            return result

        arrive()
        t0 = await start_line.wait() if start_line is not None else time.perf_counter()
        await asyncio.sleep(max(0.0, t0 + press_delay - time.perf_counter()))
        t_press = time.perf_counter()
        result.press_delay_s = t_press - t0
        sock.send(_rerun_msg(page_script_hash=load.nav_hash or "", trigger_id=result.button_id,
                             url=f"{base}/{page_name}"))
        run = _Run(until=until, button_key=None, t_start=t_press)
        finished = await sock.run_until_finished(run, t_press + timeout, f"the results of {button!r}")
        result.errors += run.errors
        result.warnings += run.warnings
        if finished is None:
            return result
        result.run_s = finished - t_press
        result.reruns_after_press = run.reruns
        if run.until_at is not None:
            result.results_s = run.until_at - t_press
        elif until:
            result.errors.append(f"the run finished without showing {until!r}")
        if log:
            log(f"student {index}: run finished in {result.run_s:.1f} s" + (" with errors" if result.errors else ""))
        return result
    except Exception as e:  # noqa: BLE001  (a bug here must not hide the other students' numbers)
        result.errors.append(f"client error: {type(e).__name__}: {e}")
        return result
    finally:
        arrive()
        if sock is not None:
            await sock.close()


async def run_class(url: str, n: int, *, page: str, button: str | None, until: str | None, spread: float,
                    timeout: float, seed: int, open_spread: float = 0.0, log=None) -> list[SessionResult]:
    """``n`` students at once: all open the page, then press within ``spread`` seconds of each other."""
    rng = random.Random(seed)
    press = [rng.uniform(0.0, spread) if spread > 0 and n > 1 else 0.0 for _ in range(n)]
    opens = [rng.uniform(0.0, open_spread) if open_spread > 0 else 0.0 for _ in range(n)]
    line = StartLine(n)
    return list(await asyncio.gather(*(
        run_session(url, i, page=page, button=button, until=until, timeout=timeout, start_line=line,
                    press_delay=press[i], open_delay=opens[i], log=log) for i in range(n))))


# ---------------------------------------------------------------- the server process
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                kids = [int(c) for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid``, its reaped children (cutime, cstime) and its live descendants."""
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            f = _stat_fields(p)
        except OSError:
            continue
        total += sum(int(x) for x in f[11:15]) / _CLK_TCK  # utime stime cutime cstime (fields 14-17)
    return total


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ProcessMonitor:
    """Samples the resident memory of a process and its descendants every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-monitor", daemon=True)

    def rss(self) -> int:
        return 1024 * sum(_status_kb(p, "VmRSS") for p in [self.pid, *descendants(self.pid)])

    def hwm(self) -> int:
        return 1024 * _status_kb(self.pid, "VmHWM")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self.rss())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self.cpu_start = cpu_seconds(self.pid)
        self.rss_start = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self.rss())
        self.cpu = cpu_seconds(self.pid) - self.cpu_start
        self.vm_hwm = self.hwm()
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_listening_pid(port: int) -> int | None:
    """The PID of the process listening on TCP ``port`` (among the processes this user may inspect)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            for fd in (d / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(d.name)
        except OSError:
            continue
    return None


def wait_healthy(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer /_stcore/health within {timeout:.0f} s")


class StreamlitServer:
    """``python -m streamlit run app.py`` on ``port`` in the repository root, its output in a log file.

    The process started is the server itself (``python -m streamlit`` does not fork), so its PID is
    the one to measure."""

    def __init__(self, port: int | None = None, extra_args: list[str] | None = None, log_path: Path | None = None,
                 startup_timeout: float = 180.0):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args or []
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="ie-load-server-", suffix=".log")[1])
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> StreamlitServer:
        env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
               "--server.headless", "true", "--server.address", "127.0.0.1", *self.extra_args]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(self.url, self.startup_timeout, self.proc)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}; the server's output:\n{self.log_tail()}") from None
        return self

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


# ---------------------------------------------------------------- measuring and reporting
def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between order statistics (numpy's default)."""
    xs = sorted(values)
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class Measurement:
    n: int
    sessions: list[SessionResult]
    wall_s: float
    server_cpu_s: float | None
    peak_rss: int | None
    vm_hwm: int | None
    rss_before: int | None
    client_cpu_s: float

    def stat(self, attr: str, q: float) -> float | None:
        return percentile([getattr(s, attr) for s in self.sessions if getattr(s, attr) is not None], q)

    @property
    def errors(self) -> int:
        return sum(1 for s in self.sessions if s.errors)


def measure(url: str, pid: int | None, n: int, args, log=None, press: bool = True) -> Measurement:
    """Run ``n`` students against ``url`` while watching the server process ``pid`` (when known);
    with ``press`` False they only open the page."""
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()

    def go():
        return asyncio.run(run_class(url, n, page=args.page, button=args.button if press else None, until=args.until,
                                     spread=args.spread, timeout=args.timeout, seed=args.seed,
                                     open_spread=args.open_spread, log=log))

    if pid is not None:
        with ProcessMonitor(pid) as mon:
            sessions = go()
        cpu, peak, hwm, before = mon.cpu, mon.peak_rss, mon.vm_hwm, mon.rss_start
    else:
        sessions = go()
        cpu = peak = hwm = before = None
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return Measurement(n, sessions, time.perf_counter() - t0, cpu, peak, hwm, before, client_cpu)


def _s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} s"


def _gb(x: int | None) -> str:
    return "n/a" if x is None else f"{x / 1e9:.2f} GB"


def _pair(m: Measurement, attr: str) -> str:
    if m.n == 1:
        return _s(m.stat(attr, 50))
    return f"p50 {_s(m.stat(attr, 50))}, p95 {_s(m.stat(attr, 95))}"


def report(main: Measurement, baseline: Measurement | None, args) -> str:
    """The markdown table: one student alone (with --baseline), N at once, and the issue's targets."""
    has_button = bool(args.button)
    cols = (["one student alone"] if baseline else []) + [f"{main.n} at once", f"target for {TARGETS['n']}"]
    ms = ([baseline] if baseline else []) + [main]
    rows = [("page load", [_pair(m, "page_load_s") for m in ms], f"< {TARGETS['page_load_s']:.0f} s")]
    if has_button:
        rows.append((f"run → finished ({args.button})", [_pair(m, "run_s") for m in ms],
                     f"p95 < {TARGETS['run_p95_s']:.0f} s"))
        if args.until:
            rows.append((f"run → {args.until!r} shown", [_pair(m, "results_s") for m in ms], ""))

    def cpu_cell(m):
        if m.server_cpu_s is None:
            return "n/a"
        cell = f"{m.server_cpu_s:.1f} s"
        if baseline is not None and m is not baseline and baseline.server_cpu_s:
            cell += f" ({m.server_cpu_s / baseline.server_cpu_s:.1f}× one student)"
        return cell

    rows.append(("server CPU (user+sys)", [cpu_cell(m) for m in ms], "about 1× one student + a little per student"))
    rows.append(("server peak RSS (sampled)", [_gb(m.peak_rss) for m in ms], f"< {TARGETS['rss_gb']:.0f} GB"))
    rows.append(("server VmHWM", [_gb(m.vm_hwm) for m in ms], ""))
    rows.append(("sessions with errors", [f"{m.errors} of {m.n}" for m in ms], str(TARGETS["errors"])))
    rows.append(("client CPU (this script)", [f"{m.client_cpu_s:.1f} s" for m in ms], ""))
    rows.append(("wall time", [_s(m.wall_s) for m in ms], ""))
    lines = ["| | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(cells) + f" | {target} |" for name, cells, target in rows]
    return "\n".join(lines)


def error_lines(m: Measurement, limit: int = 10) -> list[str]:
    seen: dict[str, int] = {}
    for s in m.sessions:
        for e in s.errors:
            seen[e] = seen.get(e, 0) + 1
    return [f"- {count}× {text}" for text, count in sorted(seen.items(), key=lambda kv: -kv[1])[:limit]]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=30, help="students (concurrent sessions); default 30")
    p.add_argument("--page", default="OOD_detection",
                   help="the page's url path (pages/1_OOD_detection.py -> OOD_detection); '' or home for app.py")
    p.add_argument("--button", default="ood_run", help="the widget key of the button to press; '' to only open the page")
    p.add_argument("--until", default="Score distributions",
                   help="text the triggered run must show (a heading, text, alert or label); '' to only wait for the finish")
    p.add_argument("--spread", type=float, default=3.0, help="the presses fall uniformly within this many seconds")
    p.add_argument("--open-spread", type=float, default=0.0,
                   help="the page opens fall uniformly within this many seconds (default: all at once)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds each phase of a session may take")
    p.add_argument("--seed", type=int, default=0, help="seed of the press (and open) jitter")
    p.add_argument("--url", help="attach to a running server instead of starting one")
    p.add_argument("--pid", type=int, help="the attached server's PID (found from the port when omitted)")
    p.add_argument("--port", type=int, help="port for the server started here (default: a free one)")
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra argument for `streamlit run`, e.g. --server-arg=--server.fileWatcherType=none")
    p.add_argument("--baseline", action="store_true",
                   help="first measure one student alone (on a fresh server when the server is started here)")
    p.add_argument("--warmup", choices=["open", "run"],
                   help="one unmeasured student first, on each measured server: 'open' only opens the page (imports, "
                        "model and workspace outputs are warm, as after a teacher's visit), 'run' also presses the "
                        "button (the students then find its results cached)")
    p.add_argument("--json", type=Path, help="write every session's record and the totals to this file")
    p.add_argument("--quiet", action="store_true", help="no per-student progress lines on stderr")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error("--n must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def note(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    log = None if args.quiet else note
    import streamlit

    load1, load5, _ = os.getloadavg()
    header = (f"benchmarks/load.py: {args.n} student{'s' if args.n > 1 else ''}, page {page_name_of(args.page) or 'app.py'!r}, "
              f"button {args.button or '-'!r}, presses within {args.spread:g} s (seed {args.seed}); "
              f"streamlit {streamlit.__version__}, {os.cpu_count()} cores, load average {load1:.1f} / {load5:.1f} "
              f"(1 / 5 min) at the start")

    def one_server_run(n: int) -> Measurement:
        if args.url:
            pid = args.pid or find_listening_pid(urlparse(args.url).port or 80)
            if pid is None:
                note("the server's PID was not found (pass --pid): server CPU and RSS are not measured")
            wait_healthy(args.url, 30)
            if args.warmup:
                measure(args.url, None, 1, args, log, press=args.warmup == "run")
            return measure(args.url, pid, n, args, log)
        with StreamlitServer(port=args.port, extra_args=args.server_arg) as server:
            note(f"server pid {server.pid} on {server.url} (log {server.log_path})")
            if args.warmup:
                note(f"warm-up student (not measured): {'opens the page' if args.warmup == 'open' else 'presses too'}")
                measure(server.url, None, 1, args, log, press=args.warmup == "run")
            m = measure(server.url, server.pid, n, args, log)
            if m.errors:
                note("server log tail:\n" + server.log_tail())
            return m

    try:
        baseline = None
        if args.baseline:
            note("one student alone" + ("" if args.url else " on a fresh server"))
            baseline = one_server_run(1)
        note(f"{args.n} students" + ("" if args.url else " on a fresh server"))
        main_m = one_server_run(args.n)
    except RuntimeError as e:
        print(f"load.py: {e}", file=sys.stderr)
        return 1

    print(header)
    if args.url and args.baseline:
        print("(attached server: the one-student run warmed its caches before the N students ran)")
    if args.warmup == "open":
        print("(--warmup open: one unmeasured student opened the page first on each server: a warm server, no cached results)")
    elif args.warmup == "run":
        print("(--warmup run: one unmeasured student opened the page and pressed first: the measured students found "
              "its results cached)")
    print()
    print(report(main_m, baseline, args))
    errs = error_lines(main_m)
    if errs:
        print(f"\nErrors of the {args.n} students:")
        print("\n".join(errs))
    warns = sorted({w for s in main_m.sessions for w in s.warnings})
    if warns:
        print("\nWarnings shown (not counted as errors):")
        print("\n".join(f"- {w[:200]}" for w in warns[:10]))
    if args.json:
        args.json.write_text(json.dumps({
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "targets": TARGETS,
            "runs": {name: {**{k: v for k, v in asdict(m).items() if k != "sessions"},
                            "sessions": [asdict(s) for s in m.sessions]}
                     for name, m in (("baseline", baseline), ("main", main_m)) if m is not None},
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
