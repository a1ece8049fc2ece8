/* libharness-client: blocking unary and server-streaming calls on one shared
 * gRPC channel. Every call has its own pluck completion queue, so any number
 * of threads can call at once and a call blocks only its own thread.
 *
 * Unary call = one batch of six ops (send initial md, send message, close,
 * recv initial md, recv message, recv status) plucked on one tag.
 * Stream = batch A (send md+message+close, recv initial md), batch S (recv
 * status, outstanding for the call's life), then one recv-message batch per
 * hs_client_stream_next; a NULL message means the server finished: pluck S.
 * Bidi = batch S, batch A without the close and the initial metadata (the
 * first recv takes it), then send batches (tag &s->send_tag) from one thread
 * while another receives: pluck waits for its own tag only. */
#include "client.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "client_internal.h"

#define MAX_MD HS_CLIENT_MAX_MD

struct hs_client_stream {
	grpc_completion_queue *cq;
	grpc_call *call;
	const ProtobufCMessageDescriptor *desc;
	grpc_metadata_array init_md, trail_md;
	grpc_status_code status;
	grpc_slice details;
	bool status_pending; /* batch S not yet plucked */
	bool finished;
	bool need_init_md;   /* bidi: the first recv also takes the initial metadata */
	char send_tag;       /* bidi: the address is the tag of send batches */
	/* Server streams, to follow harness-node-address before the first
	 * message (follow.c): the call as sent, and the followed peer. */
	hs_client *c;
	char *method;
	grpc_byte_buffer *req;
	grpc_metadata gmd[MAX_MD];
	size_t n_md;
	gpr_timespec deadline;
	bool got_msg;
	hs_client__peer *peer;
	/* hs_client_stream_cancel may run on another thread while a follow
	 * replaces the call: it reads call under mu and leaves cancelled set
	 * for the next call. */
	pthread_mutex_t mu;
	bool cancelled;
};

void hs_client__status_set(hs_client_status *st, int code, const char *details, size_t len)
{
	if (st == NULL)
		return;
	st->code = code;
	st->error_code[0] = '\0';
	if (len >= sizeof(st->details))
		len = sizeof(st->details) - 1;
	if (details != NULL && len > 0)
		memcpy(st->details, details, len);
	else
		len = 0;
	st->details[len] = '\0';
}

void hs_client__status_from_call(hs_client_status *st, grpc_status_code code, grpc_slice details,
			     const grpc_metadata_array *trail)
{
	if (st == NULL)
		return;
	hs_client__status_set(st, (int)code, (const char *)GRPC_SLICE_START_PTR(details),
		   GRPC_SLICE_LENGTH(details));
	for (size_t i = 0; trail != NULL && i < trail->count; i++) {
		if (grpc_slice_str_cmp(trail->metadata[i].key, HS_ERROR_REASON_KEY) != 0)
			continue;
		const grpc_slice v = trail->metadata[i].value;
		size_t n = GRPC_SLICE_LENGTH(v);
		const char *p = (const char *)GRPC_SLICE_START_PTR(v);
		if (hs_error_reason_ok(p, n)) {
			memcpy(st->error_code, p, n);
			st->error_code[n] = '\0';
		}
		break;
	}
}

static bool md_value_ok(const char *v)
{
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			return false;
	return true;
}

static bool md_key_ok(const char *k)
{
	if (k == NULL || *k == '\0' || *k == ':')
		return false;
	for (const char *p = k; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
		      *p == '.'))
			return false;
	return true;
}

/* Builds the grpc_metadata array; slices are released by md_release. */
int hs_client__md_build(grpc_metadata *out, const hs_client_md *md, size_t n_md, hs_client_status *st)
{
	if (n_md > MAX_MD) {
		hs_client__status_set(st, 3, "too much metadata", 17);
		return HS_INVALID;
	}
	for (size_t i = 0; i < n_md; i++) {
		if (!md_key_ok(md[i].key) || md[i].value == NULL || !md_value_ok(md[i].value)) {
			hs_client__status_set(st, 3, "invalid metadata", 16);
			return HS_INVALID;
		}
	}
	for (size_t i = 0; i < n_md; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		out[i].key = grpc_slice_from_copied_string(md[i].key);
		out[i].value = grpc_slice_from_copied_string(md[i].value);
	}
	return HS_OK;
}

