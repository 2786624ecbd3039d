"""The protocol-level load client of benchmarks/load.py.

The first tests check its parts on their own: how a script run's ForwardMsgs are read (errors,
warnings, the button, the awaited text, the finish), the percentiles against numpy, the server's CPU
time against what the kernel reports to the process itself, and the PID found from a listening port.
The e2e test starts the app with the script's own server class and sends two students through the
home page: they must open it, press "Load workspace" (whose run asks for ``st.rerun`` only when the
press reached the script) and see the page finish without an exception.
"""
from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

ROOT = Path(__file__).resolve().parents[2]


def _import_load():
    # by path: tests/ is on sys.path in a full run, and its folders must not shadow the repository's benchmarks/
    spec = importlib.util.spec_from_file_location("ie_benchmarks_load", ROOT / "benchmarks" / "load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


load = _import_load()


def _element(kind: str, **fields) -> ForwardMsg:
    msg = ForwardMsg()
    sub = getattr(msg.delta.new_element, kind)
    for k, v in fields.items():
        setattr(sub, k, v)
    return msg


def _finished(status) -> ForwardMsg:
    msg = ForwardMsg()
    msg.script_finished = status
    return msg


def test_run_reader_sorts_errors_warnings_button_and_the_awaited_text():
    run = load._Run(until="Score distributions", button_key="ood_run", t_start=0.0)
    assert run.take(_element("markdown", body="Results"), 1.0) is None
    assert run.until_at is None
    run.take(_element("button", id="$$ID-0123abcd-ood_run", label="Run detectors", disabled=False), 1.5)
    run.take(_element("button", id="$$ID-99-other", label="Other"), 1.6)
    assert run.buttons == {"$$ID-0123abcd-ood_run": False}
    run.take(_element("exception", type="ValueError", message="boom"), 2.0)
    run.take(_element("exception", type="DeprecationWarning", message="old", is_warning=True), 2.1)
    alert = _element("alert", body="The detectors could not run")
    alert.delta.new_element.alert.format = alert.delta.new_element.alert.ERROR
    run.take(alert, 2.2)
    warn = _element("alert", body="ODIN did not run")
    warn.delta.new_element.alert.format = warn.delta.new_element.alert.WARNING
    run.take(warn, 2.3)
    # a figure whose JSON holds the text is not the page showing it
    run.take(_element("plotly_chart", spec='{"layout": {"title": "Score distributions"}}'), 2.4)
    assert run.until_at is None
    run.take(_element("heading", body="Score distributions", tag="h3"), 3.0)
    run.take(_element("heading", body="Score distributions again"), 4.0)
    assert run.until_at == 3.0
    assert run.errors == ["exception ValueError: boom", "st.error: The detectors could not run"]
    assert run.warnings == ["exception DeprecationWarning: old", "st.warning: ODIN did not run"]
    assert run.take(_finished(ForwardMsg.FINISHED_EARLY_FOR_RERUN), 5.0) == "rerun"
    assert run.reruns == 1
    assert run.take(_finished(ForwardMsg.FINISHED_SUCCESSFULLY), 6.0) == "finished"


def test_run_reader_records_page_not_found_compile_errors_and_navigation():
    run = load._Run(until=None, button_key=None, t_start=0.0)
    nav = ForwardMsg()
    nav.navigation.page_script_hash = "h2"
    for h, path in (("h1", ""), ("h2", "OOD_detection")):
        page = nav.navigation.app_pages.add()
        page.page_script_hash, page.url_pathname = h, path
    run.take(nav, 0.1)
    assert run.nav_hash == "h2" and run.nav_pages == {"h1": "", "h2": "OOD_detection"}
    missing = ForwardMsg()
    missing.page_not_found.page_name = "Nope"
    run.take(missing, 0.2)
    assert run.take(_finished(ForwardMsg.FINISHED_WITH_COMPILE_ERROR), 0.3) == "finished"
    assert run.errors == ["page not found: 'Nope'", "the script finished with a compile error"]


def test_rerun_message_carries_the_page_and_only_the_pressed_trigger():
    from streamlit.proto.BackMsg_pb2 import BackMsg

    msg = BackMsg()
    msg.ParseFromString(load._rerun_msg(page_script_hash="abc", trigger_id="$$ID-1-ood_run"))
    cs = msg.rerun_script
    assert cs.page_script_hash == "abc" and cs.page_name == ""
    assert [(w.id, w.WhichOneof("value"), w.trigger_value) for w in cs.widget_states.widgets] == \
        [("$$ID-1-ood_run", "trigger_value", True)]
    msg.ParseFromString(load._rerun_msg(page_name="OOD_detection"))
    assert msg.rerun_script.page_name == "OOD_detection" and not msg.rerun_script.widget_states.widgets
    assert [load.page_name_of(p) for p in ("", "home", "app.py", "/OOD_detection", "OOD_detection")] == \
        ["", "", "", "OOD_detection", "OOD_detection"]


def test_percentile_matches_numpy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 30):
        xs = list(rng.exponential(10.0, n))
        for q in (0, 50, 95, 100):
            assert load.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)), rel=1e-12)
    assert load.percentile([], 50) is None


