/* harness-gateway configuration table: defaults < environment < flags. */
#include "gateway_config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"

enum { T_STR, T_INT, T_BOOL };

typedef struct opt {
	const char *flag;
	const char *env;
	const char *env2; /* the seed's name, lower precedence */
	int type;
	const char *def;
	long min, max;
	size_t off, size;
	const char *help;
} opt;

#define S(f) offsetof(hs_gw_config, f), sizeof(((hs_gw_config *)0)->f)
static const opt OPTS[] = {
	{ "listen", "HARNESS_GATEWAY_LISTEN", NULL, T_STR, "127.0.0.1:8080", 0, 0, S(listen),
	  "HTTP address host:port (port 0 = any free port, logged as {\"msg\":\"listening\"})" },
	{ "metrics-listen", "HARNESS_GATEWAY_METRICS_LISTEN", NULL, T_STR, "", 0, 0,
	  S(metrics_listen),
	  "host:port of the Prometheus scrape endpoint (/metrics, /livez, /readyz); empty = off" },
	{ "grpc-target", "HARNESS_GATEWAY_GRPC_TARGET", NULL, T_STR, "127.0.0.1:50051", 0, 0,
	  S(grpc_target), "harnessd gRPC address" },
	{ "grpc-tls-ca", "HARNESS_GATEWAY_GRPC_TLS_CA", NULL, T_STR, "", 0, 0, S(grpc_tls_ca),
	  "dial harnessd over TLS: PEM roots its certificate must chain to" },
	{ "grpc-tls-cert", "HARNESS_GATEWAY_GRPC_TLS_CERT", NULL, T_STR, "", 0, 0, S(grpc_tls_cert),
	  "client certificate presented to harnessd (mutual TLS), with --grpc-tls-key" },
	{ "grpc-tls-key", "HARNESS_GATEWAY_GRPC_TLS_KEY", NULL, T_STR, "", 0, 0, S(grpc_tls_key),
	  "private key of --grpc-tls-cert" },
	{ "grpc-tls-server-name", "HARNESS_GATEWAY_GRPC_TLS_SERVER_NAME", NULL, T_STR, "", 0, 0,
	  S(grpc_tls_server_name),
	  "name expected in harnessd's certificate (default: the host of --grpc-target)" },
	{ "request-timeout-ms", "HARNESS_GATEWAY_REQUEST_TIMEOUT_MS", NULL, T_INT, "5500", 100,
	  600000, S(request_timeout_ms), "deadline of each gRPC call (upstream 5 s + margin)" },
	{ "body-limit", "HARNESS_GATEWAY_BODY_LIMIT", NULL, T_INT, "16384", 256, 1048576,
	  S(body_limit), "largest request body in bytes (413 above)" },
	{ "threads", "HARNESS_GATEWAY_THREADS", NULL, T_INT, "0", 0, 1024, S(threads),
	  "HTTP worker threads for requests (0 = 8 per CPU, at least 32: a worker is held by "
	  "a connection, keep-alive included); event streams get --sse-max-streams more" },
	{ "sse-max-streams", "HARNESS_GATEWAY_SSE_MAX_STREAMS", NULL, T_INT, "16", 0, 4096,
	  S(sse_max_streams),
	  "Server-Sent Event streams open at once (each holds a worker thread; 429 above)" },
	{ "sse-max-per-client", "HARNESS_GATEWAY_SSE_MAX_PER_CLIENT", NULL, T_INT, "4", 1, 4096,
	  S(sse_max_per_client), "event streams one client address may hold open (429 above)" },
	{ "sse-max-seconds", "HARNESS_GATEWAY_SSE_MAX_SECONDS", NULL, T_INT, "300", 1, 86400,
	  S(sse_max_seconds),
	  "an event stream is closed after this; the client reconnects with Last-Event-ID "
	  "(its access token is checked again)" },
	{ "sse-keepalive-ms", "HARNESS_GATEWAY_SSE_KEEPALIVE_MS", NULL, T_INT, "15000", 100,
	  600000, S(sse_keepalive_ms),
	  "an idle event stream gets a comment line this often (a gone client frees its slot)" },
	{ "console", "HARNESS_GATEWAY_CONSOLE", NULL, T_BOOL, "1", 0, 0, S(console),
	  "serve the web console at / (embedded in the binary)" },
	{ "allowed-origins", "HARNESS_GATEWAY_ALLOWED_ORIGINS", "ALLOWED_ORIGINS", T_STR,
	  "http://localhost:3000", 0, 0, S(allowed_origins),
	  "comma list of CORS/CSRF origins allowed with credentials" },
	{ "trusted-proxies", "HARNESS_GATEWAY_TRUSTED_PROXIES", NULL, T_STR, "", 0, 0,
	  S(trusted_proxies),
	  "comma list of proxy IPs or CIDRs whose X-Forwarded-For/-Proto are believed" },
	{ "gateway-secret-file", "HARNESS_GATEWAY_SECRET_FILE", NULL, T_STR, "", 0, 0,
	  S(gateway_secret_file),
	  "harnessd's gateway key (its --gateway-secret-file, default <data-dir>/gateway.key): "
	  "signs the client address sent to harnessd; empty = unsigned, harnessd then throttles "
	  "logins by the gateway's own address" },
	{ "header-timeout-ms", "HARNESS_GATEWAY_HEADER_TIMEOUT_MS", NULL, T_INT, "10000", 100,
	  600000, S(header_timeout_ms),
	  "a request's line and headers must arrive within this (slow clients are cut)" },
	{ "max-connections-per-client", "HARNESS_GATEWAY_MAX_CONNECTIONS_PER_CLIENT", NULL, T_INT,
	  "8", 1, 100000, S(max_connections_per_client),
	  "open connections one client address may hold (trusted proxies exempt); more are closed "
	  "at once" },
	{ "cookie-path", "HARNESS_GATEWAY_COOKIE_PATH", NULL, T_STR, "/api/v1/auth", 0, 0,
	  S(cookie_path), "Path of the refreshToken cookie (the seed used /)" },
	{ "csrf-strict", "HARNESS_GATEWAY_CSRF_STRICT", "HARNESS_CSRF_STRICT", T_BOOL, "0", 0, 0,
	  S(csrf_strict), "also require an X-Requested-With header on POST" },
	{ "env", "HARNESS_ENV", "NODE_ENV", T_STR, "development", 0, 0, S(env),
	  "\"production\": Secure cookies, no internal messages in 5xx" },
	{ "log-level", "HARNESS_GATEWAY_LOG_LEVEL", NULL, T_STR, "info", 0, 0, S(log_level),
	  "debug|info|warn|error|off" },
};
#undef S
#define N_OPTS (sizeof(OPTS) / sizeof(OPTS[0]))

