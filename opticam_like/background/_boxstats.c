/*
 * _boxstats: sigma-clipped SExtractor statistics of every box of an image.
 *
 * For each box of a grid laid over the image this computes what photutils'
 * Background2D computes with its default estimators: the valid (unmasked,
 * finite) pixels are sigma clipped as astropy's SigmaClip does (centre =
 * median, scale = population standard deviation, bounds median -/+ sigma
 * std, at most maxiters iterations, stop when no pixel is removed; the
 * bounds of the last iteration are then applied to all valid pixels, or, for
 * the corner box that photutils clips with axis=None, the clipped set is the
 * one left by the iterations), and the clipped set gives
 *   background = 2.5 median - 1.5 mean  (the median when
 *                |mean - median| / std >= 0.3, the mean when std = 0),
 *   rms        = std,   n_good = number of pixels.
 *
 * Method. Every clipped set is the set of valid values inside an interval,
 * so an iteration only needs the count, sum and sum of squares of the values
 * inside the interval and the values at its two middle ranks. Per box:
 *
 *   1. a regular sub-sample (at most 8 x 8 pixels) gives a pivot p (its
 *      median, a data value) and a rough sigma s (the robust sigma of the
 *      previous box, else the sub-sample's). They define 512 bins of
 *      d = v - p over -/+ 4 s, plus one bin below and one above;
 *   2. one pass over the pixels histograms the bins, sums d and d**2 over
 *      the valid pixels (float64, d clamped to -/+ 4 s) and keeps the
 *      *candidates*: the pixels farther than 1.8 s from p, and those in a
 *      window where the median is expected (-/+ 0.45 s around p for every
 *      fourth row, which is done first, then -/+ 0.2 s around their median);
 *   3. from the histogram: a *core* of bins, median -/+ 2.5 robust sigmas
 *      (from the 16th, 50th and 84th percentiles, on the narrower side),
 *      that no clipping interval is expected to cut, and the *band* of bins
 *      holding every rank the median can take once any of the values outside
 *      the core (the *tails*) are clipped (it moves by at most half their
 *      number). The candidates give the tails and the band values grouped by
 *      bin (when they do not include all of them, a second pass over the
 *      pixels does); the core sums are the clamped sums less the tails';
 *   4. the iterations run on these: core sums plus a scan of the tails for
 *      the count and sums, the band for the median (a bin of the band is
 *      sorted when a median first falls in it).
 *
 * If an interval cuts into the core, the core is narrowed and steps 3-4 are
 * repeated; after a few failures, or when the sub-sample is unusable, every
 * valid value is a tail and the band (the same computation without a core).
 * The result is always the direct computation's, up to the summation order
 * of the float64 sums; only the cost depends on the data (and the guesses
 * of step 1 only affect the cost). On x86-64 the first pass does four pixels
 * at a time with SSE2 where it can (same arithmetic, lane by lane).
 *
 * Non-finite values are recognised by their exponent bits, and no NaN or
 * infinity is computed or compared, so the kernel stays correct when built
 * with -ffast-math (which lets the compiler assume that no value is NaN or
 * infinite and fold tests such as isfinite(v) or v - v == 0 to true).
 *
 * References: Bertin & Arnouts 1996, A&AS 117, 393 (SExtractor background);
 * photutils Background2D, SExtractorBackground, StdBackgroundRMS; astropy
 * SigmaClip.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Regular bins 1..NBINS over pivot -/+ HIST_HALF_WIDTH rough sigmas; bin 0
 * holds the values below, bin NBINS + 1 those above. */
#define NBINS 512
#define NKINDS (NBINS + 2)
#define HIST_HALF_WIDTH 4.0
/* Half width of the core in robust sigmas (from the histogram). */
#define CORE_HALF_WIDTH 2.5
/* Pass 1 keeps the pixels outside pivot -/+ KEPT_HALF_WIDTH rough sigmas and
 * those in the window where the median is expected: pivot -/+
 * WINDOW_HALF_WIDTH rough sigmas for the first rows (every FIRST_ROWS_STEP-th
 * row), then -/+ NARROW_WINDOW_HALF_WIDTH around their median. */
#define KEPT_HALF_WIDTH 1.8
#define WINDOW_HALF_WIDTH 0.45
#define NARROW_WINDOW_HALF_WIDTH 0.2
#define FIRST_ROWS_STEP 4
/* At most SUBSAMPLE_SIDE x SUBSAMPLE_SIDE sub-sampled pixels per box. */
#define SUBSAMPLE_SIDE 8
/* Fewer valid sub-sampled pixels than this: no core. */
#define MIN_SUBSAMPLE 16
/* A rough sigma below this (float64 data whose spread underflows) would make
 * the bin width subnormal and its inverse overflow: no core. */
#define MIN_SPREAD (NBINS / (2.0 * HIST_HALF_WIDTH) * DBL_MIN)
/* Narrowings of the core before doing without one. */
#define MAX_RETRIES 3
/* A narrowed core stays this fraction of the interval half width inside it. */
#define RETRY_MARGIN 0.15
/* Bin kinds in a split. */
#define TAIL 1
#define BAND 2

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif
#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict
#endif

enum { OK = 0, CORE_CUT = 1, BAND_MISSED = 2 };

typedef struct {
    const char *data;           /* pixel (0, 0) */
    Py_ssize_t stride;          /* bytes between rows */
    int is_double;              /* float64, else float32 */
    const unsigned char *mask;  /* NULL or the invalid mask, pixel (0, 0) */
    Py_ssize_t mask_stride;
} Image;

typedef struct {
    Py_ssize_t y0, y1, x0, x1;  /* pixels [y0, y1) x [x0, x1) */
} Box;

/* Bins of d = v - pivot: bin k >= 1 holds [origin + k / inv_width,
 * origin + (k + 1) / inv_width). */
typedef struct {
    double origin;
    double inv_width;
    double radius;              /* sums clamp d to [-radius, radius] */
} Frame;

