/* harnessctl sandbox <verb>: SandboxService. Every verb is the generic
 * flags -> request -> table path (only positional ids and columns here),
 * except the two streams: `logs` prints a sandbox's output as it is
 * (following it with -f), and `exec` runs a command inside one like
 * `kubectl exec`: our stdin goes to it, its stdout and stderr come out on
 * ours, and our exit status is its. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "harness/v1/sandbox.pb-c.h"

#define SVC (&harness__v1__sandbox_service__descriptor)
#define SB_COLS "ID=sandbox_id STATE=state DRIVER=driver PID=pid TASK=task_id CREATED=created_at"
#define SNAP_COLS "SNAPSHOT=snapshot_id SANDBOX=sandbox_id TYPE=type SIZE=size_bytes CREATED=created_at"

/* ---- sandbox logs ---------------------------------------------------------- */

/* -f and --tail N are the kubectl spellings of --follow and --tail-lines. */
static int run_logs(hs_ctl *c, const hs_ctl_cmd *cmd, int argc, char **argv)
{
	char **args = calloc((size_t)argc + 1, sizeof(*args));
	char *owned = NULL;
	if (args == NULL)
		return HS_CTL_EXIT_ERROR;
	for (int i = 0; i < argc; i++) {
		args[i] = argv[i];
		if (strcmp(argv[i], "-f") == 0) {
			args[i] = "--follow";
		} else if (strcmp(argv[i], "--tail") == 0) {
			args[i] = "--tail-lines";
		} else if (strncmp(argv[i], "--tail=", 7) == 0 && owned == NULL) {
			size_t n = strlen(argv[i]) + 8;
			if ((owned = malloc(n)) != NULL) {
				snprintf(owned, n, "--tail-lines=%s", argv[i] + 7);
				args[i] = owned;
			}
		}
	}
	ProtobufCMessage *req = NULL;
	hs_client_stream *s = NULL;
	hs_client_status st;
	int rc = hs_ctl_request(c, cmd, argc, args, &req);
	free(args);
	free(owned);
	if (rc != HS_CTL_EXIT_OK || req == NULL)
		return rc;
	hs_ctl_signals_exit_status(0); /* Ctrl-C ends a follow, as it does a watch */
	rc = hs_ctl_stream(c, cmd->svc, cmd->method, req, &s, &st);
	protobuf_c_message_free_unpacked(req, NULL);
	if (rc != HS_CTL_EXIT_OK)
		return hs_ctl_signals_interrupted() ? HS_CTL_EXIT_OK : rc;
	hs_ctl_signals_watch(s);
	for (;;) {
		ProtobufCMessage *msg = NULL;
		int r = hs_client_stream_next(s, &msg, &st);
		if (r != HS_OK) {
			rc = hs_ctl_signals_interrupted()
				     ? HS_CTL_EXIT_OK
				     : hs_ctl_report_status(c, "harness.v1.SandboxService/GetSandboxLogs", r,
							    &st);
			break;
		}
		if (msg == NULL)
			break; /* the end of the log, or the sandbox stopped */
		if (c->json) {
			hs_ctl_print_json_line(msg);
		} else {
			const Harness__V1__GetSandboxLogsResponse *m = (const void *)msg;
			fwrite(m->data.data, 1, m->data.len, stdout);
		}
		fflush(stdout);
		protobuf_c_message_free_unpacked(msg, NULL);
	}
	hs_ctl_signals_watch(NULL);
	hs_client_stream_free(s);
	return rc;
}

/* ---- sandbox exec -------------------------------------------------------------- */

