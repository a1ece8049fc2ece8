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
#include <time.h>

#include <cmocka.h>

#include <sodium.h>

#include "auth.h"
#include "clock.h"
#include "double.h"
#include "gateway_auth.h"
#include "secret_file.h"

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
	c.jwt_jwks_url = "http://127.0.0.1:1/jwks";
	hs_error_clear(&err);
	assert_int_equal(hs_auth_new(&a, &c, &err), HS_INVALID); /* with --jwt-secret too */
	assert_non_null(strstr(err.msg, "jwks"));
	c.backend = HS_AUTH_LOCAL;
	assert_int_equal(hs_auth_new(&a, &c, NULL), HS_INVALID); /* local */
	c.backend = HS_AUTH_UPSTREAM;
	c.jwt_secret = NULL;
	c.jwt_alg = NULL;
	c.jwt_jwks_url = "ftp://x";
	assert_int_equal(hs_auth_new(&a, &c, NULL), HS_INVALID);
	c.jwt_jwks_url = NULL;
	c.jwt_secret = JWT_SECRET;
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
	assert_int_equal(hs_auth_login(a, "admin@example.com", "adminpass1", "127.0.0.1", -1,
				       &r, &err), HS_OK);
	assert_int_equal(hs_auth_verify_access_token(a, r.access_token, &cl, &err), HS_OK);
	assert_string_equal(cl.sub, r.user.id);
	assert_string_equal(cl.role, "admin");
	assert_int_equal(hs_auth_get_user(a, cl.sub, -1, &u, NULL), HS_OK);
	assert_string_equal(u.email, "admin@example.com");
	assert_int_equal(hs_auth_refresh(a, r.refresh_token, -1, &r2, NULL), HS_OK);
	assert_int_equal(hs_auth_logout(a, r2.refresh_token, NULL, -1, NULL), HS_OK);
	assert_int_equal(hs_auth_refresh(a, r2.refresh_token, -1, &r, NULL), HS_UNAUTH);
	/* the session's access tokens stop at once */
	hs_jwt_claims_dispose(&cl);
	hs_error_clear(&err);
	assert_int_equal(hs_auth_verify_access_token(a, r.access_token, &cl, &err), HS_UNAUTH);
	assert_string_equal(err.msg, "token revoked");
	assert_int_equal(hs_auth_verify_access_token(a, r2.access_token, &cl, NULL), HS_UNAUTH);
	hs_auth_result_dispose(&r);
	assert_int_equal(hs_auth_verify_access_token(a, "x.y.z", &cl, NULL), HS_UNAUTH);
	hs_jwt_claims_dispose(&cl);
	hs_auth_user_dispose(&u);
	hs_auth_result_dispose(&r2);
	hs_auth_free(a);
	hs_store_free(st);
	rm_rf(dir);
}

static hs_auth *local_auth(char *dir, hs_store **st, hs_auth_config *c)
{
	hs_auth *a = NULL;
	hs_error err = { 0 };
	assert_non_null(mkdtemp(dir));
	assert_int_equal(hs_store_open(st, dir, NULL), HS_OK);
	c->store = *st;
	c->data_dir = dir;
	c->jwt_secret = JWT_SECRET;
	c->admin_email = "admin@example.com";
	c->admin_password = "adminpass1";
	if (hs_auth_new(&a, c, &err) != HS_OK)
		fail_msg("auth: %s", err.msg);
	return a;
}

/* issue 11: wrong passwords from one address never lock the account for
 * another address; the attacker's own guesses slow down. */
