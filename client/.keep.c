/* keeps the library non-empty before its first file */
int cell_client_keep_;
