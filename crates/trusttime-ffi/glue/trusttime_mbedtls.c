/* mbedTLS on trusted time: see trusttime_mbedtls.h. */
#include "trusttime_mbedtls.h"

#include <mbedtls/x509.h>

static trusttime_ctx *tt_ctx;
static uint64_t (*tt_mono_ns)(void);
static trusttime_mbedtls_verdict tt_verdict = TRUSTTIME_MBEDTLS_OK;

void trusttime_mbedtls_setup(trusttime_ctx *ctx, uint64_t (*mono_ns)(void)) {
    tt_ctx = ctx;
    tt_mono_ns = mono_ns;
    tt_verdict = TRUSTTIME_MBEDTLS_OK;
}

void trusttime_mbedtls_reset(void) { tt_verdict = TRUSTTIME_MBEDTLS_OK; }

trusttime_mbedtls_verdict trusttime_mbedtls_last_verdict(void) { return tt_verdict; }

const char *trusttime_mbedtls_verdict_str(trusttime_mbedtls_verdict v) {
    switch (v) {
    case TRUSTTIME_MBEDTLS_OK: return "certificate valid over the trusted interval";
    case TRUSTTIME_MBEDTLS_CLOCK_NOT_TRUSTED: return "clock not trusted: sync before connecting";
    case TRUSTTIME_MBEDTLS_EXPIRED: return "certificate expired";
    case TRUSTTIME_MBEDTLS_NOT_YET_VALID: return "certificate not yet valid";
    default: return "unknown verdict";
    }
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t x509_seconds(const mbedtls_x509_time *t) {
    return days_from_civil(t->year, t->mon, t->day) * 86400 + (int64_t)t->hour * 3600 +
           (int64_t)t->min * 60 + t->sec;
}

/* The trusted interval in seconds, or 0 when the time is not trusted for TLS. */
static int trusted(int64_t *earliest_s, int64_t *latest_s) {
    if (tt_ctx == NULL || tt_mono_ns == NULL)
        return 0;
    uint64_t mono = tt_mono_ns();
    trusttime_time t;
    if (trusttime_ready(tt_ctx, mono, TRUSTTIME_PURPOSE_TLS) != TRUSTTIME_ERROR_OK ||
        trusttime_trusted_time(tt_ctx, mono, &t) != TRUSTTIME_ERROR_OK)
        return 0;
    /* Round outwards: a whole-second interval that contains the nanosecond one. */
    *earliest_s = t.earliest_ns / 1000000000 - (t.earliest_ns % 1000000000 < 0);
    *latest_s = t.latest_ns / 1000000000 + (t.latest_ns % 1000000000 > 0);
    return 1;
}

mbedtls_time_t trusttime_mbedtls_time(mbedtls_time_t *timer) {
    int64_t e, l, now = 0;
    trusttime_time t;
    if (trusted(&e, &l))
        now = e + (l - e) / 2;
    else if (tt_ctx != NULL && tt_mono_ns != NULL &&
             trusttime_trusted_time(tt_ctx, tt_mono_ns(), &t) == TRUSTTIME_ERROR_OK)
        now = t.earliest_ns / 1000000000;
    if (timer != NULL)
        *timer = (mbedtls_time_t)now;
    return (mbedtls_time_t)now;
}

int trusttime_mbedtls_verify(void *unused, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
    (void)unused;
    (void)depth;
    *flags &= ~(uint32_t)(MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE);
    int64_t earliest, latest;
    if (!trusted(&earliest, &latest)) {
        *flags |= MBEDTLS_X509_BADCERT_OTHER;
        tt_verdict = TRUSTTIME_MBEDTLS_CLOCK_NOT_TRUSTED;
        return 0;
    }
    /* Valid only if valid at every instant of the interval. */
    if (latest > x509_seconds(&crt->valid_to)) {
        *flags |= MBEDTLS_X509_BADCERT_EXPIRED;
        if (tt_verdict == TRUSTTIME_MBEDTLS_OK)
            tt_verdict = TRUSTTIME_MBEDTLS_EXPIRED;
    }
    if (earliest < x509_seconds(&crt->valid_from)) {
        *flags |= MBEDTLS_X509_BADCERT_FUTURE;
        if (tt_verdict == TRUSTTIME_MBEDTLS_OK)
            tt_verdict = TRUSTTIME_MBEDTLS_NOT_YET_VALID;
    }
    return 0;
}
