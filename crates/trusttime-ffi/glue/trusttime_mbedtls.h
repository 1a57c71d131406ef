/*
 * mbedTLS on trusted time: certificate validity judged over trusttime's trusted interval.
 *
 * mbedTLS checks a certificate's validity against one reading of the device clock
 * (mbedtls_time()), which on a device that just booted may read 2000-01-01 or 1970. This glue
 * re-judges MBEDTLS_X509_BADCERT_EXPIRED and MBEDTLS_X509_BADCERT_FUTURE over the interval
 * trusttime vouches for: a certificate is valid only if it is valid over the whole interval.
 * When the time is not trusted well enough for TLS (TRUSTTIME_PURPOSE_TLS: within an hour),
 * every certificate fails with MBEDTLS_X509_BADCERT_OTHER and the verdict
 * TRUSTTIME_MBEDTLS_CLOCK_NOT_TRUSTED: re-sync, do not retry the handshake.
 *
 *   trusttime_mbedtls_setup(&ctx, my_monotonic_ns);
 *   mbedtls_ssl_conf_verify(&conf, trusttime_mbedtls_verify, NULL);
 *   #if defined(MBEDTLS_PLATFORM_TIME_ALT)
 *   mbedtls_platform_set_time(trusttime_mbedtls_time);
 *   #endif
 *   ... handshake fails? trusttime_mbedtls_last_verdict() says why.
 *
 * One trusttime context serves every TLS connection; the glue keeps its state in statics and
 * is meant to be called from one task (or under the application's TLS lock).
 */
#ifndef TRUSTTIME_MBEDTLS_H
#define TRUSTTIME_MBEDTLS_H

#include <stdint.h>

#include <mbedtls/platform_time.h>
#include <mbedtls/x509_crt.h>

#include "trusttime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the last verify callback decided about time. */
typedef enum {
    /* Every certificate so far is valid over the whole trusted interval. */
    TRUSTTIME_MBEDTLS_OK = 0,
    /* The time is not trusted well enough for TLS: nothing was judged. Sync first. */
    TRUSTTIME_MBEDTLS_CLOCK_NOT_TRUSTED = 1,
    /* A certificate expired before (some of) the trusted interval. */
    TRUSTTIME_MBEDTLS_EXPIRED = 2,
    /* A certificate becomes valid only after (some of) the trusted interval. */
    TRUSTTIME_MBEDTLS_NOT_YET_VALID = 3,
} trusttime_mbedtls_verdict;

/* The context the glue reads (initialised and kept synced by the application) and the
 * monotonic clock, in nanoseconds, that the application passes to trusttime as mono_ns. */
void trusttime_mbedtls_setup(trusttime_ctx *ctx, uint64_t (*mono_ns)(void));

/* For mbedtls_platform_set_time() (MBEDTLS_PLATFORM_TIME_ALT): the middle of the trusted
 * interval, in seconds, when it is trusted for TLS; otherwise the floor (the earliest time
 * known to be past), so mbedTLS's own check can only err towards "not yet valid". */
mbedtls_time_t trusttime_mbedtls_time(mbedtls_time_t *timer);

/* For mbedtls_ssl_conf_verify(): clears mbedTLS's own EXPIRED/FUTURE verdict on `crt` and
 * replaces it with the verdict over the trusted interval (other flags are kept). Sets
 * MBEDTLS_X509_BADCERT_OTHER when the time is not trusted. Always returns 0. */
int trusttime_mbedtls_verify(void *unused, mbedtls_x509_crt *crt, int depth, uint32_t *flags);

/* The verdict of the verify callbacks since the last handshake began (reset it with
 * trusttime_mbedtls_reset() before each handshake). */
trusttime_mbedtls_verdict trusttime_mbedtls_last_verdict(void);

/* Forgets the last verdict (call before a handshake). */
void trusttime_mbedtls_reset(void);

/* A short English description of a verdict. */
const char *trusttime_mbedtls_verdict_str(trusttime_mbedtls_verdict v);

#ifdef __cplusplus
}
#endif

#endif /* TRUSTTIME_MBEDTLS_H */
