/* harnessctl internals: the command table, the generic flag -> request
 * mapping, calls, output and exit codes shared by every command file.
 *
 * A command is one row of a table (group, verb, service, method, positional
 * fields, table columns). The generic path turns flags into the request
 * message through its descriptor (args.c), makes the call (call.c) and
 * prints the response as a table or JSON (table.c); command files add only
 * positional arguments, columns and the few verbs that do more (login,
 * watch, demo). */
#ifndef HS_HARNESSCTL_CTL_H
#define HS_HARNESSCTL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "client.h"

/* Exit codes (documented in --help). */
enum {
	HS_CTL_EXIT_OK = 0,
	HS_CTL_EXIT_ERROR = 1,
	HS_CTL_EXIT_USAGE = 2,
	HS_CTL_EXIT_NOT_FOUND = 3,
	HS_CTL_EXIT_AUTH = 4,
	HS_CTL_EXIT_UNAVAILABLE = 5,
};

typedef struct hs_ctl {
	const char *prog;
	const char *server;
	const char *token_flag; /* --token */
	bool json;              /* -o json */
	bool yaml;              /* -o yaml */
	bool wide;              /* -o wide: every scalar field of a row as a column */
	bool all;               /* --all: list verbs follow next_page_token to the end */
	double timeout_s;       /* --timeout; 0 = default per call kind */
	bool timeout_set;
	/* TLS to harnessd (--tls-ca, --tls-cert, --tls-key, --tls-server-name,
	 * env HARNESS_TLS_CA, ...); any of them set = TLS */
	const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
	bool tls;          /* --tls (env HARNESS_TLS=1): TLS with the system roots */
	hs_client *client; /* lazily created by hs_ctl_client() */
	char *token;       /* resolved access token (malloc'd) or NULL */
	bool token_resolved;
	bool token_required; /* the failing call needed one: hint at login */
	const struct hs_ctl_cmd *cmd; /* the command being run (for error advice) */
} hs_ctl;

struct hs_ctl_cmd;
typedef int (*hs_ctl_run_fn)(hs_ctl *c, const struct hs_ctl_cmd *cmd, int argc, char **argv);

/* An extra flag that is not a request field (e.g. login --password-stdin). */
typedef struct hs_ctl_extra {
	const char *name; /* without "--" */
	bool takes_value;
	const char *help;
} hs_ctl_extra;

#define HS_CTL_MAX_EXTRA 6
#define HS_CTL_MAX_POS 3

enum {
	HS_CTL_NOAUTH = 1 << 0, /* no authorization metadata (Login, Refresh, grpc health) */
	HS_CTL_DETAIL = 1 << 1, /* print the response as FIELD/VALUE rows */
	HS_CTL_OPT_AUTH = 1 << 2, /* send a token if there is one, no error otherwise */
};

typedef struct hs_ctl_cmd {
	const char *group;
	const char *verb;
	const ProtobufCServiceDescriptor *svc;
	const char *method;
	/* Request fields filled from positional arguments, in order; a leading
	 * '?' marks an optional one. Required ones may also be given as flags. */
	const char *pos[HS_CTL_MAX_POS];
	const char *summary;
	const char *examples; /* lines, each "cmd  # comment" */
	const char *list_field; /* response repeated field printed one row each */
	const char *columns;    /* "HEADER=path HEADER=path ..." (dotted paths) */
	unsigned flags;
	hs_ctl_run_fn run; /* NULL = hs_ctl_run_generic */
	hs_ctl_extra extra[HS_CTL_MAX_EXTRA];
} hs_ctl_cmd;

/* Command tables, each ended by a row with group NULL. */
extern const hs_ctl_cmd hs_ctl_auth_cmds[];
extern const hs_ctl_cmd hs_ctl_sandbox_cmds[];
extern const hs_ctl_cmd hs_ctl_checkpoint_cmds[];
extern const hs_ctl_cmd hs_ctl_task_cmds[];

/* ---- args.c: flags -> request ---------------------------------------- */

typedef struct hs_ctl_args {
	json_t *req;                           /* request as proto-JSON object */
	const char *extra_val[HS_CTL_MAX_EXTRA];  /* value, or "" for a bare flag */
	bool help;
} hs_ctl_args;