static const char *const TLS_FLAGS[] = { "tls-cert", "tls-key", "tls-ca", "tls", "https",
					 "ssl-certificate", "ssl-key", NULL };
static const char *const TLS_ENVS[] = { "HARNESS_GATEWAY_TLS_CERT", "HARNESS_GATEWAY_TLS_KEY",
					"HARNESS_GATEWAY_TLS", NULL };
#define TLS_MSG "TLS is not supported by harness-gateway: Debian's civetweb 1.15 crashes on " \
		"HTTPS; serve plain HTTP behind a TLS-terminating ingress or proxy"

static int set(hs_gw_config *c, const opt *o, const char *v, const char *src, hs_error *err)
{
	char *dst = (char *)c + o->off;
	if (o->type == T_STR) {
		if (strlen(v) >= o->size)
			return hs_error_set(err, HS_INVALID, "%s: --%s too long", src, o->flag);
		memcpy(dst, v, strlen(v) + 1);
		return HS_OK;
	}
	if (o->type == T_BOOL) {
		bool b;
		if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
			b = true;
		else if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") ||
			 !strcasecmp(v, "off") || !*v)
			b = false;
		else
			return hs_error_set(err, HS_INVALID, "%s: --%s wants true/false, got \"%s\"", src,
					    o->flag, v);
		*(bool *)dst = b;
		return HS_OK;
	}
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < o->min || n > o->max)
		return hs_error_set(err, HS_INVALID, "%s: --%s wants an integer in [%ld, %ld], got \"%s\"",
				    src, o->flag, o->min, o->max, v);
	*(long *)dst = n;
	return HS_OK;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: harness-gateway [flags]\n"
		   "REST gateway (civetweb) in front of harnessd: every RPC over REST (/v1/..., rules\n"
		   "from the google.api.http annotations), /openapi.json, the web console at /,\n"
		   "and the seed's /api/v1/auth/* cookie routes.\n\n");
	for (size_t i = 0; i < N_OPTS; i++)
		fprintf(f, "  --%-20s %s\n  %-22s env %s%s%s; default \"%s\"\n", OPTS[i].flag,
			OPTS[i].help, "", OPTS[i].env, OPTS[i].env2 ? " or " : "",
			OPTS[i].env2 ? OPTS[i].env2 : "", OPTS[i].def);
	fprintf(f, "  --%-20s %s\n  --%-20s %s\n", "help", "this text", "version", "print the version");
}

