"""Local objects passed in are capabilities: their public surface, nothing
else of this process (where Pushy's and RPyC's symmetric proxies hand the
sandbox the whole local interpreter)."""

from __future__ import annotations

import os
import sys

import pytest

import pushy

SECRET = "local secret"


class Account:
    """A local object with public and private parts."""

    kind = "account"

    def __init__(self) -> None:
        self.balance = 10
        self._pin = 1234

    def deposit(self, amount):
        self.balance += amount
        return self.balance

    def module(self):
        return os


def test_public_attributes_and_methods_work(con):
    account = Account()
    use = con.eval("lambda a: (a.balance, a.kind, a.deposit(5), a.balance)")
    assert use(account) == (10, "account", 15, 15)
    con.eval("lambda a: setattr(a, 'balance', 0)")(account)
    assert account.balance == 0
    assert "deposit" in con.eval("lambda a: dir(a)")(account)
    assert not any(name.startswith("_") for name in con.eval("lambda a: dir(a)")(account))


def test_private_attributes_are_refused(con):
    account = Account()
    probe = con.eval("lambda a, name: getattr(a, name)")
    for name in ("_pin", "__dict__", "__globals__", "__code__", "__func__", "__self__"):
        with pytest.raises(AttributeError):
            probe(account, name)
    # What the wrapper has itself is the sandbox's own, not this process's.
    assert con.eval("lambda a: type(a).__module__")(account) == "pushy_guest.localobjects"
    assert con.eval("lambda a: a.__init__.__module__")(account) == "pushy_guest.localobjects"
    assert not con.eval("lambda a: hasattr(a, '_pin')")(account)
    with pytest.raises(AttributeError):
        con.eval("lambda a: setattr(a, '_pin', 0)")(account)
    assert account._pin == 1234


def test_no_walk_reaches_the_local_interpreter(con):
    con.execute(
        "def escape(f, obj, mapping):\n"
        "    found = []\n"
        "    attempts = [\n"
        "        lambda: f.__globals__,\n"
        "        lambda: f.__code__,\n"
        "        lambda: f.__closure__,\n"
        "        lambda: obj.__class__,\n"
        "        lambda: obj.__init__.__globals__,\n"
        "        lambda: obj.deposit.__func__,\n"
        "        lambda: obj.deposit.__self__,\n"
        "        lambda: mapping.__class__.__subclasses__(),\n"
        "        lambda: obj.__dict__,\n"
        "        lambda: type(obj).__subclasses__(),\n"
        "        lambda: obj.module(),\n"
        "        lambda: mapping['os'],\n"
        "        lambda: mapping['sys'].modules,\n"
        "        lambda: obj._pushy_dispatch('getattr', '__dict__'),\n"
        "        lambda: obj._pushy_dispatch('call_raw', 'x'),\n"
        "    ]\n"
        "    for attempt in attempts:\n"
        "        try:\n"
        "            found.append(repr(attempt()))\n"
        "        except Exception as e:\n"
        "            found.append(type(e).__name__)\n"
        "    return found\n")

    def helper():
        return SECRET

    results = con.eval("escape")(helper, Account(), {"os": os, "sys": sys, "fine": 1})
    for result in results:
        # Whatever the sandbox found is its own (its wrappers' classes and
        # module), never this process's.
        assert SECRET not in result
        assert __file__ not in result and "test_capabilities" not in result
    assert results[:3] == ["AttributeError"] * 3
    assert results[5] == results[6] == "AttributeError"
    assert results[10:13] == ["TypeError"] * 3
    assert results[13] == "AttributeError"
    assert results[14] == "ValueError"


def test_a_local_module_is_never_passed(con):
    with pytest.raises(TypeError):
        con.eval("lambda m: m")(os)
    with pytest.raises(TypeError):
        con.eval("lambda m: m")(sys._getframe())
    with pytest.raises(TypeError):
        con.eval("lambda m: m")(helper_code())


def helper_code():
    return (lambda: 1).__code__


def test_a_local_dict_and_list_through_their_public_surface(con):
    data = {"a": 1}
    items = [1, 2]
    con.eval("lambda d, l: (d.__setitem__('b', 2), l.append(3), l.extend([4, 5]))")(data, items)
    assert data == {"a": 1, "b": 2}
    assert items == [1, 2, 3, 4, 5]
    assert con.eval("lambda d: sorted(d.items())")(data) == [("a", 1), ("b", 2)]
    assert con.eval("lambda d: dict(d)")(data) == {"a": 1, "b": 2}
    assert con.eval("lambda l: (len(l), 3 in l, l[0], sum(l))")(items) == (5, True, 1, 15)
    assert con.eval("lambda d: isinstance(d, __import__('collections.abc').abc.Mapping)")(data)
    with pytest.raises(KeyError):
        con.eval("lambda d: d['missing']")(data)
    big = list(range(3000))
    assert con.eval("sum")(big) == sum(big)


def test_the_same_local_object_is_the_same_wrapper_while_held(con):
    data = {}
    con.execute("kept = []")
    con.eval("kept.append")(data)
    assert con.eval("lambda d: d is kept[0]")(data)
    con.eval("kept[0].__setitem__")("x", 1)
    assert data == {"x": 1}


def test_a_local_iterable(con):
    def numbers():
        yield from range(600)

    assert con.eval("lambda it: list(it)[-1]")(numbers()) == 599
    assert con.eval("lambda s: sorted(s)")({3, 1, 2}) == [1, 2, 3]


def test_a_local_object_handed_back_is_itself(con):
    data = {"a": 1}
    items = [1]
    assert con.eval("lambda x: x")(data) is data
    assert con.eval("lambda x: [x, x]")(items)[1] is items
    con.execute("stash = []")
    con.eval("stash.append")(data)
    del data
    import gc
    gc.collect()
    # Kept by the sandbox, it is still the same local object.
    got = con.eval("stash[0]")
    assert got == {"a": 1} and type(got) is dict
