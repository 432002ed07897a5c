"""Outbox sizing at the defaults (1 sample/s, 10-s frames, a 2-slot ring whose spills join the newest
segment up to 4096 bytes, 256 segments), measured
with the simulated 16-cell pack of tools/wire_size.py ('noisy' profile) while the link is down.

    .venv/bin/pytest -q -s tests/comms/test_service_sizing.py      # prints the figures
"""
import os

import network

from firmware.comms.link import Link
from firmware.comms.service import Comms
from tools.wire_size import simulate

SECONDS = 3000          # 50 min of samples: 300 frames, 30 segments


def test_outbox_capacity_at_one_sample_per_second(tmp_path, sim_clock):
    network.SIM.set_ap(False)                       # no link: everything stays on the board
    link = Link("bms-0001", "ssid", "key", "127.0.0.1", user="bms-0001", password="pw")
    c = Comms("bms-0001", bytes(range(32)), link, spill_dir=str(tmp_path / "ob"),
              state_dir=str(tmp_path / "st"), cell_count=16, temp_count=3)
    c.ts.set_wall(817000000)                        # frames carry the wall clock (23-byte header)
    for s in simulate(SECONDS, 16, 3, 1000, 1, "noisy"):
        s.t_ms = __import__("time").ticks_ms()
        c.offer_sample(s)
        c.poll(20)
        sim_clock.advance_ms(1000)
    box = c.tlm_box
    seg_dir = tmp_path / "ob" / "tlm"
    sizes = [os.path.getsize(seg_dir / n) for n in sorted(os.listdir(seg_dir)) if n.endswith(".seg")]
    frames_on_flash = box.flash_frames()
    assert box.dropped == 0 and c.samples == SECONDS
    assert len(sizes) == box.segments() >= 25
    frames_per_seg = frames_on_flash / len(sizes)
    bytes_per_seg = sum(sizes) / len(sizes)
    bytes_per_frame = bytes_per_seg / frames_per_seg - 2        # minus the outbox's length prefix
    s_per_frame = c.batch_ms / c.sample_every_ms                # samples (= seconds) per frame
    hours = box.max_segments * frames_per_seg * s_per_frame / 3600
    blocks_per_seg = -(-int(bytes_per_seg) // 4096)             # LittleFS block of 4 KiB
    flash_kib = box.max_segments * blocks_per_seg * 4
    print("\noutbox sizing: %.1f frames/segment, %.0f bytes/frame (%.1f bytes/sample), %.0f bytes/segment"
          " (%d x 4 KiB block), max_segments %d -> %.1f h at 1 sample/s, flash %d KiB"
          % (frames_per_seg, bytes_per_frame, bytes_per_frame / s_per_frame, bytes_per_seg,
             blocks_per_seg, box.max_segments, hours, flash_kib))
    assert box.segment_bytes == 4096 and frames_per_seg > 4 * box.slots   # spills joined into segments
    assert bytes_per_seg <= 4096                                # one LittleFS block per segment
    assert hours >= 7.0
