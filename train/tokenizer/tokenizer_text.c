/* retort — UTF-8 helpers and the GPT-2 byte-level pre-tokenizer.
 *
 * The split regex (openai/gpt-2 src/encoder.py) is
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * matched here by hand, alternatives tried in order as a backtracking regex
 * engine would. \p{L}/\p{N} are approximated by the range tables below (see
 * tokenizer.h); \s is the Unicode White_Space property. */
#include "train/tokenizer/tokenizer_internal.h"

int rt_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)len > n) return 0;
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

int rt_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

typedef struct { uint32_t lo, hi; } range;

/* Approximate \p{L}: letters of the common scripts (sorted, inclusive). */
static const range letter_ranges[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xAA, 0xAA}, {0xB5, 0xB5}, {0xBA, 0xBA},
    {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x2C1}, {0x2C6, 0x2D1}, {0x2E0, 0x2E4},
    {0x2EC, 0x2EC}, {0x2EE, 0x2EE}, {0x370, 0x374}, {0x376, 0x377}, {0x37A, 0x37D},
    {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C}, {0x38E, 0x3A1},
    {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556}, {0x559, 0x559},
    {0x560, 0x588}, {0x5D0, 0x5EA}, {0x5EF, 0x5F2}, {0x620, 0x64A}, {0x66E, 0x66F},
    {0x671, 0x6D3}, {0x904, 0x939}, {0x93D, 0x93D}, {0x950, 0x950}, {0x958, 0x961},
    {0xE01, 0xE30}, {0xE32, 0xE33}, {0xE40, 0xE46}, {0x10A0, 0x10C5}, {0x10D0, 0x10FA},
    {0x10FC, 0x10FF}, {0x1100, 0x1248}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F7D},
    {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC},
    {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4},
    {0x1FF6, 0x1FFC}, {0x2071, 0x2071}, {0x207F, 0x207F}, {0x2090, 0x209C},
    {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115},
    {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
    {0x212A, 0x212D}, {0x212F, 0x2139}, {0x2C00, 0x2CE4}, {0x2D00, 0x2D25},
    {0x3005, 0x3006}, {0x3031, 0x3035}, {0x303B, 0x303C}, {0x3041, 0x3096},
    {0x309D, 0x309F}, {0x30A1, 0x30FA}, {0x30FC, 0x30FF}, {0x3105, 0x312F},
    {0x3131, 0x318E}, {0x3400, 0x4DBF}, {0x4E00, 0x9FFF}, {0xA000, 0xA48C},
    {0xAC00, 0xD7A3}, {0xF900, 0xFA6D}, {0xFB00, 0xFB06}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0xFF66, 0xFFBE}, {0x20000, 0x2FA1F},
};

/* Approximate \p{N}: Nd, Nl and No of the common blocks. */
static const range number_ranges[] = {
    {0x30, 0x39}, {0xB2, 0xB3}, {0xB9, 0xB9}, {0xBC, 0xBE}, {0x660, 0x669},
    {0x6F0, 0x6F9}, {0x966, 0x96F}, {0xE50, 0xE59}, {0x2070, 0x2070},
    {0x2074, 0x2079}, {0x2080, 0x2089}, {0x2150, 0x2182}, {0x2185, 0x2189},
    {0x2460, 0x249B}, {0x24EA, 0x24FF}, {0x2776, 0x2793}, {0x3007, 0x3007},
    {0x3021, 0x3029}, {0x3038, 0x303A}, {0x3192, 0x3195}, {0x3220, 0x3229},
    {0x3248, 0x324F}, {0x3251, 0x325F}, {0x3280, 0x3289}, {0x32B1, 0x32BF},
    {0xFF10, 0xFF19},
};

static bool in_ranges(uint32_t cp, const range *r, size_t n) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid].lo) hi = mid;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return true;
    }
    return false;
}

static bool is_letter(uint32_t cp) {
    return in_ranges(cp, letter_ranges, sizeof letter_ranges / sizeof *letter_ranges);
}
static bool is_number(uint32_t cp) {
    return in_ranges(cp, number_ranges, sizeof number_ranges / sizeof *number_ranges);
}
bool rt_tok_is_number(uint32_t cp) { return is_number(cp); }
static bool is_space(uint32_t cp) {
    return (cp >= 0x9 && cp <= 0xD) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Code point at s[i]; the caller validated the text. */
static uint32_t cp_at(const char *s, size_t n, size_t i, int *len) {
    uint32_t cp = 0;
    *len = rt_utf8_decode((const unsigned char *)s + i, n - i, &cp);
    if (*len == 0) { *len = 1; cp = (unsigned char)s[i]; }
    return cp;
}

enum { CL_L, CL_N, CL_S, CL_O };
static int cls(uint32_t cp) {
    if (is_space(cp)) return CL_S;
    if (is_letter(cp)) return CL_L;
    if (is_number(cp)) return CL_N;
    return CL_O;
}

/* End of a run of characters of class c (or of "other" when c == CL_O) from j. */
static size_t run_end(const char *s, size_t n, size_t j, int c) {
    while (j < n) {
        int l;
        uint32_t cp = cp_at(s, n, j, &l);
        if (cls(cp) != c) break;
        j += (size_t)l;
    }
    return j;
}

size_t rt_gpt2_split_next(const char *s, size_t n, size_t i) {
    /* 's|'t|'re|'ve|'m|'ll|'d */
    if (s[i] == '\'' && i + 1 < n) {
        char a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
            return i + 3;
    }
    int l0;
    uint32_t c0 = cp_at(s, n, i, &l0);
    int k0 = cls(c0);
    /* " ?X+" for X in L, N, other: an optional ASCII space then a run. */
    size_t j = i;
    int k = k0;
    if (c0 == ' ' && i + 1 < n) {
        int l1;
        uint32_t c1 = cp_at(s, n, i + 1, &l1);
        if (cls(c1) != CL_S) { j = i + 1; k = cls(c1); }
    }
    if (k != CL_S) return run_end(s, n, j, k);
    /* \s+(?!\S) then \s+: a whitespace run; if a non-space follows, leave its
     * last character to prefix the next word (unless the run is one char). */
    size_t e = i, last = i;
    while (e < n) {
        int l;
        uint32_t cp = cp_at(s, n, e, &l);
        if (!is_space(cp)) break;
        last = e;
        e += (size_t)l;
    }
    if (e < n && last > i) return last;
    return e;
}

/* openai/gpt-2 encoder.py bytes_to_unicode(): the printable Latin-1 bytes
 * ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) stand for themselves; the other 68 bytes
 * (0x00..0x20, 0x7F..0xA0, 0xAD), in byte order, map to U+0100, U+0101, ... */
uint32_t rt_byte_to_unicode(unsigned b) {
    if (b <= 0x20) return 256 + b;
    if (b >= 0x7F && b <= 0xA0) return 256 + 33 + (b - 0x7F);
    if (b == 0xAD) return 256 + 67;
    return b;
}

int rt_unicode_to_byte(uint32_t cp) {
    if (cp >= 256 && cp < 256 + 33) return (int)(cp - 256);
    if (cp >= 256 + 33 && cp < 256 + 67) return (int)(0x7F + cp - (256 + 33));
    if (cp == 256 + 67) return 0xAD;
    if ((cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
    return -1;
}