typedef struct {
    double *cand;               /* candidates (pass 1), one spare slot */
    uint16_t *cand_bin;         /* their bins */
    double *tails, *band;
    double sub[SUBSAMPLE_SIDE * SUBSAMPLE_SIDE];
    Py_ssize_t hist[NKINDS];
    unsigned char is_cand[NKINDS];  /* bins kept as candidates by pass 1 */
    int window_lo, window_hi;       /* the median window's bins in is_cand */
    double spread_hint;             /* robust sigma of the previous box, or 0 */
    unsigned char kind[NKINDS];     /* TAIL | BAND of each bin in a split */
    Py_ssize_t slot[NKINDS];        /* next band position of each band bin */
    Py_ssize_t bucket_end[NKINDS];
    unsigned char bucket_sorted[NKINDS];
} Scratch;

/* The valid values of a box as core sums, tails and band (relative values). */
typedef struct {
    Py_ssize_t core_n;
    double core_s1, core_s2;
    double core_lo, core_hi;    /* every core value lies in [core_lo, core_hi] */
    double *tails;              /* every valid value outside the core */
    Py_ssize_t n_tails;
    double *band;               /* in rank order once the buckets are sorted: */
    Py_ssize_t n_band;          /* band[k] has rank band_rank + k among the */
    Py_ssize_t band_rank;       /* valid values */
    int n_buckets;              /* band[bucket_end[i-1]:bucket_end[i]] = bin i */
    const Py_ssize_t *bucket_end;
    unsigned char *bucket_sorted;
} Split;

typedef struct {
    Py_ssize_t n;
    double mean, std, median;
} SetStats;

/* ------------------------------------------------------------------------ */
/* IEEE 754 bits (the tests hold under -ffast-math)                          */

#define EXPONENT_BITS 0x7ff0000000000000ULL

/* Whether v is finite: its exponent is not all ones. */
static inline int
is_finite(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return (u & EXPONENT_BITS) != EXPONENT_BITS;
}

