"""The agent that runs inside the sandbox.

Modules, one job each:
  importer   serves the standard library from marshalled code held in memory
  streams    sys.stdout/sys.stderr that forward to the host in order
  table      the object table: handles handed to the local side, with counts
  values     encoding Python objects to WIT nodes and back
  callbacks  proxies for callables on the local side (the trampoline)
  dispatch   one handler per operation; exceptions become data
  threads    locks for an interpreter without threads
  testing    the `pushy test` runner (a package, imported on demand)
"""