#define EXEC_USAGE \
	"Usage: %s sandbox exec [flags] SANDBOX_ID -- COMMAND [ARG...]\n\n" \
	"Run a command inside a RUNNING sandbox, as its entrypoint runs (same user, no\n" \
	"capabilities, same seccomp filter, mount view and cgroup). Our stdin is forwarded to it\n" \
	"(end of file closes its stdin), its stdout and stderr come out on ours, and the exit\n" \
	"status is the command's (128 + signal when it was killed). Ctrl-C kills it.\n\n" \
	"Calls harness.v1.SandboxService/ExecSandbox.\n\n" \
	"Flags:\n" \
	"  --env NAME=VALUE       set a variable for the command (repeatable)\n" \
	"  -w, --working-dir DIR  run in DIR, relative to the sandbox's workspace\n" \
	"  --no-stdin             give the command an empty stdin (do not read ours)\n\n" \
	"Global flags: --server ADDR, --token T, --timeout SECONDS.\n\n" \
	"Examples:\n" \
	"  harnessctl sandbox exec sb-1 -- ls -la\n" \
	"  echo hello | harnessctl sandbox exec sb-1 -- cat\n" \
	"  harnessctl sandbox exec --env DEBUG=1 -w src sb-1 -- make test\n"

typedef struct exec_stdin {
	hs_client_stream *s;
	int stop[2]; /* a byte on stop[1]: leave */
} exec_stdin;

/* Forwards our stdin until end of file (then close_stdin and half-close),
 * the call ends, or main tells us to stop. */
