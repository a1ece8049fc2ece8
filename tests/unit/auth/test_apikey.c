/* API keys (server/auth/apikey.h) over a real store: the key's shape and
 * storage (hashed, never the key), verification, expiry, allowed methods,
 * revocation at once, another process's changes picked up by sync, and
 * last-used times recorded in memory and written in batches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "apikey.h"
#include "auth.h"

#define NOW 1700000000000LL

typedef struct fx {
	char dir[64];
	hs_store *store;
	hs_apikeys *ks;
} fx;

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/hs-apikey-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(hs_store_open(&f->store, f->dir, NULL), HS_OK);
	hs_error err = { 0 };
	if (hs_apikeys_new(&f->ks, f->store, &err) != HS_OK)
		fail_msg("%s", err.msg);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	char cmd[128];
	hs_apikeys_free(f->ks);
	hs_store_free(f->store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* Creates a key; *key_out (heap) and the info's id into id. */
static char *create(hs_apikeys *ks, const char *role, int64_t expires, const char *const *methods,
		    size_t n, char id[HS_STORE_ID_MAX])
{
	hs_apikey_spec spec = { "svc", role, expires, methods, n, "usr_admin" };
	hs_apikey_info info;
	char *key = NULL;
	hs_error err = { 0 };
	if (hs_apikeys_create(ks, &spec, NOW, &info, &key, &err) != HS_OK)
		fail_msg("create: %s", err.msg);
	snprintf(id, HS_STORE_ID_MAX, "%s", info.id);
	hs_apikey_info_dispose(&info);
	return key;
}

static void test_apikey__shape_and_storage(void **state)
{
	fx *f = *state;
	char id[HS_STORE_ID_MAX];
	char *key = create(f->ks, NULL, 0, NULL, 0, id);
	assert_int_equal(strlen(key), HS_APIKEY_LEN);
	assert_memory_equal(key, "hsk_", 4);
	assert_int_equal(strlen(id), HS_APIKEY_ID_LEN);
	assert_memory_equal(key, id, HS_APIKEY_ID_LEN);
	assert_int_equal(key[HS_APIKEY_ID_LEN], '_');
	assert_true(hs_apikey_id_ok(id));

	/* The store holds SHA-256(key), never the key or its secret part. */
	hs_store_apikey_row row;
	assert_int_equal(hs_store_apikey_get(f->store, id, &row, NULL), HS_OK);
	unsigned char h[crypto_hash_sha256_BYTES];
	char hex[sizeof(h) * 2 + 1];
	crypto_hash_sha256(h, (const unsigned char *)key, strlen(key));
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	assert_string_equal(row.secret_hash, hex);
	assert_string_equal(row.role, "user");
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "grep -rqF '%s' '%s'", key + HS_APIKEY_ID_LEN + 1, f->dir);
	assert_int_not_equal(system(cmd), 0);

	/* Two keys never share an id or a secret. */
	char id2[HS_STORE_ID_MAX];
	char *key2 = create(f->ks, "admin", 0, NULL, 0, id2);
	assert_string_not_equal(id, id2);
	assert_memory_not_equal(key + 21, key2 + 21, 43);
	free(key);
	free(key2);
}

static void test_apikey__verify(void **state)
{
	fx *f = *state;
	char id[HS_STORE_ID_MAX];
	char *key = create(f->ks, "admin", 0, NULL, 0, id);
	hs_apikey_principal p;
	hs_error err = { 0 };
	assert_int_equal(hs_apikeys_verify(f->ks, key, "/harness.v1.AuthService/WhoAmI", NOW, &p,
					   &err), HS_OK);
	assert_string_equal(p.id, id);
	assert_string_equal(p.role, "admin");

	/* A wrong secret, a truncated key, another shape, an unknown id: one answer. */
	char bad[HS_APIKEY_LEN + 1];
	memcpy(bad, key, sizeof(bad));
	bad[40] = bad[40] == 'A' ? 'B' : 'A';
	const char *wrong[] = { bad, "hsk_", "hsk_0123456789abcdef_short", "not-a-key",
				"hsk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
				"hsk_0123456789ABCDEF_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" };
	for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		hs_error_clear(&err);
		assert_int_equal(hs_apikeys_verify(f->ks, wrong[i], NULL, NOW, &p, &err), HS_UNAUTH);
		assert_string_equal(err.msg, "invalid API key");
	}
	/* A key with a trailing byte is not the key. */
	char longer[HS_APIKEY_LEN + 2];
	snprintf(longer, sizeof(longer), "%sx", key);
	assert_int_equal(hs_apikeys_verify(f->ks, longer, NULL, NOW, &p, NULL), HS_UNAUTH);
	free(key);
}

