import pytest

from tools.emulator import make_emulated_board
from emu_host import Host


@pytest.fixture
def board(sim):
    return make_emulated_board(cells=16, chemistry="LFP", capacity_mah=100000, seed=1, attach=False)


@pytest.fixture
def host(board):
    return Host(board.chip)
