/* Extended-precision float helpers. INCRBYFLOAT and HINCRBYFLOAT compute in
 * the platform's `long double` and print with 17 decimals, trailing zeros
 * trimmed; Rust has no `long double`, so the arithmetic lives here to give
 * byte-identical results. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHARS (5 * 1024)

/* Parses exactly `len` bytes as a long double; 0 on success. */
static int parse_ld(const char *s, size_t len, long double *out) {
    char buf[MAX_CHARS + 1];
    char *end;
    if (len == 0 || len > MAX_CHARS) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL) return -1;
    if (isspace((unsigned char)buf[0])) return -1;
    errno = 0;
    long double v = strtold(buf, &end);
    if (*end != '\0') return -1;
    if (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || fpclassify(v) == FP_ZERO)) return -1;
    if (isnan(v)) return -1;
    *out = v;
    return 0;
}

/* cur + incr. Returns the printed length, or: -1 current value is not a
 * float, -2 increment is not a float, -3 increment is NaN or infinite,
 * -4 result is NaN or infinite, -5 result does not fit. `cur` may be NULL
 * (missing key: 0). */
int slotkv_ld_incr(const char *cur, size_t curlen, const char *incr, size_t incrlen,
                   char *out, size_t outlen) {
    long double a = 0, b = 0;
    if (parse_ld(incr, incrlen, &b) != 0) return -2;
    if (cur != NULL && parse_ld(cur, curlen, &a) != 0) return -1;
    if (isinf(b)) return -3;
    long double r = a + b;
    if (isnan(r) || isinf(r)) return -4;
    int n = snprintf(out, outlen, "%.17Lf", r);
    if (n < 0 || (size_t)n + 1 > outlen) return -5;
    if (strchr(out, '.') != NULL) {
        char *p = out + n - 1;
        while (*p == '0') p--;
        if (*p == '.') p--;
        n = (int)(p - out + 1);
        out[n] = '\0';
    }
    if (n == 2 && out[0] == '-' && out[1] == '0') {
        out[0] = '0';
        n = 1;
    }
    return n;
}
