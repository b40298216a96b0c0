/*
 * http_load: keep-alive HTTP/1.1 GET load over a unix socket.
 *   http_load SOCKET PATH CONNECTIONS SECONDS
 * Prints requests/s and latency percentiles as one JSON line, so bench/run.sh
 * can put celld and LXD side by side.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES (4u << 20)

struct worker {
	pthread_t th;
	const char *sock, *path;
	double seconds;
	unsigned long count, failed;
	double *lat;           /* microseconds */
	size_t nlat;
};

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int dial(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Read one response (Content-Length, or chunked as LXD answers); 0 or -1. */
static int read_response(int fd, char *buf, size_t cap)
{
	size_t have = 0, need = 0;
	char *hdr_end = NULL;
	int chunked = 0;

	for (;;) {
		ssize_t n = read(fd, buf + have, cap - have - 1);
		if (n <= 0)
			return -1;
		have += (size_t)n;
		buf[have] = '\0';
		if (!hdr_end && (hdr_end = strstr(buf, "\r\n\r\n"))) {
			char *cl = strcasestr(buf, "content-length:");
			if (strncmp(buf + 9, "200", 3))
				return -1;
			chunked = !cl && strcasestr(buf, "transfer-encoding: chunked") != NULL;
			if (!cl && !chunked)
				return -1;
			if (cl)
				need = (size_t)(hdr_end + 4 - buf) + strtoul(cl + 15, NULL, 10);
			if (need >= cap)
				return -1;
		}
		if (hdr_end && chunked && have >= 5 && !memcmp(buf + have - 5, "0\r\n\r\n", 5))
			return 0;
		if (hdr_end && !chunked && have >= need)
			return have == need ? 0 : -1;
	}
}

static void *work(void *arg)
{
	struct worker *w = arg;
	char req[512], *buf = malloc(1 << 20);
	int fd = dial(w->sock);
	double end;
	int len;

	if (fd < 0 || !buf) {
		w->failed++;
		free(buf);
		return NULL;
	}
	len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", w->path);
	end = now_us() + w->seconds * 1e6;
	while (now_us() < end) {
		double t0 = now_us();
		if (write(fd, req, (size_t)len) != len || read_response(fd, buf, 1 << 20) < 0) {
			w->failed++;
			break;
		}
		if (w->nlat < MAX_SAMPLES)
			w->lat[w->nlat++] = now_us() - t0;
		w->count++;
	}
	close(fd);
	free(buf);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int nconn;
	double seconds, *all;
	struct worker *w;
	unsigned long total = 0, failed = 0;
	size_t n = 0;

	if (argc != 5) {
		fprintf(stderr, "usage: http_load SOCKET PATH CONNECTIONS SECONDS\n");
		return 2;
	}
	nconn = atoi(argv[3]);
	seconds = atof(argv[4]);
	w = calloc((size_t)nconn, sizeof(*w));
	for (int i = 0; i < nconn; i++) {
		w[i] = (struct worker){ .sock = argv[1], .path = argv[2], .seconds = seconds };
		w[i].lat = malloc(sizeof(double) * MAX_SAMPLES);
		pthread_create(&w[i].th, NULL, work, &w[i]);
	}
	all = malloc(sizeof(double) * MAX_SAMPLES * (size_t)nconn);
	for (int i = 0; i < nconn; i++) {
		pthread_join(w[i].th, NULL);
		total += w[i].count;
		failed += w[i].failed;
		memcpy(all + n, w[i].lat, w[i].nlat * sizeof(double));
		n += w[i].nlat;
		free(w[i].lat);
	}
	qsort(all, n, sizeof(double), cmp_double);
	printf("{\"requests\": %lu, \"failed\": %lu, \"rps\": %.0f, \"p50_us\": %.1f, "
	       "\"p99_us\": %.1f, \"max_us\": %.1f}\n",
	       total, failed, total / seconds, n ? all[n / 2] : 0, n ? all[(size_t)(n * 0.99)] : 0,
	       n ? all[n - 1] : 0);
	free(all);
	free(w);
	return failed ? 1 : 0;
}
