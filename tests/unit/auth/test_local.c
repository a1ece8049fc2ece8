/* The local backend over a real store in a temporary directory: login,
 * generic failures, refresh rotation, reuse detection, logout, bootstrap,
 * the jwt.key file. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "local.h"
#include "password.h"

#define SECRET "local-test-secret-0123456789abcdef0123456789"

typedef struct fixture {
	char dir[64];
	hs_store *store;
	hs_jwt_key *key;
	hs_revocations *rev;
	hs_auth_local *l;
} fixture;

static void rm_rf(const char *dir)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	hs_error err = { 0 };
	hs_auth_local_config c = { 0 };
	snprintf(f->dir, sizeof(f->dir), "/tmp/hs-auth-local-XXXXXX");
	if (mkdtemp(f->dir) == NULL || hs_store_open(&f->store, f->dir, &err) != HS_OK ||
	    hs_jwt_key_new_hmac(&f->key, SECRET, strlen(SECRET), &err) != HS_OK ||
	    hs_revocations_new(&f->rev, f->store, &err) != HS_OK) {
		fprintf(stderr, "setup: %s\n", err.msg);
		return -1;
	}
	c.store = f->store;
	c.key = f->key;
	c.issuer = "harness";
	c.revocations = f->rev;
	if (hs_auth_local_new(&f->l, &c, &err) != HS_OK ||
	    hs_auth_local_create_user(f->l, "Alice@Example.com", "Alice", "user", "password123",
				      NULL, &err) != HS_OK)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	hs_auth_local_free(f->l);
	hs_revocations_free(f->rev);
	hs_jwt_key_free(f->key);
	hs_store_free(f->store);
	rm_rf(f->dir);
	free(f);
	return 0;
}

static void login(fixture *f, hs_auth_result *r)
{
	hs_error err = { 0 };
	if (hs_auth_local_login(f->l, "alice@example.com", "password123", r, &err) != HS_OK)
		fail_msg("login: %s", err.msg);
}

static void test_local__login_ok(void **state)
{
	fixture *f = *state;
	hs_auth_result r = { 0 };
	hs_jwt_claims c = { 0 };
	hs_jwt_verify_opts o = HS_JWT_VERIFY_OPTS_INIT;
	hs_auth_user u = { 0 };
	login(f, &r);
	assert_string_equal(r.user.email, "alice@example.com");
	assert_string_equal(r.user.name, "Alice");
	assert_string_equal(r.user.role, "user");
	assert_true(r.user.created_at_ms > 0);
	assert_int_equal(r.expires_in, 900);
	assert_int_equal(strlen(r.refresh_token), 43);
	o.iss = "harness";
	assert_int_equal(hs_jwt_verify(f->key, r.access_token, &o, &c, NULL), HS_OK);
	assert_string_equal(c.sub, r.user.id);
	assert_string_equal(c.role, "user");
	assert_int_equal(c.exp - c.iat, 900);
	assert_int_equal(hs_auth_local_get_user(f->l, r.user.id, &u, NULL), HS_OK);
	assert_string_equal(u.email, "alice@example.com");
	hs_auth_user_dispose(&u);
	assert_int_equal(hs_auth_local_get_user(f->l, "usr_nope", &u, NULL), HS_NOT_FOUND);
	assert_int_equal(hs_auth_local_get_user(f->l, "", &u, NULL), HS_INVALID);
	/* case-insensitive email */
	hs_auth_result r2 = { 0 };
	assert_int_equal(hs_auth_local_login(f->l, "ALICE@example.COM", "password123", &r2, NULL),
			 HS_OK);
	hs_auth_result_dispose(&r2);
	hs_jwt_claims_dispose(&c);
	hs_auth_result_dispose(&r);
}

