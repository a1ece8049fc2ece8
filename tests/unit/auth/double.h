/* Start/stop tests/doubles/user_service.py from a unit test, and drive its
 * /__control and /__stats endpoints. */
#ifndef HS_TEST_AUTH_DOUBLE_H
#define HS_TEST_AUTH_DOUBLE_H

#include <stddef.h>
#include <sys/types.h>

typedef struct test_double {
	pid_t pid;
	int port;
	char url[64];
} test_double;

/* fork/exec python3 user_service.py --port 0 with these flags; 0 on success. */
int test_double_start(test_double *d, const char *api_key, const char *jwt_secret);
/* The same with --jwt-alg alg (RS256/ES256: tokens signed with a key its
 * JWKS publishes at /.well-known/jwks.json). */
int test_double_start_alg(test_double *d, const char *api_key, const char *jwt_secret,
			  const char *alg);
/* POST /__rotate: a new signing key (its kid into kid), the old ones kept
 * in the JWKS unless drop_old. 0 on success. */
int test_double_rotate(test_double *d, const char *alg, int drop_old, char *kid, size_t cap);
/* An access token straight from the double's login (not through harnessd). */
int test_double_token(test_double *d, const char *api_key, const char *email,
		      const char *password, char *out, size_t cap);
/* SIGTERM the PID, wait for it. */
void test_double_stop(test_double *d);
/* POST /__control with a JSON body; 0 on HTTP 200. */
int test_double_control(test_double *d, const char *json);
/* GET /__stats: the integer field `name`, or -1. */
long test_double_stat(test_double *d, const char *name);
/* GET /__stats: a copy of last_headers[name] into out, or "" (0/-1). */
int test_double_last_header(test_double *d, const char *name, char *out, size_t cap);
/* A loopback port nothing listens on (bound then closed). */
int test_closed_port(void);

#endif
