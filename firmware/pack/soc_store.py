"""SOC and learned capacity across reboots: a small checksummed file written atomically.

    st = soc_store.load("/soc.dat")          # (soc_cpct, capacity_mah, nominal_mah) or raises
    soc_store.save("/soc.dat", soc)          # from a firmware.pack.soc.Soc

Body: `soc1 <soc_cpct> <capacity_mah> <nominal_mah>` sealed like the config file
(firmware/config/atomic.py: FNV-1a checksum, temporary file + rename). Loading raises OSError when the
file is missing and ValueError when it is torn, corrupt or out of range; the caller falls back to the
boot OCV estimate and reports it (App.start). Called rarely (Soc.save_due): never from the steady cycle.
"""
from firmware.config.atomic import read, seal, unseal, write_atomic
from firmware.pack.state import EVENT_INFO

_TAG = "soc1"


def encode(soc_cpct, capacity_mah, nominal_mah):
    return seal(("%s %d %d %d" % (_TAG, soc_cpct, capacity_mah, nominal_mah)).encode())


def decode(data):
    """(soc_cpct, capacity_mah, nominal_mah); ValueError when damaged or out of range."""
    parts = unseal(data).decode().split()
    if len(parts) != 4 or parts[0] != _TAG:
        raise ValueError("not a soc1 record")
    soc, cap, nom = int(parts[1]), int(parts[2]), int(parts[3])
    if not 0 <= soc <= 10000 or nom <= 0 or not nom // 2 <= cap <= nom + nom // 5:
        raise ValueError("soc record out of range")
    return soc, cap, nom


def save(path, soc):
    """Write the Soc's state (OSError on file-system trouble) and mark it saved."""
    write_atomic(path, encode(soc.soc_cpct, soc.capacity_mah, soc.nominal_mah))
    soc.saved()


def load(path):
    return decode(read(path))


# --- the app's side (firmware.app.App._soc_file; the app is loaded whenever these run) ---


def restore_app(app):
    """Boot: the stored state into app.soc; a missing or damaged file falls back to the boot OCV estimate
    and is reported (log + event), never raised (flash trouble must not stop protection)."""
    from firmware.app import INFO_SOC_STATE
    code = 0
    try:
        soc, cap, nom = load(app.soc_path)
        if not app.soc.restore(soc, cap, nom):
            app.soc_status = "other pack"
            code = 3
        else:
            app.soc_status = "ok"
    except OSError:
        app.soc_status = "missing"
        code = 1
    except Exception:   # torn, corrupt, out of range, or a parse error of any kind
        app.soc_status = "corrupt"
        code = 2
    app.log.info("soc state %s" % app.soc_status)
    if code:
        app.comms.offer_event(EVENT_INFO, INFO_SOC_STATE, code)


def save_app(app):
    """Write app.soc's state; a failure is logged, reported once (value 4) and retried only after the
    Soc's minimum interval (saved() is called either way)."""
    from firmware.app import INFO_SOC_STATE
    try:
        save(app.soc_path, app.soc)
        app.soc_writes += 1
    except OSError as e:
        app.soc.saved()
        app.log.info("soc state write failed: %r" % (e,))
        if app.soc_status != "write failed":
            app.soc_status = "write failed"
            app.comms.offer_event(EVENT_INFO, INFO_SOC_STATE, 4)