void hs_client__md_release(grpc_metadata *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		grpc_slice_unref(m[i].key);
		grpc_slice_unref(m[i].value);
	}
}

grpc_byte_buffer *hs_client__pack(const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	grpc_slice s = grpc_slice_malloc(len);
	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

/* NULL when the bytes are not a desc message. */
ProtobufCMessage *hs_client__unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader r;
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return NULL;
	grpc_slice all = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(all),
							GRPC_SLICE_START_PTR(all));
	grpc_slice_unref(all);
	return m;
}

gpr_timespec hs_client__deadline(const hs_client *c, int64_t ms)
{
	if (ms == 0)
		ms = c->default_deadline_ms;
	if (ms < 0)
		return gpr_inf_future(GPR_CLOCK_MONOTONIC);
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static void cq_destroy(grpc_completion_queue *cq)
{
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
}

static bool pluck(grpc_completion_queue *cq, void *tag)
{
	grpc_event ev = grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	char *buf = NULL;
	size_t len = 0, cap = 0, n;
	char chunk[4096];
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			char *nb = realloc(buf, cap);
			if (nb == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		memcpy(buf + len, chunk, n);
		len += n;
	}
	fclose(f);
	if (buf != NULL)
		buf[len] = '\0';
	return buf;
}

static bool given(const char *s) { return s != NULL && s[0] != '\0'; }

/* Plaintext, or TLS with the configured roots and client certificate. */
static int tls_credentials(const hs_client_opts *o, grpc_channel_credentials **out, hs_error *err)
{
	bool tls = o->tls || given(o->tls_ca_file) || given(o->tls_cert_file) ||
		   given(o->tls_key_file);
	if (!tls) {
		*out = grpc_insecure_credentials_create();
		return HS_OK;
	}
	if (given(o->tls_cert_file) != given(o->tls_key_file))
		return hs_error_set(err, HS_INVALID, "tls: a client certificate needs its key (and "
				    "the key its certificate)");
	char *ca = NULL, *cert = NULL, *key = NULL;
	int rc = HS_OK;
	if (given(o->tls_ca_file) && (ca = read_file(o->tls_ca_file)) == NULL)
		rc = hs_error_set(err, HS_INVALID, "tls ca file %s: cannot read", o->tls_ca_file);
	else if (given(o->tls_cert_file) && (cert = read_file(o->tls_cert_file)) == NULL)
		rc = hs_error_set(err, HS_INVALID, "tls cert file %s: cannot read", o->tls_cert_file);
	else if (given(o->tls_key_file) && (key = read_file(o->tls_key_file)) == NULL)
		rc = hs_error_set(err, HS_INVALID, "tls key file %s: cannot read", o->tls_key_file);
	if (rc == HS_OK) {
		grpc_ssl_pem_key_cert_pair pair = { key, cert };
		*out = grpc_ssl_credentials_create(ca, cert != NULL ? &pair : NULL, NULL, NULL);
		if (*out == NULL)
			rc = hs_error_set(err, HS_INVALID, "tls: cannot create credentials");
	}
	free(ca);
	free(cert);
	if (key != NULL) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	return rc;
}

int hs_client_new(hs_client **out, const char *target, const hs_client_opts *opts, hs_error *err)
{
	hs_client_opts o = HS_CLIENT_OPTS_INIT;
	if (opts != NULL)
		o = *opts;
	if (target == NULL || *target == '\0')
		return hs_error_set(err, HS_INVALID, "grpc target: empty");
	hs_client *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return hs_error_set(err, HS_INTERNAL, "grpc client: out of memory");
	c->default_deadline_ms = o.default_deadline_ms;
	c->no_follow = o.no_follow != 0;
	pthread_mutex_init(&c->mu, NULL);
	hs_client__peers_init(c);

	grpc_init();
	int rc = tls_credentials(&o, &c->creds, err);
	if (rc != HS_OK)
		goto done;
	grpc_arg *args = c->args;
	size_t nargs = 0;
	args[nargs].type = GRPC_ARG_INTEGER;
	args[nargs].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[nargs++].value.integer = o.max_recv_bytes > 0 ? o.max_recv_bytes : 4 * 1024 * 1024;
	if (o.user_agent != NULL) {
		if ((c->user_agent = strdup(o.user_agent)) == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "grpc client: out of memory");
			goto done;
		}
		args[nargs].type = GRPC_ARG_STRING;
		args[nargs].key = (char *)GRPC_ARG_PRIMARY_USER_AGENT_STRING;
		args[nargs++].value.string = c->user_agent;
	}
	if (o.tls_server_name != NULL && o.tls_server_name[0] != '\0') {
		if ((c->server_name = strdup(o.tls_server_name)) == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "grpc client: out of memory");
			goto done;
		}
		args[nargs].type = GRPC_ARG_STRING;
		args[nargs].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
		args[nargs++].value.string = c->server_name;
	}
	c->n_args = nargs;
	grpc_channel_args cargs = { nargs, args };
	c->channel = grpc_channel_create(target, c->creds, &cargs);
	if (c->channel == NULL)
		rc = hs_error_set(err, HS_INVALID, "grpc target %s: cannot create channel", target);
