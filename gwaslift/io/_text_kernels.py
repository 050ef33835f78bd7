"""numba kernels that read a phenotype/covariate table's body in one pass over its bytes:
field boundaries, and every value field as a correctly rounded float64
(:func:`gwaslift.io.pheno._read_numba`; where numba cannot load, pandas' parser is used).

Why: pandas' C parser gives Python's doubles only with ``float_precision="round_trip"``,
which calls Python's parser token by token: 2.0-2.5 s for a biobank phenotype file of
500,000 rows x 10 columns, against plink2's ~0.3 s for the same file. Its faster default
converter is not correctly rounded (an ulp off for some 17-digit tokens).

Numbers: a token ``[+-] digits [. digits] [(e|E) [+-] digits]`` (at least one mantissa
digit) is read to its decimal significand (up to 19 significant digits, exact in a
uint64) and exponent, then converted

* exactly by Clinger's fast path when the significand is below 2^53 and the power of ten
  at most 10^22 (both exact doubles: one correctly rounded product or quotient);
* else by the Eisel-Lemire algorithm (D. Lemire, "Number parsing at a gigabyte per
  second", Software: Practice and Experience 51(8), 2021), which multiplies the significand
  by a 128-bit truncation of the power of ten and proves the rounding from the product,
  or gives up (a product too close to a halfway point, a subnormal or infinite result);
* a significand of more than 19 digits is truncated to 19; its value is accepted when the
  truncation and the truncation + 1 round to the same double.

Whatever is not accepted is marked for Python's ``float`` (:data:`FALLBACK`), so every
value equals ``float(token)`` bit for bit; tests compare millions of tokens.
"""

import math

import numba as nb
import numpy as np

#: status of a value field
NUMBER = 0      # parsed here (correctly rounded)
MISSING = 1     # empty, NA or nan in any letter case (the PLINK missing spellings that are not numbers)
FALLBACK = 2    # valid decimal syntax that the fast paths cannot round with certainty: Python's float()
OTHER = 3       # anything else (text, inf, 1_000, ...): the caller applies Python's rules to the token

#: the Eisel-Lemire table's range of decimal exponents
_POW_MIN, _POW_MAX = -348, 347


def _pow10_table():
    """(hi, lo) uint64 arrays: 10^q truncated to 128 bits with the top bit set, q in
    [_POW_MIN, _POW_MAX] (exact integer arithmetic)."""
    hi = np.empty(_POW_MAX - _POW_MIN + 1, np.uint64)
    lo = np.empty_like(hi)
    for k, q in enumerate(range(_POW_MIN, _POW_MAX + 1)):
        if q >= 0:
            v = 10 ** q
            n = v.bit_length()
            v = v << (128 - n) if n <= 128 else v >> (n - 128)
        else:
            d = 10 ** (-q)
            v = (1 << (128 + d.bit_length())) // d
            n = v.bit_length()
            if n > 128:
                v >>= n - 128
        hi[k] = v >> 64
        lo[k] = v & 0xFFFFFFFFFFFFFFFF
    return hi, lo


POW10_HI, POW10_LO = _pow10_table()
_EXACT_POW10 = np.array([10.0 ** k for k in range(23)])  # 1e0 .. 1e22: exact doubles

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U9 = np.uint64(9)
_U32 = np.uint64(32)
_U53 = np.uint64(53)
_U63 = np.uint64(63)
_LOW32 = np.uint64(0xFFFFFFFF)
_LOW9 = np.uint64(0x1FF)
_TOP = np.uint64(0x8000000000000000)
_TWO53 = np.uint64(1 << 53)
_U3 = np.uint64(3)


@nb.njit(inline="always")
def _mul_hi_lo(a, b):
    """The 128-bit product of two uint64 as (high, low) words."""
    a0, a1 = a & _LOW32, a >> _U32
    b0, b1 = b & _LOW32, b >> _U32
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> _U32) + (p01 & _LOW32) + (p10 & _LOW32)
    hi = p11 + (p01 >> _U32) + (p10 >> _U32) + (mid >> _U32)
    return hi, a * b


