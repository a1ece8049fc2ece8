/* libFuzzer target: the gateway's pure request handling (gateway/
 * validate.c, policy.c, json.c): what a browser or a proxy controls in a
 * request, each part checked for memory safety and for the properties the
 * rest of the gateway relies on (a normalised email is itself valid and
 * stable; a cookie value found is a token; a Set-Cookie built is safe in a
 * header; a client address is short and printable). The input is split
 * at NUL bytes into up to six fields. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "email.h"
#include "json.h"
#include "netaddr.h"
#include "policy.h"
#include "validate.h"

#define N_FIELDS 6

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	if (buf == NULL)
		abort();
	memcpy(buf, data, size);
	buf[size] = '\0';
	const char *f[N_FIELDS];
	size_t nf = 0, at = 0;
	while (nf < N_FIELDS) {
		f[nf++] = buf + at;
		size_t l = strlen(buf + at);
		if (at + l >= size)
			break;
		at += l + 1;
	}
	while (nf < N_FIELDS)
		f[nf++] = "";

	/* login body and its fields */
	char *email = NULL, *password = NULL;
	if (hs_gw_json_login_parse((const char *)data, size, &email, &password) == HS_OK) {
		char norm[HS_EMAIL_MAX + 1];
		(void)hs_email_valid(email != NULL ? email : "");
		if (email != NULL && hs_email_normalize(email, norm, sizeof(norm))) {
			char again[HS_EMAIL_MAX + 1];
			if (!hs_email_normalize(norm, again, sizeof(again)) || strcmp(norm, again) != 0)
				abort(); /* normalising is idempotent */
		}
		if (password != NULL)
			(void)hs_gw_password_ok(password);
		free(email);
		hs_gw_json_secret_free(password);
	}
	char norm[HS_EMAIL_MAX + 1];
	if (hs_email_normalize(f[0], norm, sizeof(norm)) && !printable(norm))
		abort();
	(void)hs_gw_password_ok(f[1]);
	(void)hs_gw_header_value_ok(f[2]);
	(void)hs_gw_token_ok(f[2], strlen(f[2]));

	/* cookies */
	char tok[HS_GW_TOKEN_MAX + 1];
	if (hs_gw_cookie_find(f[0], f[1][0] ? f[1] : "refreshToken", tok, sizeof(tok)) ==
	    HS_GW_COOKIE_OK && !hs_gw_token_ok(tok, strlen(tok)))
		abort(); /* a value found is a token */
	char cookie[8192];
	if (hs_gw_cookie_build(cookie, sizeof(cookie), "refreshToken", f[2][0] ? f[2] : NULL, 604800,
			       f[3], (size & 4) != 0, 1700000000) == HS_OK &&
	    (!hs_gw_header_value_ok(cookie) || strchr(cookie, '\r') || strchr(cookie, '\n')))
		abort(); /* a built cookie is safe in a header */
	(void)hs_gw_cookie_path_ok(f[3]);

	/* CORS, CSRF, content types */
	hs_gw_origins origins;
	memset(&origins, 0, sizeof(origins));
	if (hs_gw_origins_parse(&origins, f[4], NULL) != HS_OK)
		memset(&origins, 0, sizeof(origins));
	(void)hs_gw_origin_allowed(&origins, f[0]);
	(void)hs_gw_content_type(f[1]);
	char self[300];
	bool have_self = hs_gw_self_origin(self, sizeof(self), f[2], (size & 8) != 0);
	if (have_self && (!printable(self) || strchr(self, ' ') != NULL))
		abort(); /* an origin we compare with is one token */
	hs_gw_post_req req = { .origin = f[0], .sec_fetch_site = f[1], .content_type = f[2],
			       .requested_with = f[3][0] ? f[3] : NULL,
			       .self_origin = have_self ? self : NULL, .has_body = f[5][0] != '\0' };
	(void)hs_gw_csrf_check(&req, &origins, (size & 1) != 0);

	/* client address behind trusted proxies (the peer comes from the
	 * socket: always an address; X-Forwarded-For is the client's) */
	static const char *const peers[] = { "127.0.0.1", "10.1.2.3", "::1", "2001:db8::7" };
	hs_cidr_list trusted;
	char list[256];
	snprintf(list, sizeof(list), "127.0.0.1,::1%s%.200s", f[3][0] ? "," : "", f[3]);
	if (hs_cidr_list_parse(&trusted, list, "trusted proxies", NULL) != HS_OK &&
	    hs_cidr_list_parse(&trusted, "127.0.0.1,::1", "trusted proxies", NULL) != HS_OK)
		abort();
	char ip[HS_IP_TEXT_MAX];
	hs_client_address(&trusted, peers[size % 4], f[5], ip, sizeof(ip));
	if (strlen(ip) >= HS_IP_TEXT_MAX || !printable(ip) ||
	    !hs_ip_canonical(ip, strlen(ip), list, sizeof(list)))
		abort(); /* always an address, canonical */

	/* error bodies from a status the server sent */
	hs_client_status st;
	memset(&st, 0, sizeof(st));
	st.code = 1 + (size > 0 ? data[0] % 16 : 0); /* a failed call */
	memcpy(st.details, f[1], strnlen(f[1], sizeof(st.details) - 1));
	memcpy(st.error_code, f[2], strnlen(f[2], sizeof(st.error_code) - 1));
	int http = 0;
	char *body = hs_gw_json_grpc_error(&st, (size & 2) != 0, &http);
	if (body == NULL || http < 400 || http > 599)
		abort();
	free(body);
	body = hs_gw_json_error(f[1], f[2]);
	free(body);

	free(buf);
	return 0;
}
