/* The auth facade: configuration checks, both backends end to end (local
 * over a real store, upstream over the Python double), token verification
 * and login throttling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"
#include "double.h"

#define API_KEY "facade-api-key"
#define JWT_SECRET "facade-jwt-secret-0123456789abcdef01"

static void rm_rf(const char *dir)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_auth__config_errors(void **s)
{
	hs_auth_config c = HS_AUTH_CONFIG_INIT;
	hs_auth *a = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_auth_new(&a, &c, &err), HS_INVALID); /* local without store */
	c.backend = HS_AUTH_UPSTREAM;
	c.user_service_url = "http://127.0.0.1:1";
	hs_error_clear(&err);
	assert_int_equal(hs_auth_new(&a, &c, &err), HS_INVALID); /* no secret to verify with */
	assert_non_null(strstr(err.msg, "jwt secret"));
	c.jwt_alg = "RS256";
	assert_int_equal(hs_auth_new(&a, &c, NULL), HS_INVALID); /* no public key file */
	c.jwt_alg = "none";
	assert_int_equal(hs_auth_new(&a, &c, NULL), HS_INVALID);
	c.jwt_alg = "HS256";
	c.jwt_secret = "too-short";
	assert_int_equal(hs_auth_new(&a, &c, NULL), HS_INVALID);
	c.jwt_secret = JWT_SECRET;
	c.user_service_url = "not a url";
	assert_int_equal(hs_auth_new(&a, &c, NULL), HS_INVALID);
	c.user_service_url = "http://127.0.0.1:1";
	c.throttle.capacity = 0;
	assert_int_equal(hs_auth_new(&a, &c, NULL), HS_INVALID);
	assert_null(a);
	hs_auth_free(NULL);
}

static void test_auth__local_end_to_end(void **s)
{
	char dir[] = "/tmp/hs-auth-facade-XXXXXX";
	hs_store *st = NULL;
	hs_auth *a = NULL;
	hs_auth_config c = HS_AUTH_CONFIG_INIT;
	hs_auth_result r = { 0 }, r2 = { 0 };
	hs_jwt_claims cl = { 0 };
	hs_auth_user u = { 0 };
	hs_error err = { 0 };
	assert_non_null(mkdtemp(dir));
	assert_int_equal(hs_store_open(&st, dir, NULL), HS_OK);
	c.store = st;
	c.data_dir = dir; /* jwt.key generated there */
	c.admin_email = "admin@example.com";
	c.admin_password = "adminpass1";
	c.jwt_alg = "RS256";
	assert_int_equal(hs_auth_new(&a, &c, &err), HS_INVALID); /* local signs HS256 */
	c.jwt_alg = NULL;
	if (hs_auth_new(&a, &c, &err) != HS_OK)
		fail_msg("auth: %s", err.msg);
	assert_int_equal(hs_auth_backend_of(a), HS_AUTH_LOCAL);
	assert_non_null(hs_auth_local_lookup(a));
	assert_int_equal(hs_auth_login(a, "admin@example.com", "adminpass1", "ipv4:127.0.0.1:5", -1,
				       &r, &err), HS_OK);
	assert_int_equal(hs_auth_verify_access_token(a, r.access_token, &cl, &err), HS_OK);
	assert_string_equal(cl.sub, r.user.id);
	assert_string_equal(cl.role, "admin");
	assert_int_equal(hs_auth_get_user(a, cl.sub, -1, &u, NULL), HS_OK);
	assert_string_equal(u.email, "admin@example.com");
	assert_int_equal(hs_auth_refresh(a, r.refresh_token, -1, &r2, NULL), HS_OK);
	assert_int_equal(hs_auth_logout(a, r2.refresh_token, -1, NULL), HS_OK);
	hs_auth_result_dispose(&r);
	assert_int_equal(hs_auth_refresh(a, r2.refresh_token, -1, &r, NULL), HS_UNAUTH);
	assert_int_equal(hs_auth_verify_access_token(a, "x.y.z", &cl, NULL), HS_UNAUTH);
	hs_jwt_claims_dispose(&cl);
	hs_auth_user_dispose(&u);
	hs_auth_result_dispose(&r2);
	hs_auth_free(a);
	hs_store_free(st);
	rm_rf(dir);
}

