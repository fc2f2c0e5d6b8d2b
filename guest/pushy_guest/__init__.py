"""The agent that runs inside the sandbox.

Modules, one job each:
  importer   serves the standard library from marshalled code held in memory
  streams    sys.stdout/sys.stderr that forward to the host in order
  table      the object table: handles handed to the local side, with counts
  values     encoding Python objects to WIT nodes and back
  callbacks  proxies for callables on the local side (the trampoline)
  localobjects  local objects (mappings, lists, ...) through their public surface
  pyapi      what the Python package asks in one call: slices, with-exits, submodules
  dispatch   one handler per operation; exceptions become data
  threads    locks for an interpreter without threads
  eventloop  an asyncio event loop without a self-pipe (no sockets, no threads)
  native     a clear ImportError for extension modules built for the host
  testing    the `pushy test` runner (a package, imported on demand)
"""
