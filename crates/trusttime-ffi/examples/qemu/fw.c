/*
 * A Cortex-M firmware that links libtrusttime_ffi.a and replays NTP replies captured from
 * three servers (replies.h, one of them an hour ahead), then prints over semihosting the
 * consensus, the trusted interval and the stack each call used. Runs under QEMU:
 *
 *   qemu-system-arm -machine lm3s6965evb -nographic \
 *       -semihosting-config enable=on,target=native -kernel fw.elf
 *
 * It exits (semihosting SYS_EXIT) with success only when the liar was excluded and the
 * interval holds the capture time. No clock, no network: the "now" of each call is the
 * instant of the capture, on a device whose wall clock reads 2000-01-01.
 */
#include <stdint.h>
#include <string.h>

#include "trusttime.h"
#include "replies.h"

/* ---- bare-metal start-up ---------------------------------------------------------------- */
extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
int main(void);
void reset_handler(void);

__attribute__((section(".isr_vector"), used)) static const void *const vectors[] = {
    &_estack,
    (const void *)reset_handler,
};

static int semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void put(const char *s) { semihost(0x04 /* SYS_WRITE0 */, s); }

__attribute__((noreturn)) static void finish(int ok) {
    /* ADP_Stopped_ApplicationExit (QEMU exits 0) or ADP_Stopped_RunTimeErrorUnknown (1). */
    semihost(0x18 /* SYS_EXIT */, (const void *)(uintptr_t)(ok ? 0x20026 : 0x20023));
    for (;;) {
    }
}

void reset_handler(void) {
    uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;)
        *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;)
        *dst++ = 0;
    finish(main() == 0);
}

/* The library calls this if Rust code ever panicked (it must not return). */
void trusttime_panic_hook(void) {
    put("trusttime: panic\n");
    finish(0);
}

/* ---- output ------------------------------------------------------------------------------ */
static void put_i64(int64_t v) {
    char buf[24];
    int i = sizeof buf - 1;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u && i > 1);
    if (v < 0)
        buf[--i] = '-';
    put(&buf[i]);
}

/* ---- stack measurement: paint below the stack pointer, call, find the deepest write ----- */
#define PAINT 0x5AA5C33Cu

static uint32_t stack_used(void (*fn)(void)) {
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    uint32_t *top = sp - 8; /* leave this function's own frame alone */
    for (uint32_t *p = &_ebss; p < top; p++)
        *p = PAINT;
    fn();
    uint32_t *p = &_ebss;
    while (p < top && *p == PAINT)
        p++;
    return (uint32_t)((uintptr_t)sp - (uintptr_t)p);
}

/* ---- the replay -------------------------------------------------------------------------- */
static trusttime_ctx ctx; /* TRUSTTIME_CONTEXT_SIZE bytes in .bss */
static trusttime_config cfg;
static trusttime_error err;
static int current;        /* the server being replayed */
static uint64_t t0;        /* capture time of the first request */
static uint8_t request[TRUSTTIME_REQUEST_SIZE];
static trusttime_transmit tx;
static trusttime_reject why;
static trusttime_round round_;
static trusttime_time now_time;
static uint8_t saved[TRUSTTIME_SAVED_SIZE];
static size_t saved_len;
static uint64_t deadline;

/* The device's wall clock reads 2000-01-01 when the capture began. */
#define DEVICE_WALL0 (946684800ll * 1000000000ll)

static trusttime_now at(int64_t capture_wall_ns) {
    trusttime_now n;
    n.mono_ns = (uint64_t)(capture_wall_ns - (int64_t)t0);
    n.wall_ns = DEVICE_WALL0 + (int64_t)n.mono_ns;
    return n;
}

static void call_init(void) { err = trusttime_init(&ctx, &cfg); }
static void call_transmit(void) {
    err = trusttime_poll_transmit(&ctx, at(captured[current].sent_wall_ns),
                                  CAPTURED_COOKIE_BASE + (uint64_t)current, request,
                                  sizeof request, &tx);
}
static void call_datagram(void) {
    const struct captured *c = &captured[current];
    err = trusttime_handle_datagram(&ctx, at(c->sent_wall_ns + (int64_t)c->rtt_ns),
                                    (uint8_t)current, c->reply, sizeof c->reply, &why);
}
static void call_timeout(void) {
    err = trusttime_poll_timeout(&ctx, &deadline);
    if (err == TRUSTTIME_ERROR_OK)
        err = trusttime_handle_timeout(&ctx, at((int64_t)t0 + (int64_t)deadline));
}
static void call_time(void) {
    err = trusttime_trusted_time(&ctx, at(captured[CAPTURED_SERVERS - 1].sent_wall_ns +
                                          (int64_t)captured[CAPTURED_SERVERS - 1].rtt_ns)
                                           .mono_ns,
                                 &now_time);
}
static void call_round(void) { err = trusttime_round_status(&ctx, &round_); }
static void call_save(void) {
    err = trusttime_save(&ctx, 0, saved, sizeof saved, &saved_len);
}
static void call_restore(void) {
    err = trusttime_restore(&ctx, at((int64_t)t0), saved, saved_len, 0);
}

