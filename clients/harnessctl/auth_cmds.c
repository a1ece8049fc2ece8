/* harnessctl auth commands (login, refresh, logout, whoami, user
 * create|get|disable|delete) and the token cache: a small JSON file, $HARNESS_TOKEN_FILE or
 * ~/.config/harness/token, written atomically (temporary file in the same
 * directory, mode 0600 from creation, fsync, rename) so a crash never leaves
 * a half-written or world-readable token behind. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "harness/v1/auth.pb-c.h"
#include "pbjson.h"

/* ---- token cache ------------------------------------------------------- */

int hs_ctl_token_path(char *b, size_t n)
{
	const char *env = getenv("HARNESS_TOKEN_FILE");
	if (env != NULL && *env)
		return snprintf(b, n, "%s", env) < (int)n ? HS_OK : HS_INVALID;
	const char *home = getenv("HOME");
	if (home == NULL || !*home) {
		struct passwd *pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : NULL;
	}
	if (home == NULL)
		return HS_NOT_FOUND;
	return snprintf(b, n, "%s/.config/harness/token", home) < (int)n ? HS_OK : HS_INVALID;
}

static char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? strdup(s) : NULL;
}

int hs_ctl_token_load(hs_ctl_token_cache *out)
{
	char path[4096];
	json_error_t je;
	memset(out, 0, sizeof(*out));
	if (hs_ctl_token_path(path, sizeof(path)) != HS_OK)
		return HS_NOT_FOUND;
	json_t *j = json_load_file(path, 0, &je);
	if (!json_is_object(j)) {
		json_decref(j);
		return HS_NOT_FOUND;
	}
	out->access_token = jstr(j, "access_token");
	out->refresh_token = jstr(j, "refresh_token");
	out->server = jstr(j, "server");
	out->email = jstr(j, "email");
	out->expires_at = json_integer_value(json_object_get(j, "expires_at"));
	json_decref(j);
	return HS_OK;
}

/* mkdir -p for the cache's parent directories (new ones 0700). */
static int make_parents(const char *path)
{
	char b[4096];
	snprintf(b, sizeof(b), "%s", path);
	for (char *p = b + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(b, 0700) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return 0;
}

int hs_ctl_token_store(const hs_ctl_token_cache *tc)
{
	char path[4096], tmp[4200];
	int rc = HS_INTERNAL, fd = -1;
	char *text = NULL;
	if (hs_ctl_token_path(path, sizeof(path)) != HS_OK)
		return HS_NOT_FOUND;
	if (make_parents(path) != 0)
		return HS_INTERNAL;
	json_t *j = json_pack("{s:s?, s:s?, s:I, s:s?, s:s?}", "access_token", tc->access_token,
			      "refresh_token", tc->refresh_token, "expires_at", (json_int_t)tc->expires_at,
			      "server", tc->server, "email", tc->email);
	if (j == NULL)
		return HS_INTERNAL;
	text = json_dumps(j, JSON_INDENT(2));
	json_decref(j);
	snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
	fd = text ? mkstemp(tmp) : -1; /* mkstemp creates the file 0600 */
	if (fd < 0)
		goto done;
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto done;
		off += (size_t)w;
	}
	if (fchmod(fd, 0600) != 0 || fsync(fd) != 0 || close(fd) != 0) {
		fd = -1;
		goto done;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto done;
	rc = HS_OK;
done:
	if (fd >= 0)
		close(fd);
	if (rc != HS_OK && text != NULL)
		unlink(tmp);
	free(text);
	return rc;
}

void hs_ctl_token_dispose(hs_ctl_token_cache *tc)
{
	free(tc->access_token);
	free(tc->refresh_token);
	free(tc->server);
	free(tc->email);
	memset(tc, 0, sizeof(*tc));
}

/* Replaces the cache's tokens with those of an AuthResponse. */
static void cache_from(hs_ctl_token_cache *tc, const hs_ctl *c, const Harness__V1__AuthResponse *r)
{
	free(tc->access_token);
	free(tc->refresh_token);
	free(tc->server);
	tc->access_token = strdup(r->access_token);
	tc->refresh_token = strdup(r->refresh_token);
	tc->server = strdup(c->server);
	tc->expires_at = r->expires_in > 0 ? (long long)time(NULL) + r->expires_in : 0;
	if (r->user != NULL && r->user->email && *r->user->email) {
		free(tc->email);
		tc->email = strdup(r->user->email);
	}
}

int hs_ctl_token_refresh(hs_ctl *c, hs_ctl_token_cache *tc)
{
	Harness__V1__RefreshRequest req = HARNESS__V1__REFRESH_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	req.refresh_token = tc->refresh_token;
	int rc = hs_ctl_call(c, &harness__v1__auth_service__descriptor, "Refresh", &req.base, &resp,
			     HS_CTL_AUTH_NONE, NULL);
	if (rc != HS_CTL_EXIT_OK)
		return rc;
	cache_from(tc, c, (Harness__V1__AuthResponse *)resp);
	protobuf_c_message_free_unpacked(resp, NULL);
	return hs_ctl_token_store(tc) == HS_OK ? HS_CTL_EXIT_OK : HS_CTL_EXIT_ERROR;
}

/* ---- login / refresh / logout ------------------------------------------ */

static char *read_line(FILE *f)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);
	if (n < 0) {
		free(line);
		return NULL;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	return line;
}