done:
	if (rc != HS_OK) {
		if (c->creds != NULL)
			grpc_channel_credentials_release(c->creds);
		free(c->user_agent);
		free(c->server_name);
		pthread_mutex_destroy(&c->mu);
		free(c);
		grpc_shutdown();
		return rc;
	}
	*out = c;
	return HS_OK;
}

void hs_client_free(hs_client *c)
{
	if (c == NULL)
		return;
	hs_client__peers_free(c);
	grpc_channel_destroy(c->channel);
	grpc_channel_credentials_release(c->creds);
	free(c->user_agent);
	free(c->server_name);
	pthread_mutex_destroy(&c->mu);
	free(c);
	grpc_shutdown();
}

grpc_call *hs_client__call_on(grpc_channel *ch, grpc_completion_queue *cq, const char *method,
			      gpr_timespec deadline)
{
	grpc_slice m = grpc_slice_from_copied_string(method);
	grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL,
						   deadline, NULL);
	grpc_slice_unref(m);
	return call;
}

grpc_call *hs_client__call_create(hs_client *c, grpc_completion_queue *cq, const char *method,
			      int64_t deadline_ms)
{
	return hs_client__call_on(c->channel, cq, method, hs_client__deadline(c, deadline_ms));
}

int hs_client__unary_start(hs_client__unary *u, hs_client *c, grpc_completion_queue *cq,
			   const char *method, const ProtobufCMessage *req, const hs_client_md *md,
			   size_t n_md, int64_t deadline_ms, void *tag, hs_client_status *st)
{
	return hs_client__unary_start_on(u, c->channel, cq, method, req, md, n_md,
					 hs_client__deadline(c, deadline_ms), tag, st);
}

int hs_client__unary_start_on(hs_client__unary *u, grpc_channel *ch, grpc_completion_queue *cq,
			      const char *method, const ProtobufCMessage *req, const hs_client_md *md,
			      size_t n_md, gpr_timespec deadline, void *tag, hs_client_status *st)
{
	memset(u, 0, sizeof(*u));
	grpc_metadata_array_init(&u->init_md);
	grpc_metadata_array_init(&u->trail_md);
	u->status = GRPC_STATUS_UNKNOWN;
	u->details = grpc_empty_slice();
	int rc = hs_client__md_build(u->gmd, md, n_md, st);
	if (rc != HS_OK)
		return rc;
	u->n_md = n_md;
	u->call = hs_client__call_on(ch, cq, method, deadline);
	u->send = hs_client__pack(req);
	grpc_op *ops = u->ops;
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = n_md;
	ops[0].data.send_initial_metadata.metadata = u->gmd;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = u->send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->init_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &u->recv;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &u->trail_md;
	ops[5].data.recv_status_on_client.status = &u->status;
	ops[5].data.recv_status_on_client.status_details = &u->details;
	if (u->call == NULL || u->send == NULL ||
	    grpc_call_start_batch(u->call, ops, 6, tag, NULL) != GRPC_CALL_OK) {
		hs_client__status_set(st, 13, "cannot start call", 17);
		return HS_INTERNAL;
	}
	return HS_OK;
}

