"""One chunk of unit activations as the harvest holds it: its nonzeros, or a dense matrix.

A chunk is n rows (whole context windows of T tokens, row-major) of D units of one kind. Sparse
chunks keep the nonzero activations as (row, unit, value) in row-major order, so the flat index
``row * D + unit`` is ascending and "activation of unit u at row r" is a ``searchsorted``; a TopK
SAE's features arrive that way without the dense (n, D) matrix ever being formed. Chunks where a
quarter or more of the entries are nonzero (a model's neurons) stay dense, and their sparse form is
made only if something asks for it.

``cross_add_`` accumulates the feature x neuron cross products Σ_t f_i(t)·h_m(t) that the
correlations r(f_i, h_m) need.

Shape legend: n chunk rows (tokens), D units, k active per row (TopK), E examples, W window,
F features, M neurons.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["Chunk", "cross_add_"]


class Chunk:
    """The nonzero activations of one chunk of n rows (whole sequences) for D units.

    row, unit: int64 (nnz,) sorted by (row, unit); val: float32 (nnz,). ``flat = row * D + unit``
    (ascending) is what window look-ups search.
    """

    __slots__ = ("_row", "_unit", "_val", "n", "D", "_flat", "dense")

    def __init__(self, row: torch.Tensor | None, unit: torch.Tensor | None, val: torch.Tensor | None,
                 n: int, D: int, dense: torch.Tensor | None = None):
        self._row, self._unit, self._val, self.n, self.D = row, unit, val, n, D
        self._flat = None
        self.dense = dense          # float32 (n, D) for dense chunks; their sparse form is made on demand

    @classmethod
    def from_dense(cls, acts_nD: torch.Tensor) -> "Chunk":
        """A chunk from an (n, D) matrix of ReLU outputs: kept dense where a quarter or more is nonzero."""
        n, D = acts_nD.shape
        acts_nD = acts_nD.float()
        nnz = int(torch.count_nonzero(acts_nD)) if acts_nD.numel() < (1 << 24) else \
            int((acts_nD[: max(1, n // 16)] != 0).sum()) * (n // max(1, n // 16))   # estimate
        if nnz * 4 >= n * D:
            return cls(None, None, None, n, D, dense=acts_nD)
        row, unit = torch.nonzero(acts_nD, as_tuple=True)              # row-major order
        return cls(row, unit, acts_nD[row, unit], n, D)

    def _sparsify(self) -> None:
        self._row, self._unit = torch.nonzero(self.dense, as_tuple=True)
        self._val = self.dense[self._row, self._unit]

    @property
    def row(self) -> torch.Tensor:
        if self._row is None:
            self._sparsify()
        return self._row

    @property
    def unit(self) -> torch.Tensor:
        if self._unit is None:
            self._sparsify()
        return self._unit

    @property
    def val(self) -> torch.Tensor:
        if self._val is None:
            self._sparsify()
        return self._val

    @classmethod
    def from_topk(cls, vals_nk: torch.Tensor, idx_nk: torch.Tensor, D: int) -> "Chunk":
        """From a TopK SAE's (values, indices) per row, without forming the dense (n, D) matrix."""
        n, k = vals_nk.shape
        idx_nk, order = idx_nk.sort(dim=1)
        vals_nk = vals_nk.gather(1, order)
        live = vals_nk > 0
        row = torch.arange(n, device=idx_nk.device)[:, None].expand(n, k)
        return cls(row[live], idx_nk[live], vals_nk[live].float(), n, D)

    @property
    def flat(self) -> torch.Tensor:
        if self._flat is None:
            self._flat = self.row * self.D + self.unit
        return self._flat

    def nbytes(self) -> int:
        return self.dense.numel() * 4 if self.dense is not None else self.val.numel() * 28

    def windows(self, row_E: torch.Tensor, unit_E: torch.Tensor, T: int, left: int, right: int) -> torch.Tensor:
        """Activations (E, W) of unit_E at rows row_E-left … row_E+right, within each row's sequence."""
        off_W = torch.arange(-left, right + 1, device=row_E.device)
        t_EW = (row_E % T)[:, None] + off_W[None, :]
        inside_EW = (t_EW >= 0) & (t_EW < T)
        query_EW = (row_E[:, None] + off_W[None, :]).clamp(0, self.n - 1) * self.D + unit_E[:, None]
        if self.dense is not None:
            rows_EW = (row_E[:, None] + off_W[None, :]).clamp(0, self.n - 1)
            got_EW = self.dense[rows_EW, unit_E[:, None].expand_as(rows_EW)]
            return torch.where(inside_EW, got_EW, torch.zeros((), device=row_E.device))
        if self.flat.numel() == 0:
            return torch.zeros(query_EW.shape, dtype=torch.float32, device=row_E.device)
        at_EW = torch.searchsorted(self.flat, query_EW).clamp_(max=self.flat.numel() - 1)
        hit_EW = (self.flat[at_EW] == query_EW) & inside_EW
        return torch.where(hit_EW, self.val[at_EW], torch.zeros((), device=row_E.device))


def cross_add_(cross_FM: torch.Tensor, ch: Chunk, neurons_nM: torch.Tensor,
                use_scipy: bool | None = None) -> None:
    """cross += fᵀ · h for the chunk's sparse features f (n, F) and dense neurons h (n, M).

    On a CPU scipy's CSR product (one thread, no conversion of the transposed matrix) is the fastest
    here; elsewhere a torch sparse COO product.
    """
    if ch.val.numel() == 0:
        return
    if use_scipy if use_scipy is not None else ch.val.device.type == "cpu":
        import scipy.sparse as sp

        row, unit = ch.row.numpy(), ch.unit.numpy().astype(np.int32)
        indptr = np.zeros(ch.n + 1, dtype=np.int64)
        np.cumsum(np.bincount(row, minlength=ch.n), out=indptr[1:])
        f_nF = sp.csr_matrix((ch.val.numpy(), unit, indptr), shape=(ch.n, ch.D))
        cross_FM += torch.from_numpy(np.asarray(f_nF.T @ neurons_nM.float().numpy()))
    else:
        f_Fn = torch.sparse_coo_tensor(torch.stack([ch.unit, ch.row]), ch.val, (ch.D, ch.n),
                                       check_invariants=False)
        cross_FM += torch.sparse.mm(f_Fn, neurons_nM.float()).to(cross_FM.dtype)

