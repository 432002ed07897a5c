"""Register, subcommand and data-memory addresses of the TI BQ76952, with units and bit meanings.

Facts from /work/shared/reference/bq76952.md (section numbers below); [U] marks a value the
reference could not verify: those are overridable through the driver's constructor keywords.
Names are public (no underscore) because the driver, its settings module and the tests import them.

    from firmware.afe import bq76952_regs as R
    R.CELL1_VOLTAGE        # 0x14, cell 1 voltage, I2 mV
"""
from micropython import const

# --- I2C (section 1) ---
I2C_ADDR = const(0x08)              # 7-bit address (0x10 write / 0x11 read)

# --- direct commands (section 2), little-endian ---
CONTROL_STATUS = const(0x00)        # H2
SAFETY_ALERT_A = const(0x02)        # H1; Safety Status A at +1, B at 0x04/0x05, C at 0x06/0x07
SAFETY_STATUS_A = const(0x03)
SAFETY_ALERT_B = const(0x04)
SAFETY_STATUS_B = const(0x05)
SAFETY_ALERT_C = const(0x06)
SAFETY_STATUS_C = const(0x07)
PF_ALERT_A = const(0x0A)            # PF Alert/Status A..D: alert at even, status at odd (0x0A..0x11)
PF_STATUS_A = const(0x0B)
PF_STATUS_B = const(0x0D)
PF_STATUS_C = const(0x0F)
PF_STATUS_D = const(0x11)
BATTERY_STATUS = const(0x12)        # H2
CELL1_VOLTAGE = const(0x14)         # I2 mV; cell n at 0x14 + 2(n-1), cell 16 at 0x32
STACK_VOLTAGE = const(0x34)         # I2 userV (cV = 10 mV with DA Configuration USER_VOLTS_CV)
PACK_VOLTAGE = const(0x36)          # I2 userV
LD_VOLTAGE = const(0x38)            # I2 userV
CC2_CURRENT = const(0x3A)           # I2 userA; + charge, - discharge
SUBCMD_LOW = const(0x3E)            # subcommand code (low byte; high byte at 0x3F)
TRANSFER_BUFFER = const(0x40)       # 32-byte subcommand data buffer 0x40..0x5F
TRANSFER_CHECKSUM = const(0x60)     # checksum; 0x61 = data length + 4
TRANSFER_LENGTH = const(0x61)
ALARM_STATUS = const(0x62)          # H2 latched, write 1 to clear
ALARM_RAW_STATUS = const(0x64)      # H2 not latched
ALARM_ENABLE = const(0x66)          # H2, default 0xF800
INT_TEMPERATURE = const(0x68)       # I2 0.1 K
CFETOFF_TEMPERATURE = const(0x6A)   # I2 0.1 K (also DFETOFF 0x6C, ALERT 0x6E)
TS1_TEMPERATURE = const(0x70)       # I2 0.1 K; TS2 0x72, TS3 0x74
TS2_TEMPERATURE = const(0x72)
TS3_TEMPERATURE = const(0x74)
FET_STATUS = const(0x7F)            # H1

# Battery Status bits (0x12)
BS_CFGUPDATE = const(0x0001)        # bit 0: in CONFIG_UPDATE mode
BS_SLEEP_EN = const(0x0004)         # bit 2: sleep allowed
BS_POR = const(0x0008)              # bit 3
BS_SS = const(0x0800)               # bit 11: a Safety Status bit is set
BS_PF = const(0x1000)               # bit 12
BS_SLEEP = const(0x8000)            # bit 15
BS_SEC_SHIFT = const(8)             # bits 9:8 security state
SEC_FULLACCESS = const(1)
SEC_UNSEALED = const(2)
SEC_SEALED = const(3)

# Safety Alert/Status A bits
SA_CUV = const(0x04)
SA_COV = const(0x08)
SA_OCC = const(0x10)
SA_OCD1 = const(0x20)
SA_OCD2 = const(0x40)
SA_SCD = const(0x80)
# Safety Alert/Status B bits
SB_UTC = const(0x01)
SB_UTD = const(0x02)
SB_UTINT = const(0x04)
SB_OTC = const(0x10)
SB_OTD = const(0x20)
SB_OTINT = const(0x40)
SB_OTF = const(0x80)
# Safety Status C bits (bit positions of Safety Alert C are [U] in the reference)
SC_HWDF = const(0x02)
SC_PTO = const(0x04)
SC_COVL = const(0x10)
SC_OCDL = const(0x20)
SC_SCDL = const(0x40)
SC_OCD3 = const(0x80)

# Alarm Status / Raw Status / Enable bits (0x62/0x64/0x66)
AL_WAKE = const(0x0001)
AL_ADSCAN = const(0x0002)
AL_CB = const(0x0004)               # cell balancing active
AL_FUSE = const(0x0008)
AL_SHUTV = const(0x0010)
AL_XDSG = const(0x0020)
AL_XCHG = const(0x0040)
AL_FULLSCAN = const(0x0080)
AL_INITCOMP = const(0x0200)
AL_INITSTART = const(0x0400)
AL_MSK_PFALERT = const(0x0800)
AL_MSK_SFALERT = const(0x1000)
AL_PF = const(0x2000)
AL_SSA = const(0x4000)
AL_SSBC = const(0x8000)

# FET Status bits (0x7F)
FS_CHG_FET = const(0x01)
FS_PCHG_FET = const(0x02)
FS_DSG_FET = const(0x04)
FS_PDSG_FET = const(0x08)
FS_ALRT_PIN = const(0x40)

