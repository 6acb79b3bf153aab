/* An OpenAI-style endpoint on loopback for the pipeline tests
 * (test_pipeline_cli.c, test_server_pipeline.c): a streamed /v1/completions
 * is answered with fixed text pieces (server-sent events, one network chunk
 * each), whatever the prompt: what a real LLM does when it repeats a name or
 * an address from its prompt, with the placeholders cut at odd places.
 * Scoring (a completion that is not streamed) is refused as llama.cpp's
 * server refuses it; anything else is 404. One connection at a time. */
#ifndef DUET_TEST_FAKE_ENDPOINT_H
#define DUET_TEST_FAKE_ENDPOINT_H

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int fd, port, stop, streams;
    const char *const *pieces; /* (n_pieces) the streamed answer's text pieces */
    int n_pieces;
    pthread_t thread;
} fake_endpoint;

static void send_all(int c, const char *s, size_t n) {
    while (n > 0) {
        const ssize_t w = send(c, s, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        s += w, n -= (size_t)w;
    }
}

static void answer_one(fake_endpoint *f, int c) {
    char req[1 << 16];
    size_t len = 0;
    const char *body = NULL;
    long clen = 0;
    while (len < sizeof req - 1) { /* headers, then Content-Length bytes of body */
        struct pollfd pf = {.fd = c, .events = POLLIN};
        if (poll(&pf, 1, 5000) <= 0) return;
        const ssize_t r = recv(c, req + len, sizeof req - 1 - len, 0);
        if (r <= 0) return;
        len += (size_t)r, req[len] = 0;
        const char *end = strstr(req, "\r\n\r\n");
        if (!end) continue;
        const char *cl = strstr(req, "Content-Length:"); /* as libcurl writes it */
        clen = cl ? strtol(cl + 15, NULL, 10) : 0;
        body = end + 4;
        if ((long)(len - (size_t)(body - req)) >= clen) break;
    }
    if (!body) return;
    if (!strncmp(req, "POST /v1/completions", 20) && strstr(body, "\"stream\":true")) {
        f->streams++;
        static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
        send_all(c, head, sizeof head - 1);
        const int n = f->n_pieces;
        for (int i = 0; i < n; i++) {
            cJSON *o = cJSON_CreateObject(), *chs = cJSON_AddArrayToObject(o, "choices"), *ch = cJSON_CreateObject();
            cJSON_AddNumberToObject(ch, "index", 0);
            cJSON_AddStringToObject(ch, "text", f->pieces[i]);
            if (i == n - 1) cJSON_AddStringToObject(ch, "finish_reason", "stop");
            else cJSON_AddNullToObject(ch, "finish_reason");
            cJSON_AddItemToArray(chs, ch);
            char *js = cJSON_PrintUnformatted(o), ev[1024];
            const int m = snprintf(ev, sizeof ev, "data: %s\n\n", js);
            send_all(c, ev, (size_t)m);
            free(js), cJSON_Delete(o);
            usleep(2000); /* separate network chunks */
        }
        send_all(c, "data: [DONE]\n\n", 14);
    } else if (!strncmp(req, "POST /v1/completions", 20)) {
        static const char msg[] = "{\"error\":{\"code\":500,\"message\":\"Only no echo is supported\",\"type\":\"server_error\"}}";
        char resp[512];
        const int m = snprintf(resp, sizeof resp,
                               "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                               "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", sizeof msg - 1, msg);
        send_all(c, resp, (size_t)m);
    } else {
        static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        send_all(c, nf, sizeof nf - 1);
    }
}

static void *fake_main(void *arg) {
    fake_endpoint *f = arg;
    while (!f->stop) {
        struct pollfd pf = {.fd = f->fd, .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0) continue;
        const int c = accept(f->fd, NULL, NULL);
        if (c < 0) continue;
        answer_one(f, c);
        close(c);
    }
    return NULL;
}

static void fake_start(fake_endpoint *f, const char *const *pieces, int n_pieces) {
    memset(f, 0, sizeof *f);
    f->pieces = pieces, f->n_pieces = n_pieces;
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(f->fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(f->fd, 16), 0);
    socklen_t al = sizeof a;
    getsockname(f->fd, (struct sockaddr *)&a, &al);
    f->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(fake_endpoint *f) {
    f->stop = 1;
    pthread_join(f->thread, NULL);
    close(f->fd);
}

#endif