@nb.njit(inline="always")
def _eisel_lemire(man, exp10, pow_hi, pow_lo):
    """``man`` (uint64, > 0) x 10^exp10 as (ok, |value|): ok False where the rounding is not
    certain from 128 bits of the power, or the result is subnormal or infinite."""
    if exp10 < _POW_MIN or exp10 > _POW_MAX:
        return False, 0.0
    clz = 0
    while (man & _TOP) == _U0:
        man = man << _U1
        clz += 1
    exp2 = ((217706 * exp10) >> 16) + 64 + 1023 - clz  # floor(exp10 * log2(10)) over the table
    k = exp10 - _POW_MIN
    x_hi, x_lo = _mul_hi_lo(man, pow_hi[k])
    if (x_hi & _LOW9) == _LOW9 and x_lo + man < man:
        # within 2^-9 of a rounding boundary: add the product with the power's low word
        y_hi, y_lo = _mul_hi_lo(man, pow_lo[k])
        m_hi, m_lo = x_hi, x_lo + y_hi
        if m_lo < x_lo:
            m_hi += _U1
        if (m_hi & _LOW9) == _LOW9 and m_lo + _U1 == _U0 and y_lo + man < man:
            return False, 0.0
        x_hi, x_lo = m_hi, m_lo
    msb = x_hi >> _U63
    mant = x_hi >> (msb + _U9)
    exp2 -= 1 - np.int64(msb)
    if x_lo == _U0 and (x_hi & _LOW9) == _U0 and (mant & _U3) == _U1:
        return False, 0.0  # exactly halfway on the truncated product: undecided
    mant += mant & _U1
    mant = mant >> _U1
    if (mant >> _U53) > _U0:
        mant = mant >> _U1
        exp2 += 1
    if exp2 <= 0 or exp2 >= 0x7FF:
        return False, 0.0  # subnormal or infinite
    # mant (53 bits, leading bit included) x 2^(exp2 - 1075): exact in a double
    return True, math.ldexp(float(mant), exp2 - 1075)


@nb.njit(inline="always")
def _lower(c):
    return c | 0x20 if 65 <= c <= 90 else c


@nb.njit(inline="always")
def parse_number(buf, s, e, pow_hi, pow_lo):
    """The field ``buf[s:e]`` (uint8, no separators) as (status, value): NUMBER with the
    correctly rounded double, MISSING (value NaN), FALLBACK or OTHER (value 0)."""
    n = e - s
    if n == 0:
        return MISSING, np.nan
    if n == 2 and _lower(buf[s]) == 110 and _lower(buf[s + 1]) == 97:  # na
        return MISSING, np.nan
    if n == 3 and _lower(buf[s]) == 110 and _lower(buf[s + 1]) == 97 and _lower(buf[s + 2]) == 110:  # nan
        return MISSING, np.nan
    i = s
    neg = False
    if buf[i] == 43 or buf[i] == 45:  # + -
        neg = buf[i] == 45
        i += 1
    man = _U0
    nd = 0          # significant digits in man
    exp10 = 0
    trunc = False   # a nonzero digit beyond the 19th was dropped
    digits = 0
    point = False   # past the decimal point
    while i < e:
        c = buf[i]
        if c == 46 and not point:  # .
            point = True
            i += 1
            continue
        if c < 48 or c > 57:
            break
        d = np.uint64(c - 48)
        digits += 1
        if nd < 19:
            if man != _U0 or d != _U0:  # leading zeros are not significant
                man = man * np.uint64(10) + d
                nd += 1
            if point:
                exp10 -= 1
        else:  # beyond 19 significant digits: dropped, the exponent kept right
            if not point:
                exp10 += 1
            if d != _U0:
                trunc = True
        i += 1
    if digits == 0:
        return OTHER, 0.0
    if i < e and (buf[i] == 101 or buf[i] == 69):  # e E
        i += 1
        eneg = False
        if i < e and (buf[i] == 43 or buf[i] == 45):
            eneg = buf[i] == 45
            i += 1
        if i == e:
            return OTHER, 0.0
        x = 0
        while i < e and 48 <= buf[i] <= 57:
            if x < 100000:  # beyond any double's range either way
                x = x * 10 + (buf[i] - 48)
            i += 1
        exp10 += -x if eneg else x
    if i != e:
        return OTHER, 0.0
    if man == _U0:
        return NUMBER, -0.0 if neg else 0.0
    if not trunc and man <= _TWO53 and -22 <= exp10 <= 22:
        v = float(man)
        v = v * _EXACT_POW10[exp10] if exp10 >= 0 else v / _EXACT_POW10[-exp10]
        return NUMBER, -v if neg else v
    ok, v = _eisel_lemire(man, exp10, pow_hi, pow_lo)
    if ok and trunc:
        ok2, v2 = _eisel_lemire(man + _U1, exp10, pow_hi, pow_lo)
        ok = ok2 and v2 == v
    if not ok:
        return FALLBACK, 0.0
    return NUMBER, -v if neg else v