def test_cpu_seconds_and_rss_of_this_process_match_the_kernel_s_own_report():
    sum(i * i for i in range(2_000_000))  # some CPU time to read
    t = os.times()
    mine = load.cpu_seconds(os.getpid())
    reported = t.user + t.system + t.children_user + t.children_system
    assert mine == pytest.approx(reported, abs=0.1)
    mon = load.ProcessMonitor(os.getpid())
    with open(f"/proc/{os.getpid()}/statm") as f:
        resident_pages = int(f.read().split()[1])
    assert mon.rss() == pytest.approx(resident_pages * os.sysconf("SC_PAGE_SIZE"), rel=0.05)


def test_the_listening_process_is_found_from_its_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert load.find_listening_pid(s.getsockname()[1]) == os.getpid()
    with socket.socket() as s:  # bound, not listening
        s.bind(("127.0.0.1", 0))
        assert load.find_listening_pid(s.getsockname()[1]) is None


@pytest.fixture(scope="module")
def server():
    with load.StreamlitServer() as srv:
        yield srv


@pytest.mark.e2e
def test_two_students_open_the_home_page_and_press_load_workspace(server):
    assert server.pid == load.find_listening_pid(server.port)
    with load.ProcessMonitor(server.pid) as mon:
        students = asyncio.run(load.run_class(server.url, 2, page="", button="home_apply",
                                              until="Accuracy on this data", spread=0.5, timeout=300, seed=0))
    assert [s.index for s in students] == [0, 1]
    for s in students:
        assert s.errors == [], server.log_tail()
        assert s.saw_script_finished
        assert s.page_load_s is not None and s.run_s is not None and s.results_s is not None
        assert s.button_id.endswith("-home_apply")
        assert s.page_script_hash
        # "Load workspace" ends its run with st.rerun() only when the press reached the script
        assert s.reruns_after_press >= 1
    assert mon.samples >= 1 and mon.peak_rss >= mon.rss_start > 50e6
    assert mon.cpu > 0 and mon.vm_hwm >= mon.rss_start


@pytest.mark.e2e
def test_a_missing_page_or_button_is_an_error_not_a_hang(server):
    async def both():
        return await asyncio.gather(
            load.run_session(server.url, 0, page="No_such_page", button=None, until=None, timeout=300),
            load.run_session(server.url, 1, page="", button="no_such_button", until=None, timeout=300))

    missing_page, missing_button = asyncio.run(both())
    assert any("page not found" in e for e in missing_page.errors), missing_page.errors
    assert missing_button.errors == ["no button with key 'no_such_button' on page 'app.py'"]
    assert missing_button.saw_script_finished and missing_button.run_s is None
