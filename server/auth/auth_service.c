/* harness.v1.AuthService over the auth module, and the authenticator every
 * non-public RPC passes through. Only conversion and error mapping here: the
 * rules live in the module. */
#include "auth_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway_auth.h"
#include "harness/v1/auth.pb-c.h"
#include "netaddr.h"
#include "rpc_pb.h"

#define TOKEN_MAX 8192

/* What is left of the caller's deadline, for the module's upstream calls. */
static int time_left(hs_rpc_call *call)
{
	int64_t left = hs_rpc_call_deadline_left_ms(call);
	if (left == INT64_MAX)
		return -1;
	return left <= 0 ? 1 : (left > 600000 ? 600000 : (int)left);
}

/* --- authenticator -------------------------------------------------------- */

static int authenticate(hs_rpc_call *call, hs_rpc_principal *out, hs_error *err, void *payload)
{
	hs_auth *auth = payload;
	size_t len = 0;
	const char *h = hs_rpc_call_metadata(call, "authorization", &len);
	if (h == NULL)
		return hs_error_set(err, HS_UNAUTH, "missing authorization metadata (Bearer token)");
	if (len < 8 || strncasecmp(h, "Bearer ", 7) != 0)
		return hs_error_set(err, HS_UNAUTH, "authorization must be 'Bearer <access token>'");
	const char *token = h + 7;
	while (*token == ' ')
		token++;
	if (strlen(token) == 0 || strlen(token) > TOKEN_MAX)
		return hs_error_set(err, HS_UNAUTH, "invalid access token");
	hs_jwt_claims claims;
	memset(&claims, 0, sizeof(claims));
	hs_error verr = { 0 };
	if (hs_auth_verify_access_token(auth, token, &claims, &verr) != HS_OK) {
		/* The module's reason (expired, bad signature, ...) is safe to
		 * show: it never contains the token. */
		return hs_error_set(err, HS_UNAUTH, "invalid access token: %s", verr.msg);
	}
	int rc = HS_OK;
	if (claims.sub == NULL || strlen(claims.sub) >= sizeof(out->user_id) ||
	    (claims.role != NULL && strlen(claims.role) >= sizeof(out->role))) {
		rc = hs_error_set(err, HS_UNAUTH, "invalid access token: bad claims");
	} else {
		snprintf(out->user_id, sizeof(out->user_id), "%s", claims.sub);
		snprintf(out->role, sizeof(out->role), "%s", claims.role ? claims.role : "user");
		out->is_admin = strcmp(out->role, "admin") == 0;
	}
	hs_jwt_claims_dispose(&claims);
	return rc;
}

/* --- conversions ------------------------------------------------------------ */

static Harness__V1__User *user_msg(hs_rpc_call *call, const hs_auth_user *u)
{
	Harness__V1__User *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (m == NULL)
		return NULL;
	harness__v1__user__init(m);
	m->id = hs_rpc_call_strdup(call, u->id ? u->id : "");
	m->email = hs_rpc_call_strdup(call, u->email ? u->email : "");
	m->name = hs_rpc_call_strdup(call, u->name ? u->name : "");
	m->role = hs_rpc_call_strdup(call, u->role ? u->role : "user");
	m->created_at = hs_rpc_timestamp(call, u->created_at_ms);
	m->disabled = u->disabled != 0;
	if (m->id == NULL || m->email == NULL || m->name == NULL || m->role == NULL ||
	    m->created_at == NULL)
		return NULL;
	return m;
}

