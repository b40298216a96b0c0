/* keeps the library non-empty before its first file */
int cell_storage_keep_;
