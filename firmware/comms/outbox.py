"""Outbox: encoded frames waiting for the broker, in a RAM ring that spills to flash on long outages.

    box = Outbox("/outbox/tlm", slots=8, slot_bytes=384, max_segments=400)
    box.push(frame_bytes)                 # never blocks; spills the full ring to one flash file
    view = box.peek()                     # oldest frame (memoryview), or None
    box.pop()                             # after the broker (or the bridge) confirmed it

    mv = box.peek_unsent(); box.mark_sent()   # with delivery receipts: publish ahead of the head,
    box.pop() ... ; box.rewind()              # forget from the head as receipts come, resend on rewind

Order is oldest first across flash and RAM: flash segments always hold older frames than the ring.
Frames are pushed once per batch (every few seconds), not per protection cycle, and the ring is
preallocated fixed slots, so steady-state pushes and pops allocate nothing but file handles.

Reading flash back: one record at a time into a preallocated buffer of one slot (not the whole segment:
that would be a second ring's worth of RAM held for the rare backlog). Loading the oldest segment checks
all its records (lengths only) and keeps their offsets, so a frame ahead of the head is found without
walking the file; each frame read while there is a flash backlog costs an open, a seek and a read.

Flash: a spill writes the whole ring as one segment file (one batched write, not one per frame:
flash wears), first to `<n>.tmp`, then `os.rename` to `<n>.seg`, which is atomic on LittleFS, so power
loss leaves either the old state or the whole segment. A `.tmp` found at boot is a torn spill and is
deleted. A segment whose records do not parse is dropped and counted (`corrupt`), never trusted.
When `max_segments` is reached the oldest segment is dropped and its frames counted in `dropped`.
A segment re-read after a reboot may resend frames that were already delivered but not yet popped;
the bridge deduplicates by boot counter and sequence number, so this trades a duplicate for no loss.

Sent but unconfirmed: `sent` counts frames from the head that were published and wait for the bridge's
receipt (Comms, docs/comms.md "Delivery"). They stay queued, spill and survive like any other frame;
`peek_unsent()` is the first one after them. While the head is on flash, only the loaded (oldest)
segment and then the RAM ring can be read ahead, so the unconfirmed window never spans two segments.
"""
import os

_SEG_SUFFIX = ".seg"
_TMP_SUFFIX = ".tmp"


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _makedirs(path):
    # MicroPython's os has no makedirs; build the path one level at a time.
    cur = "/" if path.startswith("/") else ""
    for part in path.split("/"):
        if not part:
            continue
        cur = cur + part if cur in ("", "/") else cur + "/" + part
        if not _exists(cur):
            os.mkdir(cur)


