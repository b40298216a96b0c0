#include "common/passwd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/util.h"

#define SCRYPT_N (1u << 14)
#define SCRYPT_R 8
#define SCRYPT_P 1
/* 128 * N * r = 16 MiB of scratch; leave headroom over OpenSSL's check. */
#define SCRYPT_MAXMEM (64u * 1024 * 1024)

static int derive(const char *pw, const unsigned char *salt, unsigned char *key)
{
	if (EVP_PBE_scrypt(pw, strlen(pw), salt, PASSWD_SALT_LEN, SCRYPT_N, SCRYPT_R, SCRYPT_P,
			   SCRYPT_MAXMEM, key, PASSWD_KEY_LEN) != 1)
		return -EIO;
	return 0;
}

int passwd_hash(const char *pw, char **out, cell_error *err)
{
	unsigned char buf[PASSWD_SALT_LEN + PASSWD_KEY_LEN];
	char *hex;

	if (RAND_bytes(buf, PASSWD_SALT_LEN) != 1)
		return cell_err(err, 500, EIO, "hash password: no random salt");
	if (derive(pw, buf, buf + PASSWD_SALT_LEN) < 0)
		return cell_err(err, 500, EIO, "hash password: scrypt failed");
	hex = malloc(PASSWD_HASH_HEXLEN + 1);
	if (!hex)
		return cell_err(err, 500, ENOMEM, "hash password: out of memory");
	util_hex(buf, sizeof(buf), hex);
	OPENSSL_cleanse(buf, sizeof(buf));
	*out = hex;
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int unhex(const char *s, unsigned char *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

bool passwd_verify(const char *pw, const char *stored)
{
	unsigned char want[PASSWD_SALT_LEN + PASSWD_KEY_LEN], got[PASSWD_KEY_LEN];
	bool ok;

	if (!pw || !stored || strlen(stored) != PASSWD_HASH_HEXLEN)
		return false;
	if (unhex(stored, want, sizeof(want)) < 0)
		return false;
	if (derive(pw, want, got) < 0)
		return false;
	ok = CRYPTO_memcmp(got, want + PASSWD_SALT_LEN, PASSWD_KEY_LEN) == 0;
	OPENSSL_cleanse(got, sizeof(got));
	return ok;
}
