/* See client.h. */
#include "client.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 10000

grpc_channel *tc_channel(int port)
{
	char target[64];
	snprintf(target, sizeof(target), "127.0.0.1:%d", port);
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	grpc_channel *ch = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	return ch;
}

grpc_channel *tc_channel_small_window(int port)
{
	char target[64];
	snprintf(target, sizeof(target), "127.0.0.1:%d", port);
	grpc_arg args[2];
	memset(args, 0, sizeof(args));
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = (char *)GRPC_ARG_HTTP2_BDP_PROBE;
	args[0].value.integer = 0;
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = (char *)GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES;
	args[1].value.integer = 16 * 1024;
	grpc_channel_args cargs = { 2, args };
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	grpc_channel *ch = grpc_channel_create(target, creds, &cargs);
	grpc_channel_credentials_release(creds);
	return ch;
}

static gpr_timespec in_ms(int ms)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static bool wait_tag(grpc_completion_queue *cq, void *tag, bool *success)
{
	grpc_event ev = grpc_completion_queue_pluck(cq, tag, in_ms(WAIT_MS), NULL);
	if (ev.type != GRPC_OP_COMPLETE)
		return false;
	if (success != NULL)
		*success = ev.success != 0;
	return true;
}

static void destroy_cq(grpc_completion_queue *cq)
{
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN) {
	}
	grpc_completion_queue_destroy(cq);
}

static ProtobufCMessage *unpack_bb(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb)
{
	if (bb == NULL || desc == NULL)
		return NULL;
	grpc_byte_buffer_reader rd;
	if (!grpc_byte_buffer_reader_init(&rd, bb))
		return NULL;
	grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	ProtobufCMessage *m =
		protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
	grpc_slice_unref(all);
	return m;
}

static grpc_byte_buffer *pack_bb(const ProtobufCMessage *msg, const void *raw, size_t raw_len)
{
	grpc_slice s;
	if (raw != NULL) {
		s = grpc_slice_from_copied_buffer(raw, raw_len);
	} else {
		size_t n = protobuf_c_message_get_packed_size(msg);
		s = grpc_slice_malloc(n);
		protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
	}
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

static void md_copy(const grpc_metadata_array *a, const char *key, char *out, size_t cap)
{
	out[0] = '\0';
	if (key == NULL)
		return;
	for (size_t i = 0; i < a->count; i++) {
		if (grpc_slice_str_cmp(a->metadata[i].key, key) == 0) {
			size_t n = GRPC_SLICE_LENGTH(a->metadata[i].value);
			if (n >= cap)
				n = cap - 1;
			memcpy(out, GRPC_SLICE_START_PTR(a->metadata[i].value), n);
			out[n] = '\0';
			return;
		}
	}
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void tc_unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
	      const void *raw, size_t raw_len, const char *const *md, size_t n_md,
	      int deadline_ms, const ProtobufCMessageDescriptor *resp_desc,
	      const char *md_key, tc_reply *out)
{
	memset(out, 0, sizeof(*out));
	double t0 = now_ms();
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	gpr_timespec dl = deadline_ms > 0 ? in_ms(deadline_ms) : gpr_inf_future(GPR_CLOCK_MONOTONIC);
	grpc_call *c = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
						grpc_slice_from_static_string(method), NULL, dl, NULL);
	grpc_metadata send_md[8];
	memset(send_md, 0, sizeof(send_md));
	for (size_t i = 0; i < n_md && i < 8; i++) {
		send_md[i].key = grpc_slice_from_static_string(md[2 * i]);
		send_md[i].value = grpc_slice_from_static_string(md[2 * i + 1]);
	}
	grpc_byte_buffer *bb = pack_bb(req, raw, raw_len), *resp = NULL;
	grpc_metadata_array init_md, trail_md;
	grpc_metadata_array_init(&init_md);
	grpc_metadata_array_init(&trail_md);
	grpc_slice details = grpc_empty_slice();
	grpc_op ops[6];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = n_md;
	ops[0].data.send_initial_metadata.metadata = send_md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &resp;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
	ops[5].data.recv_status_on_client.status = &out->status;
	ops[5].data.recv_status_on_client.status_details = &details;
	void *tag = (void *)(intptr_t)1;
	grpc_call_error e = grpc_call_start_batch(c, ops, 6, tag, NULL);
	if (e != GRPC_CALL_OK || !wait_tag(cq, tag, NULL)) {
		out->timed_out = true;
		out->status = GRPC_STATUS_UNKNOWN;
		grpc_call_cancel(c, NULL);
		wait_tag(cq, tag, NULL);
	}
	grpc_byte_buffer_destroy(bb);
	size_t n = GRPC_SLICE_LENGTH(details);
	if (n >= sizeof(out->details))
		n = sizeof(out->details) - 1;
	memcpy(out->details, GRPC_SLICE_START_PTR(details), n);
	out->details[n] = '\0';
	grpc_slice_unref(details);
	md_copy(&init_md, md_key, out->init_md, sizeof(out->init_md));
	md_copy(&trail_md, md_key, out->trail_md, sizeof(out->trail_md));
	grpc_metadata_array_destroy(&init_md);
	grpc_metadata_array_destroy(&trail_md);
	if (resp != NULL) {
		out->msg = unpack_bb(resp_desc, resp);
		grpc_byte_buffer_destroy(resp);
	}
	grpc_call_unref(c);
	destroy_cq(cq);
	out->ms = now_ms() - t0;
}

