// Live heap of the firmware in the MicroPython VM, phase by phase, after a REAL garbage collection.
//
// The WebAssembly VM collects only at the start of a top-level call (inside one call gc.collect() frees
// nothing: tests/mpy/test_vm_memory.py pins that), so this runs each phase of that test module as its
// own top-level call and reads gc.mem_alloc() at the start of the next one. Same files as
// tools/mpvm/run.mjs puts in the VM (the compiled build/firmware/**.mpy, host stand-ins, emulator).
//
//   make mpy && node tools/heap_live.mjs            # prints the table, exit 1 if a live budget is exceeded
//   node tools/heap_live.mjs --build build --json   # one JSON line instead
//   node tools/heap_live.mjs --modules              # live heap per firmware module, dependencies first
//   node tools/heap_live.mjs --build OTHER/build --module OTHER/test_vm_memory.py   # another firmware build
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const build = path.resolve(args.includes("--build") ? args[args.indexOf("--build") + 1] : path.join(REPO, "build"));
const asJson = args.includes("--json");
// --module PATH: another copy of the phase module (e.g. to measure an older firmware build).
const phases = args.includes("--module") ? path.resolve(args[args.indexOf("--module") + 1])
                                         : path.join(REPO, "tests/mpy/test_vm_memory.py");

function walk(dir, keep) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p, keep));
    else if (keep(e.name)) out.push(p);
  }
  return out;
}

const files = [];
const fw = path.join(build, "firmware");
if (!fs.existsSync(fw)) { console.error(`no ${fw}: run make mpy first`); process.exit(2); }
for (const f of walk(fw, (n) => n.endsWith(".mpy"))) files.push([f, "/firmware/" + path.relative(fw, f).split(path.sep).join("/")]);
for (const n of ["machine.py", "network.py", "simclock.py"]) files.push([path.join(REPO, "tools/hostport", n), "/lib/" + n]);
files.push([path.join(REPO, "tools/mpvm/vmtest.py"), "/lib/vmtest.py"]);
files.push([path.join(REPO, "tools/__init__.py"), "/tools/__init__.py"]);
const emu = path.join(REPO, "tools/emulator");
for (const f of walk(emu, (n) => n.endsWith(".py"))) files.push([f, "/tools/emulator/" + path.relative(emu, f).split(path.sep).join("/")]);
for (const f of walk(path.join(REPO, "boards"), (n) => n.endsWith(".json"))) files.push([f, "/boards/" + path.basename(f)]);
files.push([phases, "/tests/mpy/test_vm_memory.py"]);

const { loadMicroPython } = await import(pathToFileURL(
  path.join(REPO, "node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs")).href);
const lines = [];
const mp = await loadMicroPython({ heapsize: 8 << 20, linebuffer: true, stdout: (l) => lines.push(l), stderr: (l) => console.error(l) });
const made = new Set(["/"]);
const mkdirs = (d) => { if (made.has(d)) return; mkdirs(path.posix.dirname(d)); try { mp.FS.mkdir(d); } catch (e) { /* exists */ } made.add(d); };
for (const [host, vm] of files) { mkdirs(path.posix.dirname(vm)); mp.FS.writeFile(vm, fs.readFileSync(host)); }

// The VM collects at the start of a top-level call, and only when gc.collect() (or a full heap) asked for
// it during an earlier one (measured: without the asking call the figures lag one phase behind).
const live = {};
function phase(name, code) {
  mp.runPython(code);
  mp.runPython("gc.collect()");                 // only marks a collection pending ...
  mp.runPython(`print("LIVE", gc.mem_alloc())`);  // ... which runs as this top-level call starts
  const l = lines.pop();
  if (!l || !l.startsWith("LIVE ")) throw new Error(`phase ${name}: no figure (${l})`);
  live[name] = Number(l.slice(5));
}
// --modules: the live heap each firmware module adds when imported after its dependencies (topological
// order from the module-level imports in firmware/*.py), then exit.
function firmwareOrder() {
  const src = path.join(REPO, "firmware");
  const names = walk(src, (n) => n.endsWith(".py")).map((f) =>
    ["firmware", ...path.relative(src, f).replace(/\.py$/, "").split(path.sep)].filter((x) => x !== "__init__").join("."));
  const deps = (name) => {
    const base = path.join(REPO, ...name.split("."));
    const file = fs.existsSync(base + ".py") ? base + ".py" : path.join(base, "__init__.py");
    const out = [];
    for (const line of fs.readFileSync(file, "utf8").split("\n")) {
      // Module level only: imports inside functions (lazy ones) do not load with the module.
      const m = /^from (firmware[\w.]*) import ([\w, ]+)/.exec(line) || /^import (firmware[\w.]*)/.exec(line);
      if (!m) continue;
      const mod = m[1];
      const parts = mod.split(".");
      for (let i = 1; i <= parts.length; i++) out.push(parts.slice(0, i).join("."));
      if (m[2]) for (const a of m[2].split(",")) out.push(mod + "." + a.trim().split(" ")[0]);
    }
    return out.filter((d) => names.includes(d) && d !== name);
  };
  const order = [], seen = new Set();
  const visit = (n) => { if (seen.has(n)) return; seen.add(n); for (const d of deps(n)) visit(d); order.push(n); };
  for (const n of names.sort()) visit(n);
  return order;
}

