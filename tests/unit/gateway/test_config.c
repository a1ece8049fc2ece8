/* gateway/gateway_config.c: defaults < env < flags; TLS refused; bad values fail fast. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway_config.h"

static const char *ENVS[] = { "HARNESS_GATEWAY_LISTEN", "ALLOWED_ORIGINS", "HARNESS_GATEWAY_ALLOWED_ORIGINS",
			      "NODE_ENV", "HARNESS_ENV", "HARNESS_CSRF_STRICT", "HARNESS_GATEWAY_TLS_CERT",
			      "HARNESS_GATEWAY_BODY_LIMIT", NULL };

static int clear_env(void **state)
{
	for (size_t i = 0; ENVS[i]; i++)
		unsetenv(ENVS[i]);
	return 0;
}

static int load(hs_gw_config *c, hs_error *err, int argc, char **argv)
{
	FILE *devnull = fopen("/dev/null", "w");
	int rc = hs_gw_config_load(c, argc, argv, devnull, err);
	fclose(devnull);
	return rc;
}

#define ARGV(...) (char *[]){ "harness-gateway", __VA_ARGS__ }
#define ARGC(...) (int)(sizeof((char *[]){ "harness-gateway", __VA_ARGS__ }) / sizeof(char *))

static void test_config__defaults(void **state)
{
	static hs_gw_config c;
	hs_error err = { 0 };
	char *argv[] = { "harness-gateway" };
	assert_int_equal(load(&c, &err, 1, argv), HS_OK);
	assert_string_equal(c.listen, "127.0.0.1:8080");
	assert_string_equal(c.grpc_target, "127.0.0.1:50051");
	assert_int_equal(c.body_limit, 16384);
	assert_int_equal(c.origins.n, 1);
	assert_string_equal(c.origins.v[0], "http://localhost:3000");
	assert_string_equal(c.cookie_path, "/api/v1/auth");
	assert_false(c.production);
	assert_false(c.csrf_strict);
	assert_int_equal(c.proxies.n, 0);
	assert_int_equal(c.header_timeout_ms, 10000);
	assert_int_equal(c.max_connections_per_client, 8);
	assert_string_equal(c.gateway_secret_file, "");
	/* workers: for connections (at least 32), plus one per event stream */
	assert_true(c.threads >= 32);
	assert_int_equal(c.sse_max_streams, 16);
	assert_int_equal(c.sse_max_per_client, 4);
	assert_int_equal(c.sse_max_seconds, 300);
	assert_int_equal(c.sse_keepalive_ms, 15000);
	assert_int_equal(c.workers, c.threads + c.sse_max_streams);
	assert_true(c.console);
}

static void test_config__streams_and_console(void **state)
{
	static hs_gw_config c;
	hs_error err = { 0 };
	assert_int_equal(load(&c, &err, ARGC("--threads", "10", "--sse-max-streams", "5",
					     "--sse-max-per-client", "50", "--max-connections-per-client",
					     "3", "--console=false", "--sse-max-seconds", "60"),
			      ARGV("--threads", "10", "--sse-max-streams", "5", "--sse-max-per-client", "50",
				   "--max-connections-per-client", "3", "--console=false",
				   "--sse-max-seconds", "60")),
			 HS_OK);
	assert_int_equal(c.workers, 15);
	assert_int_equal(c.sse_max_per_client, 3); /* never more than its connections */
	assert_false(c.console);
	assert_int_equal(c.sse_max_seconds, 60);
	assert_int_equal(load(&c, &err, ARGC("--sse-max-seconds", "0"), ARGV("--sse-max-seconds", "0")),
			 HS_INVALID);
	assert_non_null(strstr(err.msg, "--sse-max-seconds"));
	assert_int_equal(load(&c, &err, ARGC("--sse-keepalive-ms", "10"), ARGV("--sse-keepalive-ms", "10")),
			 HS_INVALID);
}

