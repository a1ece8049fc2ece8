/* A small gRPC load generator on the C core, for what h2load cannot do:
 * requests that differ (here: heartbeats round-robin over many tasks).
 * conns channels (each its own connection), inflight calls per channel,
 * total calls; request i sends body i % n_bodies. Prints the calls that
 * ended OK and the others by status, and the wall time.
 *   c_load TARGET METHOD BODIES_FILE CONNS INFLIGHT TOTAL [AUTHORIZATION]
 * BODIES_FILE: records of a 4-byte big-endian length and a serialized
 * request message. */
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct slot {
	grpc_call *call;
	grpc_channel *ch;
	grpc_metadata_array init_md, trail_md;
	grpc_byte_buffer *resp;
	grpc_status_code status;
	grpc_slice details;
} slot;

static grpc_slice *bodies;
static size_t n_bodies;
static const char *method;
static grpc_metadata auth_md;
static int has_auth;
static long next_body, started, done_ok, done_err, total;
static long by_status[17];
static grpc_completion_queue *cq;

static void start(slot *s)
{
	grpc_slice m = grpc_slice_from_static_string(method);
	s->call = grpc_channel_create_call(s->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL,
					   gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_metadata_array_init(&s->init_md);
	grpc_metadata_array_init(&s->trail_md);
	grpc_slice b = grpc_slice_ref(bodies[next_body++ % (long)n_bodies]);
	grpc_byte_buffer *req = grpc_raw_byte_buffer_create(&b, 1);
	grpc_slice_unref(b);
	grpc_op ops[6];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = has_auth ? 1 : 0;
	ops[0].data.send_initial_metadata.metadata = has_auth ? &auth_md : NULL;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = req;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &s->resp;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &s->trail_md;
	ops[5].data.recv_status_on_client.status = &s->status;
	ops[5].data.recv_status_on_client.status_details = &s->details;
	grpc_call_start_batch(s->call, ops, 6, s, NULL);
	grpc_byte_buffer_destroy(req);
	started++;
}

static void finish(slot *s)
{
	if (s->status == GRPC_STATUS_OK)
		done_ok++;
	else
		done_err++;
	if ((unsigned)s->status < 17)
		by_status[s->status]++;
	if (s->resp != NULL)
		grpc_byte_buffer_destroy(s->resp);
	s->resp = NULL;
	grpc_slice_unref(s->details);
	grpc_metadata_array_destroy(&s->init_md);
	grpc_metadata_array_destroy(&s->trail_md);
	grpc_call_unref(s->call);
}

static int load_bodies(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return -1;
	size_t cap = 0;
	unsigned char h[4];
	while (fread(h, 1, 4, f) == 4) {
		size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
		grpc_slice s = grpc_slice_malloc(len);
		if (len > 0 && fread(GRPC_SLICE_START_PTR(s), 1, len, f) != len)
			break;
		if (n_bodies == cap) {
			cap = cap ? cap * 2 : 64;
			bodies = realloc(bodies, cap * sizeof(*bodies));
		}
		bodies[n_bodies++] = s;
	}
	fclose(f);
	return n_bodies > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: c_load TARGET METHOD BODIES CONNS INFLIGHT TOTAL [AUTHZ]\n");
		return 2;
	}
	method = argv[2];
	long conns = strtol(argv[4], NULL, 10), inflight = strtol(argv[5], NULL, 10);
	total = strtol(argv[6], NULL, 10);
	if (conns < 1 || inflight < 1 || total < 1 || load_bodies(argv[3]) != 0) {
		fprintf(stderr, "c_load: bad arguments or bodies file\n");
		return 2;
	}
	grpc_init();
	if (argc > 7) {
		auth_md.key = grpc_slice_from_static_string("authorization");
		auth_md.value = grpc_slice_from_copied_string(argv[7]);
		has_auth = 1;
	}
	cq = grpc_completion_queue_create_for_next(NULL);
	slot *slots = calloc((size_t)(conns * inflight), sizeof(*slots));
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	for (long c = 0; c < conns; c++) {
		grpc_arg a = { GRPC_ARG_INTEGER, (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
			       { .integer = 1 } };
		grpc_channel_args args = { 1, &a };
		grpc_channel *ch = grpc_channel_create(argv[1], creds, &args);
		for (long i = 0; i < inflight; i++)
			slots[c * inflight + i].ch = ch;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < conns * inflight && started < total; i++)
		start(&slots[i]);
	while (done_ok + done_err < started) {
		grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type != GRPC_OP_COMPLETE)
			break;
		slot *s = ev.tag;
		finish(s);
		if (started < total)
			start(s);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("requests: %ld ok, %ld failed in %.3f s = %.0f req/s", done_ok, done_err, secs,
	       (double)(done_ok + done_err) / secs);
	for (int i = 1; i < 17; i++)
		if (by_status[i] > 0)
			printf(" status%d=%ld", i, by_status[i]);
	printf("\n");
	return done_err == 0 ? 0 : 1;
}