static int check_listen(hs_gw_config *c, hs_error *err)
{
	char *l = c->listen;
	size_t n = strlen(l);
	if (n > 0 && (l[n - 1] == 's' || l[n - 1] == 'r'))
		return hs_error_set(err, HS_INVALID, "--listen %s: " TLS_MSG, l);
	if (strncmp(l, "localhost:", 10) == 0) {
		char tmp[sizeof(c->listen)];
		snprintf(tmp, sizeof(tmp), "127.0.0.1:%s", l + 10);
		memcpy(l, tmp, sizeof(tmp));
	}
	const char *colon = strrchr(l, ':');
	const char *port = colon != NULL ? colon + 1 : l;
	char *end;
	long p = strtol(port, &end, 10);
	if (*port == '\0' || *end != '\0' || p < 0 || p > 65535 || (colon != NULL && colon == l) ||
	    strchr(l, ',') != NULL)
		return hs_error_set(err, HS_INVALID, "--listen %s: want host:port (e.g. 127.0.0.1:8080)", l);
	return HS_OK;
}

static int derive(hs_gw_config *c, hs_error *err)
{
	int rc = check_listen(c, err);
	if (rc != HS_OK)
		return rc;
	if (c->grpc_target[0] == '\0')
		return hs_error_set(err, HS_INVALID, "--grpc-target: empty");
	if ((c->grpc_tls_cert[0] != '\0') != (c->grpc_tls_key[0] != '\0'))
		return hs_error_set(err, HS_INVALID, "--grpc-tls-cert and --grpc-tls-key go together");
	if (c->grpc_tls_server_name[0] != '\0' && c->grpc_tls_ca[0] == '\0' &&
	    c->grpc_tls_cert[0] == '\0')
		return hs_error_set(err, HS_INVALID, "--grpc-tls-server-name: needs --grpc-tls-ca");
	rc = hs_gw_origins_parse(&c->origins, c->allowed_origins, err);
	if (rc != HS_OK)
		return rc;
	if (!hs_gw_cookie_path_ok(c->cookie_path))
		return hs_error_set(err, HS_INVALID, "--cookie-path %s: want /[A-Za-z0-9/._~-]*",
				    c->cookie_path);
	hs_log_level lvl;
	if (!hs_log_level_parse(c->log_level, &lvl))
		return hs_error_set(err, HS_INVALID, "--log-level %s: want debug|info|warn|error|off",
				    c->log_level);
	c->production = strcasecmp(c->env, "production") == 0;
	if ((rc = hs_cidr_list_parse(&c->proxies, c->trusted_proxies, "--trusted-proxies", err)) !=
	    HS_OK)
		return rc;
	if (c->threads == 0) {
		/* civetweb binds a worker to a connection for its whole life,
		 * keep-alive waits included (a browser keeps up to 6), so workers
		 * are sized for connections; CPU work does not grow with them
		 * (the gRPC side runs on one poller thread, clients/async.h) */
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		c->threads = cpus > 4 ? 8 * cpus : 32;
		if (c->threads > 256)
			c->threads = 256;
	}
	c->workers = c->threads + c->sse_max_streams;
	if (c->sse_max_per_client > c->max_connections_per_client)
		c->sse_max_per_client = c->max_connections_per_client;
	if (c->max_connections_per_client * 2 > c->threads)
		hs_log(HS_LOG_WARN, "gateway", "--max-connections-per-client is more than half of "
		       "--threads: two slow clients can take every worker",
		       HS_LI("threads", c->threads),
		       HS_LI("max_connections_per_client", c->max_connections_per_client));
	return HS_OK;
}