/* Prompts on the terminal; echo off for secrets. NULL if there is no tty. */
static char *prompt(const char *what, bool secret)
{
	FILE *tty = fopen("/dev/tty", "r+");
	struct termios old, quiet;
	bool restore = false;
	if (tty == NULL)
		return NULL;
	fprintf(tty, "%s: ", what);
	fflush(tty);
	if (secret && tcgetattr(fileno(tty), &old) == 0) {
		quiet = old;
		quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHONL);
		restore = tcsetattr(fileno(tty), TCSAFLUSH, &quiet) == 0;
	}
	char *line = read_line(tty);
	if (restore) {
		tcsetattr(fileno(tty), TCSAFLUSH, &old);
		fputc('\n', tty);
	}
	fclose(tty);
	return line;
}

static int print_auth(const hs_ctl *c, const hs_ctl_cmd *cmd, Harness__V1__AuthResponse *r)
{
	char path[4096] = "";
	hs_ctl_token_path(path, sizeof(path));
	/* The refresh token stays in the cache file, never on stdout. */
	char *saved = r->refresh_token;
	r->refresh_token = (char *)protobuf_c_empty_string;
	int rc = hs_ctl_print(c, cmd, &r->base);
	r->refresh_token = saved;
	if (!c->json)
		fprintf(stderr, "Token saved to %s\n", path);
	return rc;
}

static int store_or_fail(const hs_ctl *c, hs_ctl_token_cache *tc)
{
	char path[4096] = "?";
	hs_ctl_token_path(path, sizeof(path));
	if (hs_ctl_token_store(tc) != HS_OK) {
		fprintf(stderr, "%s: cannot write the token cache %s: %s\n", c->prog, path, strerror(errno));
		return HS_CTL_EXIT_ERROR;
	}
	return HS_CTL_EXIT_OK;
}

static int run_login(hs_ctl *c, const hs_ctl_cmd *cmd, int argc, char **argv)
{
	const ProtobufCMethodDescriptor *m = hs_ctl_method(cmd->svc, cmd->method);
	ProtobufCMessage *req = NULL, *resp = NULL;
	hs_ctl_token_cache tc = { 0 };
	hs_ctl_args a;
	int rc = hs_ctl_args_parse(c, cmd, m->input, argc, argv, &a);
	if (rc != 0)
		return rc;
	if (a.help) {
		hs_ctl_verb_help(c, cmd, stdout);
		goto done;
	}
	if (json_object_get(a.req, "email") == NULL) {
		char *e = prompt("Email", false);
		if (e == NULL) {
			fprintf(stderr, "%s: login: --email is required (no terminal to ask on)\n", c->prog);
			rc = HS_CTL_EXIT_USAGE;
			goto done;
		}
		json_object_set_new(a.req, "email", json_string(e));
		free(e);
	}
	if (json_object_get(a.req, "password") == NULL) {
		char *p = a.extra_val[0] ? read_line(stdin) : prompt("Password", true);
		if (p == NULL) {
			fprintf(stderr, "%s: login: --password, --password-stdin or a terminal is required\n", c->prog);
			rc = HS_CTL_EXIT_USAGE;
			goto done;
		}
		json_object_set_new(a.req, "password", json_string(p));
		explicit_bzero(p, strlen(p));
		free(p);
	}
	if ((rc = hs_ctl_args_message(c, cmd, m->input, &a, &req)) != 0)
		goto done;
	if ((rc = hs_ctl_call(c, cmd->svc, cmd->method, req, &resp, HS_CTL_AUTH_NONE, NULL)) != 0)
		goto done;
	cache_from(&tc, c, (Harness__V1__AuthResponse *)resp);
	if ((rc = store_or_fail(c, &tc)) == 0)
		rc = print_auth(c, cmd, (Harness__V1__AuthResponse *)resp);
done:
	hs_ctl_args_dispose(&a);
	hs_ctl_token_dispose(&tc);
	if (req != NULL)
		protobuf_c_message_free_unpacked(req, NULL);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	return rc;
}

