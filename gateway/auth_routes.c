/* The seed BFF's contract (DESIGN.md "REST gateway contract"), unchanged:
 * POST /api/v1/auth/{login,refresh,logout} onto AuthService, the refresh
 * token in an HttpOnly cookie (gateway/README.md has the rules). */
#include "server_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "email.h"
#include "harness/v1/auth.pb-c.h"
#include "json.h"
#include "log.h"
#include "policy.h"

#define COOKIE_NAME "refreshToken"
#define COOKIE_MAX_AGE 604800L /* 7 days, as the seed */

typedef hs_gw_resp resp;
typedef hs_gw_req req;
typedef hs_gw_md call_md;

static void set_cookie(const req *r, resp *out, const char *token, long max_age)
{
	out->has_cookie = hs_gw_cookie_build(out->cookie, sizeof(out->cookie), COOKIE_NAME, token,
					     max_age, r->srv->cfg->cookie_path, r->secure,
					     (long long)time(NULL)) == HS_OK;
	if (!out->has_cookie && token != NULL)
		hs_gw__set_error(out, 500, "INTERNAL_ERROR", "Internal server error");
}

/* One AuthService call on behalf of r (its metadata; with_authz as
 * hs_gw__metadata), bounded by --request-timeout-ms; as hs_async_unary. */
static int auth_call(const req *r, const char *method, const ProtobufCMessage *in,
		     const ProtobufCMessageDescriptor *resp_desc, bool with_authz,
		     ProtobufCMessage **resp_msg, hs_client_status *st)
{
	call_md md;
	hs_gw__metadata(r, &md, with_authz);
	return hs_async_unary(r->srv->async, method, in, resp_desc, resp_msg, md.v, md.n,
			      r->srv->cfg->request_timeout_ms, st);
}

static void grpc_failed(const req *r, resp *out, const hs_client_status *st, const char *method)
{
	int http = 500;
	free(out->body);
	out->body = hs_gw_json_grpc_error(st, r->srv->cfg->production, &http);
	out->status = http;
	hs_gw_metrics_upstream_error(r->srv->metrics, st->code);
	hs_log(http >= 500 ? HS_LOG_WARN : HS_LOG_INFO, "gateway", "rpc failed",
	       HS_LS("method", method), HS_LS("code", hs_client_grpc_code_name(st->code)),
	       HS_LI("http", http));
}

/* The token pair came back: cookie + the seed's 200 body. */
static void auth_ok(const req *r, resp *out, const Harness__V1__AuthResponse *a)
{
	if (!hs_gw_token_ok(a->refresh_token, strlen(a->refresh_token))) {
		hs_log(HS_LOG_ERROR, "gateway", "auth service sent an unusable refresh token");
		hs_gw__set_error(out, 500, "INTERNAL_ERROR", "Internal server error");
		return;
	}
	out->status = 200;
	out->body = hs_gw_json_auth(a);
	set_cookie(r, out, a->refresh_token, a->refresh_expires_in > 0 ? a->refresh_expires_in : COOKIE_MAX_AGE);
}

static void route_login(const req *r, resp *out, const char *body, size_t len)
{
	char *email = NULL, *password = NULL;
	if (len > 0 && hs_gw_json_login_parse(body, len, &email, &password) != HS_OK) {
		hs_gw__set_error(out, 400, "INVALID_JSON", "Malformed JSON body");
		return;
	}
	/* the shape only: harnessd normalises what the user typed (one rule) */
	bool email_ok = email != NULL && hs_email_valid(email);
	bool pw_ok = hs_gw_password_ok(password);
	if (!email_ok || !pw_ok) {
		free(email);
		hs_gw_json_secret_free(password);
		out->status = 400;
		out->body = hs_gw_json_validation(!email_ok, !pw_ok);
		return;
	}
	Harness__V1__LoginRequest lr = HARNESS__V1__LOGIN_REQUEST__INIT;
	lr.email = email;
	lr.password = password;
	hs_client_status st;
	ProtobufCMessage *resp_msg = NULL;
	int rc = auth_call(r, "/harness.v1.AuthService/Login", &lr.base,
			   &harness__v1__auth_response__descriptor, false, &resp_msg, &st);
	free(email);
	hs_gw_json_secret_free(password);
	if (rc != HS_OK) {
		grpc_failed(r, out, &st, "Login");
		return;
	}
	auth_ok(r, out, (Harness__V1__AuthResponse *)resp_msg);
	protobuf_c_message_free_unpacked(resp_msg, NULL);
}