void tc_reply_dispose(tc_reply *r)
{
	if (r->msg != NULL)
		protobuf_c_message_free_unpacked(r->msg, NULL);
	r->msg = NULL;
}

/* --- streams -------------------------------------------------------------- */

#define TAG_START ((void *)(intptr_t)10)
#define TAG_SEND ((void *)(intptr_t)11)
#define TAG_RECV ((void *)(intptr_t)12)
#define TAG_STATUS ((void *)(intptr_t)13)

bool tc_stream_start(tc_stream *s, grpc_channel *ch, const char *method, int deadline_ms,
		     const ProtobufCMessageDescriptor *resp_desc, const ProtobufCMessage *req,
		     bool close)
{
	return tc_stream_start_md(s, ch, method, deadline_ms, resp_desc, req, close, NULL, 0);
}

bool tc_stream_start_md(tc_stream *s, grpc_channel *ch, const char *method, int deadline_ms,
			const ProtobufCMessageDescriptor *resp_desc, const ProtobufCMessage *req,
			bool close, const char *const *md, size_t n_md)
{
	grpc_metadata send_md[8];
	memset(send_md, 0, sizeof(send_md));
	if (n_md > 8)
		n_md = 8;
	for (size_t i = 0; i < n_md; i++) {
		send_md[i].key = grpc_slice_from_static_string(md[2 * i]);
		send_md[i].value = grpc_slice_from_static_string(md[2 * i + 1]);
	}
	memset(s, 0, sizeof(*s));
	s->resp_desc = resp_desc;
	s->cq = grpc_completion_queue_create_for_pluck(NULL);
	gpr_timespec dl = deadline_ms > 0 ? in_ms(deadline_ms) : gpr_inf_future(GPR_CLOCK_MONOTONIC);
	s->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq,
					   grpc_slice_from_static_string(method), NULL, dl, NULL);
	grpc_metadata_array_init(&s->init_md);
	grpc_metadata_array_init(&s->trail_md);
	s->details = grpc_empty_slice();

	grpc_op st;
	memset(&st, 0, sizeof(st));
	st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	st.data.recv_status_on_client.trailing_metadata = &s->trail_md;
	st.data.recv_status_on_client.status = &s->status;
	st.data.recv_status_on_client.status_details = &s->details;
	if (grpc_call_start_batch(s->call, &st, 1, TAG_STATUS, NULL) != GRPC_CALL_OK)
		return false;

	grpc_op ops[3];
	memset(ops, 0, sizeof(ops));
	size_t n = 0;
	ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].data.send_initial_metadata.count = n_md;
	ops[n++].data.send_initial_metadata.metadata = send_md;
	grpc_byte_buffer *bb = NULL;
	if (req != NULL) {
		bb = pack_bb(req, NULL, 0);
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = bb;
	}
	if (close)
		ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	bool ok = grpc_call_start_batch(s->call, ops, n, TAG_START, NULL) == GRPC_CALL_OK &&
		  wait_tag(s->cq, TAG_START, NULL);
	if (bb != NULL)
		grpc_byte_buffer_destroy(bb);
	return ok;
}

