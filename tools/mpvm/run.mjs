// Runs the firmware's compiled .mpy files in the official MicroPython VM (WebAssembly, npm
// @micropython/micropython-webassembly-pyscript): an import gate, then the tests in tests/mpy/.
//
//     node tools/mpvm/run.mjs --build build --tests tests/mpy          # what `make test-vm` runs
//     node tools/mpvm/run.mjs --only test_smoke::test_copy_from_allocates_nothing --verbose
//
// Every job (the gate, then each test module) gets a fresh VM in a worker thread with a time limit,
// so a crash or hang in one module is reported as that module's failure and the others still run.
// Exit status: 0 all passed, 1 a failure (or a VM without its closing line), 2 bad usage or set-up.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..");
// Host stand-ins the VM lacks. Not micropython.py (the VM has the real module), not umqtt (CPython only).
const HOSTPORT_FILES = ["machine.py", "network.py", "simclock.py"];
// The first heap area is never given back; with 8 MiB, gc.collect() leaves megabytes free, so no
// collection can happen inside vmtest.mem_alloc_delta() (gc.disable() does not stop a full-heap one).
const DEFAULT_HEAP = 8 * 1024 * 1024;
const DEFAULT_TIMEOUT_S = 120;
const CLOSING = /^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$/;

const USAGE = `usage: node tools/mpvm/run.mjs [--build DIR] [--tests DIR] [--src DIR] [--only NAME]
                              [--heap BYTES] [--timeout SECONDS] [--verbose] [--help]

Loads the MicroPython VM, copies in DIR/firmware/**.mpy (never the .py sources), the host stand-ins
(tools/hostport: ${HOSTPORT_FILES.join(", ")}), tools/emulator/**.py, the test modules and
tests/vectors/**, then imports every firmware module (the import gate) and runs each test module's
test_* functions in a fresh VM.

  --build DIR      build output of tools/build_mpy.py (default: build)
  --tests DIR      folder of VM test modules test_*.py (default: tests/mpy)
  --src DIR        firmware sources: each .py must have an up-to-date .mpy (default: firmware)
  --only NAME      run only module NAME, test NAME, or MODULE::TEST (the gate always runs)
  --heap BYTES     first heap area of each VM; the heap grows past it on demand (default: ${DEFAULT_HEAP})
  --timeout S      time limit per VM job in seconds (default: ${DEFAULT_TIMEOUT_S})
  --verbose        list copied files and passing tests, print full tracebacks
Closing line: "N passed, N failed[, N skipped]" over the gate's modules and the tests.`;

function parseArgs(argv) {
  const opts = { build: "build", tests: "tests/mpy", src: "firmware", only: null, heap: DEFAULT_HEAP,
                 timeout: DEFAULT_TIMEOUT_S, verbose: false };
  const needsValue = { "--build": "build", "--tests": "tests", "--src": "src", "--only": "only",
                       "--heap": "heap", "--timeout": "timeout" };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--help" || a === "-h") { console.log(USAGE); process.exit(0); }
    if (a === "--verbose" || a === "-v") { opts.verbose = true; continue; }
    const key = needsValue[a];
    if (!key || i + 1 >= argv.length) { usageError(`bad argument: ${a}`); }
    opts[key] = argv[++i];
  }
  for (const key of ["heap", "timeout"]) {
    const n = Number(opts[key]);
    if (!Number.isInteger(n) || n <= 0) usageError(`--${key} must be a positive integer, got ${opts[key]}`);
    opts[key] = n;
  }
  return opts;
}

function usageError(msg) {
  console.error(`run.mjs: ${msg}\n\n${USAGE}`);
  process.exit(2);
}

function walk(dir, filter, out = []) {
  if (!fs.existsSync(dir)) return out;
  for (const ent of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (ent.name === "__pycache__" || ent.name.startsWith(".")) continue;
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) walk(p, filter, out);
    else if (filter(ent.name)) out.push(p);
  }
  return out;
}

