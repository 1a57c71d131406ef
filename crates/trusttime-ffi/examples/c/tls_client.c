/*
 * tls_client: connect to a TLS server with mbedTLS only once the time is trusted, judging the
 * server's certificate over trusttime's trusted interval (glue/trusttime_mbedtls.c).
 *
 *   tls_client CA.pem HOST:PORT [NTP_HOST:PORT...]
 *
 * Syncs from the NTP servers given (none: no sync, as on a device that just booted), then
 * connects to HOST:PORT (numeric IPv4; the certificate must name "localhost"), sends an HTTP
 * request and prints the first line of the answer.
 *
 * Exit status: 0 connected; 1 no NTP consensus; 2 usage or system error; 3 refused, clock not
 * trusted; 4 refused, certificate expired; 5 refused, certificate not yet valid; 6 other TLS
 * failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>

#include "trusttime.h"
#include "trusttime_mbedtls.h"

static trusttime_ctx ctx;

static uint64_t mono_ns(void) {
    struct timespec m;
    clock_gettime(CLOCK_MONOTONIC, &m);
    return (uint64_t)m.tv_sec * 1000000000u + (uint64_t)m.tv_nsec;
}

static trusttime_now read_clocks(void) {
    struct timespec w;
    clock_gettime(CLOCK_REALTIME, &w);
    trusttime_now now = {.mono_ns = mono_ns(),
                         .wall_ns = (int64_t)w.tv_sec * 1000000000 + w.tv_nsec};
    return now;
}

static int split(const char *hp, char *host, size_t cap, long *port) {
    const char *colon = strrchr(hp, ':');
    if (!colon || colon == hp || (size_t)(colon - hp) >= cap)
        return -1;
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = '\0';
    *port = strtol(colon + 1, NULL, 10);
    return *port > 0 && *port < 65536 ? 0 : -1;
}

/* One round with the NTP servers: returns 0 on consensus. */
static int ntp_sync(int n, char **servers) {
    struct pollfd fds[TRUSTTIME_MAX_SERVERS];
    for (int i = 0; i < n; i++) {
        char host[64];
        long port;
        struct sockaddr_in sa = {.sin_family = AF_INET};
        if (split(servers[i], host, sizeof host, &port) || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
            fprintf(stderr, "tls_client: %s: expected IPv4:PORT\n", servers[i]);
            exit(2);
        }
        sa.sin_port = htons((uint16_t)port);
        fds[i].fd = socket(AF_INET, SOCK_DGRAM, 0);
        fds[i].events = POLLIN;
        if (fds[i].fd < 0 || connect(fds[i].fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            perror("tls_client: socket");
            exit(2);
        }
    }
    trusttime_round round;
    for (;;) {
        uint8_t buf[TRUSTTIME_REQUEST_SIZE];
        trusttime_transmit tx;
        uint64_t rand;
        do {
            if (getrandom(&rand, sizeof rand, 0) != (ssize_t)sizeof rand)
                exit(2);
            if (trusttime_poll_transmit(&ctx, read_clocks(), rand, buf, sizeof buf, &tx) != TRUSTTIME_ERROR_OK)
                exit(2);
            if (tx.len > 0)
                (void)send(fds[tx.server].fd, buf, tx.len, 0);
        } while (tx.len > 0);
        trusttime_round_status(&ctx, &round);
        if (round.phase != TRUSTTIME_PHASE_IN_PROGRESS)
            break;
        uint64_t deadline, now = mono_ns();
        trusttime_poll_timeout(&ctx, &deadline);
        int wait_ms = deadline <= now ? 0 : (int)((deadline - now + 999999) / 1000000);
        if (poll(fds, (nfds_t)n, wait_ms) > 0) {
            for (int i = 0; i < n; i++) {
                uint8_t rx[1024];
                ssize_t len;
                if ((fds[i].revents & POLLIN) && (len = recv(fds[i].fd, rx, sizeof rx, 0)) >= 0)
                    (void)trusttime_handle_datagram(&ctx, read_clocks(), (uint8_t)i, rx, (size_t)len, NULL);
            }
        }
        trusttime_handle_timeout(&ctx, read_clocks());
    }
    for (int i = 0; i < n; i++)
        close(fds[i].fd);
    return round.phase == TRUSTTIME_PHASE_AGREED ? 0 : -1;
}

static int refused(const char *what, int ret) {
    char err[128];
    mbedtls_strerror(ret, err, sizeof err);
    trusttime_mbedtls_verdict v = trusttime_mbedtls_last_verdict();
    printf("refused: %s (%s; mbedTLS: %s)\n", trusttime_mbedtls_verdict_str(v), what, err);
    switch (v) {
    case TRUSTTIME_MBEDTLS_CLOCK_NOT_TRUSTED: return 3;
    case TRUSTTIME_MBEDTLS_EXPIRED: return 4;
    case TRUSTTIME_MBEDTLS_NOT_YET_VALID: return 5;
    default: return 6;
    }
}

int main(int argc, char **argv) {
    if (argc < 3 || argc - 3 > TRUSTTIME_MAX_SERVERS) {
        fprintf(stderr, "usage: %s CA.pem HOST:PORT [NTP_HOST:PORT...]\n", argv[0]);
        return 2;
    }
    int n_ntp = argc - 3;
    trusttime_config cfg;
    trusttime_config_default(&cfg);
    cfg.server_count = (uint8_t)(n_ntp > 0 ? n_ntp : 1);
    if (trusttime_init(&ctx, &cfg) != TRUSTTIME_ERROR_OK)
        return 2;
    trusttime_mbedtls_setup(&ctx, mono_ns);
#if defined(MBEDTLS_PLATFORM_TIME_ALT)
    mbedtls_platform_set_time(trusttime_mbedtls_time);
#endif
    if (n_ntp > 0) {
        if (ntp_sync(n_ntp, argv + 3) != 0) {
            printf("no NTP consensus\n");
            return 1;
        }
        trusttime_time t;
        trusttime_trusted_time(&ctx, mono_ns(), &t);
        printf("synced: +/- %.6f s\n", (double)(t.latest_ns - t.earliest_ns) / 2e9);
    }

    char host[64];
    long port;
    if (split(argv[2], host, sizeof host, &port)) {
        fprintf(stderr, "tls_client: %s: expected HOST:PORT\n", argv[2]);
        return 2;
    }
    char port_s[8];
    snprintf(port_s, sizeof port_s, "%ld", port);

    mbedtls_net_context net;
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_net_init(&net);
    mbedtls_ssl_init(&ssl);
    mbedtls_ssl_config_init(&conf);
    mbedtls_x509_crt_init(&ca);
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    int status = 2, ret;
    if ((ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0)) != 0 ||
        (ret = mbedtls_x509_crt_parse_file(&ca, argv[1])) != 0 ||
        (ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                           MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
        fprintf(stderr, "tls_client: mbedTLS setup failed: -0x%04x\n", (unsigned)-ret);
        goto out;
    }
    mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&conf, &ca, NULL);
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
    /* The one line that puts certificate validity on trusted time. */
    mbedtls_ssl_conf_verify(&conf, trusttime_mbedtls_verify, NULL);
    if ((ret = mbedtls_ssl_setup(&ssl, &conf)) != 0 ||
        (ret = mbedtls_ssl_set_hostname(&ssl, "localhost")) != 0 ||
        (ret = mbedtls_net_connect(&net, host, port_s, MBEDTLS_NET_PROTO_TCP)) != 0) {
        fprintf(stderr, "tls_client: connect to %s failed: -0x%04x\n", argv[2], (unsigned)-ret);
        goto out;
    }
    mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, mbedtls_net_recv, NULL);
    trusttime_mbedtls_reset();
    while ((ret = mbedtls_ssl_handshake(&ssl)) != 0) {
        if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
            status = refused("handshake", ret);
            goto out;
        }
    }
    const char req[] = "GET / HTTP/1.0\r\n\r\n";
    if ((ret = mbedtls_ssl_write(&ssl, (const unsigned char *)req, sizeof req - 1)) < 0) {
        status = 6;
        goto out;
    }
    unsigned char resp[256];
    ret = mbedtls_ssl_read(&ssl, resp, sizeof resp - 1);
    resp[ret > 0 ? ret : 0] = '\0';
    char *eol = strpbrk((char *)resp, "\r\n");
    if (eol)
        *eol = '\0';
    printf("connected: %s; server said: %s\n", trusttime_mbedtls_verdict_str(trusttime_mbedtls_last_verdict()),
           (char *)resp);
    mbedtls_ssl_close_notify(&ssl);
    status = 0;
out:
    mbedtls_net_free(&net);
    mbedtls_ssl_free(&ssl);
    mbedtls_ssl_config_free(&conf);
    mbedtls_x509_crt_free(&ca);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return status;
}
