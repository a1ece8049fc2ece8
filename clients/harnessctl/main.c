/* harnessctl: the operator CLI for harnessd. Global flags, command lookup
 * in the tables of the *_cmds.c files, help at every level, exit codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static const hs_ctl_cmd demo_cmd = {
	"demo", NULL, NULL, NULL, { 0 },
	"The harness story against a running server: log in, register a task with a short heartbeat\n"
	"timeout, run steps in a bwrap sandbox that writes into the task workspace, checkpoint each step\n"
	"while heartbeating, stop heartbeating, then watch the control plane detect the stall and recover\n"
	"the workspace from the latest checkpoint, and verify it. Exits 0 only if the recovery happened\n"
	"(RECOVERED event and a consistent workspace). The sandbox is destroyed at the end.\n"
	"Credentials: --email/--password, else HARNESS_ADMIN_EMAIL/HARNESS_ADMIN_PASSWORD, else the\n"
	"current token (--token, HARNESS_TOKEN or the token cache).",
	"  harnessctl demo --email admin@example.com --password \"$PW\"\n"
	"  HARNESS_ADMIN_EMAIL=admin@example.com HARNESS_ADMIN_PASSWORD=... harnessctl demo\n",
	NULL, NULL, 0, hs_ctl_demo,
	{ { "email", true, "user to log in as (env HARNESS_ADMIN_EMAIL)" },
	  { "password", true, "password (env HARNESS_ADMIN_PASSWORD)" },
	  { "task-id", true, "task id to use (default demo-<time>-<pid>)" },
	  { "heartbeat-timeout-ms", true, "heartbeat timeout of the demo task (default 1500)" },
	  { "keep", false, "keep the sandbox and the task afterwards" } },
};

static const hs_ctl_cmd completion_cmd = {
	"completion", NULL, NULL, NULL, { 0 },
	"Print a shell completion script for bash, zsh or fish: groups, verbs and each verb's flags.",
	"  source <(harnessctl completion bash)                       # bash, this shell\n"
	"  harnessctl completion zsh > \"${fpath[1]}/_harnessctl\"      # zsh\n"
	"  harnessctl completion fish > ~/.config/fish/completions/harnessctl.fish\n",
	NULL, NULL, 0, hs_ctl_completion, { { 0 } },
};

const hs_ctl_cmd *const hs_ctl_tables[] = { hs_ctl_auth_cmds, hs_ctl_sandbox_cmds, hs_ctl_checkpoint_cmds,
					    hs_ctl_task_cmds };
const size_t hs_ctl_n_tables = sizeof(hs_ctl_tables) / sizeof(hs_ctl_tables[0]);
#define tables hs_ctl_tables

static void top_help(const hs_ctl *c, FILE *o)
{
	fprintf(o,
		"harnessctl - command-line client for the Harness control plane (harnessd)\n\n"
		"Usage: %s [--server ADDR] [--token T] [--tls-ca FILE] [-o table|wide|json|yaml] [--timeout SECONDS] <command> [args] [flags]\n\n"
		"Commands:\n"
		"  login | refresh | logout | whoami     authentication (AuthService)\n"
		"  user create|get|disable|delete         users (AuthService)\n"
		"  apikey create|list|revoke              API keys for services (AuthService)\n"
		"  sandbox create|start|get|list|pause|resume|snapshot|restore|destroy|snapshots\n"
		"  checkpoint create|list|get|latest|restore|verify|diff|prune\n"
		"  task register|heartbeat|get|list|watch|complete|recover|cancel   (HealthService)\n"
		"  health [check|watch]                   standard grpc.health.v1 probe\n"
		"  demo                                   stall -> recovery story against a running server\n"
		"  completion bash|zsh|fish               shell completion script\n\n"
		"Global flags (also accepted after the command):\n"
		"  --server ADDR       harnessd address (env HARNESS_SERVER; default 127.0.0.1:50051)\n"
		"  --token T           access token (env HARNESS_TOKEN; default: the token cache from 'login')\n"
		"  -o, --output FMT    table (default), wide (every field as a column), json (proto3 JSON mapping;\n"
		"                      streams: one object per line) or yaml (streams: one document per message)\n"
		"  --all               list verbs: follow next_page_token and print every page as one list\n"
		"  --timeout SECONDS   deadline of each call (default 15; streams: none)\n"
		"  --tls-ca FILE       TLS: PEM roots harnessd's certificate must chain to (env HARNESS_TLS_CA)\n"
		"  --tls-cert FILE     TLS client certificate for mutual TLS, with --tls-key (env HARNESS_TLS_CERT)\n"
		"  --tls-key FILE      its private key (env HARNESS_TLS_KEY)\n"
		"  --tls-server-name N name to expect in harnessd's certificate instead of the host in --server\n"
		"                      (env HARNESS_TLS_SERVER_NAME)\n"
		"  --tls               TLS with the system's roots (env HARNESS_TLS=1); implied by any --tls-* flag\n"
		"  -h, --help          help; works at every level: '%s sandbox --help', '%s sandbox create --help'\n"
		"  --version\n\n"
		"Request fields are flags: --task-id t1, --labels k=v, --entrypoint a --entrypoint b (repeated),\n"
		"--external-state '{\"k\":1}' (JSON for messages), --json '{...}' for the whole request.\n\n"
		"Environment: HARNESS_SERVER, HARNESS_TOKEN, HARNESS_TOKEN_FILE (default ~/.config/harness/token),\n"
		"HARNESS_TLS_CA, HARNESS_TLS_CERT, HARNESS_TLS_KEY, HARNESS_TLS_SERVER_NAME, HARNESS_TLS.\n"
		"An API key (hsk_...) works wherever an access token does: --token or HARNESS_TOKEN.\n\n"
		"Exit codes:\n"
		"  0  success\n"
		"  1  any other error (including UNIMPLEMENTED, FAILED_PRECONDITION, INVALID_ARGUMENT from the server)\n"
		"  2  usage error (unknown command or flag, missing argument, bad flag value)\n"
		"  3  not found (NOT_FOUND)\n"
		"  4  authentication/authorization (UNAUTHENTICATED, PERMISSION_DENIED)\n"
		"  5  server unavailable or deadline exceeded (UNAVAILABLE, DEADLINE_EXCEEDED)\n\n"
		"Examples:\n"
		"  %s login --email admin@example.com\n"
		"  %s sandbox list -o json\n"
		"  %s task watch t1\n"
		"  %s --server 10.0.0.5:50051 checkpoint latest t1\n",
		c->prog, c->prog, c->prog, c->prog, c->prog, c->prog, c->prog);
}

static void group_help(const hs_ctl *c, const char *group, FILE *o)
{
	fprintf(o, "Usage: %s %s <verb> [args] [flags]\n\nVerbs:\n", c->prog, group);
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const hs_ctl_cmd *cmd = tables[t]; cmd->group; cmd++) {
			if (strcmp(cmd->group, group) != 0 || cmd->verb == NULL)
				continue;
			const char *nl = strchr(cmd->summary, '\n');
			int len = nl ? (int)(nl - cmd->summary) : (int)strlen(cmd->summary);
			fprintf(o, "  %-10s %.*s\n", cmd->verb, len, cmd->summary);
		}
	fprintf(o, "\nExamples:\n");
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const hs_ctl_cmd *cmd = tables[t]; cmd->group; cmd++) {
			if (strcmp(cmd->group, group) != 0 || cmd->verb == NULL || cmd->examples == NULL)
				continue;
			const char *nl = strchr(cmd->examples, '\n');
			int len = nl ? (int)(nl - cmd->examples) : (int)strlen(cmd->examples);
			while (len > 0 && (cmd->examples[len - 1] == '\\' || cmd->examples[len - 1] == ' '))
				len--; /* the first line of a continued example */
			fprintf(o, "%.*s\n", len, cmd->examples);
		}
	fprintf(o, "\nRun '%s %s <verb> --help' for the verb's flags and examples.\n", c->prog, group);
}

