"""tools/bench/vm/ holds MicroPython VM benchmarks (run by tools/bench/firmware_vm.py through
tools/mpvm/run.mjs), not pytest tests: they import the VM-only `vmtest` and `micropython.heap_lock`.

    node tools/mpvm/run.mjs --build build --tests tools/bench/vm
"""
collect_ignore_glob = ["*.py"]
