/* The floor for harnessd's RPC core: a bare gRPC C-core server with
 * protobuf-c, answering /grpc.health.v1.Health/Check (request unpacked,
 * SERVING packed) on registered-method calls, N completion-queue threads,
 * nothing else (no auth, no arena, no logging, no lanes).
 * Build (bench/rpc_bench.sh does it):
 *   cc -O2 -o c_echo bench/c_echo.c build/proto/gen/grpc/health/v1/health.pb-c.c \
 *      -Ibuild/proto/gen $(pkg-config --cflags --libs grpc libprotobuf-c) -lpthread
 * Run: ./c_echo 127.0.0.1:50062 2 */
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

typedef struct call {
	grpc_call *gc;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_byte_buffer *req;
	int cancelled;
	int state; /* 0 requested, 1 answered */
	grpc_completion_queue *cq;
} call;

static grpc_server *server;
static void *method;

static void request(grpc_completion_queue *cq)
{
	call *c = calloc(1, sizeof(*c));
	c->cq = cq;
	grpc_metadata_array_init(&c->md);
	grpc_server_request_registered_call(server, method, &c->gc, &c->deadline, &c->md, &c->req,
					    cq, cq, c);
}

static void answer(call *c)
{
	grpc_byte_buffer_reader r;
	grpc_byte_buffer_reader_init(&r, c->req);
	grpc_slice all = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	Grpc__Health__V1__HealthCheckRequest *in = grpc__health__v1__health_check_request__unpack(
		NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
	grpc_slice_unref(all);
	Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	out.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	grpc_status_code code = in != NULL ? GRPC_STATUS_OK : GRPC_STATUS_INVALID_ARGUMENT;
	grpc__health__v1__health_check_request__free_unpacked(in, NULL);
	size_t len = grpc__health__v1__health_check_response__get_packed_size(&out);
	grpc_slice s = grpc_slice_malloc(len);
	grpc__health__v1__health_check_response__pack(&out, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	grpc_op ops[4];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = bb;
	ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[2].data.send_status_from_server.status = code;
	ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[3].data.recv_close_on_server.cancelled = &c->cancelled;
	c->state = 1;
	grpc_call_start_batch(c->gc, ops, 4, c, NULL);
	grpc_byte_buffer_destroy(bb);
}

static void *loop(void *arg)
{
	grpc_completion_queue *cq = arg;
	for (int i = 0; i < 64; i++)
		request(cq);
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		call *c = ev.tag;
		if (c == NULL)
			continue;
		if (c->state == 0) {
			if (!ev.success) {
				grpc_metadata_array_destroy(&c->md);
				free(c);
				continue;
			}
			request(cq);
			answer(c);
		} else {
			grpc_byte_buffer_destroy(c->req);
			grpc_metadata_array_destroy(&c->md);
			grpc_call_unref(c->gc);
			free(c);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const char *addr = argc > 1 ? argv[1] : "127.0.0.1:50062";
	int n = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 2;
	if (n < 1 || n > 64)
		n = 2;
	grpc_init();
	server = grpc_server_create(NULL, NULL);
	method = grpc_server_register_method(server, "/grpc.health.v1.Health/Check", NULL,
					     GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	grpc_completion_queue *cqs[64];
	for (int i = 0; i < n; i++) {
		cqs[i] = grpc_completion_queue_create_for_next(NULL);
		grpc_server_register_completion_queue(server, cqs[i], NULL);
	}
	grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
	if (grpc_server_add_http2_port(server, addr, creds) == 0) {
		fprintf(stderr, "cannot listen on %s\n", addr);
		return 1;
	}
	grpc_server_credentials_release(creds);
	grpc_server_start(server);
	fprintf(stderr, "listening on %s with %d cq threads\n", addr, n);
	pthread_t t[64];
	for (int i = 0; i < n; i++)
		pthread_create(&t[i], NULL, loop, cqs[i]);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL); /* killed by the bench with SIGTERM */
	return 0;
}
