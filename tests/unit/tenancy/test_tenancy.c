/* Unit tests of the tenancy module: task ids claimed once, other users'
 * tasks invisible, workspace names checked, and workspaces resolved beneath
 * the root without ever following a symbolic link (the escapes of issues
 * 10 and 11: a link planted in a workspace pointing at the data dir or at
 * another tenant's workspace). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "store.h"
#include "tenancy.h"

typedef struct fx {
	char dir[64], root[96], data[96];
	hs_store *store;
	hs_tenancy *ten;
} fx;

static const hs_principal alice = { "usr_alice", false }, bob = { "usr_bob", false },
			  admin = { "usr_admin", true };

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/hs_tenancy.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->root, sizeof(f->root), "%s/ws", f->dir);
	snprintf(f->data, sizeof(f->data), "%s/data", f->dir);
	assert_int_equal(mkdir(f->root, 0700), 0);
	hs_error err = { 0 };
	assert_int_equal(hs_store_open(&f->store, f->data, &err), HS_OK);
	hs_tenancy_config c = { f->store, f->root };
	assert_int_equal(hs_tenancy_new(&f->ten, &c, &err), HS_OK);
	*state = f;
	return 0;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

static int teardown(void **state)
{
	fx *f = *state;
	hs_tenancy_free(f->ten);
	hs_store_free(f->store);
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void test_tenancy__first_claim_wins_others_see_not_found(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	assert_int_equal(hs_tenancy_claim_task(f->ten, &alice, "a1", &err), HS_OK);
	assert_int_equal(hs_tenancy_claim_task(f->ten, &alice, "a1", &err), HS_OK);
	hs_error_clear(&err);
	assert_int_equal(hs_tenancy_claim_task(f->ten, &bob, "a1", &err), HS_NOT_FOUND);
	assert_string_equal(err.msg, "task a1 not found");
	assert_int_equal(hs_tenancy_claim_task(f->ten, &admin, "a1", &err), HS_OK);
	assert_int_equal(hs_tenancy_claim_task(f->ten, NULL, "a1", &err), HS_OK);
	char owner[HS_PRINCIPAL_ID_MAX];
	assert_int_equal(hs_tenancy_check_task(f->ten, &admin, "a1", owner, &err), HS_OK);
	assert_string_equal(owner, "usr_alice");
	assert_int_equal(hs_tenancy_check_task(f->ten, &bob, "a1", NULL, &err), HS_NOT_FOUND);
	/* check never claims */
	assert_int_equal(hs_tenancy_check_task(f->ten, &bob, "b1", NULL, &err), HS_NOT_FOUND);
	assert_int_equal(hs_tenancy_claim_task(f->ten, &alice, "b1", &err), HS_OK);
	assert_int_equal(hs_tenancy_claim_task(f->ten, &alice, "../x", &err), HS_INVALID);
	hs_principal anon = { "", false };
	assert_int_equal(hs_tenancy_claim_task(f->ten, &anon, "c1", &err), HS_UNAUTH);
}

typedef struct racer {
	fx *f;
	const hs_principal *who;
	int rc;
} racer;

static void *race(void *arg)
{
	racer *r = arg;
	r->rc = hs_tenancy_claim_task(r->f->ten, r->who, "contested", NULL);
	return NULL;
}

static void test_tenancy__racing_claims_have_one_winner(void **state)
{
	fx *f = *state;
	pthread_t th[8];
	racer r[8];
	for (int i = 0; i < 8; i++) {
		r[i] = (racer){ f, i % 2 ? &alice : &bob, -100 };
		pthread_create(&th[i], NULL, race, &r[i]);
	}
	int alice_ok = 0, bob_ok = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		if (r[i].rc == HS_OK)
			*(i % 2 ? &alice_ok : &bob_ok) += 1;
		else
			assert_int_equal(r[i].rc, HS_NOT_FOUND);
	}
	assert_true((alice_ok == 4 && bob_ok == 0) || (alice_ok == 0 && bob_ok == 4));
}

