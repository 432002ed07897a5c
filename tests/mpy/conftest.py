"""tests/mpy/ holds MicroPython VM tests (run by tools/mpvm/run.mjs, `make test-vm`), not pytest ones.

They import the VM-only helper `vmtest` and rely on micropython.heap_lock()/gc.mem_alloc(), so pytest
must not collect them under CPython:

    node tools/mpvm/run.mjs --build build --tests tests/mpy
"""
collect_ignore_glob = ["*.py"]