/* refresh / logout: the refresh token from the flag or the cache. */
static int run_refresh_logout(hs_ctl *c, const hs_ctl_cmd *cmd, int argc, char **argv)
{
	const ProtobufCMethodDescriptor *m = hs_ctl_method(cmd->svc, cmd->method);
	ProtobufCMessage *req = NULL, *resp = NULL;
	hs_ctl_token_cache tc = { 0 };
	bool logout = strcmp(cmd->method, "Logout") == 0;
	char path[4096] = "";
	hs_ctl_args a;
	int rc = hs_ctl_args_parse(c, cmd, m->input, argc, argv, &a);
	if (rc != 0)
		return rc;
	if (a.help) {
		hs_ctl_verb_help(c, cmd, stdout);
		goto done;
	}
	hs_ctl_token_path(path, sizeof(path));
	bool cached = hs_ctl_token_load(&tc) == HS_OK;
	if (json_object_get(a.req, "refresh_token") == NULL) {
		if (!cached || tc.refresh_token == NULL || !*tc.refresh_token) {
			if (logout) {
				fprintf(stderr, "Not logged in (no token cache at %s).\n", path);
				goto done;
			}
			fprintf(stderr, "%s: %s: no refresh token: run '%s login' or pass --refresh-token\n", c->prog,
				cmd->group, c->prog);
			rc = HS_CTL_EXIT_AUTH;
			goto done;
		}
		json_object_set_new(a.req, "refresh_token", json_string(tc.refresh_token));
	}
	if ((rc = hs_ctl_args_message(c, cmd, m->input, &a, &req)) != 0)
		goto done;
	if ((rc = hs_ctl_call(c, cmd->svc, cmd->method, req, &resp,
			      logout ? HS_CTL_AUTH_OPTIONAL : HS_CTL_AUTH_NONE, NULL)) != 0)
		goto done;
	if (logout) {
		if (cached && unlink(path) != 0 && errno != ENOENT)
			fprintf(stderr, "%s: cannot remove %s: %s\n", c->prog, path, strerror(errno));
		if (c->json)
			printf("{}\n");
		else
			printf("Logged out.\n");
		goto done;
	}
	cache_from(&tc, c, (Harness__V1__AuthResponse *)resp);
	if ((rc = store_or_fail(c, &tc)) == 0)
		rc = print_auth(c, cmd, (Harness__V1__AuthResponse *)resp);
done:
	hs_ctl_args_dispose(&a);
	hs_ctl_token_dispose(&tc);
	if (req != NULL)
		protobuf_c_message_free_unpacked(req, NULL);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	return rc;
}

#define SVC (&harness__v1__auth_service__descriptor)
#define USER_COLS "ID=id EMAIL=email NAME=name ROLE=role CREATED=created_at"
#define USER_ADMIN_COLS "ID=id EMAIL=email NAME=name ROLE=role DISABLED=disabled CREATED=created_at"
#define AUTH_COLS "USER=user.id EMAIL=user.email ROLE=user.role EXPIRES_IN=expires_in"

