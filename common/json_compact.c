/*
 * Compact JSON text, byte for byte what json_dumps(j, JSON_COMPACT) writes
 * (insertion order, jansson's escapes), in a fraction of its time: jansson
 * hashes every object's address for loop detection and writes through a
 * callback per token, which made serialising most of the cost of long lists
 * (images, instances).  Reals, which no API field holds, go to jansson.
 */
#include "common/json_compact.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "common/cleanup.h"

static int put_string(strbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t run = 0;
	int rc = sb_append(b, "\"", 1);

	for (size_t i = 0; rc == 0 && i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[6] = { '\\', 0 };
		size_t el = 2;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			el = 6;
		}
		rc = sb_append(b, s + run, i - run);
		if (rc == 0)
			rc = sb_append(b, esc, el);
		run = i + 1;
	}
	if (rc == 0)
		rc = sb_append(b, s + run, n - run);
	return rc == 0 ? sb_append(b, "\"", 1) : rc;
}

/* Digits by hand: printf's machinery costs more than the rest of an image. */
static int put_integer(strbuf *b, json_int_t v)
{
	char d[24], *p = d + sizeof(d);
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	return sb_append(b, p, (size_t)(d + sizeof(d) - p));
}

static int put_object(strbuf *b, const json_t *j)
{
	const char *k;
	json_t *v;
	bool first = true;
	int rc = sb_append(b, "{", 1);

	json_object_foreach((json_t *)j, k, v) {
		if (rc == 0 && !first)
			rc = sb_append(b, ",", 1);
		first = false;
		if (rc == 0)
			rc = put_string(b, k, strlen(k));
		if (rc == 0)
			rc = sb_append(b, ":", 1);
		if (rc == 0)
			rc = json_compact_write(b, v);
		if (rc < 0)
			return rc;
	}
	return rc == 0 ? sb_append(b, "}", 1) : rc;
}

static int put_array(strbuf *b, const json_t *j)
{
	size_t i;
	json_t *v;
	int rc = sb_append(b, "[", 1);

	json_array_foreach((json_t *)j, i, v) {
		if (rc == 0 && i)
			rc = sb_append(b, ",", 1);
		if (rc == 0)
			rc = json_compact_write(b, v);
		if (rc < 0)
			return rc;
	}
	return rc == 0 ? sb_append(b, "]", 1) : rc;
}

int json_compact_write(strbuf *b, const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		return put_object(b, j);
	case JSON_ARRAY:
		return put_array(b, j);
	case JSON_STRING:
		return put_string(b, json_string_value(j), json_string_length(j));
	case JSON_INTEGER:
		return put_integer(b, json_integer_value(j));
	case JSON_TRUE:
		return sb_append(b, "true", 4);
	case JSON_FALSE:
		return sb_append(b, "false", 5);
	case JSON_NULL:
		return sb_append(b, "null", 4);
	default: {
		_cleanup_free_ char *t = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
		return t ? sb_puts(b, t) : -ENOMEM;
	}
	}
}
