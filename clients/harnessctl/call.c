/* harnessctl calls: the client for --server, the access token, unary and
 * streaming calls with their error reports and exit codes, and the signal
 * thread that turns SIGINT/SIGTERM into a clean cancellation of a stream.
 *
 * Signals are blocked in every thread (set before gRPC starts its own) and
 * taken by one thread with sigwait(), so cancelling a call never happens in
 * a signal handler (hs_client_stream_cancel is not async-signal-safe). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "pbjson.h"

/* ---- signals ----------------------------------------------------------- */

static pthread_mutex_t sig_mu = PTHREAD_MUTEX_INITIALIZER;
static hs_client_stream *sig_stream;
static bool sig_hit, sig_coop;
static int sig_exit = -1; /* exit status for an unhandled signal; -1 = 128 + signal */

static void *sig_thread(void *arg)
{
	sigset_t *set = arg;
	for (;;) {
		int sig = 0;
		if (sigwait(set, &sig) != 0)
			continue;
		pthread_mutex_lock(&sig_mu);
		sig_hit = true;
		if (sig_stream != NULL)
			hs_client_stream_cancel(sig_stream);
		else if (!sig_coop)
			_exit(sig_exit >= 0 ? sig_exit : 128 + sig);
		pthread_mutex_unlock(&sig_mu);
	}
	return NULL;
}

void hs_ctl_signals_start(void)
{
	static sigset_t set;
	pthread_t t;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (pthread_create(&t, NULL, sig_thread, &set) == 0)
		pthread_detach(t);
}

void hs_ctl_signals_watch(hs_client_stream *s)
{
	pthread_mutex_lock(&sig_mu);
	sig_stream = s;
	if (s != NULL && sig_hit)
		hs_client_stream_cancel(s);
	pthread_mutex_unlock(&sig_mu);
}

void hs_ctl_signals_cooperative(bool on)
{
	pthread_mutex_lock(&sig_mu);
	sig_coop = on;
	pthread_mutex_unlock(&sig_mu);
}

void hs_ctl_signals_exit_status(int status)
{
	pthread_mutex_lock(&sig_mu);
	sig_exit = status;
	pthread_mutex_unlock(&sig_mu);
}

bool hs_ctl_signals_interrupted(void)
{
	pthread_mutex_lock(&sig_mu);
	bool hit = sig_hit;
	pthread_mutex_unlock(&sig_mu);
	return hit;
}

/* ---- client and token -------------------------------------------------- */

hs_client *hs_ctl_client(hs_ctl *c)
{
	if (c->client != NULL)
		return c->client;
	hs_client_opts o = HS_CLIENT_OPTS_INIT;
	hs_error err = { 0 };
	o.default_deadline_ms = c->timeout_set ? (int64_t)(c->timeout_s * 1000) : 15000;
	o.user_agent = "harnessctl/" HS_VERSION;
	o.tls = c->tls;
	o.tls_ca_file = c->tls_ca;
	o.tls_cert_file = c->tls_cert;
	o.tls_key_file = c->tls_key;
	o.tls_server_name = c->tls_server_name;
	if (hs_client_new(&c->client, c->server, &o, &err) != HS_OK) {
		fprintf(stderr, "%s: cannot use server %s: %s\n", c->prog, c->server, err.msg);
		c->client = NULL;
	}
	return c->client;
}

const char *hs_ctl_token(hs_ctl *c)
{
	if (c->token_resolved)
		return c->token;
	c->token_resolved = true;
	const char *env = getenv("HARNESS_TOKEN");
	if (c->token_flag != NULL && *c->token_flag) {
		c->token = strdup(c->token_flag);
	} else if (env != NULL && *env) {
		c->token = strdup(env);
	} else {
		hs_ctl_token_cache tc = { 0 };
		if (hs_ctl_token_load(&tc) == HS_OK) {
			if (tc.expires_at > 0 && tc.expires_at <= (long long)time(NULL) + 15 &&
			    tc.refresh_token != NULL && *tc.refresh_token) {
				if (hs_ctl_token_refresh(c, &tc) != 0)
					fprintf(stderr, "%s: the cached token expired and could not be refreshed; "
							"run '%s login'\n", c->prog, c->prog);
			}
			if (tc.access_token != NULL && *tc.access_token)
				c->token = strdup(tc.access_token);
			hs_ctl_token_dispose(&tc);
		}
	}
	return c->token;
}

