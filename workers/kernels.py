"""Compiled (numba) kernels for the per-event path: co-occurrence scoring and merging, top-k.

An event touches a few hundred array entries in a dozen small steps; in numpy each step is a
call that costs more than its arithmetic (the profile of issue 14: about 40 calls, none above
8 % of an event). A kernel does one step's loop in one call. Each kernel keeps the numpy
code's arithmetic and summation order, so its outputs equal the numpy reference's (the tests
compare them); where numpy leaves a choice open (which of equal values ``argpartition`` keeps)
the kernel makes a fixed one.

``cache=True``: compiled code is written next to this file and reused by the next process, so a
worker pays about half a second to load it once, not the compile (seconds).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# -- co-occurrence rows in one arena ---------------------------------------------------------
# Row ``a`` is ``keys[start[a] : start[a] + length[a]]`` (neighbour ids, ascending) and the
# same slice of ``vals`` (counts); ``room[a]`` entries are reserved for it. A row that outgrows
# its room moves to the end of the arena (``used``) with twice the room, and the old place is
# dead until the owner compacts.


@njit(cache=True)
def cooc_score(hist, mult, start, length, keys, vals, total, shrink, acc, mark):  # noqa: PLR0913
    """Scores of a history: ``sum_pos mult[pos] * C[a][b] / (sqrt(T[a] T[b]) + shrink)``.

    ``hist``: the history's items with a row (most recent first), ``mult`` their weights.
    ``acc``/``mark``: zeroed scratch over all neighbour ids, left zeroed. Returns (items
    ascending, scores), summed in the order numpy's ``bincount`` sums them.
    """
    n_total = total.shape[0]
    n_out = 0
    cap = 0
    for p in range(hist.shape[0]):
        cap += length[hist[p]]
    out_keys = np.empty(cap, dtype=np.int64)
    for p in range(hist.shape[0]):
        a = hist[p]
        s0 = start[a]
        ta = total[a]
        m = mult[p]
        for j in range(s0, s0 + length[a]):
            b = keys[j]
            v = vals[j]
            tb = total[b] if b < n_total else v
            if tb < v:
                tb = v
            if mark[b] == 0:
                mark[b] = 1
                out_keys[n_out] = b
                n_out += 1
            acc[b] += v / (np.sqrt(ta * tb) + shrink) * m
    ks = np.sort(out_keys[:n_out])
    out_vals = np.empty(n_out, dtype=np.float64)
    for i in range(n_out):
        b = ks[i]
        out_vals[i] = acc[b]
        acc[b] = 0.0
        mark[b] = 0
    return ks, out_vals


@njit(cache=True)
def cooc_best(hist, decay, start, length, keys, vals, total, shrink, targets):  # noqa: PLR0913
    """For each target, the position in a history (``hist``: ``(item, ts, weight)`` rows, most
    recent first, ``CoOccurrence.window`` long at most) of the item that gave it the most of its
    ``cooc_score`` (-1: none did): why an item is "because you watched X" (issue 15).

    Each term is ``cooc_score``'s, with ``score_history_arrays``' weight ``decay**pos *
    min(w, 3)``: ``mult * C[a][b] / (sqrt(T[a] T[b]) + shrink)``. The terms of an item that is
    in the history twice are summed and it is named by its first (most recent) position; among
    equal contributions the most recent item wins. Only the targets are looked up (a binary
    search per history row), never whole rows.
    """
    n_total = total.shape[0]
    n_rows = length.shape[0]
    h = hist.shape[0]
    items = np.empty(h, dtype=np.int64)
    for p in range(h):
        items[p] = np.int64(hist[p, 0])
    n = targets.shape[0]
    contrib = np.zeros((n, h), dtype=np.float64)
    for p in range(h):
        a = items[p]
        if a >= n_rows or length[a] == 0:
            continue
        s0 = start[a]
        end = s0 + length[a]
        ta = total[a]
        m = decay**p * min(hist[p, 2], 3.0)
        for t in range(n):
            b = targets[t]
            lo = s0
            hi = end
            while lo < hi:
                mid = (lo + hi) // 2
                if keys[mid] < b:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < end and keys[lo] == b:
                v = vals[lo]
                tb = total[b] if b < n_total else v
                if tb < v:
                    tb = v
                contrib[t, p] = v / (np.sqrt(ta * tb) + shrink) * m
    out = np.full(n, -1, dtype=np.int64)
    for t in range(n):
        best = 0.0
        for p in range(h):
            first = True
            for q in range(p):
                if items[q] == items[p]:
                    first = False
                    break
            if not first:
                continue
            s = 0.0
            for q in range(p, h):
                if items[q] == items[p]:
                    s += contrib[t, q]
            if s > best:
                best = s
                out[t] = p
    return out


@njit(cache=True)
def _keep_top(k, v, n, topk):
    """Keep the ``topk`` largest counts of a row (in key order); ties go to the smaller key."""
    thr = np.partition(-v[:n], topk - 1)[topk - 1]
    above = 0
    for i in range(n):
        if -v[i] < thr:
            above += 1
    ties = topk - above
    c = 0
    for i in range(n):
        keep = -v[i] < thr
        if not keep and -v[i] == thr and ties > 0:
            keep = True
            ties -= 1
        if keep:
            k[c] = k[i]
            v[c] = v[i]
            c += 1
    return c


@njit(cache=True)
def cooc_merge(rows, bs, incs, order, total, start, length, room, keys, vals, used, topk):  # noqa: PLR0913
    """Add increments ``incs[q]`` to ``C[rows[q]][bs[q]]`` and to the row totals.

    ``order`` sorts the increments by (row, neighbour), stably. Per row, as ``CoOccurrence``'s
    numpy merge did: a (row, neighbour)'s increments are summed in their order; a matched
    entry gains the sum and leaves when it falls to about zero; an unmatched one joins when
    positive; past ``2 * topk`` entries the ``topk`` strongest stay. The arena must have room
    for every touched row to move (``2 * topk`` entries each). Returns (new ``used``, entries
    left dead, change in the number of non-empty rows).
    """
    n = rows.shape[0]
    for q in range(n):  # in the given order: the clamp at zero is per increment
        a = rows[q]
        t = total[a] + incs[q]
        total[a] = t if t > 0.0 else 0.0
    dead = 0
    d_rows = 0
    i = 0
    while i < n:
        a = rows[order[i]]
        e = i
        while e < n and rows[order[e]] == a:
            e += 1
        s0 = start[a]
        ln = length[a]
        cap = ln + (e - i)
        nk = np.empty(cap, dtype=np.int32)
        nv = np.empty(cap, dtype=np.float64)
        c = 0
        p = s0
        end = s0 + ln
        q = i
        while q < e:
            b = bs[order[q]]
            add = incs[order[q]]
            q += 1
            while q < e and bs[order[q]] == b:
                add += incs[order[q]]
                q += 1
            tol = 1e-12 * max(1.0, abs(add))
            while p < end and keys[p] < b:
                nk[c] = keys[p]
                nv[c] = vals[p]
                c += 1
                p += 1
            if p < end and keys[p] == b:
                v = vals[p] + add
                p += 1
                if v > tol:
                    nk[c] = b
                    nv[c] = v
                    c += 1
            elif add > tol:
                nk[c] = b
                nv[c] = add
                c += 1
        while p < end:
            nk[c] = keys[p]
            nv[c] = vals[p]
            c += 1
            p += 1
        if c > 2 * topk:
            c = _keep_top(nk, nv, c, topk)
        if c > room[a]:
            dead += room[a]
            r = min(max(4, 2 * c), 2 * topk)
            start[a] = used
            room[a] = r
            used += r
        s0 = start[a]
        for j in range(c):
            keys[s0 + j] = nk[j]
            vals[s0 + j] = nv[j]
        if ln == 0 and c > 0:
            d_rows += 1
        elif ln > 0 and c == 0:
            d_rows -= 1
        length[a] = c
        i = e
    return used, dead, d_rows


@njit(cache=True)
def cooc_compact(start, length, room, keys, vals, new_cap):
    """Copy the live rows into fresh arrays of ``new_cap`` entries, in row order."""
    nk = np.zeros(new_cap, dtype=np.int32)
    nv = np.zeros(new_cap, dtype=np.float64)
    used = 0
    for a in range(start.shape[0]):
        r = room[a]
        if r == 0:
            continue
        if length[a] == 0:
            room[a] = 0
            start[a] = 0
            continue
        s0 = start[a]
        for j in range(length[a]):
            nk[used + j] = keys[s0 + j]
            nv[used + j] = vals[s0 + j]
        start[a] = used
        used += r
    return nk, nv, used


# -- top-k selection -------------------------------------------------------------------------


@njit(cache=True)
def top_finite(scores, n):
    """Positions of the ``n`` largest finite scores (fewer when fewer are finite), unordered.

    ``np.argpartition`` followed by dropping the non-finite picks, with an ``n``-slot heap;
    among equal scores the earlier position wins. As with numpy, NaN and +inf rank above every
    number, so each takes (and wastes) a slot.
    """
    m = scores.shape[0]
    if n > m:
        n = m
    for i in range(m):
        s = scores[i]
        if not np.isfinite(s) and not s < 0:
            n -= 1
    if n < 0:
        n = 0
    hv = np.empty(max(n, 1), dtype=scores.dtype)
    hi = np.empty(max(n, 1), dtype=np.int64)
    size = 0
    for i in range(m):
        s = scores[i]
        if not np.isfinite(s):
            continue
        if size < n:
            # sift up into a min-heap ordered by (score, -position)
            j = size
            size += 1
            while j > 0:
                par = (j - 1) // 2
                if hv[par] < s or (hv[par] == s and hi[par] > i):
                    break
                hv[j] = hv[par]
                hi[j] = hi[par]
                j = par
            hv[j] = s
            hi[j] = i
        elif n > 0 and s > hv[0]:
            j = 0
            while True:
                lc = 2 * j + 1
                if lc >= size:
                    break
                rc = lc + 1
                c = lc
                if rc < size and (hv[rc] < hv[lc] or (hv[rc] == hv[lc] and hi[rc] > hi[lc])):
                    c = rc
                if hv[c] > s or (hv[c] == s and hi[c] < i):
                    break
                hv[j] = hv[c]
                hi[j] = hi[c]
                j = c
            hv[j] = s
            hi[j] = i
    return hi[:size].copy()


# -- ranking features ------------------------------------------------------------------------


@njit(cache=True, fastmath={"reassoc", "contract", "nsz"})
def features(  # noqa: PLR0913
    items, keys, vals, profile, vectors, published_at, mf, popular, seq, now, half_life, fresh_s
):
    """``workers.ranker.featurise``'s matrix in one pass over the candidates (see there).

    ``profile`` or ``seq`` of length 0: none (their columns stay 0).
    """
    n = items.shape[0]
    nk = keys.shape[0]
    out = np.zeros((n, 8), dtype=np.float32)
    has_profile = profile.shape[0] > 0
    has_seq = seq.shape[0] > 0
    for i in range(n):
        it = items[i]
        if nk > 0:
            p = np.searchsorted(keys, it)
            if p >= nk:
                p = nk - 1
            if keys[p] == it:
                out[i, 0] = vals[p]
        c = np.float32(0.0)
        if has_profile:  # reassociated (vectorised): equal to BLAS up to rounding
            for j in range(profile.shape[0]):
                c += vectors[it, j] * profile[j]
            out[i, 1] = c
        out[i, 2] = np.tanh(mf[i])
        out[i, 3] = popular[i]
        age = now - published_at[it]
        if age < 0.0:
            age = 0.0
        out[i, 4] = np.exp2(-age / half_life)
        if c < 0:
            c = np.float32(0.0)
        if age < fresh_s:
            out[i, 5] = c
        out[i, 6] = popular[i] * c
        if has_seq:
            out[i, 7] = seq[i]
    return out


@njit(cache=True)
def profile_of(rows, weights, vectors):
    """``weights @ vectors[rows]``, L2-normalised (float32; None-like empty when zero)."""
    d = vectors.shape[1]
    prof = np.zeros(d, dtype=np.float32)
    for p in range(rows.shape[0]):
        w = weights[p]
        if w == 0:
            continue
        r = rows[p]
        for j in range(d):
            prof[j] += w * vectors[r, j]
    norm = 0.0
    for j in range(d):
        norm += float(prof[j]) * float(prof[j])
    norm = np.sqrt(norm)
    if norm > 0:
        return prof / np.float32(norm)
    return prof[:0]


@njit(cache=True, fastmath={"reassoc", "contract", "nsz"})
def nearest_rows(targets, rows, vectors):
    """For each target, the position in ``rows`` of the row of ``vectors`` with the largest dot
    product with the target's (cosine: the catalogue's rows are unit vectors); the first of
    equal ones. Why an item is "because you watched X" by content (issue 15).
    """
    n = targets.shape[0]
    out = np.zeros(n, dtype=np.int64)
    d = vectors.shape[1]
    for t in range(n):
        a = targets[t]
        best = -np.inf
        for p in range(rows.shape[0]):
            b = rows[p]
            acc = np.float32(0.0)
            for j in range(d):
                acc += vectors[a, j] * vectors[b, j]
            if acc > best:
                best = acc
                out[t] = p
    return out


@njit(cache=True)
def reason_sources(  # noqa: PLR0913
    sources, fresh, w_cooc, w_content, targets, hist, profile_len, has_content, vectors,
    decay, start, length, keys, vals, total, shrink, window,
):  # fmt: skip
    """What each published item's reason is made of (the rule is ``schemas.messages.Reason``'s),
    in one call for the list: per item how (0: watched by co-occurrence, 1: watched by
    content, 2: new in a topic, 3: trending) and the catalogue index of the history item it
    names (-1 for trending).

    ``sources``: the published scores (cooc, content, ...); ``fresh``: cold items (that may
    take a fresh slot); ``hist``: the user's ``(item, ts, weight)`` rows, most recent first;
    then ``cooc_best``'s arguments after ``hist`` and the window (``CoOccurrence.kernel_args``). The
    co-occurrence source names ``cooc_best``'s item, the content one ``nearest_rows``' among
    the first ``profile_len`` history items with a vector (those the content profile is of).
    """
    n = targets.shape[0]
    how = np.full(n, 3, dtype=np.int64)
    best = np.full(n, -1, dtype=np.int64)
    n_cooc = 0
    n_content = 0
    for i in range(n):
        c, t = sources[i, 0], sources[i, 1]
        if t > 0 and fresh[i] and c <= 0:
            how[i] = 2
        elif c > 0 and (t <= 0 or w_cooc * c >= w_content * t):
            how[i] = 0
        elif t > 0:
            how[i] = 1
        if how[i] == 0:
            n_cooc += 1
        elif how[i] < 3:
            n_content += 1
    if n_cooc:
        sub = np.empty(n_cooc, dtype=np.int64)
        j = 0
        for i in range(n):
            if how[i] == 0:
                sub[j] = targets[i]
                j += 1
        pos = cooc_best(hist[: min(window, hist.shape[0])], decay, start, length, keys, vals,
                        total, shrink, sub)  # fmt: skip
        j = 0
        for i in range(n):
            if how[i] == 0:
                if pos[j] >= 0:
                    best[i] = np.int64(hist[pos[j], 0])
                j += 1
    if n_content:
        m = min(profile_len, hist.shape[0])
        rows = np.empty(m, dtype=np.int64)
        n_rows = 0
        for p in range(m):
            a = np.int64(hist[p, 0])
            if a < has_content.shape[0] and has_content[a]:
                rows[n_rows] = a
                n_rows += 1
        if n_rows:
            sub = np.empty(n_content, dtype=np.int64)
            j = 0
            for i in range(n):
                if how[i] == 1 or how[i] == 2:
                    sub[j] = targets[i]
                    j += 1
            near = nearest_rows(sub, rows[:n_rows], vectors)
            j = 0
            for i in range(n):
                if how[i] == 1 or how[i] == 2:
                    best[i] = rows[near[j]]
                    j += 1
    for i in range(n):
        if best[i] < 0:
            how[i] = 3
    return how, best


@njit(cache=True)
def fused_order(scores, content, fresh, k, slots, window, min_content):  # noqa: PLR0913
    """Positions of ``workers.ranker.fuse_and_rank``'s list, best first (see there).

    ``slots``: places of the first ``window`` kept for fresh candidates (0: none).
    """
    order = np.argsort(-scores, kind="mergesort")
    kk = min(k, order.shape[0])
    top = order[:kk].copy()
    if slots <= 0:
        return top
    w = min(window, kk)
    have = 0
    for i in range(w):
        if fresh[top[i]]:
            have += 1
    if have >= slots:
        return top
    need = slots - have
    extra = np.empty(need, dtype=np.int64)
    ne = 0
    by_content = np.argsort(-content, kind="mergesort")
    for j in by_content:
        if ne == need:
            break
        if not fresh[j] or not content[j] >= min_content:
            continue
        in_head = False
        for i in range(w):
            if top[i] == j:
                in_head = True
                break
        if not in_head:
            extra[ne] = j
            ne += 1
    if ne == 0:
        return top
    rest = np.empty(kk, dtype=np.int64)
    nr = 0
    for t in top:
        taken = False
        for q in range(ne):
            if extra[q] == t:
                taken = True
                break
        if not taken:
            rest[nr] = t
            nr += 1
    n_head = window - ne  # Python's ``rest[: w - ne]``, a negative end included
    n_head = min(n_head, nr) if n_head >= 0 else max(nr + n_head, 0)
    out = np.empty(min(nr + ne, k), dtype=np.int64)
    c = 0
    for i in range(n_head):
        out[c] = rest[i]
        c += 1
    for i in range(ne):
        if c < out.shape[0]:
            out[c] = extra[i]
            c += 1
    for i in range(n_head, nr):
        if c < out.shape[0]:
            out[c] = rest[i]
            c += 1
    return out


@njit(cache=True, fastmath=True)
def factor_scores(items, factors, bias, u):
    """``factors[items] @ u + bias[items]`` (0 for items past the matrix), float32."""
    n = items.shape[0]
    out = np.zeros(n, dtype=np.float32)
    for i in range(n):
        it = items[i]
        if it < factors.shape[0]:
            acc = np.float32(0.0)
            for j in range(u.shape[0]):
                acc += factors[it, j] * u[j]
            out[i] = acc + bias[it]
    return out


@njit(cache=True)
def log_popularity(items, counts, top, ref):
    """``log1p(max(counts[items], 0) / ref) / log1p(top / ref)`` (0 past ``counts``)."""
    n = items.shape[0]
    out = np.zeros(n, dtype=np.float32)
    den = np.log1p(top / ref)
    for i in range(n):
        it = items[i]
        if it < counts.shape[0]:
            c = counts[it]
            out[i] = np.log1p((c if c > 0.0 else 0.0) / ref) / den
    return out


_warm = False


@njit(cache=True)
def meta_features(  # noqa: PLR0913
    creator, language, log_dur, fmt, c_keys, c_vals, c_den, l_keys, l_vals, l_den, fmt_share,
    dur_mean, dur_var,
):  # fmt: skip
    """``workers.metadata.UserMeta.features`` in one pass over the candidates (see there).

    ``c_keys``/``c_vals``: the user's creators and weights (a few: a linear scan), ``c_den`` the
    shares' denominator, the same for languages; ``fmt_share`` the share per format code;
    ``dur_var`` <= 0: no lengths known.
    """
    n = creator.shape[0]
    out = np.zeros((n, 4), dtype=np.float32)
    for i in range(n):
        c = creator[i]
        if c > 0:
            for j in range(c_keys.shape[0]):
                if c_keys[j] == c:
                    out[i, 0] = c_vals[j] / c_den
                    break
        g = language[i]
        if g > 0 and l_den > 0:
            for j in range(l_keys.shape[0]):
                if l_keys[j] == g:
                    out[i, 1] = l_vals[j] / l_den
                    break
        x = log_dur[i]
        if dur_var > 0 and not np.isnan(x):
            d = x - dur_mean
            out[i, 2] = np.exp(-(d * d) / (2.0 * dur_var))
        out[i, 3] = fmt_share[fmt[i]]
    return out


@njit(cache=True, fastmath=True)
def row_dots(rows, q, inv, unit):
    """Cosines of int16 visual rows (``q[r] * inv[r]`` is unit) with a unit vector (issue 16)."""
    out = np.empty(rows.shape[0], dtype=np.float32)
    for i in range(rows.shape[0]):
        r = rows[i]
        acc = np.float32(0.0)
        for j in range(q.shape[1]):
            acc += q[r, j] * unit[j]
        out[i] = acc * inv[r]
    return out


@njit(cache=True, fastmath=True)
def weighted_rows(rows, weights, q, inv):
    """``weights @ (q[rows] * inv[rows])``: a visual profile from int16 rows (issue 16)."""
    out = np.zeros(q.shape[1], dtype=np.float32)
    for i in range(rows.shape[0]):
        r = rows[i]
        w = np.float32(weights[i]) * inv[r]
        for j in range(q.shape[1]):
            out[j] += w * q[r, j]
    return out


def warm() -> None:
    """Load every kernel now (from the cache: about half a second, once per process).

    Called when a model is built, so that a worker pays at start rather than on its first
    ranked event (a bench's first timed event, a user's first list). The argument types are
    the ones the models pass: another type would load (or compile) another version.
    """
    global _warm
    if _warm:
        return
    _warm = True
    i64, i32, f64, f32 = np.int64, np.int32, np.float64, np.float32
    rows = np.zeros(1, dtype=i64)
    start, length, room = np.zeros(1, i64), np.zeros(1, i32), np.zeros(1, i32)
    keys, vals, total = np.zeros(8, i32), np.zeros(8, f64), np.zeros(1, f64)
    cooc_merge(rows, rows, np.ones(1, f64), rows, total, start, length, room, keys, vals, 0, 2)
    cooc_score(rows, np.ones(1, f64), start, length, keys, vals, total, 1.0,
               np.zeros(1, f64), np.zeros(1, np.uint8))  # fmt: skip
    cooc_best(np.ones((1, 3), f64), 0.8, start, length, keys, vals, total, 1.0, rows)
    cooc_compact(start, length, room, keys, vals, 8)
    top_finite(np.zeros(1, f32), 1)
    vectors, v32 = np.zeros((1, 4), f32), np.zeros(1, f32)
    features(rows, rows, vals[:1], v32[:0], vectors, total, v32, v32, v32, 0.0, 1.0, 1.0)
    profile_of(rows, np.ones(1, f32), vectors)
    fused_order(v32, v32, np.zeros(1, np.bool_), 1, 1, 1, 0.0)
    nearest_rows(rows, rows, vectors)
    no = np.zeros(1, np.bool_)
    reason_sources(np.zeros((1, 4), f64), no, 1.0, 1.0, rows, np.ones((1, 3), f64), 20, no,
                   vectors, 0.8, start, length, keys, vals, total, 1.0, 10)  # fmt: skip
    factor_scores(rows, vectors, v32, np.zeros(4, f32))
    log_popularity(rows, total, 1.0, 1.0)
    i8 = np.zeros(1, np.int8)
    meta_features(length, length, v32, i8, rows, vals[:1], 1.0, rows, vals[:1], 1.0,
                  np.zeros(7, f64), 0.0, 1.0)  # fmt: skip