static int check(const char *what, uint32_t stack) {
    put(what);
    put(": ");
    put(trusttime_error_str(err));
    put(", stack ");
    put_i64(stack);
    put(" B\n");
    return err == TRUSTTIME_ERROR_OK;
}

int main(void) {
    int ok = 1;
    put("trusttime firmware: replaying ");
    put_i64(CAPTURED_SERVERS);
    put(" captured NTP replies; the context uses ");
    put_i64((int64_t)trusttime_context_size());
    put(" of its ");
    put_i64(TRUSTTIME_CONTEXT_SIZE);
    put(" bytes\n");
    t0 = (uint64_t)captured[0].sent_wall_ns;
    trusttime_config_default(&cfg);
    cfg.server_count = CAPTURED_SERVERS;
    cfg.floor_unix_s = 1790000000; /* 2026-09-21: this firmware's build time, say */
    ok &= check("trusttime_init", stack_used(call_init));
    uint32_t worst_tx = 0, worst_rx = 0;
    for (current = 0; current < CAPTURED_SERVERS; current++) {
        uint32_t s = stack_used(call_transmit);
        ok &= err == TRUSTTIME_ERROR_OK && tx.len == 48 && tx.server == current;
        worst_tx = s > worst_tx ? s : worst_tx;
        s = stack_used(call_datagram);
        if (err != TRUSTTIME_ERROR_OK) {
            put("server ");
            put(captured[current].server);
            put(": ");
            put(trusttime_reject_str(why));
            put("\n");
            ok = 0;
        }
        worst_rx = s > worst_rx ? s : worst_rx;
    }
    err = TRUSTTIME_ERROR_OK;
    ok &= check("trusttime_poll_transmit", worst_tx);
    ok &= check("trusttime_handle_datagram (deciding the round at the last)", worst_rx);
    ok &= check("trusttime_round_status", stack_used(call_round));
    ok &= check("trusttime_trusted_time", stack_used(call_time));
    for (int i = 0; i < CAPTURED_SERVERS; i++) {
        trusttime_server s;
        trusttime_server_info(&ctx, (uint8_t)i, &s);
        put("server ");
        put(captured[i].server);
        put(": offset ");
        put_i64(s.offset_ns / 1000000);
        put(" ms, ");
        put(s.agreed ? "agreed\n" : "falseticker\n");
    }
    put("agreed mask 0x");
    char hex[2] = {(char)("0123456789abcdef"[round_.agreed_mask & 15]), 0};
    put(hex);
    put(", interval ");
    put_i64(now_time.earliest_ns);
    put(" .. ");
    put_i64(now_time.latest_ns);
    put(" ns, width ");
    put_i64((now_time.latest_ns - now_time.earliest_ns) / 1000);
    put(" us\n");
    /* The honest servers share the capturing machine's clock: the interval at the last reply
     * lies between the first request and the last reply, and is narrow. */
    const struct captured *last = &captured[CAPTURED_SERVERS - 1];
    int64_t end = last->sent_wall_ns + (int64_t)last->rtt_ns;
    ok &= round_.phase == TRUSTTIME_PHASE_AGREED && round_.agreed_mask == 0x5;
    ok &= now_time.provenance == TRUSTTIME_PROVENANCE_NTP;
    ok &= now_time.earliest_ns <= end && now_time.latest_ns >= (int64_t)t0;
    ok &= now_time.latest_ns - now_time.earliest_ns < 100000000;
    ok &= trusttime_ready(&ctx, at(end).mono_ns, TRUSTTIME_PURPOSE_TLS) == TRUSTTIME_ERROR_OK;
    ok &= check("trusttime_poll_timeout + trusttime_handle_timeout", stack_used(call_timeout));
    ok &= check("trusttime_save", stack_used(call_save));
    ok &= check("trusttime_restore", stack_used(call_restore));
    ok &= saved_len == TRUSTTIME_SAVED_SIZE;

    put(ok ? "trusttime firmware: PASS\n" : "trusttime firmware: FAIL\n");
    return ok ? 0 : 1;
}