const ProtobufCMethodDescriptor *hs_ctl_method(const ProtobufCServiceDescriptor *svc, const char *name)
{
	const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(svc, name);
	if (m == NULL) {
		fprintf(stderr, "harnessctl: internal error: %s has no method %s\n", svc->name, name);
		abort();
	}
	return m;
}

/* ---- errors ------------------------------------------------------------ */

int hs_ctl_exit_code(int grpc_code)
{
	switch (grpc_code) {
	case 0:
		return HS_CTL_EXIT_OK;
	case 5: /* NOT_FOUND */
		return HS_CTL_EXIT_NOT_FOUND;
	case 7:  /* PERMISSION_DENIED */
	case 16: /* UNAUTHENTICATED */
		return HS_CTL_EXIT_AUTH;
	case 4:  /* DEADLINE_EXCEEDED */
	case 14: /* UNAVAILABLE */
		return HS_CTL_EXIT_UNAVAILABLE;
	default:
		return HS_CTL_EXIT_ERROR;
	}
}

static int exit_from_hs(int rc)
{
	switch (rc) {
	case HS_NOT_FOUND:
		return HS_CTL_EXIT_NOT_FOUND;
	case HS_UNAUTH:
	case HS_DENIED:
		return HS_CTL_EXIT_AUTH;
	case HS_UNAVAILABLE:
	case HS_TIMEOUT:
		return HS_CTL_EXIT_UNAVAILABLE;
	default:
		return HS_CTL_EXIT_ERROR;
	}
}

/* NOT_FOUND: the group's list verb shows what exists; INVALID_ARGUMENT:
 * the verb's help lists its flags. Appended to the status line. */
static void advise_cmd(const hs_ctl *c, int code)
{
	const hs_ctl_cmd *cmd = c->cmd;
	if (code == 3) {
		fprintf(stderr, "; '%s %s %s --help' lists the flags and their formats", c->prog, cmd->group,
			cmd->verb);
		return;
	}
	for (size_t t = 0; t < hs_ctl_n_tables; t++)
		for (const hs_ctl_cmd *l = hs_ctl_tables[t]; l->group; l++) {
			if (strcmp(l->group, cmd->group) != 0 || l->verb == NULL || strcmp(l->verb, "list") != 0 ||
			    cmd == l)
				continue;
			fprintf(stderr, "; '%s %s list%s' shows what you can see", c->prog, l->group,
				l->pos[0] != NULL && l->pos[0][0] != '?' ? " TASK_ID" : "");
			return;
		}
}

int hs_ctl_report_status(const hs_ctl *c, const char *what, int rc, const hs_client_status *st)
{
	int code = st ? st->code : 0;
	const char *details = st && st->details[0] ? st->details : "";
	if (code == 0) {
		fprintf(stderr, "%s: %s: %s%s%s\n", c->prog, what, hs_code_name((hs_code)rc),
			*details ? ": " : "", details);
		return exit_from_hs(rc);
	}
	const char *name = hs_client_grpc_code_name(code);
	if (code == 12) { /* UNIMPLEMENTED */
		fprintf(stderr, "%s: %s: UNIMPLEMENTED: the server at %s does not implement this method%s%s\n",
			c->prog, what, c->server, *details ? ": " : "", details);
		return HS_CTL_EXIT_ERROR;
	}
	/* One line per failure: the status, then what to do about it. */
	fprintf(stderr, "%s: %s: %s%s%s", c->prog, what, name, *details ? ": " : "", details);
	if (st->error_code[0])
		fprintf(stderr, " [%s]", st->error_code);
	/* UNAVAILABLE from the transport (not from harnessd itself): a hint. */
	if (code == 14 && (strcasestr(details, "ssl") != NULL || strcasestr(details, "handshake") ||
			   strcasestr(details, "certificate") != NULL))
		fprintf(stderr, "; TLS to %s failed: check --tls-ca and --tls-server-name (and "
			"--tls-cert/--tls-key if harnessd requires client certificates)", c->server);
	else if (code == 14 && (details[0] == '\0' || strstr(details, "failed to connect") != NULL ||
				strstr(details, "Socket closed") != NULL))
		fprintf(stderr, "; is harnessd running at %s? (--server or HARNESS_SERVER; "
			"--tls-ca if it serves TLS)", c->server);
	else if (code == 16 && c->token == NULL && c->token_required)
		fprintf(stderr, "; no access token: run '%s login', or pass --token / HARNESS_TOKEN", c->prog);
	else if (code == 16 && c->token_required)
		fprintf(stderr, "; run '%s login' again, or check --token / HARNESS_TOKEN", c->prog);
	else if (code == 7)
		fprintf(stderr, "; this needs another role (admin) or an API key allowed this method");
	else if ((code == 5 || code == 3) && c->cmd != NULL && c->cmd->verb != NULL)
		advise_cmd(c, code);
	fputc('\n', stderr);
	return hs_ctl_exit_code(code);
}

