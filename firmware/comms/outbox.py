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
    def __init__(self, spill_dir, slots=8, slot_bytes=384, max_segments=400):
        if slots < 1 or slot_bytes < 16 or slot_bytes > 65535 or max_segments < 0:
            raise ValueError("outbox: slots >= 1, slot_bytes 16..65535, max_segments >= 0")
        self.spill_dir = spill_dir.rstrip("/")
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.max_segments = max_segments
        self._ram = bytearray(slots * slot_bytes)
        mv = memoryview(self._ram)
        self._slot_view = [mv[i * slot_bytes:(i + 1) * slot_bytes] for i in range(slots)]
        self._len = [0] * slots          # bytes used in each slot
        self._head = 0                   # oldest RAM frame
        self._count = 0                  # frames in RAM
        # Read side of the oldest flash segment (loaded on demand into one preallocated buffer).
        self._seg_buf = bytearray(slots * (slot_bytes + 2))
        self._seg_mv = memoryview(self._seg_buf)
        self._seg_loaded = -1            # segment number loaded, -1 none
        self._seg_end = 0                # bytes valid in _seg_buf
        self._seg_pos = 0                # offset of the next unread record
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
        self._slot_view[tail][:n] = frame
        self._len[tail] = n
        self._count += 1
        return True

    # --- consumer ---
    def peek(self):
        """The oldest frame as a memoryview (valid until the next pop/push), or None when empty."""
        if self._spilled_frames:
            if self._load_oldest():
                n = self._seg_buf[self._seg_pos] | (self._seg_buf[self._seg_pos + 1] << 8)
                return self._seg_mv[self._seg_pos + 2:self._seg_pos + 2 + n]
        if self._count:
            return self._slot_view[self._head][:self._len[self._head]]
        return None

    def peek_unsent(self):
        """The first frame after the `sent` ones (memoryview, valid until the next pop/push), or None
        when there is none or it lies beyond the loaded segment."""
        return self.peek_at(self.sent)

    def peek_at(self, i):
        """Frame i from the head (0 = peek()), or None when there is none or it lies beyond the
        loaded segment (only the oldest segment and then the RAM ring can be read ahead)."""
        if self._spilled_frames and self._load_oldest():
            if i < self._seg_left:
                pos = self._seg_pos
                for _ in range(i):
                    pos += 2 + (self._seg_buf[pos] | (self._seg_buf[pos + 1] << 8))
                n = self._seg_buf[pos] | (self._seg_buf[pos + 1] << 8)
                return self._seg_mv[pos + 2:pos + 2 + n]
            if self._seg_left < self._spilled_frames:
                return None              # in a later segment: wait until this one is confirmed
            i -= self._spilled_frames
        if i < self._count:
            j = (self._head + i) % self.slots
            return self._slot_view[j][:self._len[j]]
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
            n = self._seg_buf[self._seg_pos] | (self._seg_buf[self._seg_pos + 1] << 8)
            self._seg_pos += 2 + n
            self._seg_left -= 1
            self._spilled_frames -= 1
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
        if self.segments() >= self.max_segments:
            self._drop_oldest_segment()
        n = self._next_seg
        tmp = self._path(n, _TMP_SUFFIX)
        hdr = bytearray(2)
        try:
            with open(tmp, "wb") as f:
                i = self._head
                for _ in range(self._count):
                    ln = self._len[i]
                    hdr[0] = ln & 0xFF
                    hdr[1] = ln >> 8
                    f.write(hdr)
                    f.write(self._slot_view[i][:ln])
                    i = (i + 1) % self.slots
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

    def _remove_segment(self, n):
        try:
            os.remove(self._path(n, _SEG_SUFFIX))
        except OSError:
            pass

    def _read_segment(self, n):
        """Load segment n into the read buffer; return its frame count, or -1 if unreadable."""
        try:
            with open(self._path(n, _SEG_SUFFIX), "rb") as f:
                end = f.readinto(self._seg_buf)
        except OSError:
            return -1
        pos = frames = 0
        while pos < end:
            if pos + 2 > end:
                return -1
            ln = self._seg_buf[pos] | (self._seg_buf[pos + 1] << 8)
            if ln == 0 or ln > self.slot_bytes or pos + 2 + ln > end:
                return -1
            pos += 2 + ln
            frames += 1
        self._seg_end = end
        return frames

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
                self._seg_pos = 0
                self._seg_left = c
                return True
            # Unreadable: it was counted at boot scan; forget it.
            self._remove_segment(self._first_seg)
            self._first_seg += 1
        self._spilled_frames = 0
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