mp.runPython(["import sys, os", "os.chdir('/')", "sys.path[:] = ['', '/', '/tests/mpy', '.frozen', '/lib']",
              "import vmtest", "vmtest.install_time()", "import simclock", "simclock.CLOCK.simulate(start_ms=0)",
              "import gc", "import test_vm_memory as M"].join("\n"));
phase("vm", "pass");
if (args.includes("--modules")) {
  let prev = live.vm, total = 0;
  const rows = [];
  for (const name of firmwareOrder()) {
    phase(name, `__import__("${name}")`);
    rows.push([name, live[name] - prev]);
    total += live[name] - prev;
    prev = live[name];
  }
  if (asJson) console.log(JSON.stringify(Object.fromEntries(rows)));
  else { for (const [n, b] of rows) console.log(`${n.padEnd(34)} ${String(b).padStart(7)}`); console.log(`${"total".padEnd(34)} ${String(total).padStart(7)}`); }
  process.exit(0);
}
phase("imports", "M.import_firmware()");            // every module the boot imports
phase("resident", "M.release()");                    // minus the boot-only ones: the code that stays
phase("standins", "M.make_standins()");              // host side (subtracted below)
phase("built", "M.build_app()");                     // build() loads the boot modules again
phase("started", "M.start_app()");                   // start(), then release_boot_modules() as main() does
phase("steady", "M.run_cycles(160); M.queue_ping(1); M.run_cycles(640)");   // 200 s: session, batches, a command
phase("steady2", "M.run_cycles(800)");
mp.runPython(`print("CHECK", M.client().published, M.STATE["app"].comms.commands.accepted, M.STATE["app"].prot.faults)`);
const check = lines.pop().split(" ").slice(1).map(Number);
mp.runPython(`print("BUDGETS", M.LIVE_STEADY_BUDGET, M.LIVE_DATA_BUDGET, M.LIVE_GROWTH_MAX, M.LIVE_RESIDENT_BUDGET)`);
const [steadyBudget, dataBudget, growthMax, residentBudget] = lines.pop().split(" ").slice(1).map(Number);

const standins = live.standins - live.resident;      // host side: subtracted from what follows
const fig = {
  vm_base: live.vm,
  firmware_imports_all: live.imports - live.vm,       // every firmware module the boot imports, as .mpy files
  firmware_code_resident: live.resident - live.vm,    // after release_boot_modules()
  standins_and_emulator: standins,
  build_with_boot_modules: live.built - live.standins,
  steady: live.steady2 - live.vm - standins,          // firmware code + objects at steady state
  data_only: live.steady2 - live.standins,            // objects made by build/start/cycles: a frozen image's heap
  growth_800_cycles: live.steady2 - live.steady,
  frames_published: check[0], commands_accepted: check[1], faults: check[2],
};
const failed = [];
if (check[0] < 5 || check[1] !== 1 || check[2] !== 0) failed.push("comms did not reach steady state, or faults");
if (fig.firmware_code_resident > residentBudget) failed.push(`resident code ${fig.firmware_code_resident} > budget ${residentBudget}`);
if (fig.steady > steadyBudget) failed.push(`steady ${fig.steady} > budget ${steadyBudget}`);
if (fig.data_only > dataBudget) failed.push(`data ${fig.data_only} > budget ${dataBudget}`);
if (fig.growth_800_cycles > growthMax) failed.push(`heap grew by ${fig.growth_800_cycles} bytes over 800 cycles (max ${growthMax})`);
if (asJson) console.log(JSON.stringify({ ...fig, failed }));
else {
  for (const [k, v] of Object.entries(fig)) console.log(`${k.padEnd(26)} ${String(v).padStart(8)}`);
  console.log(`budgets: resident code ${residentBudget}, steady ${steadyBudget}, data ${dataBudget}, growth ${growthMax}`);
  for (const f of failed) console.log("FAIL " + f);
  console.log(failed.length ? "FAILED" : "ok");
}
process.exit(failed.length ? 1 : 0);
