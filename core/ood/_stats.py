"""Numerically careful statistics shared by the feature-space detectors (float64 throughout)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from core import runtime
from core.kernels.rows import centre_rows_into, centred_float64
from core.kernels.softmax import logsumexp_float32, row_softmax_score

EPS_NORM = 1e-10  # added to a norm before dividing (inside the norm, not to every component)


def f64(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)


def mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b through torch (MKL): about 3× faster than NumPy's BLAS here for the tall products."""
    with torch.no_grad():
        return (torch.from_numpy(np.ascontiguousarray(a)) @ torch.from_numpy(np.ascontiguousarray(b))).numpy()


def centred64(x: np.ndarray, center: np.ndarray) -> torch.Tensor:
    """x − center as a new float64 torch tensor (``x`` is never modified), in one parallel numba pass."""
    return torch.from_numpy(centred_float64(x, center))  # converts and centres in one parallel pass


def centred_gram(x: np.ndarray, center: np.ndarray, chunk: int = 4096,
                 which: np.ndarray | None = None, workers: int | None = None) -> np.ndarray:
    """(x − center)ᵀ(x − center) in float64 [D, D], without an N×D float64 copy of ``x``.

    ``center`` is one row [D], or one row per group [K, D] with ``which`` [N] naming each row's group
    (rows with ``which < 0`` are left out). Rows are converted to float64 and centred ``chunk`` at a
    time, and each block's Gram is added to the result. Products and sums are float64 throughout;
    only the order of the row sums differs from one big product.

    Speed: a block's Gram is NumPy's ``b.T @ b``, which NumPy sends to BLAS SYRK (half the flops
    of a product; torch has no SYRK). ``workers`` threads (default: torch's thread count once
    :func:`core.runtime.configure` has set NumPy's BLAS to one thread at start-up, else one worker
    whose BLAS threads itself) each take every ``workers``-th block into their own buffer and sum,
    so both cores stay busy on large blocks. At 50k×384 this is about 1.7× faster than torch's
    float64 product on this machine. The blocks of each worker are fixed, so the result is
    deterministic."""
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    n, d = x.shape
    center = np.ascontiguousarray(center, np.float64)
    if which is not None:
        which = np.ascontiguousarray(which, np.int64)
        if center.ndim != 2 or len(which) != n:
            raise ValueError("centred_gram: per-group centring needs center [K, D] and one group index per row")
    if n == 0:
        return np.zeros((d, d))
    rows = max(64, min(int(chunk), (1 << 22) // max(d, 1)))  # a block buffer is at most 32 MB
    blocks = -(-n // rows)
    if workers is None:
        workers = torch.get_num_threads() if runtime.is_configured() else 1
    workers = max(1, min(int(workers), 8, blocks))
    blocks = -(-blocks // workers) * workers  # every worker gets the same number of equal blocks
    rows = -(-n // blocks)
    starts = range(0, n, rows)

    def gram_of_blocks(k: int) -> np.ndarray:
        buf = np.empty((min(rows, n), d), np.float64)
        acc = np.zeros((d, d), np.float64)
        for s in starts[k::workers]:
            m = min(rows, n - s)
            block = buf[:m]
            if which is None:
                np.subtract(x[s:s + m], center, out=block)
            else:
                centre_rows_into(x[s:s + m], center, which[s:s + m], block)
            acc += block.T @ block  # NumPy calls SYRK for a matrix times its own transpose
        return acc

    if workers == 1:
        return gram_of_blocks(0)
    # no thread-count changes here (request code): BLAS runs on one thread from start-up (core.runtime)
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(gram_of_blocks, range(workers)))
    g = parts[0]
    for p in parts[1:]:
        g += p
    return g


def eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a symmetric float64 matrix (ascending eigenvalues), via LAPACK.

    SciPy's divide-and-conquer LAPACK driver (``syevd``) on NumPy/SciPy's BLAS, which
    :func:`core.runtime.configure` keeps on one thread: for D ≲ 2000 threading gains nothing, and on
    a busy 2-core machine a threaded solver was measured 5-100× slower (spinning workers fighting for
    the cores). Measured at D = 384: 18 ms, against 21 ms for torch's eigh on one thread; and it needs
    no change of torch's process-wide thread count per call."""
    from scipy.linalg import eigh as scipy_eigh

    a = f64(a)
    evals, evecs = scipy_eigh(0.5 * (a + a.T), driver="evd", check_finite=False)
    return evals, evecs


def t64(x: np.ndarray) -> torch.Tensor:
    """A float64 torch tensor of ``x`` (shares memory when ``x`` already is contiguous float64)."""
    return torch.from_numpy(f64(x))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax in float64 (torch: one fused, threaded pass instead of SciPy's several)."""
    with torch.no_grad():
        return torch.log_softmax(t64(logits), 1).numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(t64(logits), 1).numpy()


def _native(logits: np.ndarray) -> torch.Tensor:
    """A torch view of float32/float64 logits (other dtypes become float64): no float64 copy of float32 logits."""
    x = np.ascontiguousarray(logits)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    return torch.from_numpy(x)


def max_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """max_c softmax(f/T)_c = 1 / (1 + Σ_{c≠argmax} exp(f_c/T − max f/T)) (see :mod:`core.kernels.softmax`)."""
    return row_softmax_score(logits, "msp", temperature)


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """E(x) = T·logsumexp(f/T).

    Float32 logits (every ModelOutputs) use a one-pass float32 kernel with a vectorised exponential
    (:func:`core.kernels.softmax.logsumexp_float32`, ~1e-7 relative error like torch's float32
    logsumexp, measured 1.6× faster): the energy is max f plus the log of the rest, so that error
    never ties two samples that differ (unlike p_max, which a float32 softmax rounds to 1). Float64
    logits (shaped or reconstructed logits inside other detectors) get the exact float64 kernel."""
    x = np.asarray(logits)
    out = logsumexp_float32(x, temperature) if x.dtype == np.float32 else row_softmax_score(x, "energy", temperature)
    return out if temperature == 1.0 else temperature * out


def neg_entropy(logits: np.ndarray) -> np.ndarray:
    """Σ_c p_c log p_c = r/(1 + s) − log1p(s) with r = Σ_c exp(d_c)·d_c, d = f − max f: two negative terms,
    so no cancellation, even for near-one-hot predictions."""
    return row_softmax_score(logits, "neg_entropy")


def generalized_entropy_score(logits: np.ndarray, gamma: float, top_m: int) -> np.ndarray:
    """−Σ_{top-M p} p^γ (1 − p)^γ, as −Σ (p(1 − p))^γ: one power per entry.

    With d = f − max f, e = exp(d) (the argmax entry set to 0) and s = Σe, every other class has
    p = e/(1 + s), and the top class contributes p(1 − p) = s/(1 + s)² (in float64, so a confident
    prediction keeps its tiny 1 − p instead of cancelling to 0). The top-M are the top class and the
    M − 1 largest others."""
    f = _native(logits)
    with torch.no_grad():
        m, idx = f.max(1)
        e = torch.exp(f - m[:, None])
        e.scatter_(1, idx[:, None], 0.0)
        s = e.sum(1)
        z = 1.0 + s
        p = e.div_(z[:, None])
        if top_m < p.shape[1]:
            p = p.topk(top_m - 1, dim=1, sorted=False).values if top_m > 1 else p[:, :0]
        rest = (p - p * p).pow_(gamma).sum(1, dtype=torch.float64)
        s64 = s.double()
        top = (s64 / (1.0 + s64) ** 2).pow_(gamma)
        return -(rest + top).numpy()


def l2_normalise(x: np.ndarray, dtype=np.float64) -> np.ndarray:
    """x / (‖x‖₂ + 1e-10) row-wise: the epsilon sits inside the norm, so rows keep unit length."""
    x = np.asarray(x, dtype=dtype)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + EPS_NORM)


def class_means(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means of the rows of ``x`` per class in ``y`` (rows with y < 0 are ignored).

    Returns ``(means [K, D], classes [K], counts [K])`` for the K classes that occur. Summed in
    float64 with one threaded scatter-add (torch ``index_add_``) rather than K masked passes.
    """
    valid = y >= 0
    all_valid = bool(valid.all())
    yv = (y if all_valid else y[valid]).astype(np.int64, copy=False)
    per_label = np.bincount(yv) if len(yv) else np.zeros(0, np.int64)  # O(N), no sort
    classes = np.flatnonzero(per_label)
    counts = per_label[classes]
    row_of = np.zeros(len(per_label), np.int64)
    row_of[classes] = np.arange(len(classes))
    inverse = row_of[yv]
    xv = x if all_valid else x[valid]
    with torch.no_grad():
        sums = torch.zeros((len(classes), x.shape[1]), dtype=torch.float64)
        sums.index_add_(0, torch.from_numpy(inverse.reshape(-1).astype(np.int64)), t64(xv))
    return sums.numpy() / counts[:, None], classes, counts


def within_class_covariance(x: np.ndarray, y: np.ndarray, means: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Tied covariance Σ = (1/n) Σ_i (x_i − μ_{y_i})(x_i − μ_{y_i})ᵀ over rows with a class (biased, as
    sklearn's EmpiricalCovariance), in float64 from row blocks (no N×D float64 copy)."""
    row_of_class = np.full(int(classes.max()) + 1, -1, np.int64)
    row_of_class[classes] = np.arange(len(classes))
    y = np.asarray(y)
    which = np.where(y >= 0, row_of_class[np.clip(y, 0, len(row_of_class) - 1)], -1)
    n_valid = int((which >= 0).sum())
    return centred_gram(x, means, which=which) / n_valid


def between_class_covariance(means: np.ndarray, counts: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Σ_c (n_c/n)(μ_c − μ̄)(μ_c − μ̄)ᵀ: the total covariance is the within-class plus this."""
    dev = f64(means) - center
    return (dev * (counts / counts.sum())[:, None]).T @ dev


def whitener(cov: np.ndarray, shrinkage: float = 0.0) -> np.ndarray:
    """W [D, k] with W Wᵀ = Σ⁺ (the pseudo-inverse, as sklearn's pinvh), so ‖(z−μ)W‖² is the squared
    Mahalanobis distance. ``shrinkage`` s blends Σ with (tr Σ / D)·I first: (1−s)Σ + s·tr(Σ)/D·I.
    Eigenvalues below D·eps·λ_max are treated as zero (their directions are dropped)."""
    cov = np.asarray(cov, np.float64)
    d = cov.shape[0]
    if shrinkage > 0:
        cov = (1.0 - shrinkage) * cov + shrinkage * (np.trace(cov) / d) * np.eye(d)
    evals, evecs = eigh(cov)
    top = max(float(evals.max()), 0.0)
    keep = evals > top * d * np.finfo(np.float64).eps
    if not keep.any():
        return np.zeros((d, 0))
    return evecs[:, keep] / np.sqrt(evals[keep])


def min_sq_distance(y: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """min_c ‖y − m_c‖² and its argmin, via ‖y‖² − 2y·m + ‖m‖² (N×K, never N×N). Callers centre the
    data first so the expansion loses nothing in float64."""
    with torch.no_grad():
        best, idx = min_sq_distance_t(t64(y), t64(centers))
    return np.maximum(best.numpy(), 0.0), idx.numpy()


def min_sq_distance_t(yt: torch.Tensor, ct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`min_sq_distance` on float64 tensors (no clamping at 0)."""
    with torch.no_grad():
        d = (yt * yt).sum(1, keepdim=True) - 2.0 * (yt @ ct.T) + (ct * ct).sum(1)[None, :]
        return d.min(1)
