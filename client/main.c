/* cell: the command-line client. */
#include "client/cli.h"

int main(int argc, char **argv)
{
	return cli_main(argc, argv);
}