/* ---- calls ------------------------------------------------------------- */

static size_t auth_md(hs_ctl *c, hs_ctl_auth auth, hs_client_md *md, char *buf, size_t n)
{
	const char *tok = auth != HS_CTL_AUTH_NONE ? hs_ctl_token(c) : NULL;
	if (tok == NULL)
		return 0;
	snprintf(buf, n, "Bearer %s", tok);
	md[0].key = "authorization";
	md[0].value = buf;
	return 1;
}

int hs_ctl_call(hs_ctl *c, const ProtobufCServiceDescriptor *svc, const char *method,
		const ProtobufCMessage *req, ProtobufCMessage **resp, hs_ctl_auth auth,
		hs_client_status *st)
{
	hs_client_status local;
	hs_client_md md[1];
	char path[160], bearer[8192];
	const ProtobufCMethodDescriptor *m = hs_ctl_method(svc, method);
	if (st == NULL)
		st = &local;
	memset(st, 0, sizeof(*st));
	snprintf(path, sizeof(path), "/%s/%s", svc->name, method);
	hs_client *cl = hs_ctl_client(c);
	if (cl == NULL)
		return HS_CTL_EXIT_USAGE;
	size_t n_md = auth_md(c, auth, md, bearer, sizeof(bearer));
	c->token_required = auth == HS_CTL_AUTH_REQUIRED;
	int64_t deadline = c->timeout_set ? (int64_t)(c->timeout_s * 1000) : 0;
	int rc = hs_client_unary(cl, path, req, m->output, resp, md, n_md, deadline, st);
	if (rc != HS_OK)
		return hs_ctl_report_status(c, path + 1, rc, st);
	return HS_CTL_EXIT_OK;
}

int hs_ctl_stream(hs_ctl *c, const ProtobufCServiceDescriptor *svc, const char *method, const ProtobufCMessage *req,
	       hs_client_stream **out, hs_client_status *st)
{
	hs_client_status local;
	hs_client_md md[1];
	char path[160], bearer[8192];
	const ProtobufCMethodDescriptor *m = hs_ctl_method(svc, method);
	if (st == NULL)
		st = &local;
	memset(st, 0, sizeof(*st));
	snprintf(path, sizeof(path), "/%s/%s", svc->name, method);
	hs_client *cl = hs_ctl_client(c);
	if (cl == NULL)
		return HS_CTL_EXIT_USAGE;
	/* The grpc.health.v1 service takes no token; ours all do. */
	hs_ctl_auth auth = strncmp(svc->name, "grpc.", 5) != 0 ? HS_CTL_AUTH_REQUIRED
							       : HS_CTL_AUTH_NONE;
	size_t n_md = auth_md(c, auth, md, bearer, sizeof(bearer));
	c->token_required = auth == HS_CTL_AUTH_REQUIRED;
	int64_t deadline = c->timeout_set ? (int64_t)(c->timeout_s * 1000) : -1;
	int rc = hs_client_stream_start(out, cl, path, req, m->output, md, n_md, deadline, st);
	if (rc != HS_OK)
		return hs_ctl_report_status(c, path + 1, rc, st);
	return HS_CTL_EXIT_OK;
}

