"""Feature blocks: structures' atoms concatenated, with their structure index (descriptor/blocks.py)."""

from __future__ import annotations

import torch

from aenet_exp.descriptor.blocks import block_of, concat_blocks


def test_blocks_number_structures_in_order_and_shift_them_when_concatenated():
    rows = [(torch.full((n, 2), float(n)), torch.zeros(n, dtype=torch.long)) for n in (2, 1, 3)]
    block = block_of(rows, torch.device("cpu"))
    assert block.structure.tolist() == [0, 0, 1, 2, 2, 2] and block.structure.dtype == torch.int64
    assert block.n_structures == 3 and block.features[:, 0].tolist() == [2, 2, 1, 3, 3, 3]
    joined = concat_blocks([block, block_of(rows[:1], torch.device("cpu"))])
    assert joined.structure.tolist() == [0, 0, 1, 2, 2, 2, 3, 3] and joined.n_structures == 4