class Outbox:
    def __init__(self, spill_dir, slots=8, slot_bytes=384, max_segments=400, segment_bytes=0):
        if slots < 1 or slot_bytes < 16 or slot_bytes > 65535 or max_segments < 0 or segment_bytes < 0:
            raise ValueError("outbox: slots >= 1, slot_bytes 16..65535, max_segments >= 0, segment_bytes >= 0")
        self.spill_dir = spill_dir.rstrip("/")
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.max_segments = max_segments
        self.segment_bytes = segment_bytes   # > 0: a spill joins the newest segment while both fit in this
        self._ram = bytearray(slots * slot_bytes)
        self._mv = memoryview(self._ram)     # slot i is _mv[i * slot_bytes:], sliced when read
        self._len = [0] * slots          # bytes used in each slot
        self._head = 0                   # oldest RAM frame
        self._count = 0                  # frames in RAM
        # Read side of the oldest flash segment: its record offsets, and one record at a time in _rd,
        # a slot-sized buffer made when a flash frame is first read and dropped when flash is empty.
        self._rd = None
        self._rd_mv = None
        self._rd_at = -1                 # file offset of the record in _rd (of segment _seg_loaded), -1 none
        self._rd_len = 0
        self._hdr = bytearray(2)         # a record's length prefix, read while checking a segment
        self._seg_off = [0] * slots      # offsets of the loaded segment's records (grows for a longer one)
        self._seg_loaded = -1            # segment number whose offsets are in _seg_off, -1 none
        self._seg_first = 0              # index of the next unread record (the head) in _seg_off
        self._seg_left = 0               # frames not yet popped in the loaded segment
        self.sent = 0                    # frames from the head published, awaiting a receipt
        self.popped = 0                  # frames delivered and forgotten since boot
        # Counters reported in status frames.
        self.dropped = 0                 # frames lost because the outbox was full
        self.corrupt = 0                 # segments found unreadable at boot or on load
        self.spilled = 0                 # frames written to flash since boot
        self._first_seg = 0
        self._next_seg = 0
        self._spilled_frames = 0         # frames currently on flash
        if max_segments:
            self._scan()

    # --- state ---
    def __len__(self):
        return self._count + self._spilled_frames

    def ram_frames(self):
        return self._count

    def flash_frames(self):
        return self._spilled_frames

    def segments(self):
        return self._next_seg - self._first_seg

    # --- producer ---
    def push(self, frame):
        """Queue one encoded frame. Returns False (and counts a drop) only when it cannot be kept."""
        n = len(frame)
        if n == 0 or n > self.slot_bytes:
            raise ValueError("frame of %d bytes does not fit a %d-byte slot" % (n, self.slot_bytes))
        if self._count == self.slots:
            if not self.max_segments:
                # RAM only: drop the oldest frame to make room (newest data is the most useful).
                self._head = (self._head + 1) % self.slots
                self._count -= 1
                self.dropped += 1
                if self.sent:
                    self.sent -= 1
            else:
                self._spill()
        tail = (self._head + self._count) % self.slots
        at = tail * self.slot_bytes
        self._mv[at:at + n] = frame
        self._len[tail] = n
        self._count += 1
        return True

    # --- consumer ---
    def peek(self):
        """The oldest frame as a memoryview (valid until the next pop/push), or None when empty."""
        return self.peek_at(0)

    def peek_unsent(self):
        """The first frame after the `sent` ones (memoryview, valid until the next pop/push), or None
        when there is none or it lies beyond the loaded segment."""
        return self.peek_at(self.sent)

    def peek_at(self, i):
        """Frame i from the head (0 = peek()), or None when there is none or it lies beyond the
        loaded segment (only the oldest segment and then the RAM ring can be read ahead)."""
        if self._spilled_frames and self._load_oldest():
            if i < self._seg_left:
                mv = self._read_record(self._seg_first + i)
                if mv is None:
                    self._drop_loaded_segment()
                return mv
            if self._seg_left < self._spilled_frames:
                return None              # in a later segment: wait until this one is confirmed
            i -= self._spilled_frames
        if i < self._count:
            j = (self._head + i) % self.slots
            at = j * self.slot_bytes
            return self._mv[at:at + self._len[j]]
        return None

    def mark_sent(self):
        """The frame peek_unsent() returned was published (and acknowledged by the broker)."""
        self.sent += 1

    def rewind(self):
        """Publish again from the head: no receipt came for what was sent."""
        self.sent = 0

    def pop(self):
        """Forget the frame peek() returned (call only after it was delivered)."""
        if self.sent:
            self.sent -= 1
        self.popped += 1
        if self._spilled_frames and self._load_oldest():
            self._seg_first += 1
            self._seg_left -= 1
            self._spilled_frames -= 1
            if not self._spilled_frames:
                self._rd = self._rd_mv = None    # the backlog is gone: no read buffer at steady state
            if self._seg_left == 0:
                self._remove_segment(self._first_seg)
                self._first_seg += 1
                self._seg_loaded = -1
            return
        if self._count:
            self._head = (self._head + 1) % self.slots
            self._count -= 1

    # --- flash ---
    def _path(self, n, suffix):
        return "%s/%d%s" % (self.spill_dir, n, suffix)

    def _spill(self):
        """Write every RAM frame as one segment file, atomically, then empty the ring."""
        if self._join_newest():
            return
        if self.segments() >= self.max_segments:
            self._drop_oldest_segment()
        n = self._next_seg
        tmp = self._path(n, _TMP_SUFFIX)
        try:
            with open(tmp, "wb") as f:
                self._write_ring(f)
            os.rename(tmp, self._path(n, _SEG_SUFFIX))
        except OSError:
            # Flash full or failing: keep going in RAM, losing the oldest frames rather than the cycle.
            try:
                os.remove(tmp)
            except OSError:
                pass
            self.dropped += self._count
            if self.sent > self._spilled_frames:
                self.sent = self._spilled_frames
            self._count = 0
            return
        self._next_seg = n + 1
        self._spilled_frames += self._count
        self.spilled += self._count
        self._count = 0

    def _write_ring(self, f):
        hdr = self._hdr
        i = self._head
        for _ in range(self._count):
            ln = self._len[i]
            hdr[0] = ln & 0xFF
            hdr[1] = ln >> 8
            f.write(hdr)
            at = i * self.slot_bytes
            f.write(self._mv[at:at + ln])
            i = (i + 1) % self.slots
        self._rd_at = -1             # _hdr is shared with the read side

    def _join_newest(self):
        """With segment_bytes set: rewrite the newest segment with the ring's frames appended, when both
        fit in segment_bytes, so segments stay near one flash block however small the ring is (and the
        read-ahead window, which stays within the oldest segment, is not cut short). Atomic as a spill:
        `<n>.tmp` (old records not yet popped + ring), renamed over `<n>.seg`; power loss leaves the old
        segment (and a .tmp deleted at boot). False: spill as a new segment."""
        n = self._next_seg - 1
        if not self.segment_bytes or n < self._first_seg:
            return False
        skip = self._seg_off[self._seg_first] if n == self._seg_loaded else 0   # popped records go
        seg = self._path(n, _SEG_SUFFIX)
        ring_bytes = 0
        i = self._head
        for _ in range(self._count):
            ring_bytes += 2 + self._len[i]
            i = (i + 1) % self.slots
        tmp = self._path(n, _TMP_SUFFIX)
        try:
            size = os.stat(seg)[6] - skip
            if size + ring_bytes > self.segment_bytes:
                return False
            buf = self._read_buffer()
            self._rd_at = -1
            with open(tmp, "wb") as f:
                with open(seg, "rb") as old:
                    old.seek(skip)
                    left = size
                    while left > 0:
                        k = old.readinto(buf)
                        if not k:
                            raise OSError(5)
                        f.write(buf[:k] if k < len(buf) else buf)
                        left -= k
                self._write_ring(f)
            os.rename(tmp, seg)
        except OSError:
            try:
                os.remove(tmp)
            except OSError:
                pass
            return False             # the old segment is as it was: spill to a new one
        if n == self._seg_loaded:
            self._seg_loaded = -1    # read its offsets again (from the head, now the first record)
        self._spilled_frames += self._count
        self.spilled += self._count
        self._count = 0
        return True

    def _drop_oldest_segment(self):
        n = self._first_seg
        lost = self._seg_left if self._seg_loaded == n else self._count_segment(n)
        self._remove_segment(n)
        self._first_seg += 1
        if self._seg_loaded == n:
            self._seg_loaded = -1
        self._spilled_frames -= lost
        self.dropped += lost
        self.sent = self.sent - lost if self.sent > lost else 0

    def _drop_loaded_segment(self):
        """The loaded (oldest) segment stopped reading back after it was checked: drop and count it."""
        lost = self._seg_left
        self._remove_segment(self._first_seg)
        self._first_seg += 1
        self._seg_loaded = -1
        self._spilled_frames -= lost
        self.dropped += lost
        self.corrupt += 1
        self.sent = self.sent - lost if self.sent > lost else 0

    def _remove_segment(self, n):
        try:
            os.remove(self._path(n, _SEG_SUFFIX))
        except OSError:
            pass

    def _read_segment(self, n):
        """Check segment n's records (lengths only) and note their offsets in _seg_off; return its frame
        count, or -1 if unreadable (a record cut short or of an impossible length)."""
        self._rd_at = -1
        hdr = self._hdr
        off = self._seg_off
        pos = frames = 0
        try:
            with open(self._path(n, _SEG_SUFFIX), "rb") as f:
                end = f.seek(0, 2)
                while pos < end:
                    f.seek(pos)
                    if pos + 2 > end or f.readinto(hdr) != 2:
                        return -1
                    ln = hdr[0] | (hdr[1] << 8)
                    if ln == 0 or ln > self.slot_bytes or pos + 2 + ln > end:
                        return -1
                    if frames < len(off):
                        off[frames] = pos
                    else:
                        off.append(pos)      # a segment written with more slots (older settings)
                    pos += 2 + ln
                    frames += 1
        except OSError:
            return -1
        return frames

    def _read_buffer(self):
        if self._rd is None:
            self._rd = bytearray(self.slot_bytes)
            self._rd_mv = memoryview(self._rd)
        return self._rd_mv

    def _read_record(self, k):
        """Record k of the loaded segment as a memoryview of _rd (read from flash unless it is there)."""
        pos = self._seg_off[k]
        if pos != self._rd_at:
            self._rd_at = -1
            self._read_buffer()
            try:
                with open(self._path(self._seg_loaded, _SEG_SUFFIX), "rb") as f:
                    f.seek(pos)
                    f.readinto(self._hdr)
                    ln = self._hdr[0] | (self._hdr[1] << 8)
                    if ln == 0 or ln > self.slot_bytes or f.readinto(self._rd_mv[:ln]) != ln:
                        raise OSError(5)
            except OSError:
                return None          # changed since it was checked (the caller drops the segment)
            self._rd_len = ln
            self._rd_at = pos
        return self._rd_mv[:self._rd_len]

    def _count_segment(self, n):
        c = self._read_segment(n)
        self._seg_loaded = -1  # the buffer now holds n but nobody is reading it
        return c if c > 0 else 0

    def _load_oldest(self):
        if self._seg_loaded == self._first_seg:
            return True
        while self._first_seg < self._next_seg:
            c = self._read_segment(self._first_seg)
            if c > 0:
                self._seg_loaded = self._first_seg
                self._seg_first = 0
                self._seg_left = c
                return True
            # Unreadable: it was counted at boot scan; forget it.
            self._remove_segment(self._first_seg)
            self._first_seg += 1
        self._spilled_frames = 0
        self._rd = self._rd_mv = None
        if self.sent > self._count:      # sent frames were on the segments just found unreadable
            self.sent = self._count
        return False

    def _scan(self):
        """At boot: find surviving segments, delete torn spills, count what is waiting."""
        if not _exists(self.spill_dir):
            _makedirs(self.spill_dir)
            return
        nums = []
        for name in os.listdir(self.spill_dir):
            if name.endswith(_TMP_SUFFIX):
                os.remove(self.spill_dir + "/" + name)
            elif name.endswith(_SEG_SUFFIX):
                try:
                    nums.append(int(name[:-len(_SEG_SUFFIX)]))
                except ValueError:
                    pass
        if not nums:
            return
        nums.sort()
        # Segments are numbered consecutively; a gap means something deleted files by hand:
        # renumbering is not worth it, so the oldest surviving run starting at the minimum is kept.
        self._first_seg = nums[0]
        self._next_seg = nums[-1] + 1
        total = 0
        for n in range(self._first_seg, self._next_seg):
            c = self._read_segment(n) if _exists(self._path(n, _SEG_SUFFIX)) else -1
            if c > 0:
                total += c
            elif c < 0 and _exists(self._path(n, _SEG_SUFFIX)):
                self.corrupt += 1
                self._remove_segment(n)
        self._seg_loaded = -1
        self._spilled_frames = total