// [host path, VM path] pairs. The VM's "/" mirrors the repo root, except the host stand-ins and
// vmtest.py, which go to /lib (MicroPython's own library folder, already on sys.path).
function collectFiles(opts) {
  const files = [];
  const fwBuild = path.resolve(opts.build, "firmware");
  for (const f of walk(fwBuild, (n) => n.endsWith(".mpy"))) {
    files.push([f, "/firmware/" + path.relative(fwBuild, f).split(path.sep).join("/")]);
  }
  for (const n of HOSTPORT_FILES) {
    const f = path.join(REPO, "tools", "hostport", n);
    if (fs.existsSync(f)) files.push([f, "/lib/" + n]);
  }
  files.push([path.join(HERE, "vmtest.py"), "/lib/vmtest.py"]);
  const toolsInit = path.join(REPO, "tools", "__init__.py");
  if (fs.existsSync(toolsInit)) files.push([toolsInit, "/tools/__init__.py"]);
  const emu = path.join(REPO, "tools", "emulator");
  for (const f of walk(emu, (n) => n.endsWith(".py"))) {
    files.push([f, "/tools/emulator/" + path.relative(emu, f).split(path.sep).join("/")]);
  }
  const testsDir = path.resolve(opts.tests);
  for (const ent of fs.readdirSync(testsDir).sort()) {
    // conftest.py is pytest's (it keeps CPython from collecting these VM-only modules).
    if (ent.endsWith(".py") && ent !== "conftest.py") files.push([path.join(testsDir, ent), "/tests/mpy/" + ent]);
  }
  const vectors = path.join(path.dirname(testsDir), "vectors");
  for (const f of walk(vectors, () => true)) {
    files.push([f, "/tests/vectors/" + path.relative(vectors, f).split(path.sep).join("/")]);
  }
  const boards = path.join(REPO, "boards");
  for (const f of walk(boards, (n) => n.endsWith(".json"))) {
    files.push([f, "/boards/" + path.relative(boards, f).split(path.sep).join("/")]);
  }
  return files;
}