static void *stdin_main(void *arg)
{
	exec_stdin *x = arg;
	static char buf[32768];
	for (;;) {
		struct pollfd p[2] = { { 0, POLLIN, 0 }, { x->stop[0], POLLIN, 0 } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents != 0)
			break;
		ssize_t n = read(0, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		Harness__V1__ExecSandboxRequest m = HARNESS__V1__EXEC_SANDBOX_REQUEST__INIT;
		if (n > 0) {
			m.stdin.data = (uint8_t *)buf;
			m.stdin.len = (size_t)n;
		} else {
			m.close_stdin = true;
		}
		if (hs_client_stream_send(x->s, &m.base) != HS_OK)
			break;
		if (n <= 0) {
			hs_client_stream_close_send(x->s);
			break;
		}
	}
	return NULL;
}

static int exec_usage_error(const hs_ctl *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int exec_usage_error(const hs_ctl *c, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: sandbox exec: ", c->prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n%s: see '%s sandbox exec --help'\n", c->prog, c->prog);
	return HS_CTL_EXIT_USAGE;
}

static int run_exec(hs_ctl *c, const hs_ctl_cmd *cmd, int argc, char **argv)
{
	const char *id = NULL, *workdir = NULL;
	bool no_stdin = false;
	int dash = -1, n_env = 0, rc;
	Harness__V1__ExecStart__EnvEntry *env = calloc((size_t)argc + 1, sizeof(*env));
	Harness__V1__ExecStart__EnvEntry **envp = calloc((size_t)argc + 1, sizeof(*envp));
	char **kv = calloc((size_t)argc + 1, sizeof(*kv));
	if (env == NULL || envp == NULL || kv == NULL) {
		rc = HS_CTL_EXIT_ERROR;
		goto done;
	}
	for (int i = 0; i < argc && dash < 0; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			dash = i;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			printf(EXEC_USAGE, c->prog);
			rc = HS_CTL_EXIT_OK;
			goto done;
		} else if (strcmp(a, "--no-stdin") == 0) {
			no_stdin = true;
		} else if (strcmp(a, "--env") == 0 || strncmp(a, "--env=", 6) == 0) {
			const char *v = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
			const char *eq = v ? strchr(v, '=') : NULL;
			if (eq == NULL || eq == v) {
				rc = exec_usage_error(c, "--env needs NAME=VALUE");
				goto done;
			}
			kv[n_env] = strndup(v, (size_t)(eq - v));
			harness__v1__exec_start__env_entry__init(&env[n_env]);
			env[n_env].key = kv[n_env];
			env[n_env].value = (char *)eq + 1;
			envp[n_env] = &env[n_env];
			n_env++;
		} else if (strcmp(a, "-w") == 0 || strcmp(a, "--working-dir") == 0) {
			if (i + 1 >= argc) {
				rc = exec_usage_error(c, "%s needs a directory", a);
				goto done;
			}
			workdir = argv[++i];
		} else if (strncmp(a, "--working-dir=", 14) == 0) {
			workdir = a + 14;
		} else if (a[0] == '-' && a[1] != '\0') {
			int g = hs_ctl_global_flag(c, argc, argv, &i);
			if (g < 0) {
				rc = HS_CTL_EXIT_USAGE;
				goto done;
			}
			if (g == 0) {
				rc = exec_usage_error(c, "unknown flag %s", a);
				goto done;
			}
		} else if (id == NULL) {
			id = a;
		} else {
			rc = exec_usage_error(c, "put -- before the command ('%s')", a);
			goto done;
		}
	}
	if (id == NULL) {
		rc = exec_usage_error(c, "missing SANDBOX_ID");
		goto done;
	}
	if (dash < 0 || dash + 1 >= argc) {
		rc = exec_usage_error(c, "missing -- COMMAND [ARG...]");
		goto done;
	}
	Harness__V1__ExecStart start = HARNESS__V1__EXEC_START__INIT;
	start.sandbox_id = (char *)id;
	start.command = argv + dash + 1;
	start.n_command = (size_t)(argc - dash - 1);
	start.env = envp;
	start.n_env = (size_t)n_env;
	start.working_dir = (char *)(workdir ? workdir : "");
	Harness__V1__ExecSandboxRequest first = HARNESS__V1__EXEC_SANDBOX_REQUEST__INIT;
	first.start = &start;
	first.close_stdin = no_stdin;

	hs_client_stream *s = NULL;
	hs_client_status st;
	/* Ctrl-C cancels the call (the server kills the command): 130. */
	if ((rc = hs_ctl_bidi(c, cmd->svc, cmd->method, &first.base, &s, &st)) != HS_CTL_EXIT_OK)
		goto done;
	hs_ctl_signals_watch(s);
	exec_stdin x = { s, { -1, -1 } };
	pthread_t reader;
	bool reading = !no_stdin && pipe(x.stop) == 0 &&
		       pthread_create(&reader, NULL, stdin_main, &x) == 0;
	rc = HS_CTL_EXIT_ERROR;
	for (bool ended = false; !ended;) {
		ProtobufCMessage *msg = NULL;
		int r = hs_client_stream_next(s, &msg, &st);
		if (r != HS_OK) {
			rc = hs_ctl_signals_interrupted()
				     ? 130
				     : hs_ctl_report_status(c, "harness.v1.SandboxService/ExecSandbox", r, &st);
			break;
		}
		if (msg == NULL) {
			if (rc == HS_CTL_EXIT_ERROR)
				fprintf(stderr, "%s: sandbox exec: the stream ended without an exit status\n",
					c->prog);
			break;
		}
		const Harness__V1__ExecSandboxResponse *m = (const void *)msg;
		if (m->stdout.len > 0) {
			fwrite(m->stdout.data, 1, m->stdout.len, stdout);
			fflush(stdout);
		}
		if (m->stderr.len > 0) {
			fwrite(m->stderr.data, 1, m->stderr.len, stderr);
			fflush(stderr);
		}
		if (m->exit != NULL)
			rc = m->exit->exit_code;
		protobuf_c_message_free_unpacked(msg, NULL);
	}
	hs_ctl_signals_watch(NULL);
	if (reading) {
		if (write(x.stop[1], "x", 1) != 1)
			hs_client_stream_cancel(s);
		hs_client_stream_cancel(s); /* a send blocked on flow control returns */
		pthread_join(reader, NULL);
	}
	if (x.stop[0] >= 0) {
		close(x.stop[0]);
		close(x.stop[1]);
	}
	hs_client_stream_free(s);
done:
	for (int i = 0; kv != NULL && i < n_env; i++)
		free(kv[i]);
	free(kv);
	free(env);
	free(envp);
	return rc;
}

