/*
 * sync: ask up to TRUSTTIME_MAX_SERVERS NTP servers, reach a consensus that excludes
 * falsetickers, and print the trusted interval.
 *
 *   sync HOST:PORT [HOST:PORT...]      (numeric IPv4 addresses; port 123 for public servers)
 *
 * The shape of a FreeRTOS+TCP port: one UDP socket per server, a loop that asks the library
 * what to send, waits for a datagram or the library's deadline, and feeds what arrived. Replace
 * socket()/poll()/clock_gettime()/getrandom() with FreeRTOS_socket(), FreeRTOS_select(),
 * xTaskGetTickCount() and your TRNG.
 *
 * Exit status: 0 consensus reached, 1 no consensus, 2 usage or system error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "trusttime.h"

static trusttime_ctx ctx; /* TRUSTTIME_CONTEXT_SIZE bytes, statically allocated */

static trusttime_now read_clocks(void) {
    struct timespec m, w;
    clock_gettime(CLOCK_MONOTONIC, &m);
    clock_gettime(CLOCK_REALTIME, &w);
    trusttime_now now = {
        .mono_ns = (uint64_t)m.tv_sec * 1000000000u + (uint64_t)m.tv_nsec,
        .wall_ns = (int64_t)w.tv_sec * 1000000000 + w.tv_nsec,
    };
    return now;
}

static uint64_t random_u64(void) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
        perror("getrandom");
        exit(2);
    }
    return r;
}

