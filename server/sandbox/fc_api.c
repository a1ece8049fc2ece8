/* Firecracker API client: libcurl over a Unix socket, URL http://localhost/...
 * Errors are translated here (CURLcode + error buffer, HTTP status +
 * fault_message) and nowhere else. */
#include "fc_api.h"
#include "curl_once.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define RESP_MAX (1 << 20)


typedef struct buf {
	char *data;
	size_t len;
	bool overflow;
} buf;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *payload)
{
	buf *b = payload;
	size_t n = size * nmemb;
	if (b->len + n > RESP_MAX) {
		b->overflow = true;
		return 0;
	}
	char *p = realloc(b->data, b->len + n + 1);
	if (p == NULL)
		return 0;
	memcpy(p + b->len, ptr, n);
	b->data = p;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* fault_message of an error body, or the body itself, or "(no body)". */
static void fault_of(const buf *b, char *out, size_t cap)
{
	snprintf(out, cap, "%s", "(no body)");
	if (b->data == NULL || b->len == 0)
		return;
	json_t *j = json_loadb(b->data, b->len, 0, NULL);
	const char *m = j ? json_string_value(json_object_get(j, "fault_message")) : NULL;
	snprintf(out, cap, "%s", m ? m : b->data);
	json_decref(j);
}

int hs_fc_api_call(const char *sock, const char *method, const char *path, const char *body,
		   unsigned timeout_ms, char **resp, hs_error *err)
{
	int rc = HS_OK;
	char url[512], errbuf[CURL_ERROR_SIZE] = "";
	buf b = { 0 };
	struct curl_slist *hdrs = NULL;
	CURL *c = NULL;

	hs_curl_global_init(NULL);
	if (strlen(sock) > HS_FC_SOCK_MAX)
		return hs_error_set(err, HS_INVALID, "firecracker API socket path too long: %s",
				    sock);
	snprintf(url, sizeof(url), "http://localhost%s", path);
	c = curl_easy_init();
	if (c == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "curl_easy_init failed");
		goto done;
	}
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (body != NULL)
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_ms ? timeout_ms : 5000));
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	CURLcode cc = curl_easy_perform(c);
	if (cc == CURLE_OPERATION_TIMEDOUT) {
		rc = hs_error_set(err, HS_TIMEOUT, "firecracker %s %s: timed out after %u ms",
				  method, path, timeout_ms);
		goto done;
	}
	if (cc != CURLE_OK) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "firecracker %s %s: %s", method, path,
				  errbuf[0] ? errbuf : curl_easy_strerror(cc));
		goto done;
	}
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		char fault[200];
		fault_of(&b, fault, sizeof(fault));
		rc = hs_error_set(err, status >= 500 ? HS_INTERNAL : HS_INVALID,
				  "firecracker %s %s: %ld: %s", method, path, status, fault);
		hs_log(HS_LOG_WARN, "sandbox", "firecracker API error", HS_LS("method", method),
		       HS_LS("path", path), HS_LI("status", status), HS_LS("fault", fault));
		goto done;
	}
	if (resp != NULL) {
		*resp = b.data ? b.data : strdup("");
		b.data = NULL;
		if (*resp == NULL)
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
	}
done:
	free(b.data);
	curl_slist_free_all(hdrs);
	if (c != NULL)
		curl_easy_cleanup(c);
	return rc;
}