static void test_apikey__validation(void **state)
{
	fx *f = *state;
	hs_apikey_info info;
	char *key = NULL;
	char longname[HS_APIKEY_NAME_MAX + 2];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	const char *too_many[HS_APIKEY_METHODS_MAX + 1];
	for (size_t i = 0; i < HS_APIKEY_METHODS_MAX + 1; i++)
		too_many[i] = "harness.v1.AuthService/WhoAmI";
	const char *bad_methods[] = { "WhoAmI", "harness.v1.AuthService/", "/x/y", "noDot/Method",
				      "harness.v1.AuthService/Who Am I", "harness v1.S/M",
				      "harness.v1.AuthService/**" };
	struct {
		hs_apikey_spec spec;
		const char *field;
	} cases[] = {
		{ { "", NULL, 0, NULL, 0, "a" }, "name" },
		{ { NULL, NULL, 0, NULL, 0, "a" }, "name" },
		{ { longname, NULL, 0, NULL, 0, "a" }, "name" },
		{ { "tab\there", NULL, 0, NULL, 0, "a" }, "name" },
		{ { "svc", "root", 0, NULL, 0, "a" }, "role" },
		{ { "svc", NULL, NOW, NULL, 0, "a" }, "expires_at" },
		{ { "svc", NULL, NOW - 1, NULL, 0, "a" }, "expires_at" },
		{ { "svc", NULL, 0, too_many, HS_APIKEY_METHODS_MAX + 1, "a" }, "allowed_methods" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hs_error err = { 0 };
		assert_int_equal(hs_apikeys_create(f->ks, &cases[i].spec, NOW, &info, &key, &err),
				 HS_INVALID);
		if (strncmp(err.msg, cases[i].field, strlen(cases[i].field)) != 0)
			fail_msg("case %zu: '%s' does not name %s", i, err.msg, cases[i].field);
	}
	for (size_t i = 0; i < sizeof(bad_methods) / sizeof(bad_methods[0]); i++) {
		hs_apikey_spec spec = { "svc", NULL, 0, &bad_methods[i], 1, "a" };
		hs_error err = { 0 };
		if (hs_apikeys_create(f->ks, &spec, NOW, &info, &key, &err) != HS_INVALID)
			fail_msg("%s accepted", bad_methods[i]);
		assert_memory_equal(err.msg, "allowed_methods", 15);
	}
	/* Nothing was stored by a refused create. */
	int64_t n = -1;
	assert_int_equal(hs_store_apikey_count_active(f->store, &n, NULL), HS_OK);
	assert_int_equal(n, 0);
}

static void test_apikey__expiry(void **state)
{
	fx *f = *state;
	char id[HS_STORE_ID_MAX];
	char *key = create(f->ks, NULL, NOW + 1000, NULL, 0, id);
	hs_apikey_principal p;
	hs_error err = { 0 };
	assert_int_equal(hs_apikeys_verify(f->ks, key, NULL, NOW + 999, &p, &err), HS_OK);
	assert_int_equal(hs_apikeys_verify(f->ks, key, NULL, NOW + 1000, &p, &err), HS_UNAUTH);
	assert_string_equal(err.msg, "API key expired");
	hs_error_clear(&err);
	assert_int_equal(hs_apikeys_verify_id(f->ks, id, NULL, NOW + 5000, &p, &err), HS_UNAUTH);
	free(key);
}

static void test_apikey__allowed_methods(void **state)
{
	fx *f = *state;
	char id[HS_STORE_ID_MAX];
	const char *m[] = { "harness.v1.HealthService/*", "/harness.v1.AuthService/WhoAmI" };
	char *key = create(f->ks, NULL, 0, m, 2, id);
	struct {
		const char *method;
		int rc;
	} cases[] = {
		{ "/harness.v1.HealthService/Heartbeat", HS_OK },
		{ "/harness.v1.HealthService/RegisterTask", HS_OK },
		{ "/harness.v1.AuthService/WhoAmI", HS_OK },
		{ "/harness.v1.AuthService/CreateUser", HS_DENIED },
		{ "/harness.v1.AuthService/WhoAmIx", HS_DENIED },
		{ "/harness.v1.HealthServiceX/Heartbeat", HS_DENIED },
		{ "/harness.v1.HealthService/Heartbeat/x", HS_DENIED },
		{ "/harness.v1.SandboxService/CreateSandbox", HS_DENIED },
		{ NULL, HS_DENIED },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hs_apikey_principal p;
		hs_error err = { 0 };
		int rc = hs_apikeys_verify(f->ks, key, cases[i].method, NOW, &p, &err);
		if (rc != cases[i].rc)
			fail_msg("%s: %d (%s)", cases[i].method ? cases[i].method : "NULL", rc, err.msg);
		if (rc == HS_DENIED && cases[i].method != NULL)
			assert_non_null(strstr(err.msg, cases[i].method + 1)); /* names the method */
	}
	hs_apikey_info info;
	assert_int_equal(hs_apikeys_get(f->ks, id, &info, NULL), HS_OK);
	assert_int_equal(info.n_methods, 2);
	assert_string_equal(info.methods[1], "harness.v1.AuthService/WhoAmI");
	hs_apikey_info_dispose(&info);
	free(key);
}

static void test_apikey__revoke_at_once(void **state)
{
	fx *f = *state;
	char id[HS_STORE_ID_MAX], id2[HS_STORE_ID_MAX];
	char *key = create(f->ks, NULL, 0, NULL, 0, id);
	char *key2 = create(f->ks, NULL, 0, NULL, 0, id2);
	hs_apikey_principal p;
	hs_apikey_info info;
	hs_error err = { 0 };
	assert_int_equal(hs_apikeys_revoke(f->ks, id, NOW + 10, &info, &err), HS_OK);
	assert_int_equal(info.revoked_at_ms, NOW + 10);
	hs_apikey_info_dispose(&info);
	assert_int_equal(hs_apikeys_verify(f->ks, key, NULL, NOW + 11, &p, NULL), HS_UNAUTH);
	assert_int_equal(hs_apikeys_verify_id(f->ks, id, NULL, NOW + 11, &p, NULL), HS_UNAUTH);
	assert_int_equal(hs_apikeys_verify(f->ks, key2, NULL, NOW + 11, &p, NULL), HS_OK);
	/* Idempotent; unknown ids are NOT_FOUND, empty INVALID. */
	assert_int_equal(hs_apikeys_revoke(f->ks, id, NOW + 20, &info, NULL), HS_OK);
	assert_int_equal(info.revoked_at_ms, NOW + 10);
	hs_apikey_info_dispose(&info);
	assert_int_equal(hs_apikeys_revoke(f->ks, "hsk_0000000000000000", NOW, NULL, NULL),
			 HS_NOT_FOUND);
	assert_int_equal(hs_apikeys_revoke(f->ks, "../etc", NOW, NULL, NULL), HS_NOT_FOUND);
	assert_int_equal(hs_apikeys_revoke(f->ks, "", NOW, NULL, NULL), HS_INVALID);
	/* A sync does not bring it back. */
	assert_int_equal(hs_apikeys_sync(f->ks, NULL), HS_OK);
	assert_int_equal(hs_apikeys_verify(f->ks, key, NULL, NOW + 30, &p, NULL), HS_UNAUTH);
	/* Lists: active only, or with the revoked. */
	hs_apikey_info *v = NULL;
	size_t n = 0;
	assert_int_equal(hs_apikeys_list(f->ks, NULL, 0, false, &v, &n, NULL), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].id, id2);
	hs_apikey_infos_free(v, n);
	assert_int_equal(hs_apikeys_list(f->ks, "", 0, true, &v, &n, NULL), HS_OK);
	assert_int_equal(n, 2);
	hs_apikey_infos_free(v, n);
	free(key);
	free(key2);
}