static void test_local__login_failures_generic(void **state)
{
	fixture *f = *state;
	hs_auth_result r = { 0 };
	const char *cases[][2] = { { "alice@example.com", "wrong-password" },
				   { "nobody@example.com", "password123" },
				   { "", "password123" },
				   { "alice@example.com", "" } };
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hs_error err = { 0 };
		assert_int_equal(hs_auth_local_login(f->l, cases[i][0], cases[i][1], &r, &err), HS_UNAUTH);
		assert_string_equal(err.msg, HS_AUTH_LOGIN_FAILED);
		assert_null(r.access_token);
	}
}

static void test_local__refresh_rotates(void **state)
{
	fixture *f = *state;
	hs_auth_result a = { 0 }, b = { 0 }, c = { 0 };
	hs_error err = { 0 };
	login(f, &a);
	assert_int_equal(hs_auth_local_refresh(f->l, a.refresh_token, &b, &err), HS_OK);
	assert_string_not_equal(a.refresh_token, b.refresh_token);
	assert_string_equal(a.user.id, b.user.id);
	assert_non_null(b.access_token);
	assert_int_equal(hs_auth_local_refresh(f->l, b.refresh_token, &c, &err), HS_OK);
	assert_int_equal(hs_auth_local_refresh(f->l, "never-issued", &a, &err), HS_UNAUTH);
	assert_string_equal(err.msg, HS_AUTH_REFRESH_FAILED);
	assert_int_equal(hs_auth_local_refresh(f->l, "", &a, NULL), HS_UNAUTH);
	hs_auth_result_dispose(&a);
	hs_auth_result_dispose(&b);
	hs_auth_result_dispose(&c);
}

static void test_local__reuse_revokes_family(void **state)
{
	fixture *f = *state;
	hs_auth_result a = { 0 }, b = { 0 }, x = { 0 }, other = { 0 }, o2 = { 0 };
	hs_error err = { 0 };
	login(f, &a);
	login(f, &other); /* another session (family) of the same user */
	assert_int_equal(hs_auth_local_refresh(f->l, a.refresh_token, &b, NULL), HS_OK);
	/* the old token again: reuse */
	assert_int_equal(hs_auth_local_refresh(f->l, a.refresh_token, &x, &err), HS_UNAUTH);
	assert_string_equal(err.msg, HS_AUTH_REFRESH_FAILED);
	/* the legitimately rotated one died with its family */
	assert_int_equal(hs_auth_local_refresh(f->l, b.refresh_token, &x, NULL), HS_UNAUTH);
	assert_null(x.refresh_token);
	/* the other session is untouched */
	assert_int_equal(hs_auth_local_refresh(f->l, other.refresh_token, &o2, NULL), HS_OK);
	hs_auth_result_dispose(&a);
	hs_auth_result_dispose(&b);
	hs_auth_result_dispose(&other);
	hs_auth_result_dispose(&o2);
}

static void test_local__logout_revokes(void **state)
{
	fixture *f = *state;
	hs_auth_result a = { 0 }, b = { 0 }, x = { 0 };
	login(f, &a);
	assert_int_equal(hs_auth_local_refresh(f->l, a.refresh_token, &b, NULL), HS_OK);
	assert_int_equal(hs_auth_local_logout(f->l, b.refresh_token, NULL), HS_OK);
	assert_int_equal(hs_auth_local_refresh(f->l, b.refresh_token, &x, NULL), HS_UNAUTH);
	assert_int_equal(hs_auth_local_logout(f->l, "unknown", NULL), HS_OK);
	assert_int_equal(hs_auth_local_logout(f->l, NULL, NULL), HS_OK);
	assert_int_equal(hs_auth_local_logout(f->l, b.refresh_token, NULL), HS_OK); /* twice */
	hs_auth_result_dispose(&a);
	hs_auth_result_dispose(&b);
}

static void test_local__expired_refresh(void **state)
{
	fixture *f = *state;
	hs_auth_local *shortl = NULL;
	hs_auth_local_config c = { f->store, f->key, NULL, NULL, 60, 1, NULL };
	hs_auth_result a = { 0 }, x = { 0 };
	assert_int_equal(hs_auth_local_new(&shortl, &c, NULL), HS_OK);
	assert_int_equal(hs_auth_local_login(shortl, "alice@example.com", "password123", &a, NULL),
			 HS_OK);
	assert_int_equal(a.expires_in, 60);
	usleep(1100 * 1000);
	assert_int_equal(hs_auth_local_refresh(shortl, a.refresh_token, &x, NULL), HS_UNAUTH);
	hs_auth_result_dispose(&a);
	hs_auth_local_free(shortl);
}

