"""The bound the firmware benchmark sets beside the driver's I2C cost: the fewest transactions and bytes
the BQ76952 direct-command map allows for one full sample (tools/bench/firmware_vm.py).

Cross-checked here by hand from the reference's table (reference/bq76952.md section 2), with raw
addresses: the needed bytes are 0x02-0x07, PF Status A-D at 0x0B/0x0D/0x0F/0x11, 0x12-0x3B (battery
status, 16 cells, stack, PACK, LD, CC2), 0x62-0x65 (alarm status, raw), 0x68-0x69 (internal temp),
0x70-0x75 (TS1-TS3), 0x7F (FET status).

    .venv/bin/pytest -q tests/bench/test_register_minimum.py
"""
from tools.bench.firmware_vm import needed_registers, register_minimum


def test_needed_registers_of_a_full_16_cell_sample():
    want = set(range(0x02, 0x08)) | {0x0B, 0x0D, 0x0F} | set(range(0x11, 0x3C)) | \
        set(range(0x62, 0x66)) | {0x68, 0x69} | set(range(0x70, 0x76)) | {0x7F}
    assert needed_registers(16, 3) == want
    assert len(want) == 65


def test_fewest_transactions_and_bytes():
    m = register_minimum(16, 3)
    # bursts may not cross 0x08-0x09, 0x3C-0x3D, 0x7C-0x7E: four segments hold needed bytes
    assert m["min_transactions"] == 4
    assert m["bytes_at_min_transactions"] == 6 + (0x3B - 0x0B + 1) + (0x75 - 0x62 + 1) + 1 == 76
    assert m["min_bytes"] == 65 and m["transactions_at_min_bytes"] == 9


def test_fewer_cells_need_fewer_bytes():
    assert register_minimum(4, 1)["min_bytes"] == 65 - 24 - 4