/* Revoking by creator follows the chain through keys revoked earlier: a
 * key made with a key that is already revoked still ends with the user who
 * made the first one (review finding: only active keys were links). */
static void test_apikey__revoke_chain_through_revoked(void **state)
{
	fx *f = *state;
	hs_apikey_info info;
	char *key = NULL;
	hs_error err = { 0 };
	hs_apikey_spec by_user = { "a", NULL, 0, NULL, 0, "usr_mallory" };
	assert_int_equal(hs_apikeys_create(f->ks, &by_user, NOW, &info, &key, &err), HS_OK);
	char a[HS_STORE_ID_MAX];
	snprintf(a, sizeof(a), "%s", info.id);
	hs_apikey_info_dispose(&info);
	free(key);
	hs_apikey_spec by_key = { "b", NULL, 0, NULL, 0, a };
	assert_int_equal(hs_apikeys_create(f->ks, &by_key, NOW, &info, &key, &err), HS_OK);
	char b[HS_STORE_ID_MAX];
	snprintf(b, sizeof(b), "%s", info.id);
	hs_apikey_info_dispose(&info);
	char other[HS_STORE_ID_MAX];
	char *key_other = create(f->ks, NULL, 0, NULL, 0, other); /* usr_admin's */
	/* a revoked alone (its own id is not b's creator in this call). */
	assert_int_equal(hs_apikeys_revoke(f->ks, a, NOW + 1, NULL, &err), HS_OK);
	hs_apikey_principal p;
	assert_int_equal(hs_apikeys_verify(f->ks, key, NULL, NOW + 2, &p, NULL), HS_OK);
	size_t revoked = 0;
	assert_int_equal(hs_apikeys_revoke_created_by(f->ks, "usr_mallory", NOW + 3, &revoked, &err),
			 HS_OK);
	assert_int_equal(revoked, 1); /* b; a was already revoked */
	assert_int_equal(hs_apikeys_verify(f->ks, key, NULL, NOW + 4, &p, NULL), HS_UNAUTH);
	assert_int_equal(hs_apikeys_verify(f->ks, key_other, NULL, NOW + 4, &p, NULL), HS_OK);
	free(key);
	free(key_other);
}

