"""The virtual board end to end through the real mpremote: REPL protocol, files, resets, interrupts.

One board serves the module (start-up is ~1-2 s of CPU); tests that need a fresh or differently
configured board start their own.
"""
import ast
import json
import re
import time

import pytest

from vb_helpers import ROOT, VirtualBoard

TICKER = """# stand-in main.py for this test (not the firmware): prints a line every 100 ms
import time
n = 0
while True:
    n += 1
    print("tick", n)
    time.sleep_ms(100)
"""


@pytest.fixture(scope="module")
def vb(tmp_path_factory):
    with VirtualBoard(tmp_path_factory.mktemp("vb") / "state") as board:
        yield board


def test_exec_eval_and_raw_paste(vb):
    out = vb.mpremote("exec", "print(1+1)").stdout
    assert out.strip() == "2"
    # A longer program goes through raw-paste flow control (several 512-byte windows).
    prog = "t = 0\n" + "".join("t += %d\n" % i for i in range(300)) + "print('sum', t)\n"
    assert len(prog) > 2000
    assert vb.mpremote("exec", prog).stdout.strip() == "sum %d" % sum(range(300))
    # Errors come back on the error channel, as mpremote expects: it exits 1 and shows the traceback.
    p = vb.mpremote("exec", "1/0", check=False)
    assert p.returncode == 1
    assert "ZeroDivisionError" in p.stdout + p.stderr
    p = vb.mpremote("exec", "print('12 \u00b5A')\nraise ValueError('50 \u00b5A')", check=False)
    assert "12 \u00b5A" in p.stdout and "ValueError: 50 \u00b5A" in p.stdout + p.stderr   # UTF-8 both ways


def test_board_identity_and_afe(vb):
    out = vb.mpremote("exec", "import sys, machine\nprint(sys.implementation._mpy & 255, "
                              "machine.I2C(0).scan())").stdout.split()
    assert out == ["6", "[8]"]          # .mpy version 6; the emulated BQ76952 answers at 0x08
    # 16 cells from boards/sim16_lfp.json: cell 16 reads a plausible LFP voltage (0x14 + 2*15).
    mv = int(vb.mpremote("exec", "import machine, struct\nb = machine.I2C(0).readfrom_mem(8, 0x32, 2)\n"
                                 "print(struct.unpack('<h', b)[0])").stdout)
    assert 2500 < mv < 3650


def test_cp_ls_cat_and_host_mirror(vb, tmp_path):
    src = tmp_path / "hello.txt"
    src.write_bytes(b"line one\nline two\n" * 40)          # 720 bytes: three 256-byte chunks
    vb.mpremote("fs", "mkdir", ":data")
    vb.mpremote("fs", "cp", str(src), ":data/hello.txt")
    listing = vb.mpremote("fs", "ls", ":data").stdout
    assert re.search(r"\b720 hello\.txt", listing), listing
    back = tmp_path / "back.txt"
    vb.mpremote("fs", "cp", ":data/hello.txt", str(back))
    assert back.read_bytes() == src.read_bytes()
    # The board's flash is mirrored on the host as soon as the command is done.
    assert (vb.dir / "fs" / "data" / "hello.txt").read_bytes() == src.read_bytes()
    vb.mpremote("fs", "rm", ":data/hello.txt")
    assert not (vb.dir / "fs" / "data" / "hello.txt").exists()
    # The host stand-ins live in the read-only /rom, not on the user's file system.
    assert not (vb.dir / "fs" / "machine.py").exists()
    p = vb.mpremote("exec", "open('/rom/x.py', 'w')", check=False)
    assert p.returncode == 1 and re.search(r"OSError: (\[Errno 30\] EROFS|30)\b", p.stdout + p.stderr)


def test_statvfs_reports_flash_size(vb):
    st = vb.mpremote("exec", "import os\nprint(os.statvfs('/'))").stdout.strip()
    bsize, frsize, blocks, bfree = ast.literal_eval(st)[:4]
    assert bsize == 4096 and blocks == 2048 * 1024 // 4096
    assert 0 < bfree < blocks