static void print_utc(int64_t ns) {
    if (ns == INT64_MAX) {
        printf("(unbounded)");
        return;
    }
    time_t s = (time_t)(ns / 1000000000);
    long frac = (long)(ns % 1000000000);
    if (frac < 0) {
        frac += 1000000000;
        s -= 1;
    }
    struct tm tm;
    gmtime_r(&s, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    printf("%s.%06ldZ", buf, frac / 1000);
}

static const char *provenance_name(trusttime_provenance p) {
    switch (p) {
    case TRUSTTIME_PROVENANCE_FLOOR: return "floor";
    case TRUSTTIME_PROVENANCE_RTC: return "rtc";
    case TRUSTTIME_PROVENANCE_PERSISTED: return "persisted";
    case TRUSTTIME_PROVENANCE_MANUAL: return "manual";
    case TRUSTTIME_PROVENANCE_NTP: return "ntp";
    case TRUSTTIME_PROVENANCE_AUTHENTICATED: return "authenticated";
    default: return "?";
    }
}

static const char *state_name(trusttime_state s) {
    switch (s) {
    case TRUSTTIME_STATE_UNKNOWN: return "unknown";
    case TRUSTTIME_STATE_HOLDOVER: return "holdover";
    case TRUSTTIME_STATE_SYNCED: return "synced";
    case TRUSTTIME_STATE_AUTHENTICATED: return "authenticated";
    default: return "?";
    }
}

#define CHECK(call)                                                                            \
    do {                                                                                       \
        trusttime_error e_ = (call);                                                           \
        if (e_ != TRUSTTIME_ERROR_OK) {                                                        \
            fprintf(stderr, "sync: %s: %s\n", #call, trusttime_error_str(e_));                \
            return 2;                                                                          \
        }                                                                                      \
    } while (0)

int main(int argc, char **argv) {
    int n = argc - 1;
    if (n < 1 || n > TRUSTTIME_MAX_SERVERS) {
        fprintf(stderr, "usage: %s HOST:PORT [HOST:PORT...] (1 to %d IPv4 servers)\n", argv[0],
                TRUSTTIME_MAX_SERVERS);
        return 2;
    }
    if (trusttime_context_size() > sizeof ctx) {
        fprintf(stderr, "sync: header and library disagree on the context size\n");
        return 2;
    }
    struct pollfd fds[TRUSTTIME_MAX_SERVERS];
    for (int i = 0; i < n; i++) {
        char host[64];
        const char *colon = strrchr(argv[i + 1], ':');
        size_t hl = colon ? (size_t)(colon - argv[i + 1]) : 0;
        struct sockaddr_in sa = {.sin_family = AF_INET};
        long port = colon ? strtol(colon + 1, NULL, 10) : 0;
        if (!colon || hl == 0 || hl >= sizeof host || port <= 0 || port > 65535) {
            fprintf(stderr, "sync: %s: expected HOST:PORT\n", argv[i + 1]);
            return 2;
        }
        memcpy(host, argv[i + 1], hl);
        host[hl] = '\0';
        if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
            fprintf(stderr, "sync: %s: not an IPv4 address\n", host);
            return 2;
        }
        sa.sin_port = htons((uint16_t)port);
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        /* connect(): the kernel then only delivers datagrams from this server to fd, so the
         * socket says which server a datagram came from. */
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            perror("sync: socket");
            return 2;
        }
        fds[i].fd = fd;
        fds[i].events = POLLIN;
    }

    trusttime_config cfg;
    CHECK(trusttime_config_default(&cfg));
    cfg.server_count = (uint8_t)n;
    CHECK(trusttime_init(&ctx, &cfg));

    trusttime_round round;
    for (;;) {
        trusttime_now now = read_clocks();
        uint8_t buf[TRUSTTIME_REQUEST_SIZE];
        for (;;) {
            trusttime_transmit tx;
            CHECK(trusttime_poll_transmit(&ctx, now, random_u64(), buf, sizeof buf, &tx));
            if (tx.len == 0)
                break;
            if (send(fds[tx.server].fd, buf, tx.len, 0) < 0)
                fprintf(stderr, "sync: send to server %u: %s\n", tx.server, strerror(errno));
        }
        CHECK(trusttime_round_status(&ctx, &round));
        if (round.phase != TRUSTTIME_PHASE_IN_PROGRESS)
            break;
        uint64_t deadline;
        CHECK(trusttime_poll_timeout(&ctx, &deadline));
        now = read_clocks();
        int wait_ms = deadline <= now.mono_ns ? 0 : (int)((deadline - now.mono_ns + 999999) / 1000000);
        int ready = poll(fds, (nfds_t)n, wait_ms);
        if (ready < 0 && errno != EINTR) {
            perror("sync: poll");
            return 2;
        }
        for (int i = 0; ready > 0 && i < n; i++) {
            if (!(fds[i].revents & POLLIN))
                continue;
            uint8_t rx[1024];
            ssize_t len = recv(fds[i].fd, rx, sizeof rx, 0);
            if (len < 0)
                continue; /* e.g. ICMP port unreachable: the server will time out */
            trusttime_reject why;
            trusttime_error e = trusttime_handle_datagram(&ctx, read_clocks(), (uint8_t)i, rx,
                                                          (size_t)len, &why);
            if (e == TRUSTTIME_ERROR_REJECTED)
                fprintf(stderr, "sync: server %d: datagram not used: %s\n", i,
                        trusttime_reject_str(why));
            else if (e != TRUSTTIME_ERROR_OK)
                CHECK(e);
        }
        CHECK(trusttime_handle_timeout(&ctx, read_clocks()));
    }

    for (int i = 0; i < n; i++) {
        trusttime_server s;
        CHECK(trusttime_server_info(&ctx, (uint8_t)i, &s));
        printf("server %d %s: ", i, argv[i + 1]);
        if (s.status == TRUSTTIME_SERVER_STATUS_REPLIED)
            printf("offset %+.6f s +/- %.6f s, stratum %u, %s\n", (double)s.offset_ns / 1e9,
                   (double)s.error_ns / 1e9, s.stratum, s.agreed ? "agreed" : "falseticker");
        else
            printf("failed: %s\n", trusttime_reject_str(s.reject));
        close(fds[i].fd);
    }
    if (round.phase != TRUSTTIME_PHASE_AGREED) {
        printf("no consensus: %s (%u answered, %u needed)\n",
               round.failure == TRUSTTIME_FAILURE_DISAGREEMENT ? "the servers disagree"
                                                               : "too few servers answered",
               round.replies, round.needed);
        return 1;
    }
    trusttime_time t;
    uint64_t mono = read_clocks().mono_ns;
    CHECK(trusttime_trusted_time(&ctx, mono, &t));
    printf("consensus: %u of %u servers agree (mask 0x%" PRIx32 ")\n", round.agreed_count,
           (unsigned)n, round.agreed_mask);
    printf("trusted interval: ");
    print_utc(t.earliest_ns);
    printf(" .. ");
    print_utc(t.latest_ns);
    printf(" (+/- %.6f s), provenance %s, state %s\n",
           (double)(t.latest_ns - t.earliest_ns) / 2e9, provenance_name(t.provenance),
           state_name(t.state));
    printf("ready for TLS: %s, for SigV4: %s\n",
           trusttime_ready(&ctx, mono, TRUSTTIME_PURPOSE_TLS) == TRUSTTIME_ERROR_OK ? "yes" : "no",
           trusttime_ready(&ctx, mono, TRUSTTIME_PURPOSE_SIGV4) == TRUSTTIME_ERROR_OK ? "yes" : "no");
    printf("interval_ns %" PRId64 " %" PRId64 "\n", t.earliest_ns, t.latest_ns);
    return 0;
}
