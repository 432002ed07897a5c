"""Pack state machine: init, idle, charge, discharge, fault, sleep. The ONLY module that commands the FETs.

Entry/exit rules (docs/protection.md has the table):
- init -> idle on the first good AFE read with no condition beyond a threshold; init keeps both
  FETs off (a condition that persists trips after its delay: init -> fault).
- any state -> fault when any fault bit is set; in fault each FET is on only if no fault forbids
  its direction (a cell over-voltage still lets the pack discharge, and vice versa).
- fault -> idle when the bitmask is empty (self-recovered, or an explicit reset).
- idle -> charge / discharge when |current| > idle_current_ma in that direction for state_confirm_ms.
- charge / discharge -> idle after state_confirm_ms of rest; to the other direction likewise.
- idle -> sleep after sleep_after_ms of rest (the chip may then enter its SLEEP mode), unless cells
  bleed (keep_awake, set by the app from the balancer); sleep -> idle as soon as current flows or
  cells start to bleed.
Every transition is logged with its reason and offered to comms as an event (strings are made only
on transitions, which are rare; the steady cycle allocates nothing).

    sm = PackState(cfg, afe, events=comms)
    sm.update(sample, protection, dt_ms)       # sets sample.state and the FETs
"""
from micropython import const

from firmware.log import LOG
from firmware.pack import protection as _prot

INIT = const(0)
IDLE = const(1)
CHARGE = const(2)
DISCHARGE = const(3)
FAULT = const(4)
SLEEP = const(5)
NAMES = ("init", "idle", "charge", "discharge", "fault", "sleep")

# Event kinds as in docs/frame-format.md (event body): 1 fault raised, 2 fault cleared, 3 info.
EVENT_FAULT = const(1)   # offer_event(1, code=fault bit number, value=the measurement behind it)
EVENT_CLEAR = const(2)   # offer_event(2, code=fault bit number, value=the measurement now)
EVENT_INFO = const(3)    # offer_event(3, code=INFO_*, value=...)
INFO_STATE = const(16)   # code 16 + new state (16 init .. 21 sleep); value = fault bitmask


class PackState:
    def __init__(self, cfg, afe, events=None, log=LOG):
        self._afe = afe
        self._events = events
        self._log = log
        self.configure(cfg)
        self.user_chg = 1      # operator requests (CMD_FET): may only take a FET away, never force it on
        self.user_dsg = 1
        self.state = INIT
        self.transitions = 0
        self.reason = "boot"
        self.chg_cmd = -1      # last FET command acknowledged by the driver (-1: unknown)
        self.dsg_cmd = -1
        self.fet_errors = 0    # set_fets calls that raised OSError
        self._since_cmd_ms = 0
        self._chg_ms = 0       # how long current has flowed in each direction / rested
        self._dsg_ms = 0
        self.rest_ms = 0
        self.keep_awake = False  # set by the app while cells bleed: no chip SLEEP (docs/balancing.md)

    def boot(self):
        """Both FETs off at start-up, before the first sample (init keeps them off until it is good)."""
        self.chg_cmd = -1
        self.dsg_cmd = -1
        self._command(0, 0, 0)

    def configure(self, cfg):
        self.idle_ma = cfg["idle_current_ma"]
        self.confirm_ms = cfg["state_confirm_ms"]
        self.sleep_after_ms = cfg["sleep_after_ms"]
        self.refresh_ms = cfg["fet_refresh_ms"]

    def _go(self, new, reason, faults):
        old = self.state
        self.state = new
        self.transitions += 1
        self.reason = reason
        self._log.info("state %s->%s: %s" % (NAMES[old], NAMES[new], reason))
        if old == SLEEP or new == SLEEP:
            try:
                self._afe.set_sleep_allowed(new == SLEEP)
            except OSError:
                self.fet_errors += 1
        if self._events is not None:
            self._events.offer_event(EVENT_INFO, INFO_STATE + new, faults)

    def update(self, s, prot, dt_ms):
        faults = prot.faults
        st = self.state
        i_ma = s.current_ma
        if i_ma > self.idle_ma:
            self._chg_ms += dt_ms
            self._dsg_ms = 0
            self.rest_ms = 0
        elif i_ma < -self.idle_ma:
            self._dsg_ms += dt_ms
            self._chg_ms = 0
            self.rest_ms = 0
        else:
            self._chg_ms = 0
            self._dsg_ms = 0
            if self.rest_ms < 0x3FFFFFFF - dt_ms:
                self.rest_ms += dt_ms
        conf = self.confirm_ms
        if faults:
            if st != FAULT:
                self._go(FAULT, "fault " + _prot.names(faults), faults)
        elif st == INIT:
            # Leave init only on a sample with nothing beyond a threshold, so a cold or over-voltage
            # pack never gets its FETs closed for the length of a trip delay.
            if prot.read_failures == 0 and not prot.present:
                self._go(IDLE, "first good sample", faults)
        elif st == FAULT:
            self._go(IDLE, "faults cleared", faults)
        elif st == IDLE:
            if self._chg_ms >= conf:
                self._go(CHARGE, "charge current %d mA" % i_ma, faults)
            elif self._dsg_ms >= conf:
                self._go(DISCHARGE, "discharge current %d mA" % i_ma, faults)
            elif self.rest_ms >= self.sleep_after_ms and not self.keep_awake:
                self._go(SLEEP, "rest %d ms" % self.rest_ms, faults)
        elif st == CHARGE or st == DISCHARGE:
            if self.rest_ms >= conf:
                self._go(IDLE, "current %d mA at rest" % i_ma, faults)
            elif st == CHARGE and self._dsg_ms >= conf:
                self._go(DISCHARGE, "discharge current %d mA" % i_ma, faults)
            elif st == DISCHARGE and self._chg_ms >= conf:
                self._go(CHARGE, "charge current %d mA" % i_ma, faults)
        elif st == SLEEP:
            if self.rest_ms == 0:
                self._go(IDLE, "wake: current %d mA" % i_ma, faults)
            elif self.keep_awake:
                # Whether host balancing continues in the chip's SLEEP is not stated (reference
                # section 5 [U]): bleed only with the chip awake.
                self._go(IDLE, "balancing: chip kept awake", faults)
        st = self.state
        if st == INIT:
            chg = 0
            dsg = 0
        else:
            chg = 0 if faults & _prot.BLOCK_CHG or not self.user_chg else 1
            dsg = 0 if faults & _prot.BLOCK_DSG or not self.user_dsg else 1
        self._command(chg, dsg, dt_ms)
        s.state = st

    def _command(self, chg, dsg, dt_ms):
        """Send the FET command on a change, after a failure, and every refresh_ms (a chip reset or a
        lost write would otherwise go unnoticed)."""
        self._since_cmd_ms += dt_ms
        if chg == self.chg_cmd and dsg == self.dsg_cmd and self._since_cmd_ms < self.refresh_ms:
            return
        changed = chg != self.chg_cmd or dsg != self.dsg_cmd
        try:
            self._afe.set_fets(chg, dsg)
        except OSError:
            self.fet_errors += 1
            self.chg_cmd = -1
            self.dsg_cmd = -1
            return
        if changed:
            self._log.info("fets chg=%d dsg=%d (%s)" % (chg, dsg, NAMES[self.state]))
        self.chg_cmd = chg
        self.dsg_cmd = dsg
        self._since_cmd_ms = 0
