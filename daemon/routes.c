/* Every API file's route registration, in one place. */
#include "daemon/router.h"

void api_server_register(void);
void api_certificates_register(void);
void api_operations_register(void);
void api_events_register(void);
void api_testing_register(void);
void api_testing_exec_register(void);
void api_testing_files_register(void);
void api_profiles_register(void);
void api_storage_pools_register(void);
void api_images_register(void);

void api_instances_register(void);
void api_instances_state_register(void);
void api_instances_logs_register(void);
void api_instances_exec_register(void);
void api_instances_console_register(void);
void api_instances_files_register(void);
void api_snapshots_register(void);
void api_instances_boot_register(void);

void routes_register_all(void)
{
	api_server_register();
	api_certificates_register();
	api_operations_register();
	api_events_register();
	api_testing_register();
	api_testing_exec_register();
	api_testing_files_register();
	api_profiles_register();
	api_storage_pools_register();
	api_images_register();
	api_instances_register();
	api_instances_state_register();
	api_instances_exec_register();
	api_instances_console_register();
	api_instances_files_register();
	api_instances_logs_register();
	api_snapshots_register();
	api_instances_boot_register();
}
