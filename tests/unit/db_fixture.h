/*
 * A fresh database in a temporary directory for a unit test suite:
 * db_fixture_open() from its setup, db_fixture_close() from its teardown.
 * db_fixture_dir names the directory (tests that reopen the database).
 */
#ifndef CELL_TESTS_DB_FIXTURE_H
#define CELL_TESTS_DB_FIXTURE_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "daemon/db.h"

static char db_fixture_dir[64];

static int db_fixture_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static inline int db_fixture_open(void)
{
	cell_error err;

	snprintf(db_fixture_dir, sizeof(db_fixture_dir), "/tmp/cell-test-db-XXXXXX");
	if (!mkdtemp(db_fixture_dir))
		return -1;
	return db_open(db_fixture_dir, &err) == 0 ? 0 : -1;
}

static inline void db_fixture_close(void)
{
	db_close();
	nftw(db_fixture_dir, db_fixture_rm, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
