/* The user service double as a child process of a unit test. */
#include "double.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#ifndef HS_SOURCE_DIR
#error HS_SOURCE_DIR must name the source tree
#endif

int test_double_start(test_double *d, const char *api_key, const char *jwt_secret)
{
	return test_double_start_alg(d, api_key, jwt_secret, "HS256");
}

int test_double_start_alg(test_double *d, const char *api_key, const char *jwt_secret,
			  const char *alg)
{
	int fds[2];
	char line[64];
	size_t n = 0;
	memset(d, 0, sizeof(*d));
	if (pipe(fds) != 0)
		return -1;
	d->pid = fork();
	if (d->pid < 0)
		return -1;
	if (d->pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl("/usr/bin/python3", "python3", HS_SOURCE_DIR "/tests/doubles/user_service.py",
		      "--port", "0", "--api-key", api_key, "--jwt-secret", jwt_secret, "--jwt-alg", alg,
		      (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	/* "PORT <n>\n" within 10 s */
	while (n < sizeof(line) - 1) {
		struct pollfd p = { fds[0], POLLIN, 0 };
		if (poll(&p, 1, 10000) <= 0)
			break;
		ssize_t r = read(fds[0], line + n, 1);
		if (r <= 0)
			break;
		if (line[n++] == '\n')
			break;
	}
	close(fds[0]);
	line[n] = '\0';
	if (sscanf(line, "PORT %d", &d->port) != 1 || d->port <= 0) {
		test_double_stop(d);
		return -1;
	}
	snprintf(d->url, sizeof(d->url), "http://127.0.0.1:%d", d->port);
	return 0;
}

void test_double_stop(test_double *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		while (waitpid(d->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	d->pid = 0;
}

typedef struct sink {
	char buf[8192];
	size_t len;
} sink;

static size_t on_data(char *p, size_t sz, size_t nm, void *u)
{
	sink *s = u;
	size_t n = sz * nm;
	if (s->len + n >= sizeof(s->buf))
		return 0;
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

static int http_key(test_double *d, const char *path, const char *post, const char *api_key,
		    sink *s)
{
	char url[128], hdr[256];
	long status = 0;
	struct curl_slist *l = NULL;
	CURL *h = curl_easy_init();
	if (api_key != NULL) {
		snprintf(hdr, sizeof(hdr), "X-API-Key: %s", api_key);
		l = curl_slist_append(NULL, hdr);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
	}
	snprintf(url, sizeof(url), "%s%s", d->url, path);
	s->len = 0;
	s->buf[0] = '\0';
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
	if (post != NULL)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
	CURLcode cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	curl_slist_free_all(l);
	return cc == CURLE_OK && status == 200 ? 0 : -1;
}

static int http(test_double *d, const char *path, const char *post, sink *s)
{
	return http_key(d, path, post, NULL, s);
}

int test_double_rotate(test_double *d, const char *alg, int drop_old, char *kid, size_t cap)
{
	sink s;
	char body[128];
	snprintf(body, sizeof(body), "{\"alg\": \"%s\", \"drop_old\": %s}", alg,
		 drop_old ? "true" : "false");
	if (http(d, "/__rotate", body, &s) != 0)
		return -1;
	json_t *j = json_loads(s.buf, 0, NULL);
	const char *k = json_string_value(json_object_get(j, "kid"));
	int r = k != NULL ? 0 : -1;
	if (k != NULL && kid != NULL)
		snprintf(kid, cap, "%s", k);
	json_decref(j);
	return r;
}

int test_double_token(test_double *d, const char *api_key, const char *email,
		      const char *password, char *out, size_t cap)
{
	sink s;
	char body[256];
	snprintf(body, sizeof(body), "{\"email\": \"%s\", \"password\": \"%s\"}", email,
		 password);
	if (http_key(d, "/api/v1/auth/login", body, api_key, &s) != 0)
		return -1;
	json_t *j = json_loads(s.buf, 0, NULL);
	const char *t = json_string_value(json_object_get(j, "access_token"));
	int r = t != NULL && strlen(t) < cap ? 0 : -1;
	if (r == 0)
		snprintf(out, cap, "%s", t);
	json_decref(j);
	return r;
}

int test_double_control(test_double *d, const char *json)
{
	sink s;
	return http(d, "/__control", json, &s);
}

static json_t *stats(test_double *d)
{
	sink s;
	if (http(d, "/__stats", NULL, &s) != 0)
		return NULL;
	return json_loads(s.buf, 0, NULL);
}

long test_double_stat(test_double *d, const char *name)
{
	json_t *j = stats(d);
	json_t *v = json_object_get(j, name);
	long r = json_is_integer(v) ? (long)json_integer_value(v) : -1;
	json_decref(j);
	return r;
}

int test_double_last_header(test_double *d, const char *name, char *out, size_t cap)
{
	json_t *j = stats(d);
	json_t *v = json_object_get(json_object_get(j, "last_headers"), name);
	int r = -1;
	out[0] = '\0';
	if (json_is_string(v)) {
		snprintf(out, cap, "%s", json_string_value(v));
		r = 0;
	}
	json_decref(j);
	return r;
}

int test_closed_port(void)
{
	struct sockaddr_in a = { 0 };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = 1;
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}
