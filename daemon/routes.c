/* Every API file's route registration, in one place. */
#include "daemon/router.h"

void api_server_register(void);
void api_certificates_register(void);
void api_operations_register(void);
void api_events_register(void);
void api_testing_register(void);
void api_testing_exec_register(void);
void api_testing_files_register(void);

void routes_register_all(void)
{
	api_server_register();
	api_certificates_register();
	api_operations_register();
	api_events_register();
	api_testing_register();
	api_testing_exec_register();
	api_testing_files_register();
}
