// The virtual board's MicroPython side: the official MicroPython VM (WebAssembly, npm
// @micropython/micropython-webassembly-pyscript) behind a serial byte stream on stdin/stdout that speaks
// the board's REPL protocol (friendly REPL, raw REPL, raw-paste mode, soft and hard resets).
//
//     node tools/virtualboard/vm.mjs --state STATE_DIR --board boards/sim16_lfp.json   # bytes in/out on stdio
//     python -m tools.virtualboard --dir STATE_DIR        # the usual way: puts this behind a pseudo-terminal
//
// Threads: the main thread moves stdin bytes into a shared ring (SharedArrayBuffer) and writes what the
// worker posts to stdout. The worker runs the VM and the REPL, blocking on the ring with Atomics.wait.
// Ctrl-C: while a program runs, an interrupt character (3, or what micropython.kbd_intr() set) is not
// queued but flagged; the program sees it as KeyboardInterrupt at its next time.sleep*() or stdin read
// (the VM cannot be entered from another thread). A program that never sleeps cannot be interrupted
// that way: after INTERRUPT_GRACE_MS the main thread power-cycles the board (new VM; files are kept).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..");
const RING = 1 << 16;            // input ring: mpremote never has more than one raw-paste window in flight
const PASTE_WINDOW = 512;        // raw-paste flow-control window (bytes per 0x01 grant)
const INTERRUPT_GRACE_MS = 3000;
const SYNC_EVERY_MS = 1000;      // at most this stale: files the running program wrote, on the host
// ctrl words: 0 ring head (written by main), 1 ring tail (by worker), 2 interrupt char or -1,
// 3 interrupt pending, 4 input sequence (Atomics.wait/notify), 5 interrupt pending since (ms, low bits)
const C_HEAD = 0, C_TAIL = 1, C_INTR = 2, C_PEND = 3, C_SEQ = 4;

const USAGE = `usage: node tools/virtualboard/vm.mjs --state DIR --board FILE.json [--fs-bytes N]
                                   [--report-mpy N] [--seed N] [--soc F] [--heap BYTES] [--frozen-firmware]
Runs the virtual board's MicroPython VM on stdin/stdout (normally started by python -m tools.virtualboard).
--frozen-firmware puts the repository's firmware package in the read-only /rom, behind the flash file
system on sys.path, as a MicroPython image built with boards/manifest.py has it frozen.`;

function parseArgs(argv) {
  const o = { state: null, board: null, fsBytes: 2 * 1024 * 1024, mpy: null, seed: 1, soc: 0.5,
              heap: 4 * 1024 * 1024, frozenFirmware: false };
  const keys = { "--state": "state", "--board": "board", "--fs-bytes": "fsBytes", "--report-mpy": "mpy",
                 "--seed": "seed", "--soc": "soc", "--heap": "heap" };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--help" || argv[i] === "-h") { console.log(USAGE); process.exit(0); }
    if (argv[i] === "--frozen-firmware") { o.frozenFirmware = true; continue; }
    const k = keys[argv[i]];
    if (!k || i + 1 >= argv.length) { console.error(`vm.mjs: bad argument ${argv[i]}\n${USAGE}`); process.exit(2); }
    o[k] = argv[++i];
  }
  if (!o.state || !o.board) { console.error(`vm.mjs: --state and --board are required\n${USAGE}`); process.exit(2); }
  for (const k of ["fsBytes", "seed", "heap"]) o[k] = Number(o[k]);
  o.soc = Number(o.soc);
  if (o.mpy !== null) o.mpy = Number(o.mpy);
  return o;
}