const hs_ctl_cmd hs_ctl_sandbox_cmds[] = {
	{ "sandbox", "create", SVC, "CreateSandbox", { "?sandbox_id" },
	  "Record a sandbox (state CREATED); 'sandbox start' launches it.",
	  "  harnessctl sandbox create --driver bwrap --task-id t1 --entrypoint sh --entrypoint -c \\\n"
	  "      --entrypoint 'echo hi > hi.txt; sleep 60'\n"
	  "  harnessctl sandbox create sb-1 --driver firecracker --vcpu-count 2 --mem-size-mib 1024 \\\n"
	  "      --label team=ml --ttl-seconds 3600\n"
	  "  harnessctl sandbox create --json '{\"driver\":\"bwrap\",\"entrypoint\":[\"sleep\",\"60\"]}'\n",
	  NULL, SB_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "start", SVC, "StartSandbox", { "sandbox_id" }, "Launch a CREATED or STOPPED sandbox.",
	  "  harnessctl sandbox start sb-1\n", NULL, SB_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "get", SVC, "GetSandbox", { "sandbox_id" }, "Show one sandbox (every field).",
	  "  harnessctl sandbox get sb-1\n  harnessctl sandbox get sb-1 -o json\n", NULL, SB_COLS, HS_CTL_DETAIL,
	  NULL, { { 0 } } },
	{ "sandbox", "list", SVC, "ListSandboxes", { 0 }, "List sandboxes, newest first (one page; --all for every page).",
	  "  harnessctl sandbox list\n  harnessctl sandbox list --state running --task-id t1\n"
	  "  harnessctl sandbox list --label-selector team=ml --page-size 10\n",
	  "sandboxes", SB_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "pause", SVC, "PauseSandbox", { "sandbox_id" }, "Pause a RUNNING sandbox.",
	  "  harnessctl sandbox pause sb-1\n", NULL, SB_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "resume", SVC, "ResumeSandbox", { "sandbox_id" }, "Resume a PAUSED sandbox.",
	  "  harnessctl sandbox resume sb-1\n", NULL, SB_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "snapshot", SVC, "SnapshotSandbox", { "sandbox_id" },
	  "Take a VM memory snapshot (firecracker only).",
	  "  harnessctl sandbox snapshot sb-1 --snapshot-type diff --leave-paused\n", NULL, SNAP_COLS, 0, NULL,
	  { { 0 } } },
	{ "sandbox", "restore", SVC, "RestoreSandbox", { "sandbox_id", "?snapshot_id" },
	  "Load a snapshot into the sandbox (firecracker only; default its latest).",
	  "  harnessctl sandbox restore sb-1 snap-1a2b --resume\n", NULL, SB_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "destroy", SVC, "DestroySandbox", { "sandbox_id" },
	  "Stop the sandbox and remove its runtime files (idempotent).",
	  "  harnessctl sandbox destroy sb-1 --grace-period-ms 1000\n", NULL, SB_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "snapshots", SVC, "ListSnapshots", { "sandbox_id" }, "List a sandbox's snapshots.",
	  "  harnessctl sandbox snapshots sb-1\n", "snapshots", SNAP_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "logs", SVC, "GetSandboxLogs", { "sandbox_id" },
	  "Print a sandbox's output (its entrypoint's stdout and stderr) as written. -f (--follow)\n"
	  "keeps printing new output until the sandbox stops or Ctrl-C; --tail N (--tail-lines)\n"
	  "starts at the last N lines. With -o json: one JSON object per chunk.",
	  "  harnessctl sandbox logs sb-1\n  harnessctl sandbox logs -f --tail 20 sb-1\n"
	  "  harnessctl sandbox logs sb-1 --tail-bytes 4096 --limit-bytes 65536\n",
	  NULL, NULL, 0, run_logs, { { 0 } } },
	{ "sandbox", "exec", SVC, "ExecSandbox", { "sandbox_id" },
	  "Run a command inside a RUNNING sandbox (stdin forwarded; exit status = the command's).",
	  "  harnessctl sandbox exec sb-1 -- ls -la\n", NULL, NULL, 0, run_exec, { { 0 } } },
	{ 0 },
};
