#include "daemon/db.h"

#include <errno.h>

#include "common/cleanup.h"

int db_config_get_all(json_t **out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_json_ json_t *obj = json_object();
	int rc;

	if (!obj)
		return cell_err(err, 500, ENOMEM, "out of memory");
	rc = db_stmt(&st, err, "SELECT key, value FROM config", NULL);
	if (rc < 0)
		return cell_err_wrap(err, rc, "load config");
	while ((rc = db_step(st, err)) == 1) {
		if (json_object_set_new(obj, db_col_text(st, 0), json_string(db_col_text(st, 1))) < 0)
			return cell_err(err, 500, ENOMEM, "load config: out of memory");
	}
	if (rc < 0)
		return cell_err_wrap(err, rc, "load config");
	*out = steal_ptr(obj);
	return 0;
}

static int db_config_write(void *data, cell_error *err)
{
	json_t *values = data;
	const char *key;
	json_t *v;
	int rc;

	rc = db_exec(err, "DELETE FROM config", NULL);
	if (rc < 0)
		return rc;
	json_object_foreach(values, key, v) {
		rc = db_exec(err, "INSERT INTO config (key, value) VALUES (?, ?)", "ss", key,
			     json_string_value(v));
		if (rc < 0)
			return rc;
	}
	return 0;
}

int db_config_replace(json_t *values, cell_error *err)
{
	const char *key;
	json_t *v;
	int rc;

	if (!json_is_object(values))
		return cell_err(err, 400, EINVAL, "config must be an object");
	json_object_foreach(values, key, v) {
		if (!json_is_string(v))
			return cell_err(err, 400, EINVAL, "config key %s: value must be a string", key);
	}
	rc = db_tx(db_config_write, values, err);
	return rc < 0 ? cell_err_wrap(err, rc, "save config") : 0;
}