@nb.njit(nogil=True, cache=True)
def parse_tokens(buf, starts, ends, pow_hi, pow_lo, values, status):
    """:func:`parse_number` of the fields ``buf[starts[k]:ends[k]]`` into ``values[k]``,
    ``status[k]`` (a test entry point: the table reader inlines the same function)."""
    for k in range(len(starts)):
        st, v = parse_number(buf, starts[k], ends[k], pow_hi, pow_lo)
        status[k] = st
        values[k] = v


@nb.njit(inline="always")
def _odd_space(c):
    """Whitespace that Python's str.split() separates on besides space, tab and newline
    (ASCII: VT, FF, CR, FS, GS, RS, US): the caller's line-by-line path handles those."""
    return c == 11 or c == 12 or c == 13 or 28 <= c <= 31


@nb.njit(inline="always")
def _field_end(buf, i, n, tabs):
    """Where the field starting at ``i`` ends: the next newline, tab or (``tabs`` False)
    space, or the end; -1 at a byte that needs Python's whitespace rules."""
    while i < n and buf[i] != 10 and buf[i] != 9 and (tabs or buf[i] != 32):
        if _odd_space(buf[i]):
            return -1
        i += 1
    return i


@nb.njit(nogil=True, cache=True)
def scan_table(buf, n_rows, width, n_skip, tabs, pow_hi, pow_lo, line_start, values, status):
    """Read the body of a table: ``n_rows`` lines (``\\n``-separated, no trailing newline)
    of ``width`` fields, the first ``n_skip`` of them IDs.

    ``tabs``: fields are separated by single tabs (an empty field is a value); else by
    runs of spaces and tabs, ignored at the ends of a line. Fills ``line_start``
    (n_rows + 1,) int64 (byte offset of each line; the last entry is ``len(buf) + 1``),
    ``values`` (n_rows, width - n_skip) float64 and ``status`` (same shape) uint8.

    Returns 0, or -1 where a line does not have ``width`` fields, a line is blank (spaces
    and tabs only) or a ``##`` comment, a line is missing or extra, or a byte needs
    Python's whitespace rules: nothing is then to be trusted.
    """
    n = len(buf)
    i = 0
    for r in range(n_rows):
        if i > n:
            return -1
        line_start[r] = i
        j = i
        while j < n and (buf[j] == 32 or buf[j] == 9):
            j += 1
        if j >= n or buf[j] == 10 or (buf[j] == 35 and j + 1 < n and buf[j + 1] == 35):
            return -1  # a blank or ## line: the line-by-line path skips it
        f = 0
        while True:
            if not tabs:  # runs of spaces and tabs separate; none at the ends of a line
                while i < n and (buf[i] == 32 or buf[i] == 9):
                    i += 1
                if i >= n or buf[i] == 10:
                    break
            s = i
            i = _field_end(buf, i, n, tabs)
            if i < 0 or f >= width:
                return -1
            if f >= n_skip:
                st, v = parse_number(buf, s, i, pow_hi, pow_lo)
                status[r, f - n_skip] = st
                values[r, f - n_skip] = v
            f += 1
            if tabs:  # single tabs separate: a tab, then the next (maybe empty) field
                if i < n and buf[i] == 9:
                    i += 1
                    continue
                break
        if f != width:
            return -1
        i += 1  # past the newline
    if i <= n:
        return -1  # more lines than expected
    line_start[n_rows] = n + 1
    return 0


@nb.njit(nogil=True, cache=True)
def field_bounds(buf, line_start, field, tabs, starts, ends):
    """Byte range ``[starts[r], ends[r])`` of field ``field`` on every line (after
    :func:`scan_table` accepted the body, so every line has the field)."""
    for r in range(len(line_start) - 1):
        i = line_start[r]
        stop = line_start[r + 1] - 1
        if tabs:
            for _ in range(field):
                while buf[i] != 9:
                    i += 1
                i += 1
            s = i
            while i < stop and buf[i] != 9:
                i += 1
        else:
            f = -1
            s = i
            while f < field:
                while buf[i] == 32 or buf[i] == 9:
                    i += 1
                s = i
                while i < stop and buf[i] != 32 and buf[i] != 9:
                    i += 1
                f += 1
        starts[r] = s
        ends[r] = i


@nb.njit(nogil=True, cache=True)
def pad_fields(buf, starts, ends, width, out):
    """``out[r, :]`` = field r's bytes, zero-padded to ``width`` (a numpy bytes array's
    layout: ``out.view(f"S{width}")``)."""
    for r in range(len(starts)):
        k = 0
        for i in range(starts[r], ends[r]):
            out[r, k] = buf[i]
            k += 1
        for j in range(k, width):
            out[r, j] = 0
