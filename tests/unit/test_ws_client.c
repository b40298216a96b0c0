/* Websocket client (common/ws_client.c): frame codec, handshake, and a
 * conversation with a fake server over a socketpair. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/http_client.h"
#include "common/strbuf.h"
#include "common/ws_client.h"

/* --------------------------------------------------------------- codec */

static void roundtrip(uint64_t len, bool masked, size_t expect_hl)
{
	uint8_t buf[14], mask[4] = { 1, 2, 3, 4 };
	struct wsc_frame_hdr h;
	size_t hl = wsc_encode_header(buf, true, WSC_BINARY, len, masked ? mask : NULL);

	assert_int_equal(hl, expect_hl);
	/* Every shorter prefix asks for more bytes. */
	for (size_t i = 0; i < hl; i++)
		assert_int_equal(wsc_decode_header(buf, i, &h), 0);
	assert_int_equal(wsc_decode_header(buf, hl, &h), (int)hl);
	assert_true(h.fin);
	assert_int_equal(h.opcode, WSC_BINARY);
	assert_int_equal(h.rsv, 0);
	assert_int_equal(h.len, len);
	assert_int_equal(h.masked, masked);
	if (masked)
		assert_memory_equal(h.mask, mask, 4);
}

static void test_header_lengths(void **state)
{
	roundtrip(0, false, 2);
	roundtrip(125, false, 2);
	roundtrip(126, false, 4);
	roundtrip(65535, true, 8);
	roundtrip(65536, false, 10);
	roundtrip(5000000000ULL, true, 14);
}

static void test_header_bits(void **state)
{
	uint8_t buf[14];
	struct wsc_frame_hdr h;
	static const uint8_t rsv[] = { 0xC1, 0x00 };   /* fin + RSV1, text */
	static const uint8_t huge[] = { 0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0 };

	assert_int_equal(wsc_encode_header(buf, false, WSC_TEXT, 3, NULL), 2);
	assert_int_equal(buf[0], 0x01);
	assert_int_equal(buf[1], 0x03);
	assert_int_equal(wsc_encode_header(buf, true, WSC_CLOSE, 2, NULL), 2);
	assert_int_equal(buf[0], 0x88);
	assert_int_equal(wsc_decode_header(rsv, 2, &h), 2);
	assert_int_equal(h.rsv, 4);
	assert_int_equal(wsc_decode_header(huge, sizeof(huge), &h), -EPROTO);
}

static void test_mask(void **state)
{
	uint8_t mask[4] = { 0x37, 0xfa, 0x21, 0x3d };
	uint8_t data[] = "Hello";
	uint8_t part[5];

	/* RFC 6455 §5.7: a masked "Hello". */
	wsc_apply_mask(data, 5, mask, 0);
	assert_memory_equal(data, "\x7f\x9f\x4d\x51\x58", 5);
	/* Unmasking in two pieces with offsets gives the same result. */
	memcpy(part, data, 5);
	wsc_apply_mask(part, 3, mask, 0);
	wsc_apply_mask(part + 3, 2, mask, 3);
	assert_memory_equal(part, "Hello", 5);
}

static void test_accept_key(void **state)
{
	char out[29];
	wsc_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out);
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* --------------------------------------------------------- fake server */

