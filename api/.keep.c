/* keeps the library non-empty before its first file */
int cell_api_keep_;
