"""Where the BPF program's decision sits in skb->mark (struct blixt_config)."""

from __future__ import annotations

import dataclasses

from . import layout


@dataclasses.dataclass(frozen=True)
class MarkConfig:
    """Defaults (blixt.h) leave the low 12 bits and kube-proxy's 0x4000/0x8000
    to others: backend ids in the top 16 bits, so up to 65535 backends per
    node; widen id_mask where a node needs more and those bits are free."""

    id_shift: int = layout.DEFAULT_ID_SHIFT
    id_mask: int = layout.DEFAULT_ID_MASK
    masq_mark: int = layout.DEFAULT_MASQ_MARK
    reject_mark: int = layout.DEFAULT_REJECT_MARK

    def __post_init__(self):
        for name in ("masq_mark", "reject_mark"):
            bit = getattr(self, name)
            if bit <= 0 or bit & (bit - 1):
                raise ValueError(f"{name} must be a single bit, got {bit:#x}")
        if self.id_mask <= 0 or self.id_mask > 0xFFFFFFFF:
            raise ValueError(f"id_mask must be a non-zero 32-bit mask, got {self.id_mask:#x}")
        if (self.id_mask >> self.id_shift) << self.id_shift != self.id_mask:
            raise ValueError(f"id_mask {self.id_mask:#x} has bits below id_shift {self.id_shift}")
        if self.id_mask & (self.masq_mark | self.reject_mark) or self.masq_mark == self.reject_mark:
            raise ValueError("id_mask, masq_mark and reject_mark must not overlap")

    @property
    def max_backend_id(self) -> int:
        return self.id_mask >> self.id_shift

    @property
    def field(self) -> int:
        """Every mark bit blixt owns."""
        return self.id_mask | self.masq_mark | self.reject_mark

    def config(self) -> layout.Config:
        """The program's load-time `blixt_cfg` global."""
        return layout.Config(self.id_shift, self.id_mask, self.masq_mark, self.reject_mark)

    def backend_mark(self, backend_id: int) -> int:
        """The mark value (masked to id_mask) that names a backend."""
        if not 1 <= backend_id <= self.max_backend_id:
            raise ValueError(f"backend id {backend_id} outside 1..{self.max_backend_id}")
        return backend_id << self.id_shift