static void test_auth__login_throttled(void **s)
{
	char dir[] = "/tmp/hs-auth-facade-XXXXXX";
	hs_store *st = NULL;
	hs_auth_config c = HS_AUTH_CONFIG_INIT;
	hs_auth_result r = { 0 };
	hs_error err = { 0 };
	c.throttle.pair_free = 3;
	c.throttle.address_free = 5;
	hs_auth *a = local_auth(dir, &st, &c);
	for (int i = 0; i < 3; i++)
		assert_int_equal(hs_auth_login(a, "admin@example.com", "wrong!", "10.0.0.1", -1, &r,
					       NULL), HS_UNAUTH);
	/* the attacker's address: refused, even with the right password */
	assert_int_equal(hs_auth_login(a, "Admin@Example.com", "adminpass1", "10.0.0.1", -1, &r,
				       &err), HS_LIMIT);
	assert_null(r.access_token);
	/* the owner's address: in */
	assert_int_equal(hs_auth_login(a, "admin@example.com", "adminpass1", "10.0.0.9", -1, &r,
				       NULL), HS_OK);
	hs_auth_result_dispose(&r);
	/* per address: unknown accounts sprayed from one address */
	for (int i = 0; i < 2; i++)
		assert_int_equal(hs_auth_login(a, "x@y", "whatever", "10.0.0.1", -1, &r, NULL),
				 HS_UNAUTH);
	assert_int_equal(hs_auth_login(a, "other@y", "whatever", "10.0.0.1", -1, &r, NULL), HS_LIMIT);
	/* validation comes first and costs nothing */
	assert_int_equal(hs_auth_login(a, "not-an-email", "whatever", "10.0.0.2", -1, &r, &err),
			 HS_INVALID);
	assert_non_null(strstr(err.msg, "email"));
	assert_int_equal(hs_auth_login(a, "a@b.co", "", "10.0.0.2", -1, &r, NULL), HS_INVALID);
	hs_auth_free(a);
	hs_store_free(st);
	rm_rf(dir);
}

static void test_auth__client_address(void **s)
{
	char dir[] = "/tmp/hs-auth-facade-XXXXXX", key_path[96], out[HS_IP_TEXT_MAX];
	char sig[HS_GATEWAY_AUTH_MAX], *key = NULL;
	size_t key_len = 0;
	hs_store *st = NULL;
	hs_auth_config c = HS_AUTH_CONFIG_INIT;
	c.trusted_proxies = "10.1.0.0/16, fd00::/8";
	hs_auth *a = local_auth(dir, &st, &c);
	/* no xff: the peer's IP */
	hs_auth_client_address(a, "ipv4:203.0.113.5:4444", NULL, NULL, out, sizeof(out));
	assert_string_equal(out, "203.0.113.5");
	hs_auth_client_address(a, "ipv6:[::ffff:203.0.113.5]:4444", NULL, NULL, out, sizeof(out));
	assert_string_equal(out, "203.0.113.5");
	hs_auth_client_address(a, "unix:/run/x.sock", "1.2.3.4", NULL, out, sizeof(out));
	assert_string_equal(out, "local");
	/* untrusted peer, loopback included: xff ignored */
	hs_auth_client_address(a, "ipv4:127.0.0.1:4444", "198.51.100.1", NULL, out, sizeof(out));
	assert_string_equal(out, "127.0.0.1");
	/* a trusted proxy: the right-most untrusted entry */
	hs_auth_client_address(a, "ipv4:10.1.2.3:4444", "6.6.6.6, 198.51.100.1, 10.1.9.9", NULL, out,
			       sizeof(out));
	assert_string_equal(out, "198.51.100.1");
	hs_auth_client_address(a, "ipv6:[fd00::1]:4444", "198.51.100.2", NULL, out, sizeof(out));
	assert_string_equal(out, "198.51.100.2");
	/* the gateway: its signature, from any peer */
	snprintf(key_path, sizeof(key_path), "%s/gateway.key", dir);
	hs_secret_file_opts o = { false, 0, 007 };
	assert_int_equal(hs_secret_file_load(key_path, &o, &key, &key_len, NULL), HS_OK);
	long long now = time(NULL);
	assert_true(hs_gateway_auth_sign(key, key_len, "198.51.100.7", now, sig, sizeof(sig)));
	hs_auth_client_address(a, "ipv4:127.0.0.1:1", "198.51.100.7", sig, out, sizeof(out));
	assert_string_equal(out, "198.51.100.7");
	/* ... for the address it signed, and fresh */
	hs_auth_client_address(a, "ipv4:127.0.0.1:1", "198.51.100.8", sig, out, sizeof(out));
	assert_string_equal(out, "127.0.0.1");
	assert_true(hs_gateway_auth_sign(key, key_len, "198.51.100.7", now - 3600, sig, sizeof(sig)));
	hs_auth_client_address(a, "ipv4:127.0.0.1:1", "198.51.100.7", sig, out, sizeof(out));
	assert_string_equal(out, "127.0.0.1");
	assert_true(hs_gateway_auth_sign("another key of at least 32 bytes!", 33, "198.51.100.7", now,
					 sig, sizeof(sig)));
	hs_auth_client_address(a, "ipv4:127.0.0.1:1", "198.51.100.7", sig, out, sizeof(out));
	assert_string_equal(out, "127.0.0.1");
	free(key);
	hs_auth_free(a);
	hs_store_free(st);
	rm_rf(dir);
}