# --- subcommands (section 3) ---
SC_DEVICE_NUMBER = const(0x0001)    # U2; 0x7695 expected [U]
SC_FW_VERSION = const(0x0002)       # reports length 11 but carries 6 meaningful bytes (S9)
SC_HW_VERSION = const(0x0003)
SC_RESET = const(0x0012)
SC_FET_ENABLE = const(0x0022)       # toggles FET_EN (command-only)
SC_MANUFACTURING_STATUS = const(0x0057)  # U2; bit 4 FET_EN
SC_CB_ACTIVE_CELLS = const(0x0083)  # U2 R/W; bit n = cell input n+1; 0 stops balancing
SC_PTO_RECOVER = const(0x008A)
SC_SET_CFGUPDATE = const(0x0090)
SC_EXIT_CFGUPDATE = const(0x0092)
SC_ALL_FETS_OFF = const(0x0095)
SC_ALL_FETS_ON = const(0x0096)
SC_FET_CONTROL = const(0x0097)      # U1 write: 3 PCHG_OFF, 2 CHG_OFF, 1 PDSG_OFF, 0 DSG_OFF (S7, BQ76972 TRM)
SC_SLEEP_ENABLE = const(0x0099)
SC_SLEEP_DISABLE = const(0x009A)
SC_OCDL_RECOVER = const(0x009B)
SC_SWAP_COMM_MODE = const(0x29BC)   # switch to the mode in Comm Type now
SC_SCDL_RECOVER = const(0x009C)

MS_FET_EN = const(0x0010)           # Manufacturing Status bit 4
FC_DSG_OFF = const(0x01)            # FET_CONTROL bits
FC_PDSG_OFF = const(0x02)
FC_CHG_OFF = const(0x04)
FC_PCHG_OFF = const(0x08)

DEVICE_NUMBER = const(0x7695)       # [U]: by pattern (BQ76942 reads 0x7694 in SLUAA11B)

# --- data memory (section 4); writable only inside CONFIG_UPDATE ---
DM_POWER_CONFIG = const(0x9234)     # H2
DM_COMM_TYPE = const(0x9239)        # U1
DM_TS1_CONFIG = const(0x92FD)       # H1 pin config; TS2 0x92FE, TS3 0x92FF (0x92FA CFETOFF + 3)
DM_DA_CONFIG = const(0x9303)        # H1: 2 USER_VOLTS_CV, 1:0 USER_AMPS
DM_VCELL_MODE = const(0x9304)       # H2 bit n = cell input n+1 in use
DM_ENABLED_PROT_A = const(0x9261)   # H1 (bits as Safety A); B 0x9262, C 0x9263
DM_ENABLED_PROT_B = const(0x9262)
DM_ENABLED_PROT_C = const(0x9263)
DM_SLEEP_CURRENT = const(0x9248)    # I2 mA
DM_DEFAULT_ALARM_MASK = const(0x926D)  # H2, loaded into Alarm Enable; default 0xF800
DM_CB_MAX_CELLS = const(0x933A)     # U1
DM_CUV_THRESHOLD = const(0x9275)    # U1 50.6 mV, 20..90
DM_CUV_DELAY = const(0x9276)        # U2 3.3 ms x (2 + n)
DM_CUV_HYST = const(0x927B)         # U1 50.6 mV, 2..20
DM_COV_THRESHOLD = const(0x9278)    # U1 50.6 mV, 20..110
DM_COV_DELAY = const(0x9279)        # U2
DM_COV_HYST = const(0x927C)         # U1 50.6 mV, 2..20
DM_OCC_THRESHOLD = const(0x9280)    # U1 2 mV, 2..62
DM_OCC_DELAY = const(0x9281)        # U1 3.3 ms x (2 + n), 1..127
DM_OCD1_THRESHOLD = const(0x9282)   # U1 2 mV, 2..100
DM_OCD1_DELAY = const(0x9283)
DM_OCD2_THRESHOLD = const(0x9284)
DM_OCD2_DELAY = const(0x9285)
DM_SCD_THRESHOLD = const(0x9286)    # U1 code 0..15 (table in bq76952_settings)
DM_SCD_DELAY = const(0x9287)        # U1 (n - 1) x 15 us, 1..31
DM_OTC_THRESHOLD = const(0x929A)    # I1 degC; delay (U1 s) at +1, recovery (I1 degC) at +2
DM_OTD_THRESHOLD = const(0x929D)
DM_OTINT_THRESHOLD = const(0x92A3)  # 0x92A0 is OTF
DM_UTC_THRESHOLD = const(0x92A6)
DM_UTD_THRESHOLD = const(0x92A9)
DM_RECOVERY_TIME = const(0x92AF)    # U1 s
DM_HWD_DELAY = const(0x92B2)        # U2 s [U]: not in the reference; public BQ769x2 headers agree
DM_FIRST = const(0x9180)
DM_LAST = const(0x93FF)

# Comm Type codes (BQ76922/BQ76972 TRMs; [U] for BQ76952)
COMM_I2C_FAST = const(0x08)
COMM_I2C_FAST_CRC = const(0x12)

# TS pin configuration: PIN_FXN = 3 (thermistor), 18k pull-up, 18K model, cell temperature
PIN_TS_CELL_18K = const(0x07)
PIN_UNUSED = const(0x00)
