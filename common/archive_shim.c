/*
 * Linking libarchive statically (see CMakeLists.txt, which
 * also forces this object into every daemon link with --undefined) would pull, through the
 * pax writer's one reference to this internal helper, libarchive's
 * "set format by name" table and with it every format writer, xar included,
 * and xar needs libxml2 (then ICU and libstdc++): the very libraries the
 * static link keeps out of celld.  Defining the helper here satisfies that
 * reference.  It only reports an entry the pax writer cannot archive
 * (sockets are skipped before that point in tarstream.c), as libarchive's
 * own definition does.
 */

/* libarchive's ARCHIVE_ERRNO_FILE_FORMAT is EILSEQ on Linux. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>

#define EFTYPE_CELL EILSEQ

void __archive_write_entry_filetype_unsupported(struct archive *a, struct archive_entry *entry,
						const char *format);

void __archive_write_entry_filetype_unsupported(struct archive *a, struct archive_entry *entry,
						const char *format)
{
	archive_set_error(a, EFTYPE_CELL, "%s: %s format cannot archive this file type",
			  archive_entry_pathname(entry), format);
}
