// Live heap of the firmware in the MicroPython VM, phase by phase, after a REAL garbage collection.
//
// The WebAssembly VM collects only at the start of a top-level call (inside one call gc.collect() frees
// nothing: tests/mpy/test_vm_memory.py pins that), so this runs each phase of that test module as its
// own top-level call and reads gc.mem_alloc() at the start of the next one. Same files as
// tools/mpvm/run.mjs puts in the VM (the compiled build/firmware/**.mpy, host stand-ins, emulator).
//
//   make mpy && node tools/heap_live.mjs            # both images (below), exit 1 if a live budget is exceeded
//   node tools/heap_live.mjs --fs                   # only the .mpy files on the file system
//   node tools/heap_live.mjs --build build --json   # one JSON line instead
//   node tools/heap_live.mjs --modules              # live heap per firmware module, dependencies first
//   node tools/heap_live.mjs --build OTHER/build --module OTHER/test_vm_memory.py   # another firmware build
//   node tools/heap_live.mjs --frozen               # only the same phases as a FROZEN image runs them
//   node tools/heap_live.mjs --frozen --src OTHER/firmware   # frozen, another firmware tree
//
// --frozen: on a plain ESP32 the firmware is frozen into the image (boards/manifest.py): bytecode,
// constants and qstrs stay in flash, and an import only makes the module object, its globals dict and
// what the module body creates (function and class objects, module-level data). This VM cannot import a
// frozen or ROMFS module of ours (no vfs.VfsRom, and frozen modules are linked into the .wasm), so the
// same split is made with the VM's own compiler: a first phase (`code`) compiles every firmware source
// into a code object kept for the whole run (it stands for the flash: bytecode, constants, qstrs), and
// each firmware module is a one-line stub that executes its code object in the stub module's globals.
// What an import leaves in the heap is then what a frozen import leaves (checked against a real frozen
// module of this VM, docs/memory.md). Figures are taken relative to the `code` phase.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
if (args.includes("--help") || args.includes("-h")) {
  // The usage is this file's own header comment (kept as the one description of the options).
  const head = fs.readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n");
  const text = [];
  for (const line of head) { if (!line.startsWith("//")) break; text.push(line.replace(/^\/\/ ?/, "")); }
  console.log("usage: node tools/heap_live.mjs [--build DIR] [--json] [--fs | --frozen [--src DIR]] [--modules]" +
              " [--module PATH]\n\n" + text.join("\n"));
  process.exit(0);
}
const build = path.resolve(args.includes("--build") ? args[args.indexOf("--build") + 1] : path.join(REPO, "build"));
const asJson = args.includes("--json");
const frozenOnly = args.includes("--frozen");
// --src DIR: the firmware sources the frozen mode compiles (default: the repository's firmware/).
const srcDir = path.resolve(args.includes("--src") ? args[args.indexOf("--src") + 1] : path.join(REPO, "firmware"));
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