int hs_ctl_bidi(hs_ctl *c, const ProtobufCServiceDescriptor *svc, const char *method,
		const ProtobufCMessage *first, hs_client_stream **out, hs_client_status *st)
{
	hs_client_status local;
	hs_client_md md[1];
	char path[160], bearer[8192];
	const ProtobufCMethodDescriptor *m = hs_ctl_method(svc, method);
	if (st == NULL)
		st = &local;
	memset(st, 0, sizeof(*st));
	snprintf(path, sizeof(path), "/%s/%s", svc->name, method);
	hs_client *cl = hs_ctl_client(c);
	if (cl == NULL)
		return HS_CTL_EXIT_USAGE;
	size_t n_md = auth_md(c, HS_CTL_AUTH_REQUIRED, md, bearer, sizeof(bearer));
	int64_t deadline = c->timeout_set ? (int64_t)(c->timeout_s * 1000) : -1;
	int rc = hs_client_bidi_start(out, cl, path, first, m->output, md, n_md, deadline, st);
	if (rc != HS_OK)
		return hs_ctl_report_status(c, path + 1, rc, st);
	return HS_CTL_EXIT_OK;
}

static hs_ctl_auth auth_mode(const hs_ctl_cmd *cmd)
{
	if (cmd->flags & HS_CTL_NOAUTH)
		return HS_CTL_AUTH_NONE;
	return (cmd->flags & HS_CTL_OPT_AUTH) ? HS_CTL_AUTH_OPTIONAL : HS_CTL_AUTH_REQUIRED;
}

#define HS_CTL_MAX_PAGES 100000

/* --all: calls the list method page after page (request page_token = the
 * previous next_page_token) and returns one response holding every item,
 * next_page_token empty. */
static int call_all(hs_ctl *c, const hs_ctl_cmd *cmd, ProtobufCMessage *req, ProtobufCMessage **out)
{
	const ProtobufCMethodDescriptor *m = hs_ctl_method(cmd->svc, cmd->method);
	const ProtobufCFieldDescriptor *pt = hs_pbjson_field_lookup(req->descriptor, "page_token");
	const ProtobufCFieldDescriptor *np = hs_pbjson_field_lookup(m->output, "next_page_token");
	json_t *items = json_array(), *merged = NULL;
	char *prev = NULL;
	int rc = HS_CTL_EXIT_OK;
	hs_pbjson_opts o = HS_PBJSON_OPTS_INIT;
	o.original_names = true;
	for (int page = 0; rc == HS_CTL_EXIT_OK; page++) {
		ProtobufCMessage *resp = NULL;
		json_t *j = NULL;
		hs_error err = { 0 };
		if (page == HS_CTL_MAX_PAGES) {
			fprintf(stderr, "%s: --all: stopped after %d pages\n", c->prog, page);
			rc = HS_CTL_EXIT_ERROR;
			break;
		}
		rc = hs_ctl_call(c, cmd->svc, cmd->method, req, &resp, auth_mode(cmd), NULL);
		if (rc != HS_CTL_EXIT_OK)
			break;
		if (hs_pbjson_encode(&j, resp, &o, &err) != HS_OK) {
			fprintf(stderr, "%s: cannot read the response: %s\n", c->prog, err.msg);
			protobuf_c_message_free_unpacked(resp, NULL);
			rc = HS_CTL_EXIT_ERROR;
			break;
		}
		json_t *arr = json_object_get(j, cmd->list_field);
		if (json_is_array(arr))
			json_array_extend(items, arr);
		const char *tok = *(char *const *)((const char *)resp + np->offset);
		bool more = tok != NULL && *tok != '\0';
		if (more && prev != NULL && strcmp(prev, tok) == 0) {
			fprintf(stderr, "%s: --all: the server returned the same page token twice\n", c->prog);
			rc = HS_CTL_EXIT_ERROR;
		}
		if (more && rc == HS_CTL_EXIT_OK) {
			char **slot = (char **)((char *)req + pt->offset);
			free(prev);
			prev = strdup(tok);
			if (*slot != NULL && *slot != (char *)pt->default_value)
				free(*slot);
			*slot = strdup(tok);
			if (prev == NULL || *slot == NULL)
				rc = HS_CTL_EXIT_ERROR;
		}
		json_decref(merged);
		merged = j;
		protobuf_c_message_free_unpacked(resp, NULL);
		if (!more)
			break;
	}
	if (rc == HS_CTL_EXIT_OK) {
		hs_error err = { 0 };
		json_object_set(merged, cmd->list_field, items);
		json_object_del(merged, "next_page_token");
		if (hs_pbjson_decode(out, m->output, merged, NULL, &err) != HS_OK) {
			fprintf(stderr, "%s: cannot merge the pages: %s\n", c->prog, err.msg);
			rc = HS_CTL_EXIT_ERROR;
		}
	}
	json_decref(items);
	json_decref(merged);
	free(prev);
	return rc;
}

