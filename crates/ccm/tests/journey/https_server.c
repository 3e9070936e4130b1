/*
 * A small HTTPS server for ccm's journey tests, linked statically (glibc + OpenSSL) so that it
 * runs in an image that holds nothing else.
 *
 *   https_server PORT CERT KEY [FILE]
 *
 * Loads the certificate chain CERT and the key KEY (the files ccm-launch writes before it starts
 * the application), listens on 0.0.0.0:PORT and answers every HTTPS request with a page naming
 * the greeting from $GREETING (a measured variable of the converted image) and the content of
 * FILE (a trusted file). Stops on SIGTERM or SIGINT.
 */
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static void fail(const char *what) {
    fprintf(stderr, "https_server: error: %s: ", what);
    ERR_print_errors_fp(stderr);
    fprintf(stderr, "%s\n", errno ? strerror(errno) : "");
    exit(1);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: https_server PORT CERT KEY [FILE]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    char file_text[256] = "(no file)";
    if (argc > 4) {
        FILE *f = fopen(argv[4], "r");
        if (!f) fail("opening the page file");
        size_t n = fread(file_text, 1, sizeof file_text - 1, f);
        file_text[n] = 0;
        fclose(f);
    }
    const char *greeting = getenv("GREETING") ? getenv("GREETING") : "(unset)";

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: accept() returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) fail("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1) fail("loading the certificate");
    if (SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1) fail("loading the key");
    if (SSL_CTX_check_private_key(ctx) != 1) fail("the key does not match the certificate");

    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) != 0) fail("bind");
    if (listen(s, 16) != 0) fail("listen");
    fprintf(stderr, "https_server: serving https://0.0.0.0:%d/\n", port);

    while (!stopping) {
        int c = accept(s, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR) continue;
            fail("accept");
        }
        struct timeval tv = {5, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, c);
        if (SSL_accept(ssl) == 1) {
            char req[4096];
            int got = 0, n;
            /* Read the request head (up to the blank line). */
            while (got < (int)sizeof req - 1 && (n = SSL_read(ssl, req + got, (int)sizeof req - 1 - got)) > 0) {
                got += n;
                req[got] = 0;
                if (strstr(req, "\r\n\r\n")) break;
            }
            char body[1024];
            int blen = snprintf(body, sizeof body,
                                "hello from the ccm journey test server\ngreeting: %s\nfile: %s\n",
                                greeting, file_text);
            char head[256];
            int hlen = snprintf(head, sizeof head,
                                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                                "Connection: close\r\n\r\n",
                                blen);
            SSL_write(ssl, head, hlen);
            SSL_write(ssl, body, blen);
            SSL_shutdown(ssl);
        } else {
            ERR_clear_error();
        }
        SSL_free(ssl);
        close(c);
    }
    fprintf(stderr, "https_server: stopped\n");
    return 0;
}