static void test_local__create_user_checks(void **state)
{
	fixture *f = *state;
	hs_auth_user u = { 0 };
	assert_int_equal(hs_auth_local_create_user(f->l, "alice@example.com", "A", "user", "pw123456",
						   NULL, NULL), HS_EXISTS);
	assert_int_equal(hs_auth_local_create_user(f->l, "no-at-sign", "A", "user", "pw123456", NULL,
						   NULL), HS_INVALID);
	assert_int_equal(hs_auth_local_create_user(f->l, "b@x", "B", "root", "pw123456", NULL, NULL),
			 HS_INVALID);
	assert_int_equal(hs_auth_local_create_user(f->l, "b@x", "B", "user", "", NULL, NULL),
			 HS_INVALID);
	assert_int_equal(hs_auth_local_create_user(f->l, "b@x", "B", "user", "12345", NULL, NULL),
			 HS_INVALID);
	assert_int_equal(hs_auth_local_create_user(f->l, "B@X", "B", "admin", "pw123456", &u, NULL),
			 HS_OK);
	assert_string_equal(u.email, "b@x");
	assert_string_equal(u.role, "admin");
	hs_auth_user_dispose(&u);
}

static void test_local__bootstrap_admin(void **state)
{
	fixture *f = *state;
	char dir[] = "/tmp/hs-auth-boot-XXXXXX", line[256] = "", pw[64];
	hs_store *st = NULL;
	hs_auth_local *l = NULL;
	hs_auth_local_config c = { 0 };
	hs_auth_result r = { 0 };
	int created = -1;
	FILE *notice = tmpfile();
	assert_non_null(mkdtemp(dir));
	assert_int_equal(hs_store_open(&st, dir, NULL), HS_OK);
	c.store = st;
	c.key = f->key;
	assert_int_equal(hs_auth_local_new(&l, &c, NULL), HS_OK);
	unsetenv("HARNESS_ADMIN_PASSWORD");
	setenv("HARNESS_ADMIN_EMAIL", "root@example.com", 1);
	assert_int_equal(hs_auth_local_bootstrap_admin(l, NULL, NULL, notice, &created, NULL), HS_OK);
	assert_int_equal(created, 1);
	rewind(notice);
	assert_non_null(fgets(line, sizeof(line), notice));
	assert_null(fgets(pw, sizeof(pw), notice)); /* exactly one line */
	const char *p = strstr(line, "generated password ");
	assert_non_null(p);
	assert_int_equal(sscanf(p, "generated password %63s", pw), 1);
	assert_int_equal(strlen(pw), 24);
	assert_int_equal(hs_auth_local_login(l, "root@example.com", pw, &r, NULL), HS_OK);
	assert_string_equal(r.user.role, "admin");
	hs_auth_result_dispose(&r);
	/* a second start creates nothing and prints nothing */
	assert_int_equal(hs_auth_local_bootstrap_admin(l, NULL, NULL, notice, &created, NULL), HS_OK);
	assert_int_equal(created, 0);
	assert_null(fgets(line, sizeof(line), notice));
	unsetenv("HARNESS_ADMIN_EMAIL");
	fclose(notice);
	hs_auth_local_free(l);
	hs_store_free(st);
	rm_rf(dir);
}

