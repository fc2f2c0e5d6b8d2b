"""Entry point of the guest component (componentize-py's app module).

Importing this module is the component's pre-initialisation: it runs once at
build time with the stdlib mounted, collects that stdlib (and the agent's
own modules) into memory, imports the modules most scripts need, and creates
the session state. The resulting memory image is snapshotted into the
component, so every instance starts from here without touching a filesystem.
"""

import os
import sys

from pushy_guest import importer

_store = importer.StdlibStore()
_store.collect(os.environ.get("PYTHONHOME", "/python"))
importer.install(_store)

# Pre-imported modules cost nothing per session (copy-on-write snapshot) and
# save each session their import time (email.mime.text alone: ~18 ms).
# Modules that draw entropy at import (random) are reseeded by the session's
# first call, so no two sessions share a seed from the snapshot.
import ast, base64, bisect, collections, contextlib, copy, dataclasses  # noqa: E401,F401
import datetime, decimal, enum, fractions, functools, heapq, inspect  # noqa: E401,F401
import io, itertools, json, linecache, math, operator, pathlib, pprint  # noqa: E401,F401
import re, string, struct, textwrap, time, traceback, typing, weakref  # noqa: E401,F401
import argparse, calendar, configparser, csv, difflib, fnmatch, glob  # noqa: E401,F401
import gzip, hashlib, hmac, html.parser, logging, logging.handlers  # noqa: E401,F401
import numbers, pickle, queue, random, secrets, shlex, shutil, sqlite3  # noqa: E401,F401
import statistics, tarfile, tempfile, tomllib, unittest, unittest.mock  # noqa: E401,F401
import urllib.parse, uuid, zipfile, zoneinfo  # noqa: E401,F401
import email.message, email.mime.multipart, email.mime.text, email.utils  # noqa: E401,F401
import http.client, xml.dom.minidom, xml.etree.ElementTree  # noqa: E401,F401
import asyncio, concurrent.futures  # noqa: E401,F401

import wit_world

from pushy_guest import eventloop, native
from pushy_guest import paths  # noqa: F401 - the host calls paths.install

# asyncio's own loop needs a socketpair, which WASI denies.
eventloop.install()

from pushy_guest.dispatch import Session, install_streams
# What the local side's Python package calls (capabilities, slices, ...).
from pushy_guest import localobjects, pyapi  # noqa: E402,F401

# The agent's own modules that are imported on demand (pushy_guest.testing,
# for `pushy test`) are served from memory too: at run time the directories
# componentize-py mounts to build the component are gone. Collected after the
# imports above, which load as they always did.
_store.collect(os.path.dirname(importer.__file__), prefix="pushy_guest.")

# Last of the finders, and installed after the imports above so that no
# listing of the build machine's directories is kept in the snapshot.
native.install()

_session = Session()
install_streams(_session)

# Nothing of the build machine's environment or argv may reach a session.
os.environ.clear()
sys.argv = [""]


class WitWorld(wit_world.WitWorld):
    # The export is the session's bound method itself, which never raises
    # (it returns a prepared MemoryError reply as a last resort): no frame
    # of its own on each call.
    dispatch = _session.dispatch


# Last: every object of the snapshot goes to the collector's permanent
# generation. A session's collections then never walk (and so never write
# to, copy-on-write) the snapshot's objects, and the shutdown's scan for
# open files sees only what the session made: without this, the first
# `gc.get_objects()` of a session took ~25 ms of page faults.
import gc  # noqa: E402

gc.collect()
gc.freeze()