static int auth_response(hs_rpc_call *call, const hs_auth_result *r, int refresh_ttl,
			 ProtobufCMessage **resp, hs_error *err)
{
	Harness__V1__AuthResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (m == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	harness__v1__auth_response__init(m);
	m->user = user_msg(call, &r->user);
	m->access_token = hs_rpc_call_strdup(call, r->access_token ? r->access_token : "");
	m->refresh_token = hs_rpc_call_strdup(call, r->refresh_token ? r->refresh_token : "");
	m->expires_in = (int32_t)r->expires_in;
	m->refresh_expires_in = refresh_ttl;
	m->token_type = "Bearer";
	if (m->user == NULL || m->access_token == NULL || m->refresh_token == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	*resp = &m->base;
	return HS_OK;
}

/* The address logins are counted against: the module decides which
 * metadata to believe (trusted proxies, the gateway's signature). */
static const char *client_address(hs_rpc_call *call)
{
	char *out = hs_rpc_call_alloc(call, HS_IP_TEXT_MAX);
	if (out == NULL)
		return NULL;
	hs_auth_client_address(hs_rpc_call_payload(call), hs_rpc_call_peer(call),
			       hs_rpc_call_metadata(call, "x-forwarded-for", NULL),
			       hs_rpc_call_metadata(call, HS_GATEWAY_AUTH_KEY, NULL), out,
			       HS_IP_TEXT_MAX);
	return out;
}

/* The bearer token of the call's authorization metadata, or NULL. */
static const char *bearer_token(hs_rpc_call *call)
{
	size_t len = 0;
	const char *h = hs_rpc_call_metadata(call, "authorization", &len);
	if (h == NULL || len < 8 || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return h[0] != '\0' && strlen(h) <= TOKEN_MAX ? h : NULL;
}

/* --- handlers --------------------------------------------------------------- */

#define REFRESH_TTL_UNKNOWN 0

static int login(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		 hs_error *err)
{
	const Harness__V1__LoginRequest *r = (const void *)req;
	hs_auth_result res;
	memset(&res, 0, sizeof(res));
	int rc = hs_auth_login(hs_rpc_call_payload(call), r->email, r->password,
			       client_address(call), time_left(call), &res, err);
	if (rc == HS_OK)
		rc = auth_response(call, &res, REFRESH_TTL_UNKNOWN, resp, err);
	hs_auth_result_dispose(&res);
	return rc;
}

static int refresh(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		   hs_error *err)
{
	const Harness__V1__RefreshRequest *r = (const void *)req;
	if (r->refresh_token[0] == '\0')
		return hs_error_set(err, HS_INVALID, "refresh_token: required");
	if (strlen(r->refresh_token) > TOKEN_MAX)
		return hs_error_set(err, HS_UNAUTH, "invalid or expired refresh token");
	hs_auth_result res;
	memset(&res, 0, sizeof(res));
	int rc = hs_auth_refresh(hs_rpc_call_payload(call), r->refresh_token, time_left(call), &res,
				 err);
	if (rc == HS_OK)
		rc = auth_response(call, &res, REFRESH_TTL_UNKNOWN, resp, err);
	hs_auth_result_dispose(&res);
	return rc;
}

static int logout(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		  hs_error *err)
{
	const Harness__V1__LogoutRequest *r = (const void *)req;
	/* Idempotent: no token, or one we don't know, is already logged out. */
	const char *refresh = strlen(r->refresh_token) <= TOKEN_MAX ? r->refresh_token : NULL;
	hs_error lerr = { 0 };
	int rc = hs_auth_logout(hs_rpc_call_payload(call), refresh, bearer_token(call),
				time_left(call), &lerr);
	if (rc != HS_OK && rc != HS_UNAUTH && rc != HS_NOT_FOUND && rc != HS_CONFLICT)
		return hs_error_set(err, rc, "%s", lerr.msg);
	Harness__V1__LogoutResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (m == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	harness__v1__logout_response__init(m);
	*resp = &m->base;
	return HS_OK;
}

static int user_reply(hs_rpc_call *call, const char *id, ProtobufCMessage **resp, hs_error *err)
{
	hs_auth_user u;
	memset(&u, 0, sizeof(u));
	int rc = hs_auth_get_user(hs_rpc_call_payload(call), id, time_left(call), &u, err);
	if (rc == HS_OK) {
		Harness__V1__User *m = user_msg(call, &u);
		if (m == NULL)
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		else
			*resp = &m->base;
	}
	hs_auth_user_dispose(&u);
	return rc;
}

static int get_user(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		    hs_error *err)
{
	const Harness__V1__GetUserRequest *r = (const void *)req;
	const hs_rpc_principal *p = hs_rpc_call_principal(call);
	if (r->id[0] == '\0')
		return hs_error_set(err, HS_INVALID, "id: required");
	if (strlen(r->id) > 128)
		return hs_error_set(err, HS_INVALID, "id: longer than 128 characters");
	if (!p->is_admin && strcmp(p->user_id, r->id) != 0)
		return hs_error_set(err, HS_DENIED, "users may only read their own record");
	return user_reply(call, r->id, resp, err);
}

static int who_am_i(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		    hs_error *err)
{
	(void)req;
	return user_reply(call, hs_rpc_call_principal(call)->user_id, resp, err);
}

/* A User reply for u (disposed here). */
static int user_out(hs_rpc_call *call, int rc, hs_auth_user *u, ProtobufCMessage **resp,
		    hs_error *err)
{
	if (rc == HS_OK) {
		Harness__V1__User *m = user_msg(call, u);
		if (m == NULL)
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		else
			*resp = &m->base;
	}
	hs_auth_user_dispose(u);
	return rc;
}

static int admin_only(hs_rpc_call *call, const char *what, hs_error *err)
{
	if (!hs_rpc_call_principal(call)->is_admin)
		return hs_error_set(err, HS_DENIED, "only an admin may %s", what);
	return HS_OK;
}

static int create_user(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		       hs_error *err)
{
	const Harness__V1__CreateUserRequest *r = (const void *)req;
	hs_auth_user u;
	memset(&u, 0, sizeof(u));
	int rc = admin_only(call, "create users", err);
	if (rc == HS_OK)
		rc = hs_auth_create_user(hs_rpc_call_payload(call), r->email, r->name, r->role,
					 r->password, &u, err);
	return user_out(call, rc, &u, resp, err);
}

static int disable_user(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
			hs_error *err)
{
	const Harness__V1__DisableUserRequest *r = (const void *)req;
	hs_auth_user u;
	memset(&u, 0, sizeof(u));
	int rc = admin_only(call, "disable users", err);
	if (rc == HS_OK)
		rc = hs_auth_disable_user(hs_rpc_call_payload(call), r->id,
					  hs_rpc_call_principal(call)->user_id, &u, err);
	return user_out(call, rc, &u, resp, err);
}

static int delete_user(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		       hs_error *err)
{
	const Harness__V1__DeleteUserRequest *r = (const void *)req;
	int rc = admin_only(call, "delete users", err);
	if (rc == HS_OK)
		rc = hs_auth_delete_user(hs_rpc_call_payload(call), r->id,
					 hs_rpc_call_principal(call)->user_id, err);
	if (rc != HS_OK)
		return rc;
	Harness__V1__DeleteUserResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (m == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	harness__v1__delete_user_response__init(m);
	*resp = &m->base;
	return HS_OK;
}

int hs_auth_service_register(hs_rpc_server *srv, hs_auth *auth, hs_error *err)
{
	/* Every handler blocks: argon2id costs tens of milliseconds by design,
	 * and the upstream backend does HTTP. */
	static const hs_rpc_handler handlers[] = {
		{ "Login", HS_RPC_UNARY, HS_RPC_PUBLIC | HS_RPC_BLOCKING, login, NULL },
		{ "Refresh", HS_RPC_UNARY, HS_RPC_PUBLIC | HS_RPC_BLOCKING, refresh, NULL },
		{ "Logout", HS_RPC_UNARY, HS_RPC_PUBLIC | HS_RPC_BLOCKING, logout, NULL },
		{ "GetUser", HS_RPC_UNARY, HS_RPC_BLOCKING, get_user, NULL },
		{ "WhoAmI", HS_RPC_UNARY, HS_RPC_BLOCKING, who_am_i, NULL },
		{ "CreateUser", HS_RPC_UNARY, HS_RPC_BLOCKING, create_user, NULL },
		{ "DisableUser", HS_RPC_UNARY, HS_RPC_BLOCKING, disable_user, NULL },
		{ "DeleteUser", HS_RPC_UNARY, HS_RPC_BLOCKING, delete_user, NULL },
	};
	int rc = hs_rpc_server_add_service(srv, &harness__v1__auth_service__descriptor, handlers,
					   sizeof(handlers) / sizeof(handlers[0]), auth, err);
	if (rc == HS_OK)
		hs_rpc_server_set_authenticator(srv, authenticate, auth);
	return rc;
}