/* The refresh cookie: HS_GW_COOKIE_*; an unsafe Cookie header is invalid. */
static int refresh_cookie(const req *r, char *tok, size_t toksz)
{
	const char *raw = mg_get_header(r->conn, "Cookie");
	if (raw == NULL)
		return HS_GW_COOKIE_ABSENT;
	int c = hs_gw_cookie_find(raw, COOKIE_NAME, tok, toksz);
	if (c == HS_GW_COOKIE_OK && !hs_gw_header_value_ok(raw))
		c = HS_GW_COOKIE_INVALID;
	return c;
}

static void refresh_invalid(const req *r, resp *out)
{
	hs_gw__set_error(out, 401, "UNAUTHORIZED", "Invalid or expired refresh token");
	set_cookie(r, out, NULL, 0);
}

static void route_refresh(const req *r, resp *out)
{
	char tok[HS_GW_TOKEN_MAX + 1];
	int c = refresh_cookie(r, tok, sizeof(tok));
	if (c == HS_GW_COOKIE_ABSENT) {
		hs_gw__set_error(out, 401, "UNAUTHORIZED", "No refresh token provided");
		return;
	}
	if (c == HS_GW_COOKIE_INVALID) {
		refresh_invalid(r, out);
		return;
	}
	Harness__V1__RefreshRequest rr = HARNESS__V1__REFRESH_REQUEST__INIT;
	rr.refresh_token = tok;
	hs_client_status st;
	ProtobufCMessage *resp_msg = NULL;
	int rc = auth_call(r, "/harness.v1.AuthService/Refresh", &rr.base,
			   &harness__v1__auth_response__descriptor, false, &resp_msg, &st);
	explicit_bzero(tok, sizeof(tok));
	if (rc == HS_UNAUTH || rc == HS_INVALID) {
		/* the token itself is bad (invalid, expired, revoked, reused) */
		refresh_invalid(r, out);
		return;
	}
	if (rc != HS_OK) { /* outage or timeout: the cookie stays */
		grpc_failed(r, out, &st, "Refresh");
		return;
	}
	auth_ok(r, out, (Harness__V1__AuthResponse *)resp_msg);
	protobuf_c_message_free_unpacked(resp_msg, NULL);
}

static void route_logout(const req *r, resp *out)
{
	char tok[HS_GW_TOKEN_MAX + 1];
	int c = refresh_cookie(r, tok, sizeof(tok));
	if (c == HS_GW_COOKIE_OK) {
		Harness__V1__LogoutRequest lr = HARNESS__V1__LOGOUT_REQUEST__INIT;
		lr.refresh_token = tok;
		hs_client_status st;
		ProtobufCMessage *resp_msg = NULL;
		/* with_authz: the browser's access token, if it sent one, ends with
		 * the session (harnessd ignores one that does not verify: never a
		 * reason to fail) */
		int rc = auth_call(r, "/harness.v1.AuthService/Logout", &lr.base,
				   &harness__v1__logout_response__descriptor, true, &resp_msg, &st);
		explicit_bzero(tok, sizeof(tok));
		if (rc == HS_OK)
			protobuf_c_message_free_unpacked(resp_msg, NULL);
		else if (rc != HS_UNAUTH && rc != HS_INVALID) {
			/* not revoked: keep the cookie so the client can retry */
			grpc_failed(r, out, &st, "Logout");
			return;
		}
	}
	out->status = 200;
	out->body = hs_gw_json_success();
	set_cookie(r, out, NULL, 0);
}

void hs_gw_auth_route(const req *r, resp *out, const char *which)
{
	out->no_store = true;
	const char *te = mg_get_header(r->conn, "Transfer-Encoding");
	hs_gw_post_req pr = {
		.has_body = r->ri->content_length > 0 || (te != NULL && r->ri->content_length < 0),
	};
	switch (hs_gw__csrf(r)) {
	case HS_GW_ALLOW:
		break;
	case HS_GW_DENY_MEDIA_TYPE:
		out->close = pr.has_body;
		hs_gw__set_error(out, 415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json");
		return;
	case HS_GW_DENY_NO_HEADER:
		out->close = pr.has_body;
		hs_gw__set_error(out, 403, "FORBIDDEN", "Missing X-Requested-With header");
		return;
	default:
		out->close = pr.has_body;
		hs_gw__set_error(out, 403, "FORBIDDEN", "Cross-site request refused");
		return;
	}
	char *body;
	size_t len;
	if (!hs_gw__read_body(r, out, &body, &len))
		return;
	if (!strcmp(which, "login"))
		route_login(r, out, body, len);
	else if (!strcmp(which, "refresh"))
		route_refresh(r, out);
	else
		route_logout(r, out);
	hs_gw__free_body(body, len);
}