def test_globals_kept_within_a_session_cleared_by_soft_reset(vb):
    assert vb.mpremote("exec", "x = 41", "+", "exec", "print(x + 1)").stdout.strip() == "42"
    # Each new mpremote session soft-resets the board first: the REPL's globals are gone.
    p = vb.mpremote("exec", "print(x)", check=False)
    assert p.returncode == 1 and "NameError" in p.stdout + p.stderr


def test_reset_runs_main_and_ctrl_c_interrupts_it(vb, tmp_path):
    main = tmp_path / "main.py"
    main.write_text(TICKER)
    vb.mpremote("fs", "cp", str(main), ":main.py")
    # mpremote reset = machine.reset(): a chip reset, after which the board runs /main.py.
    vb.mpremote("reset")
    vb.wait_console("tick 3")
    # The next session interrupts the running main.py with Ctrl-C and gets the raw REPL.
    out = vb.mpremote("exec", "import machine\nprint(machine.reset_cause())").stdout
    assert out.strip() == "5"           # SOFT_RESET: what the esp32 reports after machine.reset()
    log = vb.console()
    assert re.search(r"File \"/?main\.py\", line \d+, in <module>", log), log[-1500:]
    assert "KeyboardInterrupt" in log
    vb.mpremote("fs", "rm", ":main.py")


def test_files_survive_a_restart(tmp_path):
    state = tmp_path / "state"
    with VirtualBoard(state) as b1:
        b1.mpremote("exec", "f = open('keep.txt', 'w')\nf.write('kept 123')\nf.close()")
    with VirtualBoard(state) as b2:
        assert b2.mpremote("fs", "cat", ":keep.txt").stdout.strip() == "kept 123"


def test_program_that_ignores_ctrl_c_gets_power_cycled(tmp_path):
    with VirtualBoard(tmp_path / "state") as b:
        b.mpremote("exec", "--no-follow", "while True:\n    pass\n")
        # No sleep, no stdin read: the interrupt cannot be delivered; the board is power-cycled and
        # mpremote's retry within its 10 s raw-REPL timeout gets through.
        assert b.mpremote("exec", "print('alive')").stdout.strip() == "alive"
        assert "power-cycled" in b.console()


def _read_until(s, needle, timeout_s=20):
    end = time.monotonic() + timeout_s
    buf = b""
    while needle not in buf:
        if time.monotonic() > end:
            raise AssertionError("%r not received; got %r" % (needle, buf[-500:]))
        buf += s.read(256)
    return buf


def test_friendly_repl_over_the_serial_line(vb):
    import serial
    with serial.Serial(vb.port, 115200, timeout=0.05) as s:
        s.write(b"\r\x03\x02")                       # interrupt anything, leave raw mode: banner + prompt
        _read_until(s, b">>> ")
        s.write(b"6*7\r")                            # expression statements print their repr
        out = _read_until(s, b"\r\n>>> ")
        assert b"6*7\r\n42\r\n>>> " in out           # echo, CR LF line ends as on the board's UART
        s.write(b"for i in range(3):\r")             # a compound statement continues with "... "
        _read_until(s, b"... ")
        s.write(b"    print('i', i)\r\r")
        out = _read_until(s, b"i 2\r\n>>> ")
        assert b"i 0\r\ni 1\r\ni 2\r\n" in out
        s.write(b"undefined_name\r")
        out = _read_until(s, b"\r\n>>> ")
        assert b"NameError: name 'undefined_name' isn't defined" in out


def test_flashed_board_description_decides_the_emulated_pack(tmp_path):
    state = tmp_path / "state"
    (state / "fs").mkdir(parents=True)
    (state / "fs" / "board.json").write_bytes((ROOT / "boards" / "sim4_nmc.json").read_bytes())
    with VirtualBoard(state) as b:        # no --board: the board.json on its flash
        out = b.mpremote("exec", "import _vboard\np = _vboard.emulator().pack\nprint(p.cells, p.chemistry)")
        assert out.stdout.split() == ["4", "NMC"]


def _stats(board):
    return json.loads((board.dir / "stats.json").read_text())