// "firmware/comms/__init__.mpy" -> "firmware.comms"
function moduleName(vmPath) {
  let rel = vmPath.replace(/^\//, "").replace(/\.mpy$/, "");
  rel = rel.replace(/\/__init__$/, "");
  return rel.split("/").join(".");
}

// Each firmware .py needs a .mpy at least as new: otherwise the VM would test something that is not
// what gets flashed (a file mpy-cross rejected has no .mpy at all: build_mpy.py deletes it).
function staleChecks(opts) {
  const src = path.resolve(opts.src);
  const fwBuild = path.resolve(opts.build, "firmware");
  const lines = [];
  for (const py of walk(src, (n) => n.endsWith(".py"))) {
    const rel = path.relative(src, py);
    const mpy = path.join(fwBuild, rel.replace(/\.py$/, ".mpy"));
    const name = moduleName("/firmware/" + rel.split(path.sep).join("/").replace(/\.py$/, ".mpy"));
    if (!fs.existsSync(mpy)) {
      lines.push(`FAIL import::${name}: not compiled: no ${path.relative(process.cwd(), mpy)} ` +
                 `(mpy-cross rejected it, or tools/build_mpy.py was not run)`);
    } else if (fs.statSync(mpy).mtimeMs < fs.statSync(py).mtimeMs) {
      lines.push(`FAIL import::${name}: ${path.relative(process.cwd(), mpy)} is older than its source (run make mpy)`);
    }
  }
  return lines;
}

function pyStr(s) {
  return s === null ? "None" : JSON.stringify(s);
}

function runJob(job, opts) {
  return new Promise((resolve) => {
    const lines = [];
    let settled = false;
    const worker = new Worker(new URL(import.meta.url), { workerData: job });
    const finish = (extra) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (extra) { console.log(extra); lines.push(extra); }
      resolve(lines);
    };
    const timer = setTimeout(() => {
      worker.terminate();
      finish(`FAIL ${job.label}: no answer from the VM within ${opts.timeout} s (hang, or heap left locked)`);
    }, opts.timeout * 1000);
    worker.on("message", (m) => {
      if (m.stream === "err") { console.error(m.line); return; }
      lines.push(m.line);
      if (!CLOSING.test(m.line)) console.log(m.line);
    });
    worker.on("error", (e) => finish(`FAIL ${job.label}: VM crashed: ${e && e.message ? e.message : e}`));
    worker.on("exit", () => finish(null));
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const fwBuild = path.resolve(opts.build, "firmware");
  if (!fs.existsSync(fwBuild)) usageError(`${fwBuild} does not exist: run make mpy first`);
  if (!fs.existsSync(path.resolve(opts.tests))) usageError(`tests folder ${opts.tests} does not exist`);
  if (!fs.existsSync(path.resolve(opts.src))) usageError(`firmware source folder ${opts.src} does not exist`);
  const files = collectFiles(opts);
  if (opts.verbose) for (const [host, vm] of files) console.log(`copy ${path.relative(process.cwd(), host)} -> ${vm}`);
  const gateModules = files.filter(([, vm]) => vm.startsWith("/firmware/")).map(([, vm]) => moduleName(vm)).sort();
  if (gateModules.length === 0) usageError(`no .mpy files under ${fwBuild}: run make mpy first`);
  let testModules = fs.readdirSync(path.resolve(opts.tests))
    .filter((n) => /^test_.*\.py$/.test(n)).map((n) => n.replace(/\.py$/, "")).sort();
  if (opts.only) {
    const mod = opts.only.split("::")[0];
    if (testModules.includes(mod)) testModules = [mod];
  }

  let passed = 0, failed = 0, skipped = 0, testsRun = 0;
  const stale = staleChecks(opts);
  for (const l of stale) console.log(l);
  failed += stale.length;

  const base = { files, heap: opts.heap, verbose: opts.verbose };
  const jobs = [{ ...base, label: "import gate", call: `vmtest.run_gate(${JSON.stringify(gateModules)}, ${opts.verbose ? "True" : "False"})` }];
  for (const m of testModules) {
    jobs.push({ ...base, label: m, module: m,
                call: `vmtest.run_module(${pyStr(m)}, ${pyStr(opts.only)}, ${opts.verbose ? "True" : "False"})` });
  }
  for (const job of jobs) {
    const lines = await runJob(job, opts);
    const last = lines.length ? lines[lines.length - 1] : "";
    const m = CLOSING.exec(last);
    if (!m) {
      console.log(`FAIL ${job.label}: the VM stopped without its closing line (crash, uncaught error or out of memory)`);
      failed += 1;
      continue;
    }
    const [p, f, s] = [Number(m[1]), Number(m[2]), Number(m[3] || 0)];
    console.log(`${job.label}: ${last}`);
    passed += p; failed += f; skipped += s;
    if (job.module) testsRun += p + f + s;
  }
  if (testsRun === 0) {
    console.log(opts.only ? `FAIL no test matches --only ${opts.only}` : `FAIL no test_* functions found in ${opts.tests}`);
    failed += 1;
  }
  console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
  process.exit(failed ? 1 : 0);
}

// --- worker: one fresh VM per job ---
async function workerMain(job) {
  const post = (stream) => (line) => parentPort.postMessage({ stream, line });
  const { loadMicroPython } = await import(
    pathToFileURL(path.join(REPO, "node_modules", "@micropython", "micropython-webassembly-pyscript", "micropython.mjs")).href);
  const mp = await loadMicroPython({ heapsize: job.heap, stdout: post("out"), stderr: post("err"), linebuffer: true });
  const made = new Set(["/"]);
  const mkdirs = (dir) => {
    if (made.has(dir)) return;
    mkdirs(path.posix.dirname(dir));
    try { mp.FS.mkdir(dir); } catch (e) { /* exists already (e.g. /tmp) */ }
    made.add(dir);
  };
  for (const [host, vm] of job.files) {
    mkdirs(path.posix.dirname(vm));
    mp.FS.writeFile(vm, fs.readFileSync(host));
  }
  const code = [
    "import sys, os",
    "os.chdir('/')",
    // '' and '/' find /firmware and /tools as packages; /lib holds the stand-ins and vmtest.
    "sys.path[:] = ['', '/', '/tests/mpy', '.frozen', '/lib']",
    "import vmtest",
    "vmtest.install_time()",
    job.call,
  ].join("\n");
  try {
    mp.runPython(code);
  } catch (e) {
    post("out")(`VM error: ${e.type || e.name}: ${e.message}`);
  }
}

if (isMainThread) {
  await main();
} else {
  await workerMain(workerData);
}