static void test_local__bootstrap_admin_from_env(void **state)
{
	fixture *f = *state;
	char dir[] = "/tmp/hs-auth-boot-XXXXXX";
	hs_store *st = NULL;
	hs_auth_local *l = NULL;
	hs_auth_local_config c = { 0 };
	hs_auth_result r = { 0 };
	FILE *notice = tmpfile();
	assert_non_null(mkdtemp(dir));
	assert_int_equal(hs_store_open(&st, dir, NULL), HS_OK);
	c.store = st;
	c.key = f->key;
	assert_int_equal(hs_auth_local_new(&l, &c, NULL), HS_OK);
	setenv("HARNESS_ADMIN_PASSWORD", "env-admin-pass", 1);
	assert_int_equal(hs_auth_local_bootstrap_admin(l, "ops@example.com", NULL, notice, NULL, NULL),
			 HS_OK);
	unsetenv("HARNESS_ADMIN_PASSWORD");
	assert_int_equal(ftell(notice), 0); /* nothing printed */
	assert_int_equal(hs_auth_local_login(l, "ops@example.com", "env-admin-pass", &r, NULL), HS_OK);
	hs_auth_result_dispose(&r);
	fclose(notice);
	hs_auth_local_free(l);
	hs_store_free(st);
	rm_rf(dir);
}