bool tc_stream_send(tc_stream *s, const ProtobufCMessage *msg)
{
	grpc_byte_buffer *bb = pack_bb(msg, NULL, 0);
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = bb;
	bool success = false;
	bool ok = grpc_call_start_batch(s->call, &op, 1, TAG_SEND, NULL) == GRPC_CALL_OK &&
		  wait_tag(s->cq, TAG_SEND, &success);
	grpc_byte_buffer_destroy(bb);
	return ok && success;
}

bool tc_stream_close(tc_stream *s)
{
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	bool success = false;
	return grpc_call_start_batch(s->call, &op, 1, TAG_SEND, NULL) == GRPC_CALL_OK &&
	       wait_tag(s->cq, TAG_SEND, &success) && success;
}

ProtobufCMessage *tc_stream_recv(tc_stream *s, bool *ok)
{
	grpc_op ops[2];
	memset(ops, 0, sizeof(ops));
	size_t n = 0;
	if (!s->got_initial) {
		ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
		s->got_initial = true;
	}
	grpc_byte_buffer *bb = NULL;
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n++].data.recv_message.recv_message = &bb;
	bool success = false;
	*ok = grpc_call_start_batch(s->call, ops, n, TAG_RECV, NULL) == GRPC_CALL_OK &&
	      wait_tag(s->cq, TAG_RECV, &success);
	if (bb == NULL)
		return NULL;
	ProtobufCMessage *m = unpack_bb(s->resp_desc, bb);
	grpc_byte_buffer_destroy(bb);
	if (m == NULL)
		*ok = false;
	return m;
}

void tc_stream_cancel(tc_stream *s)
{
	grpc_call_cancel(s->call, NULL);
}

grpc_status_code tc_stream_finish(tc_stream *s, char *details, size_t cap)
{
	return tc_stream_finish_md(s, details, cap, NULL, NULL, 0);
}

grpc_status_code tc_stream_finish_md(tc_stream *s, char *details, size_t cap, const char *key,
				     char *val, size_t vcap)
{
	grpc_status_code st = s->status;
	if (!wait_tag(s->cq, TAG_STATUS, NULL)) {
		grpc_call_cancel(s->call, NULL);
		wait_tag(s->cq, TAG_STATUS, NULL);
		st = (grpc_status_code)-1; /* the status never came: a bug */
	} else {
		st = s->status;
	}
	if (details != NULL && cap > 0) {
		size_t n = GRPC_SLICE_LENGTH(s->details);
		if (n >= cap)
			n = cap - 1;
		memcpy(details, GRPC_SLICE_START_PTR(s->details), n);
		details[n] = '\0';
	}
	if (key != NULL && vcap > 0) {
		val[0] = '\0';
		for (size_t i = 0; i < s->trail_md.count; i++) {
			const grpc_metadata *m = &s->trail_md.metadata[i];
			if (grpc_slice_str_cmp(m->key, key) != 0)
				continue;
			size_t n = GRPC_SLICE_LENGTH(m->value);
			if (n >= vcap)
				n = vcap - 1;
			memcpy(val, GRPC_SLICE_START_PTR(m->value), n);
			val[n] = '\0';
			break;
		}
	}
	grpc_slice_unref(s->details);
	grpc_metadata_array_destroy(&s->init_md);
	grpc_metadata_array_destroy(&s->trail_md);
	grpc_call_unref(s->call);
	destroy_cq(s->cq);
	return st;
}