static void test_auth__login_throttled(void **s)
{
	char dir[] = "/tmp/hs-auth-facade-XXXXXX";
	hs_store *st = NULL;
	hs_auth *a = NULL;
	hs_auth_config c = HS_AUTH_CONFIG_INIT;
	hs_auth_result r = { 0 };
	hs_error err = { 0 };
	assert_non_null(mkdtemp(dir));
	assert_int_equal(hs_store_open(&st, dir, NULL), HS_OK);
	c.store = st;
	c.jwt_secret = JWT_SECRET;
	c.admin_email = "admin@example.com";
	c.admin_password = "adminpass1";
	c.throttle.account_max = 3;
	c.throttle.peer_max = 5;
	assert_int_equal(hs_auth_new(&a, &c, NULL), HS_OK);
	for (int i = 0; i < 3; i++)
		assert_int_equal(hs_auth_login(a, "admin@example.com", "wrong!", "ipv4:10.0.0.1:1", -1,
					       &r, NULL), HS_UNAUTH);
	/* locked: even the right password is refused, with a LIMIT */
	assert_int_equal(hs_auth_login(a, "admin@example.com", "adminpass1", "ipv4:10.0.0.9:1", -1,
				       &r, &err), HS_LIMIT);
	/* per peer: unknown accounts from one address */
	for (int i = 0; i < 2; i++)
		assert_int_equal(hs_auth_login(a, "x@y", "whatever", "ipv4:10.0.0.1:2", -1, &r, NULL),
				 HS_UNAUTH);
	assert_int_equal(hs_auth_login(a, "other@y", "whatever", "ipv4:10.0.0.1:3", -1, &r, NULL),
			 HS_LIMIT);
	assert_null(r.access_token);
	hs_auth_free(a);
	hs_store_free(st);
	rm_rf(dir);
}

static void test_auth__upstream_end_to_end(void **s)
{
	test_double d;
	hs_auth *a = NULL;
	hs_auth_config c = HS_AUTH_CONFIG_INIT;
	hs_auth_result r = { 0 };
	hs_jwt_claims cl = { 0 };
	hs_auth_user u = { 0 };
	hs_error err = { 0 };
	assert_int_equal(test_double_start(&d, API_KEY, JWT_SECRET), 0);
	c.backend = HS_AUTH_UPSTREAM;
	c.user_service_url = d.url;
	c.api_key = API_KEY;
	c.jwt_secret = JWT_SECRET;
	if (hs_auth_new(&a, &c, &err) != HS_OK) {
		test_double_stop(&d);
		fail_msg("auth: %s", err.msg);
	}
	assert_null(hs_auth_local_lookup(a));
	assert_int_equal(hs_auth_login(a, "alice@example.com", "password123", NULL, 2000, &r, &err),
			 HS_OK);
	/* the double's HS256 token verifies with the configured secret */
	assert_int_equal(hs_auth_verify_access_token(a, r.access_token, &cl, &err), HS_OK);
	assert_string_equal(cl.sub, "u-alice");
	assert_string_equal(cl.role, "user");
	assert_int_equal(hs_auth_get_user(a, "u-alice", 2000, &u, NULL), HS_OK);
	assert_int_equal(hs_auth_logout(a, r.refresh_token, 2000, NULL), HS_OK);
	hs_auth_result_dispose(&r);
	assert_int_equal(hs_auth_login(a, "alice@example.com", "bad-pass", NULL, 2000, &r, &err),
			 HS_UNAUTH);
	hs_jwt_claims_dispose(&cl);
	hs_auth_user_dispose(&u);
	hs_auth_free(a);
	test_double_stop(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auth__config_errors),
		cmocka_unit_test(test_auth__local_end_to_end),
		cmocka_unit_test(test_auth__login_throttled),
		cmocka_unit_test(test_auth__upstream_end_to_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