/* Two processes sharing the store: B learns of A's creates and revokes at
 * its next sync (and not before). */
static void test_apikey__other_process(void **state)
{
	fx *f = *state;
	hs_store *store_b = NULL;
	hs_apikeys *b = NULL;
	assert_int_equal(hs_store_open(&store_b, f->dir, NULL), HS_OK);
	assert_int_equal(hs_apikeys_new(&b, store_b, NULL), HS_OK);
	char id[HS_STORE_ID_MAX];
	char *key = create(f->ks, NULL, 0, NULL, 0, id);
	hs_apikey_principal p;
	assert_int_equal(hs_apikeys_verify(b, key, NULL, NOW, &p, NULL), HS_UNAUTH);
	assert_int_equal(hs_apikeys_sync(b, NULL), HS_OK);
	assert_int_equal(hs_apikeys_verify(b, key, NULL, NOW, &p, NULL), HS_OK);
	assert_int_equal(hs_apikeys_revoke(f->ks, id, NOW + 1, NULL, NULL), HS_OK);
	assert_int_equal(hs_apikeys_verify(b, key, NULL, NOW + 2, &p, NULL), HS_OK); /* until synced */
	assert_int_equal(hs_apikeys_sync(b, NULL), HS_OK);
	assert_int_equal(hs_apikeys_verify(b, key, NULL, NOW + 3, &p, NULL), HS_UNAUTH);
	/* A fresh start loads only what is active. */
	hs_apikeys *c = NULL;
	assert_int_equal(hs_apikeys_new(&c, store_b, NULL), HS_OK);
	assert_int_equal(hs_apikeys_verify(c, key, NULL, NOW + 3, &p, NULL), HS_UNAUTH);
	hs_apikeys_free(c);
	hs_apikeys_free(b);
	hs_store_free(store_b);
	free(key);
}