static void test_tenancy__workspace_names(void **state)
{
	(void)state;
	hs_error err = { 0 };
	char *n = NULL;
	assert_int_equal(hs_tenancy_workspace_name("t1", NULL, &n, &err), HS_OK);
	assert_string_equal(n, "t1");
	free(n);
	assert_int_equal(hs_tenancy_workspace_name("t1", "t2/sub/dir", &n, &err), HS_OK);
	assert_string_equal(n, "t2/sub/dir");
	free(n);
	const char *bad[] = { "/etc",   "t1/../t2", "..",      "t1//x", "t1/./x", "t1/",
			      ".hidden", "a b/x",   "t1/x\ny", NULL };
	for (int i = 0; bad[i]; i++) {
		hs_error_clear(&err);
		assert_int_equal(hs_tenancy_workspace_name("t1", bad[i], &n, &err), HS_INVALID);
		assert_non_null(strstr(err.msg, "workspace"));
	}
	char big[1100];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(hs_tenancy_workspace_name("t1", big, &n, &err), HS_INVALID);
}

static void test_tenancy__open_creates_and_checks_owner(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	int fd = -1;
	char *name = NULL;
	assert_int_equal(hs_tenancy_open_workspace(f->ten, &alice, "a1", NULL, 0, &fd, NULL, &err),
			 HS_NOT_FOUND);
	assert_non_null(strstr(err.msg, "a1 does not exist"));
	assert_int_equal(hs_tenancy_open_workspace(f->ten, &alice, "a1", "a1/sub", HS_WORKSPACE_CREATE,
						   &fd, &name, &err),
			 HS_OK);
	assert_string_equal(name, "a1/sub");
	free(name);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	close(fd);
	/* bob names alice's workspace, directly or as his task's workspace */
	hs_error_clear(&err);
	assert_int_equal(hs_tenancy_open_workspace(f->ten, &bob, "a1", NULL, 0, &fd, NULL, &err),
			 HS_NOT_FOUND);
	assert_int_equal(hs_tenancy_open_workspace(f->ten, &bob, "b1", "a1", 0, &fd, NULL, &err),
			 HS_NOT_FOUND);
	assert_int_equal(hs_tenancy_open_workspace(f->ten, &admin, "b1", "a1/sub", 0, &fd, NULL, &err),
			 HS_OK);
	close(fd);
}

static void test_tenancy__symlinks_never_followed(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	int fd = -1;
	char p[256], target[256];
	assert_int_equal(hs_tenancy_open_workspace(f->ten, &bob, "b1", NULL, HS_WORKSPACE_CREATE, &fd,
						   NULL, &err),
			 HS_OK);
	close(fd);
	assert_int_equal(hs_tenancy_open_workspace(f->ten, &alice, "a1", NULL, HS_WORKSPACE_CREATE,
						   &fd, NULL, &err),
			 HS_OK);
	close(fd);
	/* bob's agent plants links in its workspace: to the data dir, to alice's
	 * workspace, to the root above */
	snprintf(p, sizeof(p), "%s/b1/escape", f->root);
	assert_int_equal(symlink(f->data, p), 0);
	snprintf(p, sizeof(p), "%s/b1/peer", f->root);
	snprintf(target, sizeof(target), "%s/a1", f->root);
	assert_int_equal(symlink(target, p), 0);
	snprintf(p, sizeof(p), "%s/b1/up", f->root);
	assert_int_equal(symlink("..", p), 0);
	const char *tries[] = { "b1/escape", "b1/peer", "b1/up/a1", "b1/escape/x", NULL };
	for (int i = 0; tries[i]; i++) {
		hs_error_clear(&err);
		assert_int_equal(hs_tenancy_open_workspace(f->ten, &bob, "b1", tries[i],
							   HS_WORKSPACE_CREATE, &fd, NULL, &err),
				 HS_CONFLICT);
		assert_non_null(strstr(err.msg, "symbolic link"));
	}
	/* the workspace itself swapped for a link */
	snprintf(p, sizeof(p), "%s/b2", f->root);
	assert_int_equal(symlink(f->data, p), 0);
	assert_int_equal(hs_tenancy_open_workspace(f->ten, &bob, "b2", NULL, HS_WORKSPACE_CREATE, &fd,
						   NULL, &err),
			 HS_CONFLICT);
	/* a file where a directory is expected */
	snprintf(p, sizeof(p), "%s/b1/file", f->root);
	int w = open(p, O_CREAT | O_WRONLY, 0600);
	close(w);
	hs_error_clear(&err);
	assert_int_equal(hs_tenancy_open_workspace(f->ten, &bob, "b1", "b1/file", 0, &fd, NULL, &err),
			 HS_CONFLICT);
	assert_non_null(strstr(err.msg, "not a directory"));
}

int main(void)
{
	hs_log_min_level = HS_LOG_OFF;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tenancy__first_claim_wins_others_see_not_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenancy__racing_claims_have_one_winner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenancy__workspace_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenancy__open_creates_and_checks_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenancy__symlinks_never_followed, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
