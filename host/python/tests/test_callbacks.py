"""Local callables called by the sandbox: on the waiting thread, nested,
with typed exceptions; one connection from several threads (after RPyC's
test_classic and Pushy's unittest/)."""

from __future__ import annotations

import threading

import pytest

import pushy


def test_a_local_function_is_callable_in_the_sandbox(con):
    seen = []

    def record(value, *, twice=False):
        seen.append(value)
        return value * 2 if twice else value

    apply = con.eval("lambda f, x: f(x) + f(x, twice=True)")
    assert apply(record, 5) == 15
    assert seen == [5, 5]
    assert con.eval("lambda f: f()")(lambda: "from here") == "from here"


def test_callbacks_run_on_the_thread_whose_call_waits(con):
    local = threading.local()
    local.name = "main"
    names = []

    def which():
        names.append((threading.current_thread().name, getattr(local, "name", None)))
        return threading.get_ident()

    call = con.eval("lambda f: f()")
    assert call(which) == threading.get_ident()

    def in_thread():
        local.name = "worker"
        assert call(which) == threading.get_ident()

    worker = threading.Thread(target=in_thread, name="worker")
    worker.start()
    worker.join()
    assert names == [("MainThread", "main"), ("worker", "worker")]


def test_nested_callbacks_to_depth_50(con):
    con.execute("def down(n, back):\n    return n if n == 0 else back(n - 1)")
    down = con.eval("down")
    depth = []

    def back(n):
        depth.append(n)
        return down(n, back)

    assert down(50, back) == 0
    assert depth == list(range(49, -1, -1))
    assert con.eval("1") == 1  # still usable


def test_a_callback_may_call_the_connection(con):
    def remote_twice(x):
        return con.eval(f"{x} * 2")

    assert con.eval("lambda f: f(21)")(remote_twice) == 42


def test_local_exceptions_reach_the_sandbox_typed(con):
    def missing(key):
        raise KeyError(key)

    def invalid():
        raise ValueError("no good")

    class Custom(Exception):
        pass

    def custom():
        raise Custom("mine")

    con.execute(
        "def catch(f, *args):\n"
        "    try:\n"
        "        f(*args)\n"
        "    except Exception as e:\n"
        "        return type(e).__name__, str(e)\n")
    catch = con.eval("catch")
    assert catch(missing, "k") == ("KeyError", "'k'")
    assert catch(invalid) == ("ValueError", "no good")
    kind, message = catch(custom)
    assert kind == "CallbackError" and "Custom: mine" in message
    # Uncaught there, it comes back here as the same class.
    with pytest.raises(ValueError):
        con.eval("lambda f: f()")(invalid)


def test_the_same_local_function_is_the_same_remote_object(con):
    def handler():
        return 1

    con.execute("registry = []")
    registry = con.eval("registry")
    registry.append(handler)
    assert handler in registry
    registry.remove(handler)
    assert len(registry) == 0
    assert con.eval("lambda a, b: a is b")(handler, handler)


def test_callbacks_are_released_when_the_sandbox_drops_them(con):
    before = con._core.live_callbacks()
    con.eval("lambda f: f()")(lambda: None)
    con.eval("1")  # the release rides on the next call's reply
    assert con._core.live_callbacks() <= before + 1


def test_several_threads_share_one_connection(con):
    con.execute("counter = [0]\ndef bump(n):\n    counter[0] += n\n    return n")
    bump = con.eval("bump")
    errors = []

    def work(index):
        try:
            for _ in range(30):
                assert bump(index) == index
                assert con.eval(f"{index} + 1") == index + 1
                assert con.eval("lambda f, x: f(x)")(lambda x: x * 2, index) == index * 2
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    assert not errors, errors
    assert con.eval("counter[0]") == 30 * (0 + 1 + 2 + 3)


def test_a_long_call_does_not_hold_the_gil(con):
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            stop.wait(0.01)

    thread = threading.Thread(target=ticker)
    thread.start()
    con.modules.time.sleep(0.5)
    stop.set()
    thread.join()
    assert len(ticks) >= 10


def test_a_callback_that_returns_a_local_object(con):
    def make():
        return {"k": [1, 2]}

    got = con.eval("lambda f: (lambda d: (d['k'][1], len(d), list(d)))(f())")(make)
    assert got == (2, 1, ["k"])


def test_a_callback_refused_arguments_fail_in_the_sandbox(con):
    import os

    def give_module():
        return os

    with pytest.raises(TypeError):
        con.eval("lambda f: f()")(give_module)
    assert con.eval("1") == 1
    with pytest.raises(TypeError):
        con.eval("len")(os)


def test_keyboard_interrupt_in_a_callback_stops_the_call(con):
    def stop():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        con.eval("lambda f: f()")(stop)
    with pytest.raises(pushy.PushyError):
        con.eval("1")


@pytest.mark.parametrize("kind", [SystemExit, GeneratorExit])
def test_a_base_exception_in_a_callback_is_raised_here_and_the_session_goes_on(con, kind):
    def leave():
        raise kind(3)

    con.execute("def swallow(f):\n    try:\n        f()\n    except Exception:\n        return 'swallowed'\n")
    with pytest.raises(kind):
        con.eval("swallow")(leave)
    assert con.eval("6 * 7") == 42