static const hs_ctl_cmd *find(const char *group, const char *verb, bool *group_known)
{
	*group_known = false;
	if (strcmp(group, "demo") == 0) {
		*group_known = true;
		return &demo_cmd;
	}
	if (strcmp(group, "completion") == 0) {
		*group_known = true;
		return &completion_cmd;
	}
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const hs_ctl_cmd *cmd = tables[t]; cmd->group; cmd++) {
			if (strcmp(cmd->group, group) != 0)
				continue;
			*group_known = true;
			if (cmd->verb == NULL || (verb != NULL && strcmp(cmd->verb, verb) == 0))
				return cmd;
		}
	return NULL;
}

static const char *suggest_group(const char *group)
{
	const char *cands[128];
	size_t k = 0;
	cands[k++] = "demo";
	cands[k++] = "completion";
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const hs_ctl_cmd *cmd = tables[t]; cmd->group && k + 1 < 128; cmd++)
			if (k == 0 || strcmp(cands[k - 1], cmd->group) != 0)
				cands[k++] = cmd->group;
	cands[k] = NULL;
	return hs_ctl_suggest(group, cands);
}

static const char *suggest_verb(const char *group, const char *verb)
{
	const char *cands[64];
	size_t k = 0;
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const hs_ctl_cmd *cmd = tables[t]; cmd->group && k + 1 < 64; cmd++)
			if (strcmp(cmd->group, group) == 0 && cmd->verb != NULL)
				cands[k++] = cmd->verb;
	cands[k] = NULL;
	return hs_ctl_suggest(verb, cands);
}