int hs_ctl_run_generic(hs_ctl *c, const hs_ctl_cmd *cmd, int argc, char **argv)
{
	ProtobufCMessage *req = NULL, *resp = NULL;
	int rc = hs_ctl_request(c, cmd, argc, argv, &req);
	if (rc != HS_CTL_EXIT_OK || req == NULL)
		return rc;
	if (c->all) {
		const ProtobufCMethodDescriptor *m = hs_ctl_method(cmd->svc, cmd->method);
		if (cmd->list_field == NULL || hs_pbjson_field_lookup(req->descriptor, "page_token") == NULL ||
		    hs_pbjson_field_lookup(m->output, "next_page_token") == NULL) {
			fprintf(stderr, "%s: --all: '%s %s' is not a list verb; use it with a 'list' verb\n"
					"Run '%s %s%s%s --help' for usage.\n",
				c->prog, cmd->group, cmd->verb ? cmd->verb : "", c->prog, cmd->group,
				cmd->verb ? " " : "", cmd->verb ? cmd->verb : "");
			protobuf_c_message_free_unpacked(req, NULL);
			return HS_CTL_EXIT_USAGE;
		}
		rc = call_all(c, cmd, req, &resp);
	} else {
		rc = hs_ctl_call(c, cmd->svc, cmd->method, req, &resp, auth_mode(cmd), NULL);
	}
	if (rc == HS_CTL_EXIT_OK)
		rc = hs_ctl_print(c, cmd, resp);
	protobuf_c_message_free_unpacked(req, NULL);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	return rc;
}

int hs_ctl_run_stream(hs_ctl *c, const hs_ctl_cmd *cmd, int argc, char **argv)
{
	ProtobufCMessage *req = NULL;
	hs_client_stream *s = NULL;
	hs_client_status st;
	int rc = hs_ctl_request(c, cmd, argc, argv, &req);
	if (rc != HS_CTL_EXIT_OK || req == NULL)
		return rc;
	hs_ctl_signals_exit_status(0); /* interrupting a watch is its normal end */
	rc = hs_ctl_stream(c, cmd->svc, cmd->method, req, &s, &st);
	protobuf_c_message_free_unpacked(req, NULL);
	if (rc != HS_CTL_EXIT_OK)
		return hs_ctl_signals_interrupted() ? HS_CTL_EXIT_OK : rc;
	hs_ctl_signals_watch(s);
	for (bool first = true;; first = false) {
		ProtobufCMessage *msg = NULL;
		int r = hs_client_stream_next(s, &msg, &st);
		if (r != HS_OK) {
			char path[160];
			snprintf(path, sizeof(path), "%s/%s", cmd->svc->name, cmd->method);
			rc = hs_ctl_signals_interrupted() ? HS_CTL_EXIT_OK : hs_ctl_report_status(c, path, r, &st);
			break;
		}
		if (msg == NULL) {
			rc = HS_CTL_EXIT_OK; /* the server ended the stream */
			break;
		}
		hs_ctl_print_stream_msg(c, cmd, msg, first);
		fflush(stdout);
		protobuf_c_message_free_unpacked(msg, NULL);
	}
	hs_ctl_signals_watch(NULL);
	hs_client_stream_free(s);
	return rc;
}