// ---------------------------------------------------------------- main thread
function mainThread() {
  const opts = parseArgs(process.argv.slice(2));
  const sab = new SharedArrayBuffer(32 + RING);
  const ctrl = new Int32Array(sab, 0, 8);
  const ring = new Uint8Array(sab, 32, RING);
  Atomics.store(ctrl, C_INTR, -1);
  let worker = null;
  let pendingSince = 0;
  let crashes = [];

  const start = (why) => {
    // After a forced power-cycle the input that arrived meanwhile is kept (mpremote's Ctrl-A that
    // followed its Ctrl-C): the VM's stall is not the board's fault, so the host gets its answer.
    if (why === "power-on") { Atomics.store(ctrl, C_HEAD, 0); Atomics.store(ctrl, C_TAIL, 0); }
    Atomics.store(ctrl, C_INTR, -1); Atomics.store(ctrl, C_PEND, 0);
    pendingSince = 0;
    worker = new Worker(new URL(import.meta.url), { workerData: { opts, sab, why } });
    worker.on("message", (m) => { if (m.out) process.stdout.write(Buffer.from(m.out)); });
    worker.on("error", (e) => {
      const now = Date.now();
      crashes = crashes.filter((t) => now - t < 30000);
      crashes.push(now);
      if (crashes.length > 3) {
        process.stderr.write(`[virtual board] VM crashed 4 times in 30 s, giving up: ${e && e.stack ? e.stack : e}\n`);
        process.exit(1);
      }
      process.stdout.write(`\r\n[virtual board] VM crashed: ${e && e.message ? e.message : e}; power-cycling\r\n`);
      start("crash");
    });
  };

  process.stdin.on("data", (data) => {
    const ic = Atomics.load(ctrl, C_INTR);
    for (const b of data) {
      if (ic >= 0 && b === ic) {            // as the board's UART handler: the interrupt char is not queued
        if (!Atomics.load(ctrl, C_PEND)) pendingSince = Date.now();
        Atomics.store(ctrl, C_PEND, 1);
        continue;
      }
      const head = Atomics.load(ctrl, C_HEAD);
      const next = (head + 1) % RING;
      if (next === Atomics.load(ctrl, C_TAIL)) continue;   // full: dropped, like a UART overrun
      ring[head] = b;
      Atomics.store(ctrl, C_HEAD, next);
    }
    Atomics.add(ctrl, C_SEQ, 1);
    Atomics.notify(ctrl, C_SEQ);
  });
  process.stdin.on("end", () => process.exit(0));
  // A program that does not take the interrupt within the grace time: power-cycle (files are kept).
  setInterval(() => {
    if (Atomics.load(ctrl, C_PEND) && pendingSince && Date.now() - pendingSince > INTERRUPT_GRACE_MS) {
      worker.terminate();
      process.stdout.write(`\r\n[virtual board] the program did not take Ctrl-C within ${INTERRUPT_GRACE_MS} ms ` +
                           `(no time.sleep or stdin read): power-cycled\r\n`);
      start("power-cycle");
    }
  }, 250).unref();
  start("power-on");
}

