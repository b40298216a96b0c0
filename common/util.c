#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"

void util_time_rfc3339(const struct timespec *ts, char out[40])
{
	struct tm tm;
	char base[24];

	gmtime_r(&ts->tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 40, "%s.%09ldZ", base, ts->tv_nsec);
}

void util_now_rfc3339(char out[40])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	util_time_rfc3339(&ts, out);
}

int64_t util_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void util_hex(const unsigned char *in, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[in[i] >> 4];
		out[2 * i + 1] = hx[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int fill_random(unsigned char *buf, size_t n)
{
	size_t off = 0;
	while (off < n) {
		ssize_t r = getrandom(buf + off, n - off, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)r;
	}
	return 0;
}

int util_random_hex(char *out, size_t nbytes)
{
	unsigned char buf[256];
	if (nbytes > sizeof(buf))
		return -EINVAL;
	if (fill_random(buf, nbytes) < 0)
		return -EIO;
	util_hex(buf, nbytes, out);
	return 0;
}

void util_uuid(char out[37])
{
	unsigned char b[16];
	char h[33];

	if (fill_random(b, sizeof(b)) < 0)
		abort();   /* getrandom cannot fail on a supported kernel */
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	util_hex(b, 16, h);
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

bool str_has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool str_has_suffix(const char *s, const char *suffix)
{
	size_t ls = strlen(s), lx = strlen(suffix);
	return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0;
}

char *xasprintf(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

int util_read_file(const char *path, char **out, size_t *len, cell_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL;
	size_t n = 0, cap = 0;

	if (fd < 0)
		return cell_err_sys(err, errno == ENOENT ? 404 : 500, errno, "open %s", path);
	for (;;) {
		ssize_t r;
		if (n + 4096 + 1 > cap) {
			char *nb;
			cap = cap ? cap * 2 : 8192;
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				return cell_err(err, 500, ENOMEM, "read %s: out of memory", path);
			}
			buf = nb;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			return cell_err_sys(err, 500, e, "read %s", path);
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

int util_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
			   cell_error *err)
{
	_cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	_cleanup_close_ int fd = -1;
	const char *p = data;

	if (!tmp)
		return cell_err(err, 500, ENOMEM, "write %s: out of memory", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return cell_err_sys(err, 500, errno, "create %s", tmp);
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			int e = errno;
			unlink(tmp);
			return cell_err_sys(err, 500, e, "write %s", tmp);
		}
		p += w;
		len -= (size_t)w;
	}
	if (fsync(fd) < 0 || rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return cell_err_sys(err, 500, e, "commit %s", path);
	}
	return 0;
}

int util_mkdir_p(const char *path, unsigned mode, cell_error *err)
{
	_cleanup_free_ char *p = strdup(path);
	if (!p)
		return cell_err(err, 500, ENOMEM, "mkdir %s: out of memory", path);
	for (char *s = p + 1; ; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, mode) < 0 && errno != EEXIST)
				return cell_err_sys(err, 500, errno, "mkdir %s", p);
			*s = c;
			if (!c)
				break;
		}
	}
	return 0;
}
