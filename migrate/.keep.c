/* keeps the library non-empty before its first file */
int cell_migrate_keep_;