int hs_client__unary_finish(hs_client__unary *u, const ProtobufCMessageDescriptor *resp_desc,
			    ProtobufCMessage **resp_out, hs_client_status *st)
{
	hs_client__status_from_call(st, u->status, u->details, &u->trail_md);
	if (u->status != GRPC_STATUS_OK)
		return hs_client_code_from_grpc(u->status);
	ProtobufCMessage *m = u->recv != NULL ? hs_client__unpack(resp_desc, u->recv) : NULL;
	if (m == NULL) {
		hs_client__status_set(st, 13, "malformed response message", 26);
		return HS_INTERNAL;
	}
	*resp_out = m;
	return HS_OK;
}

void hs_client__unary_dispose(hs_client__unary *u)
{
	if (u->recv != NULL)
		grpc_byte_buffer_destroy(u->recv);
	if (u->send != NULL)
		grpc_byte_buffer_destroy(u->send);
	grpc_slice_unref(u->details);
	grpc_metadata_array_destroy(&u->init_md);
	grpc_metadata_array_destroy(&u->trail_md);
	hs_client__md_release(u->gmd, u->n_md);
	if (u->call != NULL)
		grpc_call_unref(u->call);
}

void hs_client__server_stream_ops(grpc_op *status_op, grpc_op start[4], grpc_metadata *md,
				  size_t n_md, grpc_byte_buffer *send, grpc_metadata_array *init_md,
				  grpc_metadata_array *trail_md, grpc_status_code *status,
				  grpc_slice *details)
{
	memset(status_op, 0, sizeof(*status_op));
	status_op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	status_op->data.recv_status_on_client.trailing_metadata = trail_md;
	status_op->data.recv_status_on_client.status = status;
	status_op->data.recv_status_on_client.status_details = details;
	memset(start, 0, 4 * sizeof(*start));
	start[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	start[0].data.send_initial_metadata.count = n_md;
	start[0].data.send_initial_metadata.metadata = md;
	start[1].op = GRPC_OP_SEND_MESSAGE;
	start[1].data.send_message.send_message = send;
	start[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	start[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	start[3].data.recv_initial_metadata.recv_initial_metadata = init_md;
}

int hs_client_unary(hs_client *c, const char *method, const ProtobufCMessage *req,
		    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp_out,
		    const hs_client_md *md, size_t n_md, int64_t deadline_ms, hs_client_status *st)
{
	hs_client__unary u;
	gpr_timespec deadline = hs_client__deadline(c, deadline_ms);
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	int rc = hs_client__unary_start_on(&u, c->channel, cq, method, req, md, n_md, deadline, &u,
					   st);
	if (rc == HS_OK) {
		(void)pluck(cq, &u); /* failures surface as the status */
		rc = hs_client__unary_finish(&u, resp_desc, resp_out, st);
	}
	/* The object lives on another node, which did not get the call
	 * forwarded: once more there (follow.c), with what is left of the
	 * deadline. Its answer stands, even another redirect. */
	char where[HS_ERROR_WHERE_MAX];
	hs_client__peer *peer = NULL;
	if (rc != HS_OK && u.call != NULL && hs_client__follow_target(c, u.status, &u.trail_md, where) &&
	    (peer = hs_client__peer_acquire(c, where)) != NULL) {
		hs_client__unary_dispose(&u);
		rc = hs_client__unary_start_on(&u, hs_client__peer_channel(peer), cq, method, req, md,
					       n_md, deadline, &u, st);
		if (rc == HS_OK) {
			(void)pluck(cq, &u);
			rc = hs_client__unary_finish(&u, resp_desc, resp_out, st);
		}
	}
	hs_client__unary_dispose(&u);
	cq_destroy(cq);
	hs_client__peer_release(c, peer);
	return rc;
}

/* Ends the call (the stream's own fields stay). */
static void stream_call_dispose(hs_client_stream *s)
{
	if (s->status_pending) {
		grpc_call_cancel(s->call, NULL);
		(void)pluck(s->cq, &s->status);
		s->status_pending = false;
	}
	grpc_slice_unref(s->details);
	s->details = grpc_empty_slice();
	grpc_metadata_array_destroy(&s->init_md);
	grpc_metadata_array_destroy(&s->trail_md);
	grpc_metadata_array_init(&s->init_md);
	grpc_metadata_array_init(&s->trail_md);
	pthread_mutex_lock(&s->mu);
	grpc_call *call = s->call;
	s->call = NULL;
	pthread_mutex_unlock(&s->mu);
	if (call != NULL)
		grpc_call_unref(call);
}

static void stream_dispose(hs_client_stream *s)
{
	stream_call_dispose(s);
	grpc_slice_unref(s->details);
	grpc_metadata_array_destroy(&s->init_md);
	grpc_metadata_array_destroy(&s->trail_md);
	cq_destroy(s->cq);
	pthread_mutex_destroy(&s->mu);
	if (s->req != NULL)
		grpc_byte_buffer_destroy(s->req);
	hs_client__md_release(s->gmd, s->n_md);
	free(s->method);
	hs_client__peer_release(s->c, s->peer);
}

/* Starts the server stream's call on ch and waits for its initial metadata:
 * HS_OK, or the code of a call that already ended (st set; the status and
 * trailers stay in s), or HS_INTERNAL when it could not start. */
static int server_stream_open(hs_client_stream *s, grpc_channel *ch, hs_client_status *st)
{
	grpc_call *call = hs_client__call_on(ch, s->cq, s->method, s->deadline);
	pthread_mutex_lock(&s->mu);
	s->call = call;
	if (call != NULL && s->cancelled) /* cancelled while it was being replaced */
		grpc_call_cancel(call, NULL);
	pthread_mutex_unlock(&s->mu);
	/* gRPC consumes the slices of a message it sends: each open sends its
	 * own copy, so a followed stream carries the same request again. */
	grpc_byte_buffer *req = s->req != NULL ? grpc_byte_buffer_copy(s->req) : NULL;
	grpc_op sop, ops[4];
	hs_client__server_stream_ops(&sop, ops, s->gmd, s->n_md, req, &s->init_md, &s->trail_md,
				     &s->status, &s->details);
	bool started = s->call != NULL && req != NULL &&
		       grpc_call_start_batch(s->call, &sop, 1, &s->status, NULL) == GRPC_CALL_OK;
	s->status_pending = started;
	if (started)
		started = grpc_call_start_batch(s->call, ops, 4, ops, NULL) == GRPC_CALL_OK;
	bool ok = started && pluck(s->cq, ops);
	if (req != NULL)
		grpc_byte_buffer_destroy(req);
	if (!started) {
		hs_client__status_set(st, 13, "cannot start call", 17);
		return HS_INTERNAL;
	}
	if (!ok) { /* the call already ended: report its status */
		(void)pluck(s->cq, &s->status);
		s->status_pending = false;
		hs_client__status_from_call(st, s->status, s->details, &s->trail_md);
		return s->status == GRPC_STATUS_OK ? HS_INTERNAL : hs_client_code_from_grpc(s->status);
	}
	hs_client__status_set(st, 0, NULL, 0);
	return HS_OK;
}

/* A server stream that ended before its first message with a
 * harness-node-address to follow: opened once more there. True when it
 * was (rc = that open's result); false leaves s as it was. */
static bool server_stream_follow(hs_client_stream *s, hs_client_status *st, int *rc)
{
	char where[HS_ERROR_WHERE_MAX];
	if (s->req == NULL || s->got_msg || s->peer != NULL ||
	    !hs_client__follow_target(s->c, s->status, &s->trail_md, where))
		return false;
	s->peer = hs_client__peer_acquire(s->c, where);
	if (s->peer == NULL)
		return false;
	stream_call_dispose(s);
	s->finished = false;
	*rc = server_stream_open(s, hs_client__peer_channel(s->peer), st);
	return true;
}

int hs_client_stream_start(hs_client_stream **out, hs_client *c, const char *method,
			   const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
			   const hs_client_md *md, size_t n_md, int64_t deadline_ms,
			   hs_client_status *st)
{
	hs_client_stream *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		hs_client__status_set(st, 13, "out of memory", 13);
		return HS_INTERNAL;
	}
	int rc = hs_client__md_build(s->gmd, md, n_md, st);
	if (rc != HS_OK) {
		free(s);
		return rc;
	}
	pthread_mutex_init(&s->mu, NULL);
	s->n_md = n_md;
	s->c = c;
	s->desc = resp_desc;
	s->cq = grpc_completion_queue_create_for_pluck(NULL);
	s->details = grpc_empty_slice();
	grpc_metadata_array_init(&s->init_md);
	grpc_metadata_array_init(&s->trail_md);
	s->deadline = hs_client__deadline(c, deadline_ms);
	s->req = hs_client__pack(req);
	s->method = strdup(method);
	if (s->method == NULL) {
		hs_client__status_set(st, 13, "out of memory", 13);
		rc = HS_INTERNAL;
	} else {
		rc = server_stream_open(s, c->channel, st);
		if (rc != HS_OK && rc != HS_INTERNAL)
			(void)server_stream_follow(s, st, &rc);
	}
	if (rc != HS_OK) {
		stream_dispose(s);
		free(s);
		return rc;
	}
	*out = s;
	return HS_OK;
}

int hs_client_stream_next(hs_client_stream *s, ProtobufCMessage **msg_out, hs_client_status *st)
{
	if (s->finished) {
		hs_client__status_from_call(st, s->status, s->details, &s->trail_md);
		if (s->status != GRPC_STATUS_OK)
			return hs_client_code_from_grpc(s->status);
		*msg_out = NULL;
		return HS_OK;
	}
	grpc_byte_buffer *recv = NULL;
	grpc_op ops[2];
	size_t n = 0;
	memset(ops, 0, sizeof(ops));
	if (s->need_init_md) {
		ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
		s->need_init_md = false;
	}
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n++].data.recv_message.recv_message = &recv;
	if (grpc_call_start_batch(s->call, ops, n, ops, NULL) != GRPC_CALL_OK) {
		hs_client__status_set(st, 13, "cannot read stream", 18);
		return HS_INTERNAL;
	}
	(void)pluck(s->cq, ops);
	if (recv != NULL) {
		s->got_msg = true;
		ProtobufCMessage *m = hs_client__unpack(s->desc, recv);
		grpc_byte_buffer_destroy(recv);
		if (m == NULL) {
			grpc_call_cancel(s->call, NULL);
			hs_client__status_set(st, 13, "malformed response message", 26);
			return HS_INTERNAL;
		}
		hs_client__status_set(st, 0, NULL, 0);
		*msg_out = m;
		return HS_OK;
	}
	/* End of stream or failure: the status batch completes now. */
	(void)pluck(s->cq, &s->status);
	s->status_pending = false;
	s->finished = true;
	/* Ended before any message: the server may have said where to go
	 * (a trailers-only answer completes the initial metadata). */
	int rc;
	if (server_stream_follow(s, st, &rc)) {
		if (rc != HS_OK) {
			s->finished = true;
			return rc;
		}
	}
	return hs_client_stream_next(s, msg_out, st);
}

void hs_client_stream_cancel(hs_client_stream *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	s->cancelled = true;
	if (s->call != NULL)
		grpc_call_cancel(s->call, NULL);
	pthread_mutex_unlock(&s->mu);
}

void hs_client_stream_free(hs_client_stream *s)
{
	if (s == NULL)
		return;
	stream_dispose(s);
	free(s);
}

int hs_client_bidi_start(hs_client_stream **out, hs_client *c, const char *method,
			 const ProtobufCMessage *first, const ProtobufCMessageDescriptor *resp_desc,
			 const hs_client_md *md, size_t n_md, int64_t deadline_ms,
			 hs_client_status *st)
{
	grpc_metadata gmd[MAX_MD];
	int rc = hs_client__md_build(gmd, md, n_md, st);
	if (rc != HS_OK)
		return rc;
	hs_client_stream *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		hs_client__md_release(gmd, n_md);
		hs_client__status_set(st, 13, "out of memory", 13);
		return HS_INTERNAL;
	}
	pthread_mutex_init(&s->mu, NULL);
	s->desc = resp_desc;
	s->need_init_md = true;
	s->cq = grpc_completion_queue_create_for_pluck(NULL);
	s->call = hs_client__call_create(c, s->cq, method, deadline_ms);
	s->details = grpc_empty_slice();
	grpc_metadata_array_init(&s->init_md);
	grpc_metadata_array_init(&s->trail_md);

	grpc_op sop;
	memset(&sop, 0, sizeof(sop));
	sop.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	sop.data.recv_status_on_client.trailing_metadata = &s->trail_md;
	sop.data.recv_status_on_client.status = &s->status;
	sop.data.recv_status_on_client.status_details = &s->details;
	grpc_byte_buffer *send = first != NULL ? hs_client__pack(first) : NULL;
	grpc_op ops[2];
	size_t n = 0;
	memset(ops, 0, sizeof(ops));
	ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].data.send_initial_metadata.count = n_md;
	ops[n++].data.send_initial_metadata.metadata = gmd;
	if (send != NULL) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = send;
	}
	bool started = grpc_call_start_batch(s->call, &sop, 1, &s->status, NULL) == GRPC_CALL_OK;
	s->status_pending = started;
	if (started)
		started = grpc_call_start_batch(s->call, ops, n, ops, NULL) == GRPC_CALL_OK;
	bool ok = started && pluck(s->cq, ops);
	if (send != NULL)
		grpc_byte_buffer_destroy(send);
	hs_client__md_release(gmd, n_md);
	if (!started) {
		hs_client__status_set(st, 13, "cannot start call", 17);
		stream_dispose(s);
		free(s);
		return HS_INTERNAL;
	}
	if (!ok) { /* the call already ended: report its status */
		(void)pluck(s->cq, &s->status);
		s->status_pending = false;
		hs_client__status_from_call(st, s->status, s->details, &s->trail_md);
		rc = s->status == GRPC_STATUS_OK ? HS_INTERNAL : hs_client_code_from_grpc(s->status);
		stream_dispose(s);
		free(s);
		return rc;
	}
	hs_client__status_set(st, 0, NULL, 0);
	*out = s;
	return HS_OK;
}

int hs_client_stream_send(hs_client_stream *s, const ProtobufCMessage *msg)
{
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = hs_client__pack(msg);
	bool ok = grpc_call_start_batch(s->call, &op, 1, &s->send_tag, NULL) == GRPC_CALL_OK &&
		  pluck(s->cq, &s->send_tag);
	grpc_byte_buffer_destroy(op.data.send_message.send_message);
	return ok ? HS_OK : HS_CANCELLED;
}

int hs_client_stream_close_send(hs_client_stream *s)
{
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	bool ok = grpc_call_start_batch(s->call, &op, 1, &s->send_tag, NULL) == GRPC_CALL_OK &&
		  pluck(s->cq, &s->send_tag);
	return ok ? HS_OK : HS_CANCELLED;
}