static void test_auth__user_management(void **s)
{
	char dir[] = "/tmp/hs-auth-facade-XXXXXX";
	hs_store *st = NULL;
	hs_auth_config c = HS_AUTH_CONFIG_INIT;
	hs_auth_result admin = { 0 }, bob = { 0 };
	hs_auth_user u = { 0 };
	hs_jwt_claims cl = { 0 };
	hs_error err = { 0 };
	hs_auth *a = local_auth(dir, &st, &c);
	assert_int_equal(hs_auth_login(a, "admin@example.com", "adminpass1", "1.1.1.1", -1, &admin,
				       NULL), HS_OK);
	assert_int_equal(hs_auth_create_user(a, "Bob@Example.com", "", "", "bobpass1", &u, NULL),
			 HS_OK);
	assert_string_equal(u.email, "bob@example.com");
	assert_int_equal(hs_auth_login(a, "bob@example.com", "bobpass1", "1.1.1.2", -1, &bob, NULL),
			 HS_OK);
	assert_int_equal(hs_auth_verify_access_token(a, bob.access_token, &cl, NULL), HS_OK);
	hs_jwt_claims_dispose(&cl);
	assert_int_equal(hs_auth_disable_user(a, admin.user.id, admin.user.id, NULL, &err),
			 HS_CONFLICT);
	assert_int_equal(hs_auth_delete_user(a, admin.user.id, admin.user.id, NULL), HS_CONFLICT);
	hs_auth_user_dispose(&u);
	assert_int_equal(hs_auth_disable_user(a, bob.user.id, admin.user.id, &u, NULL), HS_OK);
	assert_int_equal(hs_auth_verify_access_token(a, bob.access_token, &cl, NULL), HS_UNAUTH);
	assert_int_equal(hs_auth_verify_access_token(a, admin.access_token, &cl, NULL), HS_OK);
	hs_jwt_claims_dispose(&cl);
	assert_int_equal(hs_auth_delete_user(a, bob.user.id, admin.user.id, NULL), HS_OK);
	assert_int_equal(hs_auth_delete_user(a, bob.user.id, admin.user.id, NULL), HS_NOT_FOUND);
	hs_auth_user_dispose(&u);
	hs_auth_result_dispose(&admin);
	hs_auth_result_dispose(&bob);
	hs_auth_free(a);
	hs_store_free(st);
	rm_rf(dir);
}

/* A verified token is cached; the revocation set is still consulted on
 * every call: a disabled user and a logged-out session are refused at once,
 * and a tampered copy of a cached token is verified (and refused) afresh. */