static int run(hs_ctl *c, int argc, char **argv)
{
	int i = 1;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "help") == 0) {
			top_help(c, stdout);
			return HS_CTL_EXIT_OK;
		}
		if (strcmp(a, "--version") == 0) {
			printf("harnessctl %s\n", HS_VERSION);
			return HS_CTL_EXIT_OK;
		}
		if (a[0] != '-')
			break;
		int g = hs_ctl_global_flag(c, argc, argv, &i);
		if (g < 0)
			return HS_CTL_EXIT_USAGE;
		if (g == 0) {
			char adv[96] = "";
			if (a[1] == '-')
				hs_ctl_flag_advice(NULL, a + 2, adv, sizeof(adv));
			fprintf(stderr, "%s: unknown flag %s%s\nRun '%s --help' for usage.\n", c->prog, a, adv,
				c->prog);
			return HS_CTL_EXIT_USAGE;
		}
	}
	if (i >= argc) {
		top_help(c, stderr);
		return HS_CTL_EXIT_USAGE;
	}
	const char *group = argv[i++];
	const char *verb = i < argc ? argv[i] : NULL;
	bool known;
	if (strcmp(group, "health") == 0 && (verb == NULL || (verb[0] == '-' && strcmp(verb, "-h") != 0 &&
								strcmp(verb, "--help") != 0)))
		verb = "check";
	else if (verb != NULL && verb[0] != '-')
		i++;
	const hs_ctl_cmd *cmd = find(group, verb, &known);
	if (!known) {
		const char *s = suggest_group(group);
		if (s != NULL)
			fprintf(stderr, "%s: unknown command '%s'; did you mean '%s'?\nRun '%s --help' for usage.\n",
				c->prog, group, s, c->prog);
		else
			fprintf(stderr, "%s: unknown command '%s'\nRun '%s --help' for usage.\n", c->prog, group,
				c->prog);
		return HS_CTL_EXIT_USAGE;
	}
	if (cmd == NULL) {
		bool help = verb != NULL && (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0);
		if (verb != NULL && !help && verb[0] != '-') {
			const char *s = suggest_verb(group, verb);
			if (s != NULL)
				fprintf(stderr, "%s: unknown verb '%s %s'; did you mean '%s %s'?\n\n", c->prog, group,
					verb, group, s);
			else
				fprintf(stderr, "%s: unknown verb '%s %s'\n\n", c->prog, group, verb);
		}
		group_help(c, group, help ? stdout : stderr);
		return help ? HS_CTL_EXIT_OK : HS_CTL_EXIT_USAGE;
	}
	if (cmd->verb == NULL && verb != NULL && verb[0] != '-')
		i--; /* a top-level command: what looked like a verb is its argument */
	hs_ctl_run_fn fn = cmd->run ? cmd->run : hs_ctl_run_generic;
	c->cmd = cmd;
	return fn(c, cmd, argc - i, argv + i);
}

int main(int argc, char **argv)
{
	hs_ctl c = { 0 };
	const char *env = getenv("HARNESS_SERVER");
	c.prog = "harnessctl";
	c.server = env && *env ? env : "127.0.0.1:50051";
	c.tls_ca = getenv("HARNESS_TLS_CA");
	c.tls_cert = getenv("HARNESS_TLS_CERT");
	c.tls_key = getenv("HARNESS_TLS_KEY");
	c.tls_server_name = getenv("HARNESS_TLS_SERVER_NAME");
	env = getenv("HARNESS_TLS");
	c.tls = env != NULL && (strcmp(env, "1") == 0 || strcmp(env, "true") == 0);
	hs_ctl_signals_start();
	int rc = run(&c, argc, argv);
	fflush(stdout);
	hs_client_free(c.client);
	free(c.token);
	return rc;
}