static void test_config__env_then_flags(void **state)
{
	static hs_gw_config c;
	hs_error err = { 0 };
	setenv("ALLOWED_ORIGINS", "https://a.example,https://b.example", 1);
	setenv("NODE_ENV", "production", 1);
	setenv("HARNESS_CSRF_STRICT", "1", 1);
	setenv("HARNESS_GATEWAY_BODY_LIMIT", "4096", 1);
	assert_int_equal(load(&c, &err, ARGC("--listen", "localhost:0", "--body-limit=2048",
					     "--trusted-proxies", "10.0.0.1, 10.0.2.0/24"),
			      ARGV("--listen", "localhost:0", "--body-limit=2048", "--trusted-proxies",
				   "10.0.0.1, 10.0.2.0/24")), HS_OK);
	assert_string_equal(c.listen, "127.0.0.1:0");
	assert_int_equal(c.body_limit, 2048);
	assert_int_equal(c.origins.n, 2);
	assert_true(c.production);
	assert_true(c.csrf_strict);
	assert_int_equal(c.proxies.n, 2);
	assert_true(hs_cidr_list_has(&c.proxies, "10.0.2.77", 9));
	assert_false(hs_cidr_list_has(&c.proxies, "10.0.0.2", 8));
	setenv("HARNESS_GATEWAY_ALLOWED_ORIGINS", "https://c.example", 1); /* beats ALLOWED_ORIGINS */
	assert_int_equal(load(&c, &err, ARGC("--csrf-strict=false"), ARGV("--csrf-strict=false")), HS_OK);
	assert_int_equal(c.origins.n, 1);
	assert_false(c.csrf_strict);
	clear_env(NULL);
}

static void test_config__refusals(void **state)
{
	static hs_gw_config c;
	hs_error err = { 0 };
	assert_int_equal(load(&c, &err, ARGC("--tls-cert", "x.pem"), ARGV("--tls-cert", "x.pem")), HS_INVALID);
	assert_non_null(strstr(err.msg, "TLS"));
	hs_error_clear(&err);
	assert_int_equal(load(&c, &err, ARGC("--listen", "8443s"), ARGV("--listen", "8443s")), HS_INVALID);
	assert_non_null(strstr(err.msg, "TLS"));
	hs_error_clear(&err);
	setenv("HARNESS_GATEWAY_TLS_CERT", "/x.pem", 1);
	assert_int_equal(load(&c, &err, 1, ARGV(NULL)), HS_INVALID);
	unsetenv("HARNESS_GATEWAY_TLS_CERT");
	/* TLS towards harnessd is its own flags: a client certificate needs
	 * its key, a server name needs roots. */
	hs_error_clear(&err);
	assert_int_equal(load(&c, &err, ARGC("--grpc-tls-cert", "c.pem"), ARGV("--grpc-tls-cert", "c.pem")),
			 HS_INVALID);
	assert_non_null(strstr(err.msg, "--grpc-tls-key"));
	hs_error_clear(&err);
	assert_int_equal(load(&c, &err, ARGC("--grpc-tls-server-name", "h"),
			      ARGV("--grpc-tls-server-name", "h")), HS_INVALID);
	assert_non_null(strstr(err.msg, "--grpc-tls-ca"));
	assert_int_equal(load(&c, &err, ARGC("--grpc-tls-ca", "ca.pem", "--grpc-tls-server-name", "h"),
			      ARGV("--grpc-tls-ca", "ca.pem", "--grpc-tls-server-name", "h")), HS_OK);
	assert_string_equal(c.grpc_tls_ca, "ca.pem");
	assert_string_equal(c.grpc_tls_server_name, "h");
	const char *bad[][2] = { { "--body-limit", "12" }, { "--body-limit", "lots" },
				 { "--listen", "127.0.0.1:99999" }, { "--allowed-origins", "*" },
				 { "--cookie-path", "api" }, { "--log-level", "loud" }, { "--nope", "1" },
				 { "stray", "x" }, { "--trusted-proxies", "10.0.0.0/40" },
				 { "--trusted-proxies", "proxy.example" },
				 { "--max-connections-per-client", "0" }, { "--header-timeout-ms", "5" } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hs_error_clear(&err);
		char *argv[] = { "harness-gateway", (char *)bad[i][0], (char *)bad[i][1] };
		assert_int_equal(load(&c, &err, 3, argv), HS_INVALID);
		assert_true(err.msg[0] != '\0');
	}
	hs_error_clear(&err);
	assert_int_equal(load(&c, &err, ARGC("--listen"), ARGV("--listen")), HS_INVALID);
	assert_int_equal(load(&c, &err, ARGC("--help"), ARGV("--help")), HS_GW_CONFIG_EXIT);
	assert_int_equal(load(&c, &err, ARGC("--version"), ARGV("--version")), HS_GW_CONFIG_EXIT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_config__defaults, clear_env),
		cmocka_unit_test_setup(test_config__streams_and_console, clear_env),
		cmocka_unit_test_setup(test_config__env_then_flags, clear_env),
		cmocka_unit_test_setup(test_config__refusals, clear_env),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