static void test_auth__token_cache_honours_revocation(void **s)
{
	char dir[] = "/tmp/hs-auth-cache-XXXXXX";
	hs_store *st = NULL;
	hs_auth_config c = HS_AUTH_CONFIG_INIT;
	hs_auth_result admin = { 0 }, bob = { 0 }, bob2 = { 0 };
	hs_auth_identity id;
	hs_error err = { 0 };
	hs_auth *a = local_auth(dir, &st, &c);
	assert_int_equal(hs_auth_login(a, "admin@example.com", "adminpass1", "1.1.1.1", -1, &admin,
				       NULL), HS_OK);
	assert_int_equal(hs_auth_create_user(a, "bob@example.com", "", "", "bobpass1", NULL, NULL),
			 HS_OK);
	assert_int_equal(hs_auth_login(a, "bob@example.com", "bobpass1", "1.1.1.2", -1, &bob, NULL),
			 HS_OK);
	assert_int_equal(hs_auth_login(a, "bob@example.com", "bobpass1", "1.1.1.2", -1, &bob2, NULL),
			 HS_OK);
	for (int i = 0; i < 3; i++) { /* first check, then hits */
		assert_int_equal(hs_auth_authenticate(a, bob.access_token, NULL, 0, "/x.Y/Z", &id,
						      &err), HS_OK);
		assert_string_equal(id.id, bob.user.id);
		assert_false(id.is_admin);
		assert_int_equal(hs_auth_authenticate(a, bob2.access_token, NULL, 0, "/x.Y/Z", &id,
						      &err), HS_OK);
	}
	/* the same token with its last signature character changed */
	char *forged = strdup(bob.access_token);
	size_t n = strlen(forged);
	forged[n - 1] = forged[n - 1] == 'A' ? 'B' : 'A';
	assert_int_equal(hs_auth_authenticate(a, forged, NULL, 0, "/x.Y/Z", &id, &err), HS_UNAUTH);
	free(forged);
	/* logging out one session refuses its cached access token at once */
	assert_int_equal(hs_auth_logout(a, bob.refresh_token, NULL, -1, NULL), HS_OK);
	memset(&err, 0, sizeof(err));
	assert_int_equal(hs_auth_authenticate(a, bob.access_token, NULL, 0, "/x.Y/Z", &id, &err),
			 HS_UNAUTH);
	assert_string_equal(err.msg, "invalid access token: token revoked");
	assert_int_equal(hs_auth_authenticate(a, bob2.access_token, NULL, 0, "/x.Y/Z", &id, &err),
			 HS_OK);
	/* disabling the user refuses every cached token of theirs at once */
	assert_int_equal(hs_auth_disable_user(a, bob.user.id, admin.user.id, NULL, NULL), HS_OK);
	assert_int_equal(hs_auth_authenticate(a, bob2.access_token, NULL, 0, "/x.Y/Z", &id, &err),
			 HS_UNAUTH);
	assert_int_equal(hs_auth_authenticate(a, admin.access_token, NULL, 0, "/x.Y/Z", &id, &err),
			 HS_OK);
	assert_true(id.is_admin);
	hs_auth_result_dispose(&admin);
	hs_auth_result_dispose(&bob);
	hs_auth_result_dispose(&bob2);
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
	/* upstream: the presented access token is revoked by its jti */
	hs_jwt_claims_dispose(&cl);
	assert_int_equal(hs_auth_logout(a, r.refresh_token, r.access_token, 2000, NULL), HS_OK);
	assert_int_equal(hs_auth_verify_access_token(a, r.access_token, &cl, NULL), HS_UNAUTH);
	assert_int_equal(hs_auth_create_user(a, "z@example.com", NULL, NULL, "zzzzzz1", NULL, NULL),
			 HS_CONFLICT);
	assert_int_equal(hs_auth_disable_user(a, "u-alice", "u-admin", NULL, NULL), HS_CONFLICT);
	hs_auth_result_dispose(&r);
	assert_int_equal(hs_auth_login(a, "alice@example.com", "bad-pass", NULL, 2000, &r, &err),
			 HS_UNAUTH);
	hs_jwt_claims_dispose(&cl);
	hs_auth_user_dispose(&u);
	hs_auth_free(a);
	test_double_stop(&d);
}

/* The authenticator's one entry: access tokens, API keys, client
 * certificates mapped to a key, and what none of them may do. */