/* Parses a verb's argv (after the verb) into out: positional fields, field
 * flags (--task-id x, --labels k=v, --recovery-policy.max-attempts 3,
 * --external-state '{...}', --json '{...}'), extras and the global flags
 * (-o, --server, --token, --timeout, --tls*). Prints the problem and returns
 * HS_CTL_EXIT_USAGE on a usage error; out->req is then NULL. */
int hs_ctl_args_parse(hs_ctl *c, const hs_ctl_cmd *cmd, const ProtobufCMessageDescriptor *req_desc,
		   int argc, char **argv, hs_ctl_args *out);
void hs_ctl_args_dispose(hs_ctl_args *a);

/* The request message from a->req (usage error if a value does not fit). */
int hs_ctl_args_message(hs_ctl *c, const hs_ctl_cmd *cmd, const ProtobufCMessageDescriptor *req_desc,
		     const hs_ctl_args *a, ProtobufCMessage **out);

/* Parse + help + message for verbs whose request is just their flags: on
 * HS_CTL_EXIT_OK, *req is the request, or NULL when --help was asked (and
 * printed); any other value is the exit code (the problem was printed). */
int hs_ctl_request(hs_ctl *c, const hs_ctl_cmd *cmd, int argc, char **argv, ProtobufCMessage **req);

/* Prints the help of one verb (fields as flags, extras, examples). */
void hs_ctl_verb_help(const hs_ctl *c, const hs_ctl_cmd *cmd, FILE *f);

/* Applies a global flag at argv[*i] if it is one; 1 = consumed, 0 = not a
 * global flag, -1 = usage error (printed). */
int hs_ctl_global_flag(hs_ctl *c, int argc, char **argv, int *i);

/* "did you mean": the candidate closest to typed (edit distance at most 2,
 * or typed a prefix of it), or NULL. cands ends with NULL. */
const char *hs_ctl_suggest(const char *typed, const char *const *cands);

/* Prints " (did you mean 'X'?)" style advice for an unknown flag of cmd
 * (its request fields, extras and the global flags) into buf ("" if none). */
void hs_ctl_flag_advice(const hs_ctl_cmd *cmd, const char *typed, char *buf, size_t n);

/* ---- completion.c ---------------------------------------------------- */

/* `harnessctl completion bash|zsh|fish`: a completion script from the
 * command tables (groups, verbs, each verb's flags). */
int hs_ctl_completion(hs_ctl *c, const struct hs_ctl_cmd *cmd, int argc, char **argv);
/* Every command table (auth, sandbox, checkpoint, task), and how many. */
extern const hs_ctl_cmd *const hs_ctl_tables[];
extern const size_t hs_ctl_n_tables;

/* ---- call.c: connection, token, calls, errors -------------------------- */

/* The client for --server (created on first use). NULL after printing why. */
hs_client *hs_ctl_client(hs_ctl *c);

/* The access token to send: --token, HARNESS_TOKEN, else the token cache
 * (refreshed first when it has expired). NULL when there is none. */
const char *hs_ctl_token(hs_ctl *c);

/* Method descriptor by name (abort()s on a typo: a programming error). */
const ProtobufCMethodDescriptor *hs_ctl_method(const ProtobufCServiceDescriptor *svc, const char *name);

/* Whether a call sends the access token. */
typedef enum hs_ctl_auth {
	HS_CTL_AUTH_NONE = 0,     /* never (Login, Refresh, grpc.health) */
	HS_CTL_AUTH_REQUIRED = 1, /* the token if there is one; an UNAUTHENTICATED
				   * answer without one adds "run login" */
	HS_CTL_AUTH_OPTIONAL = 2, /* the token if there is one, and its absence is
				   * never the problem (Logout): no hint */
} hs_ctl_auth;

/* Unary call of svc/method. On failure prints "harnessctl: <svc>/<method>:
 * CODE: details" (plus the login hint, see hs_ctl_auth) and returns the
 * exit code; st (may be NULL) gets the status. The call is made even
 * without a token, so a server that is down is reported as such. */
int hs_ctl_call(hs_ctl *c, const ProtobufCServiceDescriptor *svc, const char *method,
		const ProtobufCMessage *req, ProtobufCMessage **resp, hs_ctl_auth auth,
		hs_client_status *st);

/* Starts a server stream the same way (no deadline unless --timeout). */
int hs_ctl_stream(hs_ctl *c, const ProtobufCServiceDescriptor *svc, const char *method,
	       const ProtobufCMessage *req, hs_client_stream **out, hs_client_status *st);