const hs_ctl_cmd hs_ctl_auth_cmds[] = {
	{ "login", NULL, SVC, "Login", { 0 }, "Log in with email and password; the tokens go to the token cache "
	  "($HARNESS_TOKEN_FILE or ~/.config/harness/token, mode 0600).\nWithout --password the password is "
	  "read from the terminal without echo.",
	  "  harnessctl login --email admin@example.com\n"
	  "  echo \"$PW\" | harnessctl login --email admin@example.com --password-stdin\n",
	  NULL, AUTH_COLS, HS_CTL_NOAUTH, run_login,
	  { { "password-stdin", false, "read the password from the first line of stdin" } } },
	{ "refresh", NULL, SVC, "Refresh", { 0 }, "Exchange the cached refresh token for new tokens (rotation).",
	  "  harnessctl refresh\n", NULL, AUTH_COLS, HS_CTL_NOAUTH, run_refresh_logout, { { 0 } } },
	{ "logout", NULL, SVC, "Logout", { 0 }, "Revoke the cached refresh token and delete the token cache.",
	  "  harnessctl logout\n", NULL, NULL, HS_CTL_OPT_AUTH, run_refresh_logout, { { 0 } } },
	{ "whoami", NULL, SVC, "WhoAmI", { 0 }, "Show the user the access token belongs to.",
	  "  harnessctl whoami\n  harnessctl whoami -o json | jq -r .role\n", NULL, USER_COLS, 0, NULL, { { 0 } } },
	{ "user", "create", SVC, "CreateUser", { 0 }, "Create a user (admins, local auth backend).",
	  "  harnessctl user create --email bob@example.com --password s3cret-pw --role user\n", NULL, USER_COLS, 0,
	  NULL, { { 0 } } },
	{ "user", "get", SVC, "GetUser", { "id" }, "Show one user by id.",
	  "  harnessctl user get user-123\n", NULL, USER_ADMIN_COLS, HS_CTL_DETAIL, NULL, { { 0 } } },
	{ "user", "disable", SVC, "DisableUser", { "id" }, "Disable a user (admins, local auth backend): "
	  "no more logins; its tokens stop working at once.",
	  "  harnessctl user disable usr_0123456789abcdef\n", NULL, USER_ADMIN_COLS, HS_CTL_DETAIL, NULL,
	  { { 0 } } },
	{ "user", "delete", SVC, "DeleteUser", { "id" }, "Delete a user (admins, local auth backend); its "
	  "tokens stop working at once. What it owns is kept.",
	  "  harnessctl user delete usr_0123456789abcdef\n", NULL, NULL, 0, NULL, { { 0 } } },
	{ "apikey", "create", SVC, "CreateApiKey", { "name" },
	  "Create an API key for a service (admins). The key is printed once: store it now.\n"
	  "Use it as --token or HARNESS_TOKEN (authorization: Bearer).",
	  "  harnessctl apikey create ci-runner --role user\n"
	  "  harnessctl apikey create agent-beats --allowed-methods 'harness.v1.HealthService/*' \\\n"
	  "      --expires-at 2030-01-01T00:00:00Z\n",
	  NULL, "ID=id KEY=key NAME=api_key.name ROLE=api_key.role EXPIRES=api_key.expires_at "
	  "ALLOWED_METHODS=api_key.allowed_methods", HS_CTL_DETAIL, NULL, { { 0 } } },
	{ "apikey", "list", SVC, "ListApiKeys", { 0 }, "List API keys (admins; never the keys).",
	  "  harnessctl apikey list\n  harnessctl apikey list --include-revoked -o json\n", "api_keys",
	  "ID=id NAME=name ROLE=role CREATED=created_at EXPIRES=expires_at LAST_USED=last_used_at "
	  "REVOKED=revoked_at", 0, NULL, { { 0 } } },
	{ "apikey", "revoke", SVC, "RevokeApiKey", { "id" },
	  "Revoke an API key (admins): calls with it fail from now on.",
	  "  harnessctl apikey revoke hsk_0123456789abcdef\n", NULL,
	  "ID=id NAME=name ROLE=role REVOKED=revoked_at LAST_USED=last_used_at", HS_CTL_DETAIL, NULL,
	  { { 0 } } },
	{ 0 },
};