static void write_all(int fd, const void *p, size_t n)
{
	const char *s = p;
	while (n) {
		ssize_t w = write(fd, s, n);
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static int read_all(int fd, void *p, size_t n)
{
	char *s = p;
	while (n) {
		ssize_t r = read(fd, s, n);
		if (r <= 0)
			return -1;
		s += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Server side frame (unmasked). */
static void send_frame(int fd, bool fin, enum wsc_opcode op, const void *data, size_t len)
{
	uint8_t hdr[14];
	size_t hl = wsc_encode_header(hdr, fin, op, len, NULL);
	write_all(fd, hdr, hl);
	write_all(fd, data, len);
}

/* Read one client frame; clients must mask. Payload (unmasked) into sb. */
static int recv_frame(int fd, struct wsc_frame_hdr *h, strbuf *sb)
{
	uint8_t buf[14];
	size_t have = 2;

	if (read_all(fd, buf, 2) < 0)
		return -1;
	while (wsc_decode_header(buf, have, h) == 0) {
		if (read_all(fd, buf + have, 1) < 0)
			return -1;
		have++;
	}
	sb_reset(sb);
	if (h->len) {
		_cleanup_free_ uint8_t *p = malloc(h->len);
		if (read_all(fd, p, h->len) < 0)
			return -1;
		wsc_apply_mask(p, h->len, h->mask, 0);
		sb_append(sb, p, h->len);
	}
	return 0;
}

struct conv {
	int fd;
	bool pong_ok, text_ok, close_ok;
	uint16_t close_code;
	pthread_t th;
};

static void *conv_main(void *arg)
{
	struct conv *c = arg;
	struct wsc_frame_hdr h;
	_cleanup_sb_ strbuf sb = {0};
	static const uint8_t bin[] = { 0, 1, 2, 255 };

	/* Fragmented text with a ping in the middle, then binary, then close. */
	send_frame(c->fd, false, WSC_TEXT, "Hel", 3);
	send_frame(c->fd, true, WSC_PING, "p1", 2);
	send_frame(c->fd, false, WSC_CONT, "lo, ", 4);
	send_frame(c->fd, true, WSC_CONT, "world", 5);
	if (recv_frame(c->fd, &h, &sb) == 0)
		c->pong_ok = h.masked && h.opcode == WSC_PONG && sb.len == 2 && !memcmp(sb.buf, "p1", 2);
	send_frame(c->fd, true, WSC_BINARY, bin, sizeof(bin));
	/* The client talks back. */
	if (recv_frame(c->fd, &h, &sb) == 0)
		c->text_ok = h.masked && h.fin && h.opcode == WSC_TEXT && sb.len == 5 && !memcmp(sb.buf, "stdin", 5);
	send_frame(c->fd, true, WSC_CLOSE, "\x03\xe8" "bye", 5);
	if (recv_frame(c->fd, &h, &sb) == 0 && h.opcode == WSC_CLOSE && h.masked && sb.len >= 2) {
		c->close_ok = true;
		c->close_code = (uint16_t)((uint8_t)sb.buf[0] << 8 | (uint8_t)sb.buf[1]);
	}
	return NULL;
}

static void test_conversation(void **state)
{
	int sv[2];
	struct conv c = {0};
	cell_error err = {0};
	struct wsc_msg m;
	wsc *w;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	c.fd = sv[1];
	w = wsc_from_conn(httpc_conn_from_fd(sv[0]));
	assert_int_equal(wsc_fd(w), sv[0]);
	assert_null(wsc_ssl(w));
	assert_int_equal(pthread_create(&c.th, NULL, conv_main, &c), 0);

	assert_int_equal(wsc_recv(w, &m, &err), 0);
	assert_int_equal(m.opcode, WSC_TEXT);
	assert_int_equal(m.data.len, 12);
	assert_string_equal(m.data.buf, "Hello, world");
	wsc_msg_free(&m);

	assert_int_equal(wsc_recv(w, &m, &err), 0);
	assert_int_equal(m.opcode, WSC_BINARY);
	assert_int_equal(m.data.len, 4);
	assert_memory_equal(m.data.buf, "\x00\x01\x02\xff", 4);
	wsc_msg_free(&m);

	assert_int_equal(wsc_send_text(w, "stdin", &err), 0);
	assert_int_equal(wsc_recv(w, &m, &err), 0);
	assert_int_equal(m.opcode, WSC_CLOSE);
	assert_int_equal(m.close_code, 1000);
	assert_true(wsc_closed(w));
	/* Already closed: sending fails, receiving repeats the close. */
	assert_true(wsc_send_text(w, "late", &err) < 0);
	assert_int_equal(wsc_recv(w, &m, &err), 0);
	assert_int_equal(m.opcode, WSC_CLOSE);

	pthread_join(c.th, NULL);
	assert_true(c.pong_ok);
	assert_true(c.text_ok);
	assert_true(c.close_ok);
	assert_int_equal(c.close_code, 1000);
	wsc_free(w);
	close(sv[1]);
}

static void test_large_and_fragmented_send(void **state)
{
	int sv[2];
	cell_error err = {0};
	struct wsc_frame_hdr h;
	_cleanup_sb_ strbuf sb = {0};
	size_t n = 100000;
	_cleanup_free_ char *big = malloc(n);
	wsc *w;

	for (size_t i = 0; i < n; i++)
		big[i] = (char)(i * 7);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	w = wsc_from_conn(httpc_conn_from_fd(sv[0]));

	/* A child sends while we read: 100 kB overflows the socket buffer. */
	pid_t pid = fork();
	if (pid == 0) {
		cell_error e2;
		close(sv[1]);
		wsc_send(w, WSC_BINARY, big, n, &e2);
		wsc_send_frame(w, WSC_TEXT, false, "ab", 2, &e2);
		wsc_send_frame(w, WSC_CONT, true, "cd", 2, &e2);
		wsc_ping(w, "x", 1, &e2);
		_exit(0);
	}
	assert_int_equal(recv_frame(sv[1], &h, &sb), 0);
	assert_int_equal(h.len, n);
	assert_true(h.masked);
	assert_memory_equal(sb.buf, big, n);
	/* The caller's buffer was not masked in place. */
	assert_int_equal(big[1], 7);
	assert_int_equal(recv_frame(sv[1], &h, &sb), 0);
	assert_false(h.fin);
	assert_int_equal(h.opcode, WSC_TEXT);
	assert_int_equal(recv_frame(sv[1], &h, &sb), 0);
	assert_true(h.fin);
	assert_int_equal(h.opcode, WSC_CONT);
	assert_string_equal(sb.buf, "cd");
	assert_int_equal(recv_frame(sv[1], &h, &sb), 0);
	assert_int_equal(h.opcode, WSC_PING);
	waitpid(pid, NULL, 0);
	wsc_free(w);
	close(sv[1]);
	(void)err;
}

static void expect_protocol_error(const uint8_t *bytes, size_t n, const char *part)
{
	int sv[2];
	cell_error err = {0};
	struct wsc_msg m;
	wsc *w;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	w = wsc_from_conn(httpc_conn_from_fd(sv[0]));
	write_all(sv[1], bytes, n);
	shutdown(sv[1], SHUT_WR);
	assert_true(wsc_recv(w, &m, &err) < 0);
	if (!strstr(err.msg, part))
		fail_msg("\"%s\" lacks \"%s\"", err.msg, part);
	wsc_free(w);
	close(sv[1]);
}

static void test_protocol_errors(void **state)
{
	static const uint8_t cont_first[] = { 0x80, 0x00 };
	static const uint8_t rsv[] = { 0x91, 0x00 };
	static const uint8_t bad_op[] = { 0x83, 0x00 };
	static const uint8_t long_ping[] = { 0x89, 0x7e, 0x00, 0x80 };
	static const uint8_t frag_ping[] = { 0x09, 0x00 };
	static const uint8_t nested[] = { 0x01, 0x01, 'a', 0x01, 0x01, 'b' };
	static const uint8_t truncated[] = { 0x81, 0x05, 'a' };

	expect_protocol_error(cont_first, sizeof(cont_first), "continuation");
	expect_protocol_error(rsv, sizeof(rsv), "reserved");
	expect_protocol_error(bad_op, sizeof(bad_op), "opcode");
	expect_protocol_error(long_ping, sizeof(long_ping), "control");
	expect_protocol_error(frag_ping, sizeof(frag_ping), "control");
	expect_protocol_error(nested, sizeof(nested), "inside");
	expect_protocol_error(truncated, sizeof(truncated), "end of stream");
}

static void test_too_big(void **state)
{
	int sv[2];
	cell_error err = {0};
	struct wsc_msg m;
	wsc *w;
	uint8_t hdr[14];
	size_t hl = wsc_encode_header(hdr, true, WSC_BINARY, 2000, NULL);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	w = wsc_from_conn(httpc_conn_from_fd(sv[0]));
	wsc_set_max_message(w, 1000);
	write_all(sv[1], hdr, hl);
	assert_true(wsc_recv(w, &m, &err) < 0);
	assert_non_null(strstr(err.msg, "too big"));
	wsc_free(w);
	close(sv[1]);
}

/* ----------------------------------------------------------- handshake */

struct hs {
	int fd;
	bool refuse;
	char request[4096];
	pthread_t th;
};

static void *hs_main(void *arg)
{
	struct hs *s = arg;
	size_t n = 0;
	char accept[29], key[64] = "", resp[512];
	const char *k;

	while (n < sizeof(s->request) - 1 && !strstr(s->request, "\r\n\r\n")) {
		if (read(s->fd, s->request + n, 1) != 1)
			return NULL;
		n++;
	}
	if (s->refuse) {
		static const char body[] = "{\"type\":\"error\",\"error\":\"not authorized\",\"error_code\":403}";
		snprintf(resp, sizeof(resp), "HTTP/1.1 403 Forbidden\r\nContent-Length: %zu\r\n\r\n%s",
			 sizeof(body) - 1, body);
		write_all(s->fd, resp, strlen(resp));
		return NULL;
	}
	k = strcasestr(s->request, "Sec-WebSocket-Key: ");
	if (k)
		sscanf(k + 19, "%63[^\r]", key);
	wsc_accept_key(key, accept);
	snprintf(resp, sizeof(resp),
		 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		 "Sec-WebSocket-Accept: %s\r\n\r\n",
		 accept);
	/* The first frame rides in the same write as the handshake answer. */
	uint8_t frame[] = { 0x81, 0x02, 'o', 'k' };
	memcpy(resp + strlen(resp), frame, 4);
	write_all(s->fd, resp, strlen(resp) + 4);
	return NULL;
}

static void test_upgrade(void **state)
{
	int sv[2];
	struct hs s = {0};
	cell_error err = {0};
	struct wsc_msg m;
	httpc *c;
	wsc *w = NULL;
	const char *extra[] = { "X-Test: 1", NULL };

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	s.fd = sv[1];
	c = httpc_new_conn(httpc_conn_from_fd(sv[0]), "unix.socket");
	assert_int_equal(pthread_create(&s.th, NULL, hs_main, &s), 0);
	assert_int_equal(wsc_upgrade(c, "/1.0/events?type=logging", extra, &w, &err), 0);
	assert_int_equal(wsc_recv(w, &m, &err), 0);
	assert_string_equal(m.data.buf, "ok");
	wsc_msg_free(&m);
	pthread_join(s.th, NULL);
	assert_true(strstr(s.request, "GET /1.0/events?type=logging HTTP/1.1\r\n") == s.request);
	assert_non_null(strcasestr(s.request, "\r\nUpgrade: websocket\r\n"));
	assert_non_null(strcasestr(s.request, "\r\nSec-WebSocket-Version: 13\r\n"));
	assert_non_null(strstr(s.request, "\r\nX-Test: 1\r\n"));
	/* The connection now belongs to the websocket. */
	assert_null(httpc_take_conn(c));
	wsc_free(w);
	httpc_free(c);
	close(sv[1]);
}

static void test_upgrade_refused(void **state)
{
	int sv[2];
	struct hs s = { .refuse = true };
	cell_error err = {0};
	httpc *c;
	wsc *w = NULL;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	s.fd = sv[1];
	c = httpc_new_conn(httpc_conn_from_fd(sv[0]), "unix.socket");
	assert_int_equal(pthread_create(&s.th, NULL, hs_main, &s), 0);
	assert_true(wsc_upgrade(c, "/1.0/events", NULL, &w, &err) < 0);
	assert_null(w);
	assert_string_equal(err.msg, "not authorized");
	assert_int_equal(err.status, 403);
	pthread_join(s.th, NULL);
	httpc_free(c);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_lengths),
		cmocka_unit_test(test_header_bits),
		cmocka_unit_test(test_mask),
		cmocka_unit_test(test_accept_key),
		cmocka_unit_test(test_conversation),
		cmocka_unit_test(test_large_and_fragmented_send),
		cmocka_unit_test(test_protocol_errors),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_upgrade),
		cmocka_unit_test(test_upgrade_refused),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