/* A quiet NaN, built from its bits. */
static inline double
quiet_nan(void)
{
    uint64_t u = 0x7ff8000000000000ULL;
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Selection and sorting of doubles                                          */

#define SWAP(a, b) do { double t_ = (a); (a) = (b); (b) = t_; } while (0)

/* Rearrange a[0..n) so that a[k] is the k-th smallest, smaller ones before. */
static double
select_kth(double *a, Py_ssize_t n, Py_ssize_t k)
{
    Py_ssize_t l = 0, m = n - 1;
    while (l < m) {
        double x = a[k];
        Py_ssize_t i = l, j = m;
        do {
            while (a[i] < x) i++;
            while (x < a[j]) j--;
            if (i <= j) {
                SWAP(a[i], a[j]);
                i++;
                j--;
            }
        } while (i <= j);
        if (j < k) l = i;
        if (k < i) m = j;
    }
    return a[k];
}

static void
insertion_sort(double *a, Py_ssize_t n)
{
    for (Py_ssize_t i = 1; i < n; i++) {
        double v = a[i];
        Py_ssize_t j = i;
        while (j > 0 && v < a[j - 1]) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

static void
sift_down(double *a, Py_ssize_t root, Py_ssize_t n)
{
    double v = a[root];
    for (;;) {
        Py_ssize_t child = 2 * root + 1;
        if (child >= n) break;
        if (child + 1 < n && a[child] < a[child + 1]) child++;
        if (!(v < a[child])) break;
        a[root] = a[child];
        root = child;
    }
    a[root] = v;
}

static void
heap_sort(double *a, Py_ssize_t n)
{
    for (Py_ssize_t i = n / 2 - 1; i >= 0; i--) sift_down(a, i, n);
    for (Py_ssize_t i = n - 1; i > 0; i--) {
        SWAP(a[0], a[i]);
        sift_down(a, 0, i);
    }
}

/* Introsort: median-of-three quicksort, heap sort past the depth limit. */
static void
introsort(double *a, Py_ssize_t n, int depth)
{
    while (n > 16) {
        if (depth-- <= 0) {
            heap_sort(a, n);
            return;
        }
        Py_ssize_t mid = n / 2, i = 0, j = n - 1;
        if (a[mid] < a[0]) SWAP(a[mid], a[0]);
        if (a[n - 1] < a[mid]) {
            SWAP(a[n - 1], a[mid]);
            if (a[mid] < a[0]) SWAP(a[mid], a[0]);
        }
        double x = a[mid];      /* a[0] <= x <= a[n - 1] are sentinels */
        for (;;) {
            do i++; while (a[i] < x);
            do j--; while (x < a[j]);
            if (i >= j) break;
            SWAP(a[i], a[j]);
        }
        Py_ssize_t left = j + 1;    /* a[0..j] <= x <= a[j+1..n) */
        if (left < n - left) {
            introsort(a, left, depth);
            a += left;
            n -= left;
        }
        else {
            introsort(a + left, n - left, depth);
            n = left;
        }
    }
    insertion_sort(a, n);
}

static void
sort_doubles(double *a, Py_ssize_t n)
{
    int depth = 0;
    for (Py_ssize_t m = n; m > 1; m >>= 1) depth += 2;
    introsort(a, n, depth);
}

/* ------------------------------------------------------------------------ */
/* Passes over the pixels                                                    */

/* min(max(t, lo), hi) for a non-NaN t (one instruction each on x86-64). */
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
static inline double
clamp(double t, double lo, double hi)
{
    return _mm_cvtsd_f64(_mm_min_sd(_mm_max_sd(_mm_set_sd(t), _mm_set_sd(lo)),
                                    _mm_set_sd(hi)));
}
#else
static inline double
clamp(double t, double lo, double hi)
{
    t = t > lo ? t : lo;
    return t < hi ? t : hi;
}
#endif

static inline int
bin_of(double d, double origin, double inv_width)
{
    return (int)clamp((d - origin) * inv_width, 0.0, NBINS + 1);
}

/* Valid pixels of the sub-sample grid; returns their number. */
#define DEFINE_SUBSAMPLE(NAME, TYPE)                                          \
static Py_ssize_t                                                             \
NAME(const Image *im, const Box *b, double *out)                              \
{                                                                             \
    Py_ssize_t sy = (b->y1 - b->y0 + SUBSAMPLE_SIDE - 1) / SUBSAMPLE_SIDE;    \
    Py_ssize_t sx = (b->x1 - b->x0 + SUBSAMPLE_SIDE - 1) / SUBSAMPLE_SIDE;    \
    Py_ssize_t n = 0;                                                         \
    for (Py_ssize_t y = b->y0 + sy / 2; y < b->y1; y += sy) {                 \
        const TYPE *row = (const TYPE *)(im->data + y * im->stride);         \
        const unsigned char *mrow = im->mask ? im->mask + y * im->mask_stride \
                                             : NULL;                          \
        for (Py_ssize_t x = b->x0 + sx / 2; x < b->x1; x += sx) {             \
            double v = (double)row[x];                                        \
            if ((mrow == NULL || !mrow[x]) && is_finite(v)) out[n++] = v;     \
        }                                                                     \
    }                                                                         \
    return n;                                                                 \
}

/* Row index of the i-th row processed by pass 1 in a box of h rows: every
 * FIRST_ROWS_STEP-th row first, then the others. */
static inline Py_ssize_t
first_rows_order(Py_ssize_t i, Py_ssize_t h)
{
    Py_ssize_t n_first = (h + FIRST_ROWS_STEP - 1) / FIRST_ROWS_STEP;
    if (i < n_first) return i * FIRST_ROWS_STEP;
    i -= n_first;       /* i-th row not a multiple of the step */
    return i / (FIRST_ROWS_STEP - 1) * FIRST_ROWS_STEP + 1 + i % (FIRST_ROWS_STEP - 1);
}

/* Narrow the median window of pass 1 (is_cand) to -/+ NARROW_WINDOW_HALF_WIDTH
 * rough sigmas around the median of the pixels histogrammed so far. */
static void
narrow_window(Scratch *s, const Frame *f)
{
    if (f->inv_width == 0.0 || s->window_hi < s->window_lo) return;
    Py_ssize_t n = 0, cum = 0;
    for (int k = 0; k < NKINDS; k++) n += s->hist[k];
    if (n == 0) return;
    int k = 0;
    while (cum + s->hist[k] <= (n - 1) / 2) cum += s->hist[k++];
    int half = (int)ceil(NARROW_WINDOW_HALF_WIDTH / HIST_HALF_WIDTH * NBINS / 2.0);
    int lo = k - half > s->window_lo ? k - half : s->window_lo;
    int hi = k + half < s->window_hi ? k + half : s->window_hi;
    memset(s->is_cand + s->window_lo, 0, s->window_hi - s->window_lo + 1);
    if (lo <= hi) memset(s->is_cand + lo, 1, hi - lo + 1);
}

/* The work of pass 1 on one valid pixel of value D (less the pivot), summed
 * into S1, S2. */
#define SCAN_PIXEL(D, S1, S2)                                                 \
    do {                                                                      \
        int k_ = bin_of(D, origin, inv_width);                                \
        double c_ = clamp(D, -radius, radius);                                \
        hist[k_]++;                                                           \
        S1 += c_;                                                             \
        S2 += c_ * c_;                                                        \
        cand[nc] = (D);                                                       \
        cand_bin[nc] = (uint16_t)k_;                                          \
        nc += is_cand[k_];                                                    \
    } while (0)

/* Pass 1 on the pixel X of the row if valid (VALID is 1 or its mask test). */
#define SCAN_IF_VALID(X, VALID, S1, S2)                                       \
    do {                                                                      \
        double vx_ = (double)row[X];                                          \
        if ((VALID) && is_finite(vx_)) {                                      \
            double dx_ = vx_ - pivot;                                         \
            SCAN_PIXEL(dx_, S1, S2);                                          \
        }                                                                     \
        else bad += (VALID);                                                  \
    } while (0)

/* Whether any of the w bytes is non-zero (branch-free, vectorised). */
static int
any_set(const unsigned char *m, Py_ssize_t w)
{
    unsigned char acc = 0;
    for (Py_ssize_t x = 0; x < w; x++) acc |= m[x];
    return acc != 0;
}

/* Pass 1: histogram the bins of the valid pixels, sum their clamped d and
 * d**2 into sums[2], keep the candidates (bins with is_cand set); returns the
 * number of candidates and adds the unmasked non-finite pixels to
 * *nonfinite. Prefetches the box `next` (unless NULL). */
#define DEFINE_SCAN(NAME, TYPE, SCAN_CLEAN)                                   \
static Py_ssize_t                                                             \
NAME(const Image *im, const Box *b, const Box *next, double pivot,            \
     const Frame *f, Scratch *s, double sums[2], Py_ssize_t *nonfinite)       \
{                                                                             \
    const double origin = f->origin, inv_width = f->inv_width, radius = f->radius; \
    Py_ssize_t *restrict hist = s->hist;                                      \
    double *restrict cand = s->cand;                                          \
    uint16_t *restrict cand_bin = s->cand_bin;                                \
    const unsigned char *restrict is_cand = s->is_cand;                       \
    Py_ssize_t w = b->x1 - b->x0, nc = 0, bad = 0;                            \
    double lanes[4] = {0.0, 0.0, 0.0, 0.0};  /* SSE2 sums: s1, s1, s2, s2 */   \
    double s1 = 0.0, s2 = 0.0;                                                \
    for (Py_ssize_t i = 0; i < b->y1 - b->y0; i++) {                          \
        Py_ssize_t y = b->y0 + first_rows_order(i, b->y1 - b->y0);           \
        if (i == (b->y1 - b->y0 + FIRST_ROWS_STEP - 1) / FIRST_ROWS_STEP)     \
            narrow_window(s, f);                                              \
        const TYPE *row = (const TYPE *)(im->data + y * im->stride) + b->x0; \
        Py_ssize_t ny = next ? next->y0 + (y - b->y0) : 0;                    \
        if (next && ny < next->y1) {                                          \
            const char *p = im->data + ny * im->stride                        \
                            + next->x0 * (Py_ssize_t)sizeof(TYPE);            \
            Py_ssize_t bytes = (next->x1 - next->x0) * (Py_ssize_t)sizeof(TYPE); \
            for (Py_ssize_t o = 0; o < bytes; o += 64) PREFETCH(p + o);       \
            if (im->mask) PREFETCH(im->mask + ny * im->mask_stride + next->x0); \
        }                                                                     \
        const unsigned char *mrow = im->mask == NULL ? NULL                   \
            : im->mask + y * im->mask_stride + b->x0;                         \
        if (mrow == NULL || !any_set(mrow, w)) {                              \
            Py_ssize_t x = SCAN_CLEAN(row, w, pivot, f, hist, cand, cand_bin, \
                                      is_cand, &nc, lanes);                   \
            for (; x < w; x++) SCAN_IF_VALID(x, 1, s1, s2);                   \
        }                                                                     \
        else {                                                                \
            for (Py_ssize_t x = 0; x < w; x++) SCAN_IF_VALID(x, !mrow[x], s1, s2); \
        }                                                                     \
    }                                                                         \
    sums[0] = s1 + (lanes[0] + lanes[1]);                                     \
    sums[1] = s2 + (lanes[2] + lanes[3]);                                     \
    *nonfinite += bad;                                                        \
    return nc;                                                                \
}

/* Place a value of bin K of a split: append it to the tails if a TAIL bin,
 * put it at its bin's band slot if a BAND bin (branch-free: the slot of any
 * other bin is the spare one at the end of the band). */
#define PLACE(D, K)                                                           \
    do {                                                                      \
        double d_ = (D);                                                      \
        int k_ = (K), kind_ = kind[k_];                                       \
        Py_ssize_t slot_ = slot[k_];                                          \
        tails[nt] = d_;                                                       \
        nt += kind_ & TAIL;                                                   \
        band[slot_] = d_;                                                     \
        slot[k_] = slot_ + (kind_ >> 1);                                      \
    } while (0)

/* Local copies of the scratch arrays used by PLACE. */
#define PLACE_ARRAYS(S)                                                       \
    const unsigned char *restrict kind = (S)->kind;                           \
    Py_ssize_t *restrict slot = (S)->slot;                                    \
    double *restrict tails = (S)->tails;                                      \
    double *restrict band = (S)->band

/* Pass 2 (when the candidates are not enough): place every valid pixel;
 * returns the number of tails. */
#define DEFINE_EXTRACT(NAME, TYPE)                                            \
static Py_ssize_t                                                             \
NAME(const Image *im, const Box *b, double pivot, const Frame *f, Scratch *s) \
{                                                                             \
    const double origin = f->origin, inv_width = f->inv_width;                \
    PLACE_ARRAYS(s);                                                          \
    Py_ssize_t nt = 0;                                                        \
    for (Py_ssize_t y = b->y0; y < b->y1; y++) {                              \
        const TYPE *row = (const TYPE *)(im->data + y * im->stride);         \
        const unsigned char *mrow = im->mask ? im->mask + y * im->mask_stride \
                                             : NULL;                          \
        for (Py_ssize_t x = b->x0; x < b->x1; x++) {                          \
            double v = (double)row[x];                                        \
            if ((mrow != NULL && mrow[x]) || !is_finite(v)) continue;         \
            PLACE(v - pivot, bin_of(v - pivot, origin, inv_width));           \
        }                                                                     \
    }                                                                         \
    return nt;                                                                \
}

/* Pass 1 on the first pixels of an unmasked row, four at a time with SSE2,
 * up to the first group of four that holds a non-finite value: the
 * arithmetic is the scalar code's, lane by lane; the histogram and the
 * candidates stay scalar. Returns the number of pixels done (0 without SSE2:
 * the scalar loop does the row). */
#if defined(__SSE2__) || defined(_M_X64)
/* Whether any of the 32-bit lanes of X has all the bits of E set (integer
 * arithmetic: an exponent of all ones marks a non-finite value). */
#define ANY_EXPONENT_FULL(X, E)                                               \
    _mm_movemask_epi8(_mm_cmpeq_epi32(_mm_and_si128(X, E), E))
/* Load four pixels as two pairs of doubles; break out of the loop if one
 * of them is not finite. For float64 only the high halves hold exponents. */
#define LOAD_F32(ROW, X, LO, HI)                                              \
    __m128 v_ = _mm_loadu_ps((ROW) + (X));                                    \
    if (ANY_EXPONENT_FULL(_mm_castps_si128(v_), _mm_set1_epi32(0x7f800000))) break; \
    LO = _mm_cvtps_pd(v_);                                                    \
    HI = _mm_cvtps_pd(_mm_movehl_ps(v_, v_))
#define LOAD_F64(ROW, X, LO, HI)                                              \
    LO = _mm_loadu_pd((ROW) + (X));                                           \
    HI = _mm_loadu_pd((ROW) + (X) + 2);                                       \
    if ((ANY_EXPONENT_FULL(_mm_castpd_si128(LO), _mm_set1_epi64x(EXPONENT_BITS)) \
         | ANY_EXPONENT_FULL(_mm_castpd_si128(HI), _mm_set1_epi64x(EXPONENT_BITS))) \
        & 0xf0f0) break
/* Pass 1's candidate step for the pixel in one lane of D (STORE picks the
 * lane), of bin K. */
#define KEEP(STORE, D, K)                                                     \
    do {                                                                      \
        STORE(cand + nc, D);                                                  \
        cand_bin[nc] = (uint16_t)(K);                                         \
        nc += is_cand[K];                                                     \
    } while (0)
#define DEFINE_SCAN_CLEAN(NAME, TYPE, LOAD)                                   \
static Py_ssize_t                                                             \
NAME(const TYPE *row, Py_ssize_t w, double pivot, const Frame *f,             \
     Py_ssize_t *restrict hist, double *restrict cand, uint16_t *restrict cand_bin, \
     const unsigned char *restrict is_cand, Py_ssize_t *n_cand, double sums[4]) \
{                                                                             \
    const __m128d p = _mm_set1_pd(pivot), o = _mm_set1_pd(f->origin);        \
    const __m128d inv = _mm_set1_pd(f->inv_width), zero = _mm_setzero_pd();  \
    const __m128d top = _mm_set1_pd(NBINS + 1);                               \
    const __m128d r = _mm_set1_pd(f->radius), mr = _mm_set1_pd(-f->radius);  \
    __m128d s1 = _mm_loadu_pd(sums), s2 = _mm_loadu_pd(sums + 2);             \
    Py_ssize_t nc = *n_cand, x = 0;                                           \
    int32_t k[4];                                                             \
    for (; x + 4 <= w; x += 4) {                                              \
        __m128d dlo, dhi;                                                     \
        LOAD(row, x, dlo, dhi);                                               \
        dlo = _mm_sub_pd(dlo, p);                                             \
        dhi = _mm_sub_pd(dhi, p);                                             \
        __m128d tlo = _mm_mul_pd(_mm_sub_pd(dlo, o), inv);                    \
        __m128d thi = _mm_mul_pd(_mm_sub_pd(dhi, o), inv);                    \
        tlo = _mm_min_pd(_mm_max_pd(tlo, zero), top);                         \
        thi = _mm_min_pd(_mm_max_pd(thi, zero), top);                         \
        _mm_storeu_si128((__m128i *)k, _mm_unpacklo_epi64(_mm_cvttpd_epi32(tlo), \
                                                           _mm_cvttpd_epi32(thi))); \
        __m128d clo = _mm_min_pd(_mm_max_pd(dlo, mr), r);                     \
        __m128d chi = _mm_min_pd(_mm_max_pd(dhi, mr), r);                     \
        s1 = _mm_add_pd(s1, _mm_add_pd(clo, chi));                            \
        s2 = _mm_add_pd(s2, _mm_add_pd(_mm_mul_pd(clo, clo), _mm_mul_pd(chi, chi))); \
        hist[k[0]]++;                                                         \
        hist[k[1]]++;                                                         \
        hist[k[2]]++;                                                         \
        hist[k[3]]++;                                                         \
        KEEP(_mm_storel_pd, dlo, k[0]);                                       \
        KEEP(_mm_storeh_pd, dlo, k[1]);                                       \
        KEEP(_mm_storel_pd, dhi, k[2]);                                       \
        KEEP(_mm_storeh_pd, dhi, k[3]);                                       \
    }                                                                         \
    _mm_storeu_pd(sums, s1);                                                  \
    _mm_storeu_pd(sums + 2, s2);                                              \
    *n_cand = nc;                                                             \
    return x;                                                                 \
}
DEFINE_SCAN_CLEAN(scan_clean_f32, float, LOAD_F32)
DEFINE_SCAN_CLEAN(scan_clean_f64, double, LOAD_F64)
#else
#define DEFINE_SCAN_CLEAN(NAME, TYPE)                                         \
static Py_ssize_t                                                             \
NAME(const TYPE *row, Py_ssize_t w, double pivot, const Frame *f,             \
     Py_ssize_t *hist, double *cand, uint16_t *cand_bin,                      \
     const unsigned char *is_cand, Py_ssize_t *n_cand, double sums[4])        \
{                                                                             \
    return 0;                                                                 \
}
DEFINE_SCAN_CLEAN(scan_clean_f32, float)
DEFINE_SCAN_CLEAN(scan_clean_f64, double)
#endif

DEFINE_SUBSAMPLE(subsample_f32, float)
DEFINE_SUBSAMPLE(subsample_f64, double)
DEFINE_SCAN(scan_f32, float, scan_clean_f32)
DEFINE_SCAN(scan_f64, double, scan_clean_f64)
DEFINE_EXTRACT(extract_f32, float)
DEFINE_EXTRACT(extract_f64, double)

/* ------------------------------------------------------------------------ */
/* Splits                                                                    */

/* Split the n valid values of a box: core = bins [c0, c1] (none if c1 < c0);
 * band = the bins holding every rank the median can take when tails are
 * clipped (all bins without a core). The values come from the n_cand
 * candidates of pass 1 when these include every TAIL or BAND bin, else from
 * a second pass over the pixels. */
static void
split_box(const Image *im, const Box *b, double pivot, const Frame *f,
          const double sums[2], Py_ssize_t n, Py_ssize_t n_cand, int c0, int c1,
          Scratch *s, Split *sp)
{
    const Py_ssize_t *hist = s->hist;
    int no_core = c1 < c0, b0 = 0, b1 = NBINS + 1;
    Py_ssize_t below = 0;
    if (!no_core) {
        Py_ssize_t n_core = 0;
        for (int k = c0; k <= c1; k++) n_core += hist[k];
        Py_ssize_t n_tails = n - n_core;
        Py_ssize_t r_lo = (n - n_tails - 1) / 2, r_hi = (n + n_tails) / 2;
        if (r_hi > n - 1) r_hi = n - 1;
        int k = 0;
        while (below + hist[k] <= r_lo) below += hist[k++];
        b0 = k;
        Py_ssize_t cum = below;
        while (cum + hist[k] <= r_hi) cum += hist[k++];
        b1 = k;
    }
    memset(s->kind, TAIL, NKINDS);
    if (!no_core) memset(s->kind + c0, 0, c1 - c0 + 1);
    for (int k = 0; k < NKINDS; k++) s->slot[k] = n;     /* the spare slot */
    Py_ssize_t pos = 0;
    for (int k = b0; k <= b1; k++) {
        s->kind[k] |= BAND;
        s->slot[k] = pos;
        pos += hist[k];
        s->bucket_end[k - b0] = pos;
    }
    memset(s->bucket_sorted, 0, b1 - b0 + 1);

    int covered = 1;
    for (int k = 0; k < NKINDS; k++) covered &= (s->kind[k] == 0) | s->is_cand[k];
    Py_ssize_t nt = 0;
    if (covered) {
        PLACE_ARRAYS(s);
        const double *cand = s->cand;
        const uint16_t *cand_bin = s->cand_bin;
        for (Py_ssize_t i = 0; i < n_cand; i++) PLACE(cand[i], cand_bin[i]);
    }
    else {
        nt = im->is_double ? extract_f64(im, b, pivot, f, s) : extract_f32(im, b, pivot, f, s);
    }

    double c1s = sums[0], c2s = sums[1];
    for (Py_ssize_t i = 0; i < nt; i++) {
        double t = clamp(s->tails[i], -f->radius, f->radius);
        c1s -= t;
        c2s -= t * t;
    }
    double width = 1.0 / f->inv_width;
    sp->core_n = n - nt;
    sp->core_s1 = no_core ? 0.0 : c1s;
    sp->core_s2 = no_core ? 0.0 : c2s;
    /* Half a bin of margin covers the rounding of the bin computation. */
    sp->core_lo = no_core ? DBL_MAX : f->origin + (c0 - 0.5) * width;
    sp->core_hi = no_core ? -DBL_MAX : f->origin + (c1 + 1.5) * width;
    sp->tails = s->tails;
    sp->n_tails = nt;
    sp->band = s->band;
    sp->n_band = pos;
    sp->band_rank = below;
    sp->n_buckets = b1 - b0 + 1;
    sp->bucket_end = s->bucket_end;
    sp->bucket_sorted = s->bucket_sorted;
}

/* The band value at position j (sorting its bucket first if needed). */
static double
band_value(const Split *sp, Py_ssize_t j)
{
    int lo = 0, hi = sp->n_buckets - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (sp->bucket_end[mid] > j) hi = mid;
        else lo = mid + 1;
    }
    if (!sp->bucket_sorted[lo]) {
        Py_ssize_t start = lo ? sp->bucket_end[lo - 1] : 0;
        sort_doubles(sp->band + start, sp->bucket_end[lo] - start);
        sp->bucket_sorted[lo] = 1;
    }
    return sp->band[j];
}

/* Without a core, shift every value (tails and band) by their median, which
 * is returned (to add to the pivot): keeps the float64 sums accurate. */
static double
recentre(Split *sp, Py_ssize_t n)
{
    double centre = band_value(sp, (n - 1) / 2);
    for (Py_ssize_t i = 0; i < n; i++) {
        sp->tails[i] -= centre;
        sp->band[i] -= centre;
    }
    return centre;
}

/* ------------------------------------------------------------------------ */
/* Clipping                                                                  */

/* Statistics of the valid values in [lo, hi]. */
static int
set_stats(const Split *sp, double lo, double hi, SetStats *out)
{
    if (lo > sp->core_lo || hi < sp->core_hi) return CORE_CUT;
    Py_ssize_t n = sp->core_n, below = 0, i = 0;
    double s1 = sp->core_s1, s2 = sp->core_s2, s1b = 0.0, s2b = 0.0;
    const double *t = sp->tails;
    for (; i + 1 < sp->n_tails; i += 2) {      /* two chains of float64 sums */
        double v = t[i], u = t[i + 1];
        int in_v = (v >= lo) & (v <= hi), in_u = (u >= lo) & (u <= hi);
        double ev = in_v ? v : 0.0, eu = in_u ? u : 0.0;
        n += in_v + in_u;
        below += (v < lo) + (u < lo);
        s1 += ev;
        s2 += ev * ev;
        s1b += eu;
        s2b += eu * eu;
    }
    for (; i < sp->n_tails; i++) {
        double v = t[i];
        int in = (v >= lo) & (v <= hi);
        double e = in ? v : 0.0;
        n += in;
        below += v < lo;
        s1 += e;
        s2 += e * e;
    }
    s1 += s1b;
    s2 += s2b;
    out->n = n;
    if (n == 0) {
        out->mean = out->std = out->median = 0.0;     /* not used */
        return OK;
    }
    Py_ssize_t r0 = below + (n - 1) / 2 - sp->band_rank;
    Py_ssize_t r1 = below + n / 2 - sp->band_rank;
    if (r0 < 0 || r1 >= sp->n_band) return BAND_MISSED;
    out->median = 0.5 * (band_value(sp, r0) + band_value(sp, r1));
    out->mean = s1 / n;
    double var = s2 / n - out->mean * out->mean;
    out->std = var > 0.0 ? sqrt(var) : 0.0;
    return OK;
}

/* Sigma clip as astropy's SigmaClip (see the top of the file). On CORE_CUT,
 * (*cut_lo, *cut_hi) is the interval that cut the core. */
static int
sigma_clip(const Split *sp, double sigma, int maxiters, int intersect,
           SetStats *out, double *cut_lo, double *cut_hi)
{
    SetStats cur, next;
    double lo = -DBL_MAX, hi = DBL_MAX, last_lo = lo, last_hi = hi;     /* all finite values */
    int status = set_stats(sp, lo, hi, &cur);
    if (status != OK) return status;
    for (int it = 0; it < maxiters && cur.n > 0;) {
        last_lo = cur.median - sigma * cur.std;
        last_hi = cur.median + sigma * cur.std;
        if (last_lo > lo) lo = last_lo;
        if (last_hi < hi) hi = last_hi;
        status = set_stats(sp, lo, hi, &next);
        if (status != OK) {
            *cut_lo = lo;
            *cut_hi = hi;
            return status;
        }
        int converged = next.n == cur.n || next.n == 0;
        cur = next;
        it++;
        if (converged) break;
    }
    if (intersect || (last_lo == lo && last_hi == hi)) {
        *out = cur;
        return OK;
    }
    status = set_stats(sp, last_lo, last_hi, out);
    if (status == CORE_CUT) {
        *cut_lo = last_lo;
        *cut_hi = last_hi;
    }
    return status;
}

/* ------------------------------------------------------------------------ */
/* One box                                                                   */

/* Pivot (sub-sample median) and rough sigma of a box: `hint` if positive
 * (the robust sigma of the previous box), else from the sub-sample's
 * quantiles; 0 if the sub-sample is too small. */
static double
subsample_spread(const Image *im, const Box *b, Scratch *s, double hint, double *pivot)
{
    Py_ssize_t ns = im->is_double ? subsample_f64(im, b, s->sub)
                                  : subsample_f32(im, b, s->sub);
    *pivot = ns ? select_kth(s->sub, ns, (ns - 1) / 2) : 0.0;
    if (ns < MIN_SUBSAMPLE) return 0.0;
    if (hint > 0.0) return hint;
    Py_ssize_t mid = (ns - 1) / 2;
    double q16 = select_kth(s->sub, mid, (Py_ssize_t)(0.1587 * (ns - 1)));
    double q84 = select_kth(s->sub + mid, ns - mid, (Py_ssize_t)(0.8413 * (ns - 1)) - mid);
    double spread = 0.5 * (q84 - q16);
    if (!(spread > 0.0)) {      /* quantised data: an eighth of the range */
        double lo = s->sub[0], hi = s->sub[0];
        for (Py_ssize_t i = 1; i < ns; i++) {
            lo = s->sub[i] < lo ? s->sub[i] : lo;
            hi = s->sub[i] > hi ? s->sub[i] : hi;
        }
        spread = (hi - lo) / 8.0;
    }
    return is_finite(spread) ? spread : 0.0;
}

/* Bins holding ranks r0 <= r1 <= r2. */
static void
quantile_bins(const Py_ssize_t *hist, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t r2,
              int *k0, int *k1, int *k2)
{
    Py_ssize_t cum = 0;
    int k = 0;
    while (cum + hist[k] <= r0) cum += hist[k++];
    *k0 = k;
    while (cum + hist[k] <= r1) cum += hist[k++];
    *k1 = k;
    while (cum + hist[k] <= r2) cum += hist[k++];
    *k2 = k;
}

/* Bin position of a value (clamped to just outside the bins). */
static double
bin_position(double d, const Frame *f)
{
    double t = (d - f->origin) * f->inv_width;
    return t < -1.0 ? -1.0 : (t > NBINS + 2.0 ? NBINS + 2.0 : t);
}

/* Statistics of one box; returns 1 if it was done without a core. */
static int
box_stats(const Image *im, const Box *b, const Box *next, double sigma, int maxiters,
          int intersect, Scratch *s, double *bkg, double *rms, int64_t *n_good,
          Py_ssize_t *nonfinite)
{
    double pivot, sums[2];
    double spread = subsample_spread(im, b, s, s->spread_hint, &pivot);
    s->spread_hint = 0.0;
    Frame f = {0.0, 0.0, 0.0};          /* every value in bin 0 */
    memset(s->is_cand, 1, NKINDS);
    if (spread < MIN_SPREAD) spread = 0.0;
    if (spread > 0.0) {
        f.radius = HIST_HALF_WIDTH * spread;
        f.inv_width = NBINS / (2.0 * f.radius);
        f.origin = -f.radius - 1.0 / f.inv_width;
        int k0 = (int)ceil(bin_position(-KEPT_HALF_WIDTH * spread, &f));
        int k1 = (int)floor(bin_position(KEPT_HALF_WIDTH * spread, &f)) - 1;
        s->window_lo = (int)bin_position(-WINDOW_HALF_WIDTH * spread, &f);
        s->window_hi = (int)bin_position(WINDOW_HALF_WIDTH * spread, &f);
        memset(s->is_cand + k0, 0, k1 - k0 + 1);
        memset(s->is_cand + s->window_lo, 1, s->window_hi - s->window_lo + 1);
    }
    memset(s->hist, 0, sizeof(s->hist));
    Py_ssize_t n_cand = im->is_double
        ? scan_f64(im, b, next, pivot, &f, s, sums, nonfinite)
        : scan_f32(im, b, next, pivot, &f, s, sums, nonfinite);
    Py_ssize_t n = 0;
    for (int k = 0; k < NKINDS; k++) n += s->hist[k];
    *n_good = 0;
    *bkg = *rms = quiet_nan();
    if (n == 0) return 0;

    Split sp;
    SetStats st;
    double cut_lo, cut_hi;
    int status = BAND_MISSED, coreless = 0, c0 = 1, c1 = 0;
    if (spread > 0.0) {
        /* Core: median -/+ CORE_HALF_WIDTH robust sigmas, in whole bins
         * (bin k covers positions [k, k + 1)); the robust sigma is that of
         * the narrower side of the median (stars only widen the upper one). */
        int k16, k50, k84;
        quantile_bins(s->hist, (Py_ssize_t)(0.1587 * (n - 1)), (n - 1) / 2,
                      (Py_ssize_t)(0.8413 * (n - 1)), &k16, &k50, &k84);
        int robust = k50 - k16 < k84 - k50 ? k50 - k16 : k84 - k50;
        double half = CORE_HALF_WIDTH * robust, centre = k50 + 0.5;
        c0 = (int)ceil(centre - half);
        c1 = (int)floor(centre + half) - 1;
        c0 = c0 < 1 ? 1 : c0;
        c1 = c1 > NBINS ? NBINS : c1;
        if (k16 >= 1 && k84 <= NBINS)
            s->spread_hint = robust / f.inv_width;
    }
    for (int attempt = 0; attempt <= MAX_RETRIES && c0 <= c1; attempt++) {
        split_box(im, b, pivot, &f, sums, n, n_cand, c0, c1, s, &sp);
        status = sigma_clip(&sp, sigma, maxiters, intersect, &st, &cut_lo, &cut_hi);
        if (status != CORE_CUT) break;
        /* Keep the core RETRY_MARGIN of the interval inside it. */
        double margin = RETRY_MARGIN * 0.5 * (cut_hi - cut_lo);
        int n0 = (int)ceil(bin_position(cut_lo + margin, &f) + 0.5);
        int n1 = (int)floor(bin_position(cut_hi - margin, &f) - 1.5);
        c0 = n0 > c0 ? n0 : c0;
        c1 = n1 < c1 ? n1 : c1;
    }
    if (status != OK) {
        split_box(im, b, pivot, &f, sums, n, n_cand, 1, 0, s, &sp);
        pivot += recentre(&sp, n);
        sigma_clip(&sp, sigma, maxiters, intersect, &st, &cut_lo, &cut_hi);
        coreless = 1;
    }

    *n_good = st.n;
    if (st.n == 0) return coreless;
    double value;
    if (st.std == 0.0) value = st.mean;
    else if (fabs(st.mean - st.median) / st.std >= 0.3) value = st.median;
    else value = 2.5 * st.median - 1.5 * st.mean;
    *bkg = pivot + value;
    *rms = st.std;
    return coreless;
}

/* ------------------------------------------------------------------------ */
/* Python interface                                                          */

static int
format_is(const Py_buffer *view, const char *codes)
{
    const char *fmt = view->format ? view->format : "B";
    if (fmt[0] == '@' || fmt[0] == '=') fmt++;
#if PY_LITTLE_ENDIAN
    if (fmt[0] == '<') fmt++;
#else
    if (fmt[0] == '>' || fmt[0] == '!') fmt++;
#endif
    return fmt[0] != '\0' && fmt[1] == '\0' && strchr(codes, fmt[0]) != NULL;
}

static int
get_output(PyObject *obj, Py_buffer *view, const char *codes, Py_ssize_t count,
           const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    if (view->itemsize != 8 || !format_is(view, codes) || view->len != count * 8) {
        PyErr_Format(PyExc_ValueError, "%s must be a contiguous 8-byte array of %zd values",
                     name, count);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(box_statistics_doc,
"box_statistics(data, invalid, box_y, box_x, sigma, maxiters, background, rms, n_good)\n"
"--\n\n"
"Sigma-clipped SExtractor background, rms and pixel count of every box.\n\n"
"data: 2-D float32 or float64 array, rows contiguous; invalid: None or a\n"
"bool array of the same shape (True = ignore); boxes of box_y x box_x\n"
"pixels from (0, 0), partial ones at the far edges; the corner box (partial\n"
"on both axes) keeps the set left by the iterations, as photutils.\n"
"background, rms (float64) and n_good (int64) are C-contiguous outputs of\n"
"ceil(ny / box_y) * ceil(nx / box_x) values (NaN, NaN, 0 for a box without\n"
"valid pixels). Returns (number of unmasked non-finite pixels, number of\n"
"boxes computed without a core, i.e. from all their values).");

static PyObject *
box_statistics(PyObject *self, PyObject *args)
{
    PyObject *data_obj, *mask_obj, *bkg_obj, *rms_obj, *n_obj;
    Py_ssize_t by, bx;
    double sigma;
    int maxiters;
    if (!PyArg_ParseTuple(args, "OOnndiOOO:box_statistics", &data_obj, &mask_obj, &by, &bx,
                          &sigma, &maxiters, &bkg_obj, &rms_obj, &n_obj))
        return NULL;
    if (by < 1 || bx < 1 || maxiters < 1 || !(sigma > 0.0)) {
        PyErr_SetString(PyExc_ValueError, "box sizes, maxiters and sigma must be positive");
        return NULL;
    }
    Py_buffer data, mask = {0}, bkg_view = {0}, rms_view = {0}, n_view = {0};
    if (PyObject_GetBuffer(data_obj, &data, PyBUF_STRIDES | PyBUF_FORMAT) < 0) return NULL;
    PyObject *result = NULL;
    Scratch *s = NULL;
    int have_mask = mask_obj != Py_None;
    if (data.ndim != 2 || data.strides[1] != data.itemsize
            || !((data.itemsize == 4 && format_is(&data, "f"))
                 || (data.itemsize == 8 && format_is(&data, "d")))) {
        PyErr_SetString(PyExc_ValueError,
                        "data must be a 2-D float32 or float64 array with contiguous rows");
        goto done;
    }
    Py_ssize_t ny = data.shape[0], nx = data.shape[1];
    if (have_mask) {
        if (PyObject_GetBuffer(mask_obj, &mask, PyBUF_STRIDES | PyBUF_FORMAT) < 0) {
            have_mask = 0;
            goto done;
        }
        if (mask.ndim != 2 || mask.shape[0] != ny || mask.shape[1] != nx
                || mask.itemsize != 1 || mask.strides[1] != 1 || !format_is(&mask, "?Bb")) {
            PyErr_SetString(PyExc_ValueError,
                            "invalid must be a boolean array of the data shape");
            goto done;
        }
    }
    Py_ssize_t my = (ny + by - 1) / by, mx = (nx + bx - 1) / bx;
    if (get_output(bkg_obj, &bkg_view, "d", my * mx, "background") < 0) goto done;
    if (get_output(rms_obj, &rms_view, "d", my * mx, "rms") < 0) goto done;
    if (get_output(n_obj, &n_view, "lq", my * mx, "n_good") < 0) goto done;

    Py_ssize_t npix = by * bx;
    s = PyMem_RawCalloc(1, sizeof(Scratch));
    if (s != NULL) {
        s->cand = PyMem_RawMalloc((npix + 1) * sizeof(double));
        s->cand_bin = PyMem_RawMalloc((npix + 1) * sizeof(uint16_t));
        s->tails = PyMem_RawMalloc((npix + 1) * sizeof(double));
        s->band = PyMem_RawMalloc((npix + 1) * sizeof(double));
    }
    if (s == NULL || !s->cand || !s->cand_bin || !s->tails || !s->band) {
        PyErr_NoMemory();
        goto done;
    }

    Image im = {(const char *)data.buf, data.strides[0], data.itemsize == 8,
                have_mask ? (const unsigned char *)mask.buf : NULL,
                have_mask ? mask.strides[0] : 0};
    double *bkg = bkg_view.buf, *rms = rms_view.buf;
    int64_t *n_good = n_view.buf;
    Py_ssize_t nonfinite = 0, n_coreless = 0;
    int corner = ny % by != 0 && nx % bx != 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t cell = 0; cell < my * mx; cell++) {
        Py_ssize_t iy = cell / mx, ix = cell % mx;
        Box b = {iy * by, Py_MIN((iy + 1) * by, ny), ix * bx, Py_MIN((ix + 1) * bx, nx)};
        Py_ssize_t jy = (cell + 1) / mx, jx = (cell + 1) % mx;
        Box next = {jy * by, Py_MIN((jy + 1) * by, ny), jx * bx, Py_MIN((jx + 1) * bx, nx)};
        int intersect = corner && cell == my * mx - 1;
        n_coreless += box_stats(&im, &b, cell + 1 < my * mx ? &next : NULL, sigma, maxiters,
                                intersect, s, bkg + cell, rms + cell, n_good + cell,
                                &nonfinite);
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("nn", nonfinite, n_coreless);

done:
    if (s != NULL) {
        PyMem_RawFree(s->cand);
        PyMem_RawFree(s->cand_bin);
        PyMem_RawFree(s->tails);
        PyMem_RawFree(s->band);
        PyMem_RawFree(s);
    }
    if (n_view.obj) PyBuffer_Release(&n_view);
    if (rms_view.obj) PyBuffer_Release(&rms_view);
    if (bkg_view.obj) PyBuffer_Release(&bkg_view);
    if (have_mask) PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"box_statistics", box_statistics, METH_VARARGS, box_statistics_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_boxstats",
    "Sigma-clipped SExtractor statistics of the boxes of an image (C kernel of "
    "opticam_like.background.clipping).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__boxstats(void)
{
    return PyModule_Create(&module);
}