static void test_apikey__last_used(void **state)
{
	fx *f = *state;
	char id[HS_STORE_ID_MAX];
	char *key = create(f->ks, NULL, 0, NULL, 0, id);
	hs_apikey_principal p;
	hs_apikey_info info;
	hs_store_apikey_row row;
	assert_int_equal(hs_apikeys_verify(f->ks, key, NULL, NOW + 5000, &p, NULL), HS_OK);
	/* Shown at once (memory), written only at a sync. */
	assert_int_equal(hs_apikeys_get(f->ks, id, &info, NULL), HS_OK);
	assert_int_equal(info.last_used_at_ms, NOW + 5000);
	hs_apikey_info_dispose(&info);
	assert_int_equal(hs_store_apikey_get(f->store, id, &row, NULL), HS_OK);
	assert_int_equal(row.last_used_at_ms, 0);
	/* Recorded to the second: a use 0.5 s later changes nothing. */
	assert_int_equal(hs_apikeys_verify(f->ks, key, NULL, NOW + 5500, &p, NULL), HS_OK);
	assert_int_equal(hs_apikeys_sync(f->ks, NULL), HS_OK);
	assert_int_equal(hs_store_apikey_get(f->store, id, &row, NULL), HS_OK);
	assert_int_equal(row.last_used_at_ms, NOW + 5000);
	/* A later use is written by the next sync, or when the object is freed. */
	assert_int_equal(hs_apikeys_verify(f->ks, key, NULL, NOW + 9000, &p, NULL), HS_OK);
	hs_apikeys_free(f->ks);
	f->ks = NULL;
	assert_int_equal(hs_store_apikey_get(f->store, id, &row, NULL), HS_OK);
	assert_int_equal(row.last_used_at_ms, NOW + 9000);
	/* Never lowered by an older time. */
	const char *ids[] = { id };
	int64_t older[] = { NOW };
	assert_int_equal(hs_store_apikey_touch(f->store, ids, older, 1, NULL), HS_OK);
	assert_int_equal(hs_store_apikey_get(f->store, id, &row, NULL), HS_OK);
	assert_int_equal(row.last_used_at_ms, NOW + 9000);
	assert_int_equal(hs_apikeys_new(&f->ks, f->store, NULL), HS_OK);
	free(key);
}

static void test_apikey__paging(void **state)
{
	fx *f = *state;
	char ids[5][HS_STORE_ID_MAX];
	for (int i = 0; i < 5; i++)
		free(create(f->ks, NULL, 0, NULL, 0, ids[i]));
	hs_apikey_info *v = NULL;
	size_t n = 0, seen = 0;
	char after[HS_STORE_ID_MAX] = "";
	do {
		assert_int_equal(hs_apikeys_list(f->ks, after, 2, false, &v, &n, NULL), HS_OK);
		for (size_t i = 0; i < n; i++)
			assert_true(strcmp(v[i].id, after) > 0);
		if (n > 0)
			snprintf(after, sizeof(after), "%s", v[n - 1].id);
		seen += n;
		hs_apikey_infos_free(v, n);
	} while (n == 2);
	assert_int_equal(seen, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_apikey__shape_and_storage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apikey__verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apikey__validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apikey__expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apikey__allowed_methods, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apikey__revoke_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apikey__revoke_chain_through_revoked, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_apikey__other_process, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apikey__last_used, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apikey__paging, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