def test_mpremote_really_uses_raw_paste(vb):
    """mpremote falls back to the plain raw REPL when a board answers the raw-paste request with
    R\\x00, and every other test would still pass: count the sessions the board took by raw-paste."""
    before = _stats(vb) if (vb.dir / "stats.json").exists() else {"raw_paste": 0, "raw_exec": 0}
    prog = "t = 0\n" + "".join("t += %d\n" % i for i in range(300)) + "print('sum', t)\n"
    assert vb.mpremote("exec", "print(1)", "+", "exec", prog).stdout.split() == ["1", "sum", str(sum(range(300)))]
    after = _stats(vb)
    assert after["raw_paste"] - before["raw_paste"] >= 2
    assert after["raw_exec"] == before["raw_exec"]          # nothing fell back to the plain raw REPL


def test_raw_paste_handshake_and_flow_control(vb):
    """The protocol itself, byte by byte: Ctrl-E A Ctrl-A -> R\\x01 + 16-bit window; one \\x01 per window
    consumed; Ctrl-D -> Ctrl-D, output, Ctrl-D, error text, Ctrl-D, '>'."""
    import serial
    with serial.Serial(vb.port, 115200, timeout=0.05) as s:
        s.write(b"\r\x03\x03\x01")                       # interrupt anything, enter the raw REPL
        _read_until(s, b"raw REPL; CTRL-B to exit\r\n>")
        s.write(b"\x05A\x01")
        head = _read_exact(s, 4)
        assert head[:2] == b"R\x01"
        window = head[2] | head[3] << 8
        assert window >= 64
        prog = ("x = 0\n" + "x += 1\n" * (3 * window // 7 + 10) + "print('x', x)\n").encode()
        n_lines = prog.count(b"x += 1")
        assert len(prog) > 2 * window
        s.write(prog[:window])                           # a whole window, then wait for the next grant
        assert _read_exact(s, 1) == b"\x01"
        s.write(prog[window:2 * window])
        assert _read_exact(s, 1) == b"\x01"
        s.write(prog[2 * window:] + b"\x04")
        out = _read_until(s, b"\x04>")
        rest = out.lstrip(b"\x01")                       # grants for the windows of the last write
        assert 2 + len(out) - len(rest) == len(prog) // window, out     # one per window consumed
        assert rest.startswith(b"\x04"), out             # end of data acknowledged
        out = rest
        assert b"x %d\r\n\x04\x04>" % n_lines in out or b"x %d\n\x04\x04>" % n_lines in out, out
        s.write(b"\x02")                                  # back to the friendly REPL
        _read_until(s, b">>> ")


def _read_exact(s, n, timeout_s=10):
    end = time.monotonic() + timeout_s
    buf = b""
    while len(buf) < n and time.monotonic() < end:
        buf += s.read(n - len(buf))
    assert len(buf) == n, buf
    return buf


def test_file_system_size_is_enforced(tmp_path):
    """A copy that does not fit fails with ENOSPC, as on LittleFS; the space is usable again after."""
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 400)                 # 100 kB onto a 64 KiB volume
    with VirtualBoard(tmp_path / "state", "--fs-kib", "64") as b:
        p = b.mpremote("fs", "cp", str(big), ":big.bin", check=False)
        assert p.returncode != 0 and "No space left on device" in p.stdout + p.stderr
        st = ast.literal_eval(b.mpremote("exec", "import os\nprint(os.statvfs('/'))").stdout.strip())
        assert st[3] == 0                                     # the partial file took what was left
        p = b.mpremote("exec", "open('x.bin', 'wb').write(b'1')", check=False)
        assert p.returncode == 1 and "OSError: 28" in p.stdout + p.stderr
        b.mpremote("fs", "rm", ":big.bin")
        small = tmp_path / "small.bin"
        small.write_bytes(b"s" * 30000)
        b.mpremote("fs", "cp", str(small), ":small.bin")
        # writes through print(file=) and json.dump still work on the size-checked files
        out = b.mpremote("exec", "import json\nwith open('t.json', 'w') as f:\n    json.dump({'a': 1}, f)\n"
                                 "with open('t.txt', 'w') as f:\n    print('hi', file=f)\n"
                                 "print(open('t.json').read(), open('t.txt').read().strip())").stdout
        assert out.strip() == '{"a": 1} hi'
    assert (tmp_path / "state" / "fs" / "small.bin").stat().st_size == 30000