// --modules: the firmware modules in import order, each after its module-level dependencies (topological
// order from the module-level imports in firmware/*.py).
function firmwareOrder() {
  const names = walk(srcDir, (n) => n.endsWith(".py")).map((f) => moduleName(f));
  const deps = (name) => {
    const base = path.join(srcDir, ...name.split(".").slice(1));
    const file = fs.existsSync(base + ".py") ? base + ".py" : path.join(base, "__init__.py");
    const out = [];
    for (const line of fs.readFileSync(file, "utf8").split("\n")) {
      // Module level only: imports inside functions (lazy ones) do not load with the module.
      const m = /^from (firmware[\w.]*) import \(?([\w, ]*)/.exec(line) || /^import (firmware[\w.]*)/.exec(line);
      if (!m) continue;
      const mod = m[1];
      const parts = mod.split(".");
      for (let i = 1; i <= parts.length; i++) out.push(parts.slice(0, i).join("."));
      if (m[2]) for (const a of m[2].split(",")) if (a.trim()) out.push(mod + "." + a.trim().split(" ")[0]);
    }
    return out.filter((d) => names.includes(d) && d !== name);
  };
  const order = [], seen = new Set();
  const visit = (n) => { if (seen.has(n)) return; seen.add(n); for (const d of deps(n)) visit(d); order.push(n); };
  for (const n of names.sort()) visit(n);
  return order;
}

// firmware/comms/frame.py -> firmware.comms.frame; firmware/comms/__init__.py -> firmware.comms
function moduleName(file) {
  return ["firmware", ...path.relative(srcDir, file).replace(/\.py$/, "").split(path.sep)]
    .filter((x) => x !== "__init__").join(".");
}

// In frozen mode each firmware module is this stub: it executes the module's code object (compiled in
// the `code` phase, kept alive as the flash would keep it) in the stub module's own globals.
const STUB = '__import__("_frozen").load(__name__, globals())\n';
const FROZEN_HELPER = `CODES = {}


def load(name, g):
    exec(CODES[name], g)


def compile_all(items):
    compile(${JSON.stringify(STUB)}, "/stub.py", "exec")     # interns the stub's own names once
    for name, src, file in items:
        with open(src) as f:
            text = f.read()
        CODES[name] = compile(text, file, "exec")      # file: the stub's __file__, interned here
`;

// One VM with the firmware laid out as `mode` ("fs": the .mpy files make flash copies; "frozen": stubs
// over code objects compiled from the sources), the phases of test_vm_memory.py run one top-level call
// each. Returns { live, lines, mp }.
async function runVM(mode) {
  const files = [];
  const stubs = [];
  if (mode === "fs") {
    const fw = path.join(build, "firmware");
    if (!fs.existsSync(fw)) { console.error(`no ${fw}: run make mpy first`); process.exit(2); }
    for (const f of walk(fw, (n) => n.endsWith(".mpy"))) files.push([f, "/firmware/" + path.relative(fw, f).split(path.sep).join("/")]);
  } else {
    if (!fs.existsSync(srcDir)) { console.error(`no ${srcDir}`); process.exit(2); }
    for (const f of walk(srcDir, (n) => n.endsWith(".py"))) {
      const rel = path.relative(srcDir, f).split(path.sep).join("/");
      files.push([f, "/fwsrc/firmware/" + rel]);
      // __file__ of a module found through sys.path entry '' (the first one, cwd '/') is relative.
      stubs.push([moduleName(f), "/fwsrc/firmware/" + rel, "firmware/" + rel]);
    }
  }
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
  for (const [, , stub] of stubs) { mkdirs(path.posix.dirname("/" + stub)); mp.FS.writeFile("/" + stub, STUB); }
  if (mode === "frozen") mp.FS.writeFile("/lib/_frozen.py", FROZEN_HELPER);

  // The VM collects at the start of a top-level call, and only when gc.collect() (or a full heap) asked for
  // it during an earlier one (measured: without the asking call the figures lag one phase behind).
  const live = {};
  const phase = (name, code) => {
    mp.runPython(code);
    mp.runPython("gc.collect()");                 // only marks a collection pending ...
    mp.runPython(`print("LIVE", gc.mem_alloc())`);  // ... which runs as this top-level call starts
    const l = lines.pop();
    if (!l || !l.startsWith("LIVE ")) throw new Error(`phase ${name}: no figure (${l})`);
    live[name] = Number(l.slice(5));
  };
  mp.runPython(["import sys, os", "os.chdir('/')", "sys.path[:] = ['', '/', '/tests/mpy', '.frozen', '/lib']",
                "import vmtest", "vmtest.install_time()", "import simclock", "simclock.CLOCK.simulate(start_ms=0)",
                "import gc", "import test_vm_memory as M"].join("\n"));
  phase("vm", "pass");
  if (mode === "frozen") {
    // The flash: every firmware module compiled, kept for the whole run. Figures after are relative to it.
    phase("code", `import _frozen\n_frozen.compile_all(${JSON.stringify(stubs.map(([n, src, file]) => [n, src, file]))})`);
  } else live.code = live.vm;
  return { live, lines, mp, phase };
}

// --modules: the live heap each firmware module adds when imported after its dependencies, then exit.
async function modules(mode) {
  const { live, phase } = await runVM(mode);
  let prev = live.code, total = 0;
  const rows = [];
  for (const name of firmwareOrder()) {
    phase(name, `__import__("${name}")`);
    rows.push([name, live[name] - prev]);
    total += live[name] - prev;
    prev = live[name];
  }
  return { rows, total };
}

async function phases_(mode) {
  const { live, lines, mp, phase } = await runVM(mode);
  phase("imports", "M.import_firmware()");            // every module the boot imports
  phase("resident", "M.release()");                    // minus the boot-only ones: the code that stays
  phase("standins", "M.make_standins()");              // host side (subtracted below)
  phase("built", "M.build_app()");                     // build() loads the boot modules again
  phase("started", "M.start_app()");                   // start(), then release_boot_modules() as main() does
  phase("steady", "M.run_cycles(160); M.queue_ping(1); M.run_cycles(640)");   // 200 s: session, batches, a command
  phase("steady2", "M.run_cycles(800)");
  mp.runPython(`print("CHECK", M.client().published, M.STATE["app"].comms.commands.accepted, M.STATE["app"].prot.faults)`);
  const check = lines.pop().split(" ").slice(1).map(Number);
  const budgetNames = mode === "fs" ? "M.LIVE_STEADY_BUDGET, M.LIVE_DATA_BUDGET, M.LIVE_GROWTH_MAX, M.LIVE_RESIDENT_BUDGET"
    : "M.FROZEN_STEADY_BUDGET, M.LIVE_DATA_BUDGET, M.LIVE_GROWTH_MAX, M.FROZEN_RESIDENT_BUDGET";
  mp.runPython(`print("BUDGETS", ${budgetNames})`);
  const [steadyBudget, dataBudget, growthMax, residentBudget] = lines.pop().split(" ").slice(1).map(Number);

  const standins = live.standins - live.resident;      // host side: subtracted from what follows
  const fig = mode === "fs" ? {
    vm_base: live.vm,
    firmware_imports_all: live.imports - live.vm,       // every firmware module the boot imports, as .mpy files
    firmware_code_resident: live.resident - live.vm,    // after release_boot_modules()
    standins_and_emulator: standins,
    build_with_boot_modules: live.built - live.standins,
    steady: live.steady2 - live.vm - standins,          // firmware code + objects at steady state
    data_only: live.steady2 - live.standins,            // objects made by build/start/cycles
    growth_800_cycles: live.steady2 - live.steady,
  } : {
    vm_base: live.vm,
    code_in_flash: live.code - live.vm,                 // compiled firmware: stands for the flash, not counted
    firmware_imports_all: live.imports - live.code,     // module objects of every module the boot imports
    firmware_modules_resident: live.resident - live.code,   // after release_boot_modules()
    standins_and_emulator: standins,
    build_with_boot_modules: live.built - live.standins,
    steady: live.steady2 - live.code - standins,        // module objects + objects at steady state: the frozen image's heap
    data_only: live.steady2 - live.standins,            // objects made by build/start/cycles
    growth_800_cycles: live.steady2 - live.steady,
  };
  Object.assign(fig, { frames_published: check[0], commands_accepted: check[1], faults: check[2] });
  const failed = [];
  const resident = mode === "fs" ? fig.firmware_code_resident : fig.firmware_modules_resident;
  if (check[0] < 5 || check[1] !== 1 || check[2] !== 0) failed.push(`${mode}: comms did not reach steady state, or faults`);
  if (resident > residentBudget) failed.push(`${mode}: resident ${resident} > budget ${residentBudget}`);
  if (fig.steady > steadyBudget) failed.push(`${mode}: steady ${fig.steady} > budget ${steadyBudget}`);
  if (fig.data_only > dataBudget) failed.push(`${mode}: data ${fig.data_only} > budget ${dataBudget}`);
  if (fig.growth_800_cycles > growthMax) failed.push(`${mode}: heap grew by ${fig.growth_800_cycles} bytes over 800 cycles (max ${growthMax})`);
  return { fig, failed, budgets: { resident: residentBudget, steady: steadyBudget, data: dataBudget, growth: growthMax } };
}

const modes = frozenOnly ? ["frozen"] : args.includes("--fs") ? ["fs"] : ["fs", "frozen"];
if (args.includes("--modules")) {
  const out = {};
  for (const mode of modes) out[mode] = await modules(mode);
  if (asJson) console.log(JSON.stringify(Object.fromEntries(modes.map((m) => [m, Object.fromEntries(out[m].rows)]))));
  else {
    console.log(`${"module".padEnd(34)} ${modes.map((m) => m.padStart(8)).join(" ")}`);
    const names = out[modes[0]].rows.map(([n]) => n);
    for (let i = 0; i < names.length; i++) console.log(`${names[i].padEnd(34)} ${modes.map((m) => String(out[m].rows[i][1]).padStart(8)).join(" ")}`);
    console.log(`${"total".padEnd(34)} ${modes.map((m) => String(out[m].total).padStart(8)).join(" ")}`);
  }
  process.exit(0);
}
const res = {};
for (const mode of modes) res[mode] = await phases_(mode);
const failed = modes.flatMap((m) => res[m].failed);
if (asJson) {
  // The file-system figures at the top level (as before), the frozen ones under "frozen".
  const j = res.fs ? { ...res.fs.fig } : {};
  if (res.frozen) j.frozen = res.frozen.fig;
  console.log(JSON.stringify({ ...j, failed }));
} else {
  for (const mode of modes) {
    const { fig, budgets } = res[mode];
    console.log(mode === "fs" ? "== .mpy files on the file system (code copied into the heap)"
                              : "== frozen into the image (code in flash; boards/manifest.py)");
    for (const [k, v] of Object.entries(fig)) console.log(`${k.padEnd(26)} ${String(v).padStart(8)}`);
    console.log(`budgets: resident ${budgets.resident}, steady ${budgets.steady}, data ${budgets.data}, growth ${budgets.growth}`);
  }
  for (const f of failed) console.log("FAIL " + f);
  console.log(failed.length ? "FAILED" : "ok");
}
process.exit(failed.length ? 1 : 0);