int hs_gw_config_load(hs_gw_config *out, int argc, char **argv, FILE *help_out, hs_error *err)
{
	hs_gw_config *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	int rc = HS_OK;
	for (size_t i = 0; i < N_OPTS && rc == HS_OK; i++) {
		rc = set(c, &OPTS[i], OPTS[i].def, "default", err);
		const char *v = OPTS[i].env2 != NULL ? getenv(OPTS[i].env2) : NULL;
		if (rc == HS_OK && v != NULL && *v != '\0')
			rc = set(c, &OPTS[i], v, OPTS[i].env2, err);
		v = getenv(OPTS[i].env);
		if (rc == HS_OK && v != NULL && *v != '\0')
			rc = set(c, &OPTS[i], v, OPTS[i].env, err);
	}
	for (size_t i = 0; TLS_ENVS[i] != NULL && rc == HS_OK; i++) {
		const char *v = getenv(TLS_ENVS[i]);
		if (v != NULL && *v != '\0')
			rc = hs_error_set(err, HS_INVALID, "%s: " TLS_MSG, TLS_ENVS[i]);
	}
	for (int a = 1; a < argc && rc == HS_OK; a++) {
		const char *arg = argv[a];
		if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			usage(help_out);
			rc = HS_GW_CONFIG_EXIT;
			break;
		}
		if (!strcmp(arg, "--version")) {
			fprintf(help_out, "harness-gateway %s\n", HS_VERSION);
			rc = HS_GW_CONFIG_EXIT;
			break;
		}
		if (strncmp(arg, "--", 2) != 0) {
			rc = hs_error_set(err, HS_INVALID, "unexpected argument \"%s\" (see --help)", arg);
			break;
		}
		const char *name = arg + 2, *eq = strchr(name, '=');
		size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
		for (size_t t = 0; TLS_FLAGS[t] != NULL; t++)
			if (strlen(TLS_FLAGS[t]) == nlen && !strncmp(name, TLS_FLAGS[t], nlen))
				rc = hs_error_set(err, HS_INVALID, "--%s: " TLS_MSG, TLS_FLAGS[t]);
		if (rc != HS_OK)
			break;
		const opt *o = NULL;
		for (size_t i = 0; i < N_OPTS; i++)
			if (strlen(OPTS[i].flag) == nlen && !strncmp(name, OPTS[i].flag, nlen))
				o = &OPTS[i];
		if (o == NULL) {
			rc = hs_error_set(err, HS_INVALID, "unknown flag --%.*s (see --help)", (int)nlen, name);
			break;
		}
		const char *v;
		if (eq != NULL)
			v = eq + 1;
		else if (o->type == T_BOOL && (a + 1 >= argc || strncmp(argv[a + 1], "--", 2) == 0))
			v = "1";
		else if (a + 1 < argc)
			v = argv[++a];
		else {
			rc = hs_error_set(err, HS_INVALID, "--%s needs a value", o->flag);
			break;
		}
		rc = set(c, o, v, "flag", err);
	}
	if (rc == HS_OK)
		rc = derive(c, err);
	if (rc == HS_OK)
		*out = *c;
	free(c);
	return rc;
}