/* Starts a bidi stream with its first message (token required; no
 * deadline unless --timeout). */
int hs_ctl_bidi(hs_ctl *c, const ProtobufCServiceDescriptor *svc, const char *method,
		const ProtobufCMessage *first, hs_client_stream **out, hs_client_status *st);

/* Prints a failed status like hs_ctl_call and returns its exit code. */
int hs_ctl_report_status(const hs_ctl *c, const char *what, int rc, const hs_client_status *st);

/* gRPC status -> exit code. */
int hs_ctl_exit_code(int grpc_code);

/* The generic verb: args -> request -> call -> print. */
int hs_ctl_run_generic(hs_ctl *c, const hs_ctl_cmd *cmd, int argc, char **argv);

/* ---- table.c: output -------------------------------------------------- */

/* Prints msg per -o: JSON (indented) or the command's table / detail view. */
int hs_ctl_print(const hs_ctl *c, const hs_ctl_cmd *cmd, const ProtobufCMessage *msg);

/* Prints one JSON line (no indentation) for streams. */
int hs_ctl_print_json_line(const ProtobufCMessage *msg);

/* Prints msg as one YAML document ("---" first when doc_sep). */
int hs_ctl_print_yaml(const ProtobufCMessage *msg, bool doc_sep);

/* A stream message per -o: a JSON line, a YAML document, or a table row. */
void hs_ctl_print_stream_msg(const hs_ctl *c, const hs_ctl_cmd *cmd, const ProtobufCMessage *msg, bool first);

/* One table row for a stream, columns as cmd->columns with fixed widths;
 * header printed when header is true. */
void hs_ctl_print_stream_row(const hs_ctl *c, const hs_ctl_cmd *cmd, const ProtobufCMessage *msg, bool header);

/* The display text of a field path (enum prefixes stripped, times short);
 * malloc'd, "" when unset. */
char *hs_ctl_field_text(const ProtobufCMessage *msg, const char *path);

/* Length of the prefix shared by all value names of an enum, up to and
 * including a '_' ("SANDBOX_STATE_" for SandboxState); 0 if none. */
size_t hs_ctl_enum_prefix(const ProtobufCEnumDescriptor *ed);

/* ---- auth_cmds.c: token cache ------------------------------------------ */

typedef struct hs_ctl_token_cache {
	char *access_token;
	char *refresh_token;
	long long expires_at; /* unix seconds; 0 unknown */
	char *server;
	char *email;
} hs_ctl_token_cache;

/* Path of the cache file ($HARNESS_TOKEN_FILE or ~/.config/harness/token). */
int hs_ctl_token_path(char *buf, size_t n);
/* Reads the cache; HS_NOT_FOUND when there is none. */
int hs_ctl_token_load(hs_ctl_token_cache *out);
/* Writes the cache atomically with mode 0600. */
int hs_ctl_token_store(const hs_ctl_token_cache *tc);
void hs_ctl_token_dispose(hs_ctl_token_cache *tc);
/* Refresh with the cached refresh token and store the result. */
int hs_ctl_token_refresh(hs_ctl *c, hs_ctl_token_cache *tc);

/* ---- demo.c / task_cmds.c ---------------------------------------------- */
int hs_ctl_demo(hs_ctl *c, const struct hs_ctl_cmd *cmd, int argc, char **argv);
/* A server-streaming verb: prints each message as it arrives until the
 * stream ends (exit 0), fails, or SIGINT/SIGTERM cancels it (exit 0). */
int hs_ctl_run_stream(hs_ctl *c, const struct hs_ctl_cmd *cmd, int argc, char **argv);

/* SIGINT/SIGTERM handling for streams: a thread that waits for the signal
 * and cancels *stream (set/cleared by the caller under the lock). */
void hs_ctl_signals_start(void);
/* Registers the stream to cancel on a signal (NULL: none); a signal that
 * arrived before is applied at once. While cooperative, a signal only sets
 * the flag (the caller polls); otherwise with no stream it exits 130. */
void hs_ctl_signals_watch(hs_client_stream *s);
void hs_ctl_signals_cooperative(bool on);
/* Exit status used when a signal arrives with no stream registered and not
 * cooperative; -1 (default) = 128 + signal number. */
void hs_ctl_signals_exit_status(int status);
bool hs_ctl_signals_interrupted(void);

#endif