static void test_auth__authenticate(void **s)
{
	(void)s;
	char dir[] = "/tmp/hs-auth-authn-XXXXXX";
	hs_store *st = NULL;
	hs_auth_config c = HS_AUTH_CONFIG_INIT;
	hs_auth *a = local_auth(dir, &st, &c);
	hs_auth_identity id;
	hs_error err = { 0 };
	hs_auth_result r = { 0 };
	assert_int_equal(hs_auth_login(a, "admin@example.com", "adminpass1", NULL, -1, &r, NULL),
			 HS_OK);
	assert_int_equal(hs_auth_authenticate(a, r.access_token, NULL, 0, "/x.Y/Z", &id, &err),
			 HS_OK);
	assert_string_equal(id.id, r.user.id);
	assert_true(id.is_admin);
	assert_false(id.api_key);

	hs_apikey_spec spec = { "ci", "user", 0, (const char *const[]){ "harness.v1.HealthService/*" },
				1, r.user.id };
	hs_apikey_info info;
	char *key = NULL;
	assert_int_equal(hs_apikeys_create(hs_auth_apikeys_lookup(a), &spec, hs_clock_wall_ms(),
					   &info, &key, NULL), HS_OK);
	assert_int_equal(hs_auth_authenticate(a, key, NULL, 0, "/harness.v1.HealthService/Heartbeat",
					      &id, &err), HS_OK);
	assert_string_equal(id.id, info.id);
	assert_string_equal(id.role, "user");
	assert_true(id.api_key);
	hs_error_clear(&err);
	assert_int_equal(hs_auth_authenticate(a, key, NULL, 0, "/harness.v1.AuthService/CreateUser",
					      &id, &err), HS_DENIED);
	assert_non_null(strstr(err.msg, "may not call harness.v1.AuthService/CreateUser"));
	/* The key as a user: GetUser / WhoAmI. */
	hs_auth_user u = { 0 };
	assert_int_equal(hs_auth_get_user(a, info.id, -1, &u, NULL), HS_OK);
	assert_string_equal(u.name, "ci");
	assert_string_equal(u.email, "");
	hs_auth_user_dispose(&u);

	/* No bearer: unmapped certificates and none at all are refused. */
	hs_auth_cert_name names[] = { { "cn", "svc-a" }, { "san", "spiffe://c/svc-a" } };
	hs_error_clear(&err);
	assert_int_equal(hs_auth_authenticate(a, NULL, names, 2, "/x.Y/Z", &id, &err), HS_UNAUTH);
	assert_non_null(strstr(err.msg, "maps to no identity"));
	assert_int_equal(hs_auth_authenticate(a, NULL, NULL, 0, "/x.Y/Z", &id, NULL), HS_UNAUTH);
	assert_int_equal(hs_auth_authenticate(a, "hsk_junk", NULL, 0, "/x.Y/Z", &id, NULL),
			 HS_UNAUTH);
	hs_auth_free(a);

	/* With a mapping: the SAN acts as the key (its rules included). */
	char map[256];
	snprintf(map, sizeof(map), " cn:other=hsk_0000000000000000 , san:spiffe://c/svc-a=%s", info.id);
	c.client_identities = map;
	c.bootstrap_admin = 0;
	hs_error_clear(&err);
	if (hs_auth_new(&a, &c, &err) != HS_OK)
		fail_msg("%s", err.msg);
	assert_int_equal(hs_auth_authenticate(a, NULL, names, 2, "/harness.v1.HealthService/GetTask",
					      &id, &err), HS_OK);
	assert_string_equal(id.id, info.id);
	assert_int_equal(hs_auth_authenticate(a, NULL, names, 2, "/harness.v1.SandboxService/GetSandbox",
					      &id, NULL), HS_DENIED);
	hs_auth_cert_name wrong_kind[] = { { "cn", "spiffe://c/svc-a" } };
	assert_int_equal(hs_auth_authenticate(a, NULL, wrong_kind, 1, "/harness.v1.HealthService/GetTask",
					      &id, NULL), HS_UNAUTH);
	/* Revoked: the certificate stops working too. */
	assert_int_equal(hs_apikeys_revoke(hs_auth_apikeys_lookup(a), info.id, hs_clock_wall_ms(),
					   NULL, NULL), HS_OK);
	assert_int_equal(hs_auth_authenticate(a, NULL, names, 2, "/harness.v1.HealthService/GetTask",
					      &id, NULL), HS_UNAUTH);
	hs_auth_free(a);
	const char *bad_maps[] = { "svc-a=hsk_0000000000000000", "cn:svc-a", "cn:=hsk_0000000000000000",
				   "cn:svc=hsk_000", "dns:svc=hsk_0000000000000000",
				   "cn:svc=usr_0000000000000000" };
	for (size_t i = 0; i < sizeof(bad_maps) / sizeof(bad_maps[0]); i++) {
		c.client_identities = bad_maps[i];
		if (hs_auth_new(&a, &c, NULL) != HS_INVALID)
			fail_msg("%s accepted", bad_maps[i]);
	}
	/* Tokens may not claim a key's identity. */
	hs_jwt_key *k = NULL;
	assert_int_equal(hs_jwt_key_new_hmac(&k, JWT_SECRET, strlen(JWT_SECRET), NULL), HS_OK);
	hs_jwt_claims cl = { 0 };
	cl.sub = info.id;
	cl.role = "admin";
	cl.exp = hs_clock_wall_ms() / 1000 + 600;
	char *forged = NULL;
	assert_int_equal(hs_jwt_sign(k, &cl, NULL, &forged, NULL), HS_OK);
	c.client_identities = NULL;
	assert_int_equal(hs_auth_new(&a, &c, NULL), HS_OK);
	assert_int_equal(hs_auth_authenticate(a, forged, NULL, 0, "/x.Y/Z", &id, NULL), HS_UNAUTH);
	hs_auth_free(a);
	free(forged);
	hs_jwt_key_free(k);
	sodium_memzero(key, strlen(key));
	free(key);
	hs_apikey_info_dispose(&info);
	hs_auth_result_dispose(&r);
	hs_store_free(st);
	rm_rf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auth__config_errors),
		cmocka_unit_test(test_auth__local_end_to_end),
		cmocka_unit_test(test_auth__login_throttled),
		cmocka_unit_test(test_auth__client_address),
		cmocka_unit_test(test_auth__user_management),
		cmocka_unit_test(test_auth__token_cache_honours_revocation),
		cmocka_unit_test(test_auth__upstream_end_to_end),
		cmocka_unit_test(test_auth__authenticate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
