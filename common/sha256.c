#include "common/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"

#define SHA256_READ_BLOCK (1024 * 1024)

int sha256_init(struct sha256_ctx *c)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	c->md = NULL;
	if (!md)
		return -ENOMEM;
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		return -EIO;
	}
	c->md = md;
	return 0;
}

int sha256_update(struct sha256_ctx *c, const void *data, size_t len)
{
	if (!c->md)
		return -EINVAL;
	return EVP_DigestUpdate(c->md, data, len) == 1 ? 0 : -EIO;
}

int sha256_final_hex(struct sha256_ctx *c, char out[SHA256_HEX_LEN + 1])
{
	unsigned char dig[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	int ok;

	if (!c->md)
		return -EINVAL;
	ok = EVP_DigestFinal_ex(c->md, dig, &n) == 1 && n == 32;
	sha256_free(c);
	if (!ok)
		return -EIO;
	util_hex(dig, 32, out);
	return 0;
}

void sha256_free(struct sha256_ctx *c)
{
	if (c->md)
		EVP_MD_CTX_free(c->md);
	c->md = NULL;
}

int sha256_file_hex(const char *path, char out[SHA256_HEX_LEN + 1], cell_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ unsigned char *buf = NULL;
	_cleanup_sha256_ struct sha256_ctx c = { 0 };
	ssize_t r;

	if (fd < 0)
		return cell_err_sys(err, errno == ENOENT ? 404 : 500, errno, "open %s", path);
	buf = malloc(SHA256_READ_BLOCK);
	if (!buf || sha256_init(&c) < 0)
		return cell_err(err, 500, ENOMEM, "hash %s: out of memory", path);
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	while ((r = read(fd, buf, SHA256_READ_BLOCK)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return cell_err_sys(err, 500, errno, "read %s", path);
		if (sha256_update(&c, buf, (size_t)r) < 0)
			return cell_err(err, 500, EIO, "hash %s: digest failed", path);
	}
	if (sha256_final_hex(&c, out) < 0)
		return cell_err(err, 500, EIO, "hash %s: digest failed", path);
	return 0;
}