static void test_local__secret_file(void **state)
{
	char dir[] = "/tmp/hs-auth-key-XXXXXX", path[96];
	char *a = NULL, *b = NULL, *c = NULL;
	struct stat st;
	hs_error err = { 0 };
	assert_non_null(mkdtemp(dir));
	assert_int_equal(hs_auth_local_secret_load(dir, &a, &err), HS_OK);
	assert_int_equal(strlen(a), 64);
	snprintf(path, sizeof(path), "%s/jwt.key", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(hs_auth_local_secret_load(dir, &b, NULL), HS_OK);
	assert_string_equal(a, b); /* persisted */
	chmod(path, 0644);
	assert_int_equal(hs_auth_local_secret_load(dir, &c, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "chmod 600"));
	FILE *fp = fopen(path, "w");
	fputs("short\n", fp);
	fclose(fp);
	chmod(path, 0600);
	assert_int_equal(hs_auth_local_secret_load(dir, &c, NULL), HS_INVALID);
	assert_null(c);
	assert_int_equal(hs_auth_local_secret_load(NULL, &c, NULL), HS_INVALID);
	free(a);
	free(b);
	rm_rf(dir);
}

/* The claims of an access token the fixture's key signed. */
static void claims_of(fixture *f, const char *token, hs_jwt_claims *out)
{
	hs_jwt_verify_opts o = HS_JWT_VERIFY_OPTS_INIT;
	o.iss = "harness";
	assert_int_equal(hs_jwt_verify(f->key, token, &o, out, NULL), HS_OK);
}

static bool refused(fixture *f, const char *token)
{
	hs_jwt_claims c = { 0 };
	claims_of(f, token, &c);
	bool r = hs_revocations_refuses(f->rev, c.sub, c.sid, c.jti, c.iat, 0);
	hs_jwt_claims_dispose(&c);
	return r;
}

static void test_local__tokens_carry_session_and_id(void **state)
{
	fixture *f = *state;
	hs_auth_result a = { 0 }, b = { 0 };
	hs_jwt_claims c = { 0 };
	login(f, &a);
	assert_int_equal(hs_auth_local_refresh(f->l, a.refresh_token, &b, NULL), HS_OK);
	claims_of(f, a.access_token, &c);
	assert_non_null(c.jti);
	assert_non_null(c.sid);
	char sid[64];
	snprintf(sid, sizeof(sid), "%s", c.sid);
	hs_jwt_claims_dispose(&c);
	claims_of(f, b.access_token, &c);
	assert_string_equal(c.sid, sid); /* one session across rotations */
	hs_jwt_claims_dispose(&c);
	hs_auth_result_dispose(&a);
	hs_auth_result_dispose(&b);
}

/* Logout ends the session's access tokens too; other sessions live on. */
static void test_local__logout_revokes_the_sessions_access_tokens(void **state)
{
	fixture *f = *state;
	hs_auth_result a = { 0 }, a2 = { 0 }, other = { 0 };
	login(f, &a);
	login(f, &other);
	assert_int_equal(hs_auth_local_refresh(f->l, a.refresh_token, &a2, NULL), HS_OK);
	assert_false(refused(f, a.access_token));
	assert_int_equal(hs_auth_local_logout(f->l, a2.refresh_token, NULL), HS_OK);
	assert_true(refused(f, a.access_token));
	assert_true(refused(f, a2.access_token));
	assert_false(refused(f, other.access_token));
	/* a restart keeps it: the set is rebuilt from the store */
	hs_revocations *again = NULL;
	hs_jwt_claims c = { 0 };
	assert_int_equal(hs_revocations_new(&again, f->store, NULL), HS_OK);
	claims_of(f, a2.access_token, &c);
	assert_true(hs_revocations_refuses(again, c.sub, c.sid, c.jti, c.iat, 0));
	hs_jwt_claims_dispose(&c);
	hs_revocations_free(again);
	hs_auth_result_dispose(&a);
	hs_auth_result_dispose(&a2);
	hs_auth_result_dispose(&other);
}

static void test_local__reuse_revokes_the_sessions_access_tokens(void **state)
{
	fixture *f = *state;
	hs_auth_result a = { 0 }, b = { 0 }, x = { 0 };
	login(f, &a);
	assert_int_equal(hs_auth_local_refresh(f->l, a.refresh_token, &b, NULL), HS_OK);
	assert_int_equal(hs_auth_local_refresh(f->l, a.refresh_token, &x, NULL), HS_UNAUTH);
	assert_true(refused(f, b.access_token)); /* the thief's too */
	hs_auth_result_dispose(&a);
	hs_auth_result_dispose(&b);
}

static void test_local__disable_and_delete(void **state)
{
	fixture *f = *state;
	hs_auth_result a = { 0 }, x = { 0 };
	hs_auth_user u = { 0 };
	hs_error err = { 0 };
	login(f, &a);
	assert_int_equal(hs_auth_local_disable_user(f->l, a.user.id, &u, &err), HS_OK);
	assert_int_equal(u.disabled, 1);
	hs_auth_user_dispose(&u);
	assert_true(refused(f, a.access_token));
	assert_int_equal(hs_auth_local_refresh(f->l, a.refresh_token, &x, NULL), HS_UNAUTH);
	assert_int_equal(hs_auth_local_login(f->l, "alice@example.com", "password123", &x, &err),
			 HS_UNAUTH);
	assert_string_equal(err.msg, HS_AUTH_LOGIN_FAILED);
	assert_int_equal(hs_auth_local_disable_user(f->l, a.user.id, NULL, NULL), HS_OK);
	assert_int_equal(hs_auth_local_disable_user(f->l, "usr_nobody", NULL, NULL), HS_NOT_FOUND);
	assert_int_equal(hs_auth_local_disable_user(f->l, "", NULL, NULL), HS_INVALID);

	hs_auth_result b = { 0 };
	assert_int_equal(hs_auth_local_create_user(f->l, "bob@example.com", NULL, NULL, "bobpass1",
						   &u, NULL), HS_OK);
	assert_string_equal(u.name, "bob");
	assert_string_equal(u.role, "user");
	assert_int_equal(hs_auth_local_login(f->l, "bob@example.com", "bobpass1", &b, NULL), HS_OK);
	assert_int_equal(hs_auth_local_delete_user(f->l, u.id, NULL), HS_OK);
	assert_true(refused(f, b.access_token));
	assert_int_equal(hs_auth_local_get_user(f->l, u.id, &u, NULL), HS_NOT_FOUND);
	assert_int_equal(hs_auth_local_delete_user(f->l, "usr_nobody", NULL), HS_NOT_FOUND);
	assert_int_equal(hs_auth_local_login(f->l, "bob@example.com", "bobpass1", &x, NULL),
			 HS_UNAUTH);
	/* the address is free again */
	assert_int_equal(hs_auth_local_create_user(f->l, "bob@example.com", NULL, NULL, "bobpass2",
						   NULL, NULL), HS_OK);
	hs_auth_user_dispose(&u);
	hs_auth_result_dispose(&a);
	hs_auth_result_dispose(&b);
}

/* issue 14: one account whatever way its address is typed. */
static void test_local__email_normal_forms(void **state)
{
	fixture *f = *state;
	hs_auth_user u = { 0 };
	hs_auth_result r = { 0 };
	assert_int_equal(hs_auth_local_create_user(f->l, " First.Last+tag@GoogleMail.com ", "F",
						   "user", "firstpass1", &u, NULL), HS_OK);
	assert_string_equal(u.email, "firstlast@gmail.com");
	const char *typed[] = { "First.Last+tag@gmail.com", "firstlast@gmail.com",
				"FIRST.LAST@googlemail.com", "f.i.r.s.t.l.a.s.t+x@gmail.com" };
	for (size_t i = 0; i < sizeof(typed) / sizeof(typed[0]); i++) {
		assert_int_equal(hs_auth_local_login(f->l, typed[i], "firstpass1", &r, NULL), HS_OK);
		assert_string_equal(r.user.id, u.id);
		hs_auth_result_dispose(&r);
	}
	assert_int_equal(hs_auth_local_create_user(f->l, "firstlast+other@gmail.com", "F", "user",
						   "firstpass1", NULL, NULL), HS_EXISTS);
	hs_auth_user_dispose(&u);
}

/* Rows the migration could not re-normalise (another held the normal
 * form) are still found by the address as it was stored. */
static void test_local__legacy_rows_still_log_in(void **state)
{
	fixture *f = *state;
	hs_store_user_row a = { 0 }, b = { 0 };
	hs_auth_result r = { 0 };
	char *ha = NULL, *hb = NULL;
	assert_int_equal(hs_password_hash("legacy-a-pw", &ha, NULL), HS_OK);
	assert_int_equal(hs_password_hash("legacy-b-pw", &hb, NULL), HS_OK);
	snprintf(a.id, sizeof(a.id), "usr_legacya");
	snprintf(a.email, sizeof(a.email), "a.b@gmail.com");
	snprintf(a.role, sizeof(a.role), "user");
	snprintf(a.password_hash, sizeof(a.password_hash), "%s", ha);
	a.created_at_ms = 1000;
	b = a;
	snprintf(b.id, sizeof(b.id), "usr_legacyb");
	snprintf(b.email, sizeof(b.email), "ab@gmail.com");
	snprintf(b.password_hash, sizeof(b.password_hash), "%s", hb);
	assert_int_equal(hs_store_user_insert(f->store, &a, NULL), HS_OK);
	assert_int_equal(hs_store_user_insert(f->store, &b, NULL), HS_OK);
	assert_int_equal(hs_auth_local_login(f->l, "A.B@gmail.com", "legacy-a-pw", &r, NULL), HS_OK);
	assert_string_equal(r.user.id, "usr_legacya");
	hs_auth_result_dispose(&r);
	assert_int_equal(hs_auth_local_login(f->l, "ab@gmail.com", "legacy-b-pw", &r, NULL), HS_OK);
	assert_string_equal(r.user.id, "usr_legacyb");
	hs_auth_result_dispose(&r);
	/* any other spelling means the normal form's owner */
	assert_int_equal(hs_auth_local_login(f->l, "a.b+x@gmail.com", "legacy-b-pw", &r, NULL),
			 HS_OK);
	assert_string_equal(r.user.id, "usr_legacyb");
	hs_auth_result_dispose(&r);
	free(ha);
	free(hb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_local__login_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local__login_failures_generic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local__refresh_rotates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local__reuse_revokes_family, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local__logout_revokes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local__expired_refresh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local__create_user_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local__tokens_carry_session_and_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local__logout_revokes_the_sessions_access_tokens,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_local__reuse_revokes_the_sessions_access_tokens,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_local__disable_and_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local__email_normal_forms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local__legacy_rows_still_log_in, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local__bootstrap_admin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local__bootstrap_admin_from_env, setup, teardown),
		cmocka_unit_test(test_local__secret_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
