/* Unit tests of server reflection (server/rpc/reflection.c): the symbol
 * index over the embedded descriptor set, and one in-process exchange. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "log.h"
#include "std_services.h"

static void test_reflection__symbols_resolve_to_files(void **state)
{
	(void)state;
	hs_reflection *r = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_reflection_new(&r, &err), HS_OK);
	static const struct {
		const char *sym, *file;
	} cases[] = {
		{ "harness.v1.AuthService", "harness/v1/auth.proto" },
		{ "harness.v1.AuthService.Login", "harness/v1/auth.proto" },
		{ "harness.v1.User", "harness/v1/auth.proto" },
		{ "harness.v1.HealthService.WatchTasks", "harness/v1/health.proto" },
		{ "harness.v1.TaskEvent", "harness/v1/health.proto" },
		{ "harness.v1.CheckpointService", "harness/v1/checkpoint.proto" },
		{ "grpc.health.v1.Health", "grpc/health/v1/health.proto" },
		{ "grpc.health.v1.Health.Check", "grpc/health/v1/health.proto" },
		{ "grpc.health.v1.Health.Watch", "grpc/health/v1/health.proto" },
		{ "grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc/health/v1/health.proto" },
		{ "grpc.reflection.v1.ServerReflection.ServerReflectionInfo",
		  "grpc/reflection/v1/reflection.proto" },
		{ "grpc.reflection.v1alpha.ServerReflection", "grpc/reflection/v1alpha/reflection.proto" },
		{ "google.protobuf.Timestamp", "google/protobuf/timestamp.proto" },
		/* every kind of symbol, as grpc-go's server resolves them */
		{ "harness.v1.Checkpoint.external_state", "harness/v1/checkpoint.proto" },
		{ "harness.v1.SandboxState", "harness/v1/sandbox.proto" },
		{ "harness.v1.SANDBOX_STATE_RUNNING", "harness/v1/sandbox.proto" },
		{ "harness.v1.SandboxState.SANDBOX_STATE_RUNNING", "harness/v1/sandbox.proto" },
		{ "grpc.health.v1.HealthCheckResponse.SERVING", "grpc/health/v1/health.proto" },
		{ "grpc.reflection.v1.ServerReflectionRequest.message_request",
		  "grpc/reflection/v1/reflection.proto" },
		{ "google.protobuf.Struct.fields", "google/protobuf/struct.proto" },
		{ "google.protobuf.Struct.FieldsEntry.key", "google/protobuf/struct.proto" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *f = hs_reflection_file_of(r, cases[i].sym);
		if (f == NULL || strcmp(f, cases[i].file) != 0)
			fail_msg("%s -> %s, want %s", cases[i].sym, f ? f : "(null)", cases[i].file);
	}
	static const char *const unknown[] = {
		"", "harness", "harness.v1", "harness.v1.NoSuch", "grpc.health.v1.Health.Nope",
		"grpc.health.v1.Health.", "Health", "harness.v1.AuthServic",
		"harness.v1.Checkpoint.no_such_field", "harness.v1.SANDBOX_STATE_NOPE",
	};
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
		assert_null(hs_reflection_file_of(r, unknown[i]));
	hs_reflection_free(r);
	hs_reflection_free(NULL);
}

typedef Grpc__Reflection__V1__ServerReflectionRequest Req;
typedef Grpc__Reflection__V1__ServerReflectionResponse Resp;

static Resp *ask(tc_stream *s, Req *req)
{
	assert_true(tc_stream_send(s, &req->base));
	bool ok;
	Resp *m = (Resp *)tc_stream_recv(s, &ok);
	assert_non_null(m);
	return m;
}

static void test_reflection__served_over_grpc(void **state)
{
	(void)state;
	hs_reflection *r = NULL;
	hs_rpc_server *srv = NULL;
	hs_rpc_config cfg = HS_RPC_CONFIG_INIT;
	cfg.listen = "127.0.0.1:0";
	cfg.workers = 1;
	assert_int_equal(hs_reflection_new(&r, NULL), HS_OK);
	assert_int_equal(hs_rpc_server_new(&srv, &cfg, NULL), HS_OK);
	assert_int_equal(hs_reflection_register(r, srv, NULL), HS_OK);
	assert_int_equal(hs_rpc_server_start(srv, NULL), HS_OK);
	grpc_channel *ch = tc_channel(hs_rpc_server_port(srv));

	tc_stream s;
	assert_true(tc_stream_start(&s, ch, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
				    5000, &grpc__reflection__v1__server_reflection_response__descriptor,
				    NULL, false));
	Req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
	req.host = "h";
	req.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
	req.list_services = "*";
	Resp *m = ask(&s, &req);
	assert_int_equal(m->message_response_case,
			 GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
	assert_int_equal(m->list_services_response->n_service, 2);
	assert_string_equal(m->list_services_response->service[0]->name,
			    "grpc.reflection.v1.ServerReflection");
	assert_string_equal(m->valid_host, "h");
	protobuf_c_message_free_unpacked(&m->base, NULL);

	req.message_request_case =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
	req.file_containing_symbol = "grpc.reflection.v1.ServerReflection";
	m = ask(&s, &req);
	assert_int_equal(m->message_response_case,
			 GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
	assert_true(m->file_descriptor_response->n_file_descriptor_proto >= 1);
	Google__Protobuf__FileDescriptorProto *fd = google__protobuf__file_descriptor_proto__unpack(
		NULL, m->file_descriptor_response->file_descriptor_proto[0].len,
		m->file_descriptor_response->file_descriptor_proto[0].data);
	assert_non_null(fd);
	assert_string_equal(fd->name, "grpc/reflection/v1/reflection.proto");
	google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
	protobuf_c_message_free_unpacked(&m->base, NULL);

	req.file_containing_symbol = "no.Such";
	m = ask(&s, &req);
	assert_int_equal(m->message_response_case,
			 GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
	assert_int_equal(m->error_response->error_code, GRPC_STATUS_NOT_FOUND);
	protobuf_c_message_free_unpacked(&m->base, NULL);

	assert_true(tc_stream_close(&s));
	bool ok;
	assert_null(tc_stream_recv(&s, &ok));
	assert_int_equal(tc_stream_finish(&s, NULL, 0), GRPC_STATUS_OK);

	hs_rpc_server_shutdown(srv, 1000);
	hs_rpc_server_free(srv);
	grpc_channel_destroy(ch);
	hs_reflection_free(r);
}

int main(void)
{
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (devnull >= 0 && getenv("HS_TEST_LOG") == NULL)
		hs_log_set_fd(devnull);
	grpc_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reflection__symbols_resolve_to_files),
		cmocka_unit_test(test_reflection__served_over_grpc),
	};
	int failed = cmocka_run_group_tests_name("reflection", tests, NULL, NULL);
	grpc_shutdown_blocking();
	return failed;
}