// ---------------------------------------------------------------- worker: the board
async function workerMain({ opts, sab, why }) {
  const ctrl = new Int32Array(sab, 0, 8);
  const ring = new Uint8Array(sab, 32, RING);
  const fsDir = path.resolve(opts.state, "fs");
  fs.mkdirSync(fsDir, { recursive: true });
  const board = JSON.parse(fs.readFileSync(opts.board, "utf8"));

  // --- output: bytes collected from the VM and the REPL, posted in chunks ---
  let out = [];
  let cook = false;          // friendly-REPL program output: "\n" -> "\r\n", as the board's UART console
  let prev = 0;
  const emit = (b) => {
    if (cook && b === 10 && prev !== 13) out.push(13);
    out.push(b);
    prev = b;
    // A program that prints without ever sleeping still shows its lines (at most every 20 ms).
    if (out.length >= 4096 || (b === 10 && Date.now() - lastFlush > 20)) flush();
  };
  const write = (s) => { for (const b of Buffer.from(s, "latin1")) emit(b); };     // protocol bytes
  const writeText = (s) => { for (const b of Buffer.from(s, "utf8")) emit(b); };   // text from Python
  let lastFlush = 0;
  const flush = () => {
    lastFlush = Date.now();
    if (out.length) { parentPort.postMessage({ out: Uint8Array.from(out) }); out = []; }
  };

  // --- input ring ---
  const avail = () => (Atomics.load(ctrl, C_HEAD) - Atomics.load(ctrl, C_TAIL) + RING) % RING;
  const pop = () => {
    const t = Atomics.load(ctrl, C_TAIL);
    const b = ring[t];
    Atomics.store(ctrl, C_TAIL, (t + 1) % RING);
    return b;
  };
  const waitInput = (ms) => {
    const seq = Atomics.load(ctrl, C_SEQ);
    if (avail() > 0 || Atomics.load(ctrl, C_PEND)) return;
    Atomics.wait(ctrl, C_SEQ, seq, ms);
  };
  const readByte = () => {
    for (;;) {
      if (avail() > 0) return pop();
      flush();
      syncIfDirty(false);
      waitInput(SYNC_EVERY_MS);
    }
  };
  const clearInput = () => { Atomics.store(ctrl, C_TAIL, Atomics.load(ctrl, C_HEAD)); };

  // --- file system: VM /flash <-> STATE_DIR/fs ---
  let dirty = false;
  let lastSync = 0;
  let mp = null;
  const memWalk = (dir, files, dirs) => {
    for (const name of mp.FS.readdir(dir)) {
      if (name === "." || name === "..") continue;
      const p = dir + "/" + name;
      const st = mp.FS.stat(p);
      if (mp.FS.isDir(st.mode)) { dirs.push(p); memWalk(p, files, dirs); }
      else files.push([p, st.size, st.mtime instanceof Date ? st.mtime.getTime() : Number(st.mtime)]);
    }
  };
  // Mirrors /flash to the host after every command and at most every SYNC_EVERY_MS while a program
  // runs. Changed files are found by (size, mtime); files modified since the last pass are compared by
  // content too, since two writes within one millisecond keep the same mtime.
  let snap = new Map();
  let lastSyncStart = 0;
  const syncIfDirty = (force) => {
    if (!mp) return;
    const now = Date.now();
    if (!force && !dirty && now - lastSync < SYNC_EVERY_MS) return;
    dirty = false;
    lastSync = now;
    const files = [], dirs = [];
    memWalk("/flash", files, dirs);
    const next = new Map();
    let setChanged = false;
    for (const d of dirs) {
      next.set(d, "dir");
      if (snap.get(d) !== "dir") {
        setChanged = true;
        fs.mkdirSync(path.join(fsDir, d.slice("/flash/".length)), { recursive: true });
      }
    }
    for (const [p, size, mtime] of files) {
      const key = size + ":" + mtime;
      next.set(p, key);
      if (!snap.has(p)) setChanged = true;
      if (snap.get(p) === key && mtime < lastSyncStart - 1) continue;
      const host = path.join(fsDir, p.slice("/flash/".length));
      const data = Buffer.from(mp.FS.readFile(p));
      let same = false;
      try { same = Buffer.compare(fs.readFileSync(host), data) === 0; } catch (e) { same = false; }
      if (!same) {
        fs.writeFileSync(host + ".vbtmp", data);     // write + rename: never a torn file on the host
        fs.renameSync(host + ".vbtmp", host);
      }
    }
    for (const p of snap.keys()) if (!next.has(p)) setChanged = true;
    if (setChanged) {
      const want = new Set([...next.keys()].map((p) => path.join(fsDir, p.slice("/flash/".length))));
      const prune = (dir) => {
        for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
          const p = path.join(dir, ent.name);
          if (ent.isDirectory()) { prune(p); if (!want.has(p)) fs.rmSync(p, { recursive: true, force: true }); }
          else if (!want.has(p)) fs.rmSync(p, { force: true });
        }
      };
      prune(fsDir);
    }
    snap = next;
    lastSyncStart = now;
  };
  const fsUsed = (bs) => {
    const files = [], dirs = [];
    memWalk("/flash", files, dirs);
    // Rough LittleFS cost: each file and directory takes at least one block.
    let blocks = dirs.length;
    for (const [, size] of files) blocks += Math.max(1, Math.ceil(size / bs));
    return String(blocks * bs);
  };

  // --- the VM ---
  let lastResult = "";     // what _vboard reported through vbhost.result() (runPython returns None)
  const t0 = process.hrtime.bigint();
  const refreshIntr = () => {
    // micropython.kbd_intr(c) sets the VM's interrupt char (mpremote's mount turns it off while it
    // streams data over stdin); the main thread reads it from C_INTR.
    Atomics.store(ctrl, C_INTR, mp._module._mp_hal_get_interrupt_char());
  };
  const takeInterrupt = () => Atomics.compareExchange(ctrl, C_PEND, 1, 0) === 1;
  const stdin = () => {
    refreshIntr();
    for (;;) {
      if (avail() > 0) return pop();
      if (takeInterrupt()) { mp._module._mp_sched_keyboard_interrupt(); return null; }
      flush();
      syncIfDirty(false);
      waitInput(SYNC_EVERY_MS);
    }
  };
  mp = await (await import(pathToFileURL(path.join(REPO, "node_modules", "@micropython",
    "micropython-webassembly-pyscript", "micropython.mjs")).href)).loadMicroPython({
    heapsize: opts.heap, linebuffer: false, stdin,
    stdout: (b) => { for (const x of b) emit(x); },
    stderr: (b) => { for (const x of b) emit(x); },
  });
  mp.registerJsModule("vbhost", {
    now_us: () => String((process.hrtime.bigint() - t0) / 1000n),
    sleep_us: (us) => {
      // Microsecond deadline on the monotonic clock; Atomics.wait takes fractional milliseconds.
      refreshIntr();
      const end = process.hrtime.bigint() + BigInt(Math.max(0, Math.floor(us))) * 1000n;
      for (;;) {
        if (takeInterrupt()) return 1;
        const left = Number(end - process.hrtime.bigint()) / 1e6;
        if (left <= 0) return 0;
        if (left > 2) { flush(); syncIfDirty(false); }
        const seq = Atomics.load(ctrl, C_SEQ);
        if (!Atomics.load(ctrl, C_PEND)) Atomics.wait(ctrl, C_SEQ, seq, Math.min(left, SYNC_EVERY_MS));
      }
    },
    fs_used: (bs) => fsUsed(bs),
    fs_dirty: () => { dirty = true; },
    result: (r) => { lastResult = r; },
  });

  // Lay out /flash (the persisted user file system) and /rom (read-only host stand-ins and emulator).
  const copyIn = (hostDir, vmDir, filter) => {
    try { mp.FS.mkdir(vmDir); } catch (e) { /* exists */ }
    if (!fs.existsSync(hostDir)) return;
    for (const ent of fs.readdirSync(hostDir, { withFileTypes: true })) {
      if (ent.name === "__pycache__" || ent.name.endsWith(".vbtmp")) continue;
      const h = path.join(hostDir, ent.name);
      if (ent.isDirectory()) copyIn(h, vmDir + "/" + ent.name, filter);
      else if (filter(ent.name)) mp.FS.writeFile(vmDir + "/" + ent.name, fs.readFileSync(h));
    }
  };
  copyIn(fsDir, "/flash", () => true);
  mp.FS.mkdir("/rom");
  for (const n of ["machine.py", "network.py", "simclock.py"]) {
    mp.FS.writeFile("/rom/" + n, fs.readFileSync(path.join(REPO, "tools", "hostport", n)));
  }
  mp.FS.writeFile("/rom/_vboard.py", fs.readFileSync(path.join(HERE, "_vboard.py")));
  mp.FS.mkdir("/rom/tools");
  mp.FS.writeFile("/rom/tools/__init__.py", fs.readFileSync(path.join(REPO, "tools", "__init__.py")));
  copyIn(path.join(REPO, "tools", "emulator"), "/rom/tools/emulator", (n) => n.endsWith(".py"));
  // "Frozen" firmware: importable, never on the user's file system, shadowed by a /firmware folder there.
  if (opts.frozenFirmware) copyIn(path.join(REPO, "firmware"), "/rom/firmware", (n) => n.endsWith(".py"));

  const setupOpts = { board, fs_bytes: opts.fsBytes, mpy: opts.mpy, seed: opts.seed, soc: opts.soc };
  mp.globals.set("_vb_setup", JSON.stringify(setupOpts));
  try {
    mp.runPython("import sys\nsys.path[:] = ['/rom']\nimport _vboard\n_vboard.setup(_vb_setup)\ndel _vb_setup");
  } catch (e) {
    write(`\r\n[virtual board] set-up failed: ${e.message}\r\n`);
    flush();
    throw e;
  }
  mp.runPython("import vbhost\nvbhost.result('%d.%d.%d' % sys.implementation.version[:3])");
  const version = lastResult;
  const banner = `MicroPython v${version} (official WebAssembly VM) on virtual board ${board.name}: ` +
                 `${board.cell_count}s ${board.chemistry} on an emulated BQ76952\r\n` +
                 `Type "help()" for more information.\r\n`;
  // Marker for scripts and tests: the VM is up and about to boot (STATE_DIR/ready holds the Node pid).
  fs.writeFileSync(path.join(opts.state, "ready"), String(process.pid) + "\n");
  // STATE_DIR/stats.json: how many programs came in by raw-paste and by the plain raw REPL (tests
  // assert raw-paste is used: mpremote silently falls back to the raw REPL when a board lacks it).
  const stats = { raw_paste: 0, raw_exec: 0 };
  const countSession = (kind) => {
    stats[kind]++;
    fs.writeFileSync(path.join(opts.state, "stats.json"), JSON.stringify(stats) + "\n");
  };
  const mountedRemote = () => { mp.runPython("import _vboard\n_vboard.mounted_remote()"); return lastResult === "1"; };

  // Runs Python source; returns the outcome string of _vboard.run ('' / 'E..' / 'S' / 'R<cause>').
  const execute = (src, mode) => {
    flush();                 // "OK" / the raw-paste ack must reach the host before the program runs
    Atomics.store(ctrl, C_PEND, 0);
    Atomics.store(ctrl, C_INTR, 3);
    mp.globals.set("_vb_src", src);
    let r;
    try {
      lastResult = "E(no outcome reported)\n";
      mp.runPython(`import _vboard, micropython\nmicropython.kbd_intr(3)\n_vboard.run(_vb_src, ${JSON.stringify(mode)})`);
      r = lastResult;
    } catch (e) {
      r = "E" + (e.message || String(e));
    }
    Atomics.store(ctrl, C_INTR, -1);
    Atomics.store(ctrl, C_PEND, 0);
    syncIfDirty(true);
    return r;
  };
  const runFile = (p) => {
    flush();
    Atomics.store(ctrl, C_PEND, 0);
    Atomics.store(ctrl, C_INTR, 3);
    let r;
    try {
      lastResult = "E(no outcome reported)\n";
      mp.runPython(`import _vboard, micropython\nmicropython.kbd_intr(3)\n_vboard.run_file(${JSON.stringify(p)})`);
      r = lastResult;
    } catch (e) {
      r = "E" + (e.message || String(e));
    }
    Atomics.store(ctrl, C_INTR, -1);
    Atomics.store(ctrl, C_PEND, 0);
    syncIfDirty(true);
    return r;
  };

  // --- boot and resets ---
  let mode = "friendly";
  // Returns the next action after boot.py/main.py: null (go to the REPL) or a reset outcome.
  const boot = () => {
    cook = true;
    let r = runFile("/boot.py");
    if (r.startsWith("E")) { writeText(r.slice(1)); r = ""; }
    if (r === "" && mode === "friendly") {
      r = runFile("/main.py");
      if (r.startsWith("E")) { writeText(r.slice(1)); r = ""; }
    }
    cook = false;
    syncIfDirty(true);
    return r === "" ? null : r;
  };
  // kind: "S" soft reset, "R<cause>" chip reset. Loops while boot files reset again (as a boot loop would).
  const reset = (kind) => {
    while (kind) {
      syncIfDirty(true);
      if (kind === "S") {
        write("MPY: soft reboot\r\n");
        mp.runPython("import _vboard\n_vboard.reset(False)");
      } else {
        clearInput();
        write(`\r\n[virtual board] chip reset, machine.reset_cause() = ${kind.slice(1)}\r\n`);
        mp.runPython("import _vboard\n_vboard.reset(True)");
        mode = "friendly";
      }
      flush();
      kind = boot();
    }
  };

  // --- REPLs ---
  const rawRepl = () => {      // returns "friendly" or a reset outcome
    write("raw REPL; CTRL-B to exit\r\n");
    for (;;) {
      write(">");
      let line = [];
      let r = null;
      for (;;) {
        const c = readByte();
        if (c === 0x01 && line.length === 2 && line[0] === 0x05 && line[1] === 0x41) {   // Ctrl-E 'A' Ctrl-A
          r = rawPaste();
          break;
        } else if (c === 0x01) {
          write("\r\nraw REPL; CTRL-B to exit\r\n>");
          line = [];
        } else if (c === 0x02) {
          write("\r\n");
          return "friendly";
        } else if (c === 0x03) {
          line = [];
        } else if (c === 0x04) {
          if (line.length === 0) { write("\r\n"); return "S"; }
          write("OK");
          countSession("raw_exec");
          r = execute(Buffer.from(line).toString("utf8"), "exec");
          r = finishRaw(r);
          break;
        } else {
          line.push(c);
        }
      }
      if (r) return r;
    }
  };
  const finishRaw = (r) => {      // the two EOF markers around the error text
    write("\x04");
    if (r.startsWith("E")) writeText(r.slice(1));
    write("\x04");
    return r.startsWith("S") || r.startsWith("R") ? r : null;
  };
  const rawPaste = () => {
    write("R\x01");
    write(String.fromCharCode(PASTE_WINDOW & 0xff, PASTE_WINDOW >> 8));
    const data = [];
    let sinceGrant = 0;
    for (;;) {
      const c = readByte();
      if (c === 0x04) break;
      data.push(c);
      if (++sinceGrant === PASTE_WINDOW) { sinceGrant = 0; write("\x01"); }
    }
    write("\x04");
    countSession("raw_paste");
    return finishRaw(execute(Buffer.from(data).toString("utf8"), "exec"));
  };
  const needsMore = (src) => {       // a compound statement or an open bracket/string continues
    const last = src.split("\n").filter((l) => l.trim()).pop() || "";
    if (last.trimEnd().endsWith(":") || last.trimEnd().endsWith("\\")) return true;
    let depth = 0;
    for (const ch of src) { if ("([{".includes(ch)) depth++; else if (")]}".includes(ch)) depth--; }
    if (depth > 0) return true;
    return ((src.match(/"""/g) || []).length % 2 === 1) || ((src.match(/'''/g) || []).length % 2 === 1);
  };
  const friendlyExec = (src, m) => {
    cook = !mountedRemote();
    const r = execute(src, m);
    if (r.startsWith("E")) writeText(r.slice(1));
    cook = false;
    return r.startsWith("S") || r.startsWith("R") ? r : null;
  };
  const pasteMode = () => {
    write("\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ");
    const buf = [];
    for (;;) {
      const c = readByte();
      if (c === 0x03) { write("\r\n"); return null; }
      if (c === 0x04) { write("\r\n"); return friendlyExec(Buffer.from(buf).toString("utf8"), "exec"); }
      if (c === 0x0d) { buf.push(0x0a); write("\r\n=== "); } else if (c !== 0x0a) { buf.push(c); emit(c); }
    }
  };
  const friendlyRepl = () => {      // returns "raw" or a reset outcome
    write(banner);
    let src = "";
    for (;;) {
      write(src ? "... " : ">>> ");
      let line = [];
      let esc = 0;
      let r = null;
      for (;;) {
        const c = readByte();
        if (esc) { esc = (esc === 1 && c === 0x5b) ? 2 : 0; continue; }   // arrow keys: ignored
        if (c === 0x1b) { esc = 1; continue; }
        if (c === 0x01 && !src && line.length === 0) { write("\r\n"); return "raw"; }
        if (c === 0x02 && !src && line.length === 0) { write("\r\n" + banner); line = null; break; }
        if (c === 0x03) { write("\r\nKeyboardInterrupt\r\n"); src = ""; line = null; break; }
        if (c === 0x04 && !src && line.length === 0) { write("\r\n"); return "S"; }
        if (c === 0x05 && !src && line.length === 0) { r = pasteMode(); line = null; break; }
        if (c === 0x08 || c === 0x7f) { if (line.length) { line.pop(); write("\b \b"); } continue; }
        if (c === 0x0d) { write("\r\n"); break; }
        if (c === 0x0a || c < 0x20 && c !== 0x09) continue;
        line.push(c);
        emit(c);
      }
      if (r) return r;
      if (line === null) continue;
      const text = Buffer.from(line).toString("utf8");
      if (src) {
        if (text.trim() === "") { const s = src; src = ""; r = friendlyExec(s, "single"); }
        else src += text + "\n";
      } else if (text.trim() === "") {
        continue;
      } else if (needsMore(text + "\n")) {
        src = text + "\n";
      } else {
        r = friendlyExec(text + "\n", "single");
      }
      if (r) return r;
    }
  };

  // --- run ---
  if (why !== "power-on") write(`[virtual board] ${why}\r\n`);
  let next = boot();
  for (;;) {
    if (next) { reset(next); next = null; }
    if (mode === "friendly") {
      const r = friendlyRepl();
      if (r === "raw") mode = "raw"; else next = r;
    } else {
      const r = rawRepl();
      if (r === "friendly") mode = "friendly"; else next = r;
    }
  }
}

if (isMainThread) mainThread();
else workerMain(workerData).catch((e) => { throw e; });
